import { Effect, Queue, type Scope } from "effect"

/**
 * The in-process signal the request path gives after a successful commit: "there is new work".
 * It carries no event and reaches no broker (G2); the publisher and the materializer each
 * subscribe and then read the rows themselves. Signals coalesce: a burst of commits wakes a
 * sleeping subscriber once.
 *
 * Each subscriber has its own one-slot queue: a signal while one is pending there adds nothing. (A `PubSub.sliding(1)` shared by the
 * subscribers is what this used to be, and Effect 3's capacity-one PubSub lets a subscriber that
 * lagged behind a slide take the retained signal twice, so the other one never saw it: the
 * publisher then slept until its fallback poll. Effect-TS/effect#7601, fixed in 4.x only.)
 */
export class Wakeup extends Effect.Service<Wakeup>()("Herald/Wakeup", {
  effect: Effect.sync(() => {
    const subscribers = new Set<Queue.Queue<void>>()
    return {
      signal: Effect.sync(() => {
        for (const queue of subscribers) queue.unsafeOffer(undefined)
      }),
      /** A scoped subscription: `take` waits for the next signal after any already pending. */
      subscribe: Effect.acquireRelease(
        Effect.tap(Queue.dropping<void>(1), (queue) => Effect.sync(() => subscribers.add(queue))),
        (queue) => Effect.zipRight(Effect.sync(() => subscribers.delete(queue)), Queue.shutdown(queue))
      ).pipe(
        Effect.map((queue) => ({
          take: Queue.take(queue),
          drain: Queue.takeAll(queue).pipe(Effect.asVoid)
        }))
      ) satisfies Effect.Effect<unknown, never, Scope.Scope>
    }
  })
}) {}
