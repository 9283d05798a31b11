import { Chunk, Duration, Effect, type Option, Schedule } from "effect"

/**
 * The publisher's retry policy: exponential from `baseMs` (doubling), jittered (0.8–1.2×), each
 * delay capped at `maxMs`. After `maxAttempts` failed attempts a row is `dead`.
 */
export const retrySchedule = (baseMs: number, maxMs: number) =>
  Schedule.exponential(Duration.millis(baseMs), 2).pipe(
    Schedule.jittered,
    // modifyDelay receives (output, delay): cap the jittered delay, not the raw exponential output.
    Schedule.modifyDelay((_, delay) => Duration.min(delay, Duration.millis(maxMs)))
  )

/**
 * The delay before the next attempt of a row that has now failed `failures` times, read off the
 * schedule (stepped, not slept), or None when the row is out of attempts.
 */
export const nextRetryDelay = (
  schedule: Schedule.Schedule<Duration.Duration>,
  failures: number,
  maxAttempts: number
): Effect.Effect<Option.Option<Duration.Duration>> =>
  failures >= maxAttempts
    ? Effect.succeedNone
    : Effect.map(
      Schedule.run(Schedule.delays(schedule), 0, Array.from({ length: failures }, () => undefined)),
      Chunk.last
    )
