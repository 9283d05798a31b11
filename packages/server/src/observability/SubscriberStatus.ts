import { Effect, Ref } from "effect"

export type SubscriberState =
  | { readonly _tag: "Starting" }
  | { readonly _tag: "Live" }
  | { readonly _tag: "Down"; readonly reason: string }

/**
 * What `/health/ready` reports about this process's broker subscription: a node that cannot hear
 * its broker serves no live events, so it is not ready. The broker's subscribing side sets it.
 */
export class SubscriberStatus extends Effect.Service<SubscriberStatus>()("Herald/SubscriberStatus", {
  effect: Effect.map(Ref.make<SubscriberState>({ _tag: "Starting" }), (ref) => ({
    get: Ref.get(ref),
    set: (state: SubscriberState) => Ref.set(ref, state)
  }))
}) {}
