import { Effect, PubSub, Queue, type Scope } from "effect"

/**
 * The in-process signal the request path gives after a successful commit: "there is new work".
 * It carries no event and reaches no broker (G2); the publisher and the materializer each
 * subscribe and then read the rows themselves. Signals coalesce: a burst of commits wakes a
 * sleeping subscriber once.
 */
export class Wakeup extends Effect.Service<Wakeup>()("Herald/Wakeup", {
  effect: Effect.gen(function*() {
    const hub = yield* PubSub.sliding<void>(1)
    return {
      signal: PubSub.publish(hub, undefined).pipe(Effect.asVoid),
      /** A scoped subscription: `take` waits for the next signal after any already pending. */
      subscribe: PubSub.subscribe(hub).pipe(
        Effect.map((queue) => ({
          take: Queue.take(queue),
          drain: Queue.takeAll(queue).pipe(Effect.asVoid)
        }))
      ) satisfies Effect.Effect<unknown, never, Scope.Scope>
    }
  })
}) {}
