import type { Events } from "@herald/domain"
import { Chunk, Deferred, Effect, Option, Queue, Ref, Schedule, Stream } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../http/Metrics.js"
import { EventReader } from "./EventReader.js"
import { SseHub } from "./SseHub.js"

/** Events read from the database per round trip, for replay and gap filling. */
const PAGE = 500
const RETRY_MS = 2_000

const encoder = new TextEncoder()
const frame = (event: Events.EventWire) => `id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`

export interface StreamRequest {
  readonly stream: string
  /** The last seq the client has; None → start after the current head. */
  readonly after: Option.Option<number>
  /** An event after which the response ends (e.g. the caller's removal from the project). */
  readonly endsWith?: (event: Events.EventWire) => Effect.Effect<boolean>
  /**
   * Cuts the connection. Used when the client fell so far behind that its buffer overflowed and it
   * still has not taken the end of the response after a grace period (its socket is full).
   */
  readonly abort?: Effect.Effect<void>
}

/** How long an overflowed connection gets to take its end before its socket is destroyed. */
const OVERFLOW_GRACE = "1 second"

/**
 * One SSE response: every event of the stream after the client's position, exactly once, in seq
 * order, with no gap — then live. The order of steps is what makes it exact:
 *   1. subscribe to the hub (live events start queueing),
 *   2. replay from the database everything after the position,
 *   3. go live, dropping what was already sent (seq ≤ last sent) and, when a live event skips
 *      ahead (broker reordering, a dead event, a replay, a missed notification), reading the
 *      missing range from the database first.
 */
export const sseEvents = (request: StreamRequest) =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const hub = yield* SseHub
    const reader = yield* EventReader
    const metrics = yield* Metrics
    const { sseHeartbeatMs } = yield* AppConfig
    const subscription = yield* hub.subscribe(request.stream)
    const start = Option.isSome(request.after) ? request.after.value : yield* Effect.orDie(reader.head(request.stream))
    const lastSent = yield* Ref.make(start)

    /** Everything after `from` (up to `until`) from the database, page by page. */
    const fromDatabase = (from: number, until: number | undefined) =>
      Stream.paginateChunkEffect(from, (after) =>
        Effect.map(Effect.orDie(reader.range(request.stream, after, until, PAGE)), (rows) => [
          Chunk.unsafeFromArray(rows),
          rows.length < PAGE ? Option.none() : Option.some(rows[rows.length - 1]!.seq)
        ]))

    // Emits an event only if it is the next one; advancing the mark makes later duplicates drop.
    const inOrder = (events: Stream.Stream<Events.EventWire>) =>
      Stream.filterEffect(events, (event) =>
        Ref.modify(lastSent, (last) => event.seq === last + 1 ? [true, event.seq] : [false, last]))

    const live = Stream.fromQueue(subscription.queue).pipe(
      Stream.flatMap((event) =>
        Effect.map(Ref.get(lastSent), (last) =>
          event.seq <= last
            ? Stream.empty
            : event.seq === last + 1
            ? Stream.make(event)
            : Stream.concat(fromDatabase(last, event.seq - 1), Stream.make(event))).pipe(Stream.unwrap)
      )
    )

    if (request.abort !== undefined) {
      yield* Deferred.await(subscription.overflow).pipe(
        Effect.zipRight(Effect.sleep(OVERFLOW_GRACE)),
        Effect.zipRight(request.abort),
        Effect.forkScoped
      )
    }

    const events = inOrder(Stream.concat(fromDatabase(start, undefined), live)).pipe(
      request.endsWith === undefined ? (s) => s : Stream.takeUntilEffect(request.endsWith),
      Stream.tap(() => Effect.sync(() => metrics.sseEventsSent.inc())),
      Stream.map(frame)
    )
    const keepalive = Stream.fromSchedule(Schedule.spaced(sseHeartbeatMs)).pipe(Stream.as(": keepalive\n\n"))

    return Stream.make(`retry: ${RETRY_MS}\n\n`).pipe(
      Stream.concat(Stream.merge(events, keepalive, { haltStrategy: "left" })),
      Stream.map((text) => encoder.encode(text)),
      // A connection that overflowed its buffer ends here; the client resumes from its last id.
      Stream.ensuring(
        Effect.flatMap(Deferred.isDone(subscription.overflow), (o) => o ? Effect.logInfo("SSE client too slow: response ended") : Effect.void)
      ),
      Stream.ensuring(Queue.shutdown(subscription.queue))
    )
  }))
