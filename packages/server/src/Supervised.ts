import { Effect, Schedule } from "effect"

/**
 * How a supervised loop waits before it restarts: exponential from 100 ms, each pause at most
 * 5 s (the union takes the shorter delay), forever. A loop that then ran for 30 s without failing
 * starts again from 100 ms at its next failure: one outage's backoff does not slow the recovery
 * from every later one (a LISTEN connection cut twice a day re-listens at once each time).
 */
export const restartSchedule = Schedule.exponential("100 millis").pipe(
  Schedule.union(Schedule.spaced("5 seconds")),
  Schedule.resetAfter("30 seconds")
)

/**
 * A long-running loop (the publisher, the materializer, the SSE hub's subscription) that pauses
 * and restarts by itself after a failure such as a database outage: each failure runs
 * `onFailure` (e.g. a status update), logs `message(error)` as a warning, then the loop is
 * retried on `restartSchedule`. Defects and interruption are not failures: they end it.
 */
export const supervised = <E, R2 = never>(options: {
  readonly message: (error: NoInfer<E>) => string
  readonly onFailure?: (error: NoInfer<E>) => Effect.Effect<void, never, R2>
}) =>
<A, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E, R | R2> =>
  self.pipe(
    Effect.tapError((error) =>
      Effect.zipRight(options.onFailure?.(error) ?? Effect.void, Effect.logWarning(options.message(error)))
    ),
    Effect.retry(restartSchedule)
  )
