import type { Events } from "@herald/domain"
import { Deferred, Effect, Option, Queue, Stream } from "effect"
import { Metrics } from "../http/Metrics.js"
import { EventReader } from "./EventReader.js"
import { type Connection, encodeFrame, SseHub } from "./SseHub.js"

/** Events read from the database per round trip, for replay and gap filling. */
const PAGE = 500
const RETRY_MS = 2_000
const RETRY = new TextEncoder().encode(`retry: ${RETRY_MS}\n\n`)

/** How long an overflowed connection gets to take its end before its socket is destroyed. */
const OVERFLOW_GRACE = "1 second"

export interface StreamRequest {
  readonly stream: string
  /** The last seq the client has; None → start after the current head. */
  readonly after: Option.Option<number>
  /** Events that may end the response (e.g. a removal of the caller) … */
  readonly mayEnd?: (event: Events.EventWire) => boolean
  /** … and the decision, made when one has been sent: true → the response ends after it. */
  readonly ends?: Effect.Effect<boolean>
  /**
   * Cuts the connection. Used when the client fell so far behind that its buffer overflowed and it
   * still has not taken the end of the response after a grace period (its socket is full).
   */
  readonly abort?: Effect.Effect<void>
}

/**
 * One SSE response: every event of the stream after the client's position, exactly once, in seq
 * order, with no gap — then live. The order of steps is what makes it exact:
 *   1. register with the hub (not live: the hub only notes how far the broker has got),
 *   2. the connection's filler reads from the database everything after the position, page by
 *      page, and — with no yield between the check and the switch — goes live only when it has
 *      caught up with everything the broker announced meanwhile,
 *   3. live, the hub appends each next event itself; a skip ahead hands the connection back to
 *      its filler, which reads the missing range first; anything at or below the last seq sent
 *      is dropped, so broker duplicates and replays never reach the client twice.
 */
export const sseEvents = (request: StreamRequest) =>
  Stream.unwrapScoped(Effect.gen(function*() {
    const hub = yield* SseHub
    const reader = yield* EventReader
    const metrics = yield* Metrics
    const start = Option.isSome(request.after) ? request.after.value : yield* Effect.orDie(reader.head(request.stream))
    const mayEnd = request.mayEnd ?? (() => false)
    const c = yield* hub.register(request.stream, start, mayEnd)

    // The end marker goes behind the frames already queued, so the client gets them all first.
    const end = Effect.zipRight(Queue.offer(c.queue, null), Effect.interrupt)
    const checkEnd = request.ends === undefined ? Effect.void : Effect.flatMap(request.ends, (ends) => ends ? end : Effect.void)

    /** Reads what is missing, then goes live (see step 2). */
    const fill = (connection: Connection): Effect.Effect<void> =>
      Effect.gen(function*() {
        while (true) {
          const events = yield* Effect.orDie(reader.range(request.stream, connection.lastSent, undefined, PAGE))
          for (const event of events) {
            if (event.seq !== connection.lastSent + 1) break
            yield* Queue.offer(connection.queue, encodeFrame(event))
            connection.lastSent = event.seq
            metrics.sseEventsSent.inc()
            if (mayEnd(event)) yield* checkEnd
          }
          if (events.length === PAGE) continue
          if (connection.behindTo > connection.lastSent) continue
          connection.live = true
          return
        }
      })

    const filler = Effect.gen(function*() {
      while (true) {
        if (c.endCheck) {
          c.endCheck = false
          yield* checkEnd
        }
        yield* fill(c)
        yield* Queue.take(c.wake)
      }
    })
    yield* Effect.forkScoped(filler)

    if (request.abort !== undefined) {
      yield* Deferred.await(c.overflow).pipe(
        Effect.zipRight(Effect.logInfo("SSE client too slow: response ended")),
        Effect.zipRight(Effect.sleep(OVERFLOW_GRACE)),
        Effect.zipRight(request.abort),
        Effect.forkScoped
      )
    }

    return Stream.concat(
      Stream.make(RETRY),
      Stream.fromQueue(c.queue).pipe(Stream.takeWhile((frame): frame is Uint8Array => frame !== null))
    )
  }))
