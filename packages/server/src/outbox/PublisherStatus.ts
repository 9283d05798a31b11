import { Effect, Ref } from "effect"

export type PublisherState =
  | { readonly _tag: "Stopped" }
  | { readonly _tag: "Running" }
  | { readonly _tag: "BackingOff"; readonly error: string }

/** What `/health/ready` reports about this process's publisher. */
export class PublisherStatus extends Effect.Service<PublisherStatus>()("Herald/PublisherStatus", {
  effect: Effect.map(Ref.make<PublisherState>({ _tag: "Stopped" }), (ref) => ({
    get: Ref.get(ref),
    set: (state: PublisherState) => Ref.set(ref, state)
  }))
}) {}
