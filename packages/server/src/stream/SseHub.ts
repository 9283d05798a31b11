import type { Events } from "@herald/domain"
import { Deferred, Effect, Queue, Schedule, type Scope, Stream } from "effect"
import { BrokerSubscriber } from "../broker/BrokerSubscriber.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../http/Metrics.js"

const encoder = new TextEncoder()

/** One event as an SSE frame, encoded once however many connections it goes to. */
export const encodeFrame = (event: Events.EventWire) =>
  encoder.encode(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)

const KEEPALIVE = encoder.encode(": keepalive\n\n")

/**
 * One SSE connection as the hub sees it: plain mutable state, touched only synchronously, so a
 * hub dispatch and the connection's own filler never interleave in the middle of a decision.
 */
export interface Connection {
  readonly stream: string
  /** Encoded frames on their way to the socket, `null` ending the response; bounded (`HERALD_SSE_BUFFER`). */
  readonly queue: Queue.Queue<Uint8Array | null>
  /** Wakes the connection's filler: a gap to read from the database, or a check to make. */
  readonly wake: Queue.Queue<void>
  /** Completed when the buffer overflowed: the response ends (the client resumes from its last id). */
  readonly overflow: Deferred.Deferred<void>
  /** The last seq written into `queue`: frames are only ever appended as lastSent + 1. */
  lastSent: number
  /** Live: the hub appends the next event itself. Not live: the filler is reading the database. */
  live: boolean
  /** While not live, the highest seq the broker announced: the filler reads at least up to it. */
  behindTo: number
  /** While not live: lastSent at the previous live event, and how many arrived with no progress. */
  progressMark: number
  stalledFor: number
  /** An event after which the filler must decide whether the response ends (e.g. a removal). */
  readonly mayEnd: (event: Events.EventWire) => boolean
  endCheck: boolean
}

/**
 * The process's single broker subscription, fanned out to SSE connections by stream, and one
 * keepalive timer for all of them. Each live event is encoded once and appended to every live
 * connection whose next seq it is; a connection that is behind (a gap: broker reordering, a dead
 * event, a missed notification) is handed to its own filler, which reads the database. A
 * connection whose buffer is full, or that makes no progress while a buffer's worth of live events
 * goes by, is ended instead of growing memory; its client resumes from its last id.
 */
export class SseHub extends Effect.Service<SseHub>()("Herald/SseHub", {
  scoped: Effect.gen(function*() {
    const broker = yield* BrokerSubscriber
    const { sseBuffer, sseHeartbeatMs } = yield* AppConfig
    const metrics = yield* Metrics
    const streams = new Map<string, Set<Connection>>()
    let closed = false

    const overflowed = (c: Connection) =>
      Effect.zipRight(Deferred.succeed(c.overflow, undefined), Queue.shutdown(c.queue))

    const dispatch = (event: Events.EventWire) =>
      Effect.suspend(() => {
        const targets = streams.get(event.stream)
        if (targets === undefined) return Effect.void
        let frame: Uint8Array | undefined
        let full: Array<Connection> | undefined
        for (const c of targets) {
          if (!c.live) {
            if (event.seq > c.behindTo) c.behindTo = event.seq
            // A connection catching up is fine however long it takes, as long as it moves; one
            // that stays put while a whole buffer's worth of live events goes by is over.
            if (c.lastSent !== c.progressMark) {
              c.progressMark = c.lastSent
              c.stalledFor = 0
            } else if (++c.stalledFor > sseBuffer) (full ??= []).push(c)
          } else if (event.seq === c.lastSent + 1) {
            frame ??= encodeFrame(event)
            if (!c.queue.unsafeOffer(frame)) {
              ;(full ??= []).push(c)
              continue
            }
            c.lastSent = event.seq
            metrics.sseEventsSent.inc()
            if (c.mayEnd(event)) {
              c.live = false
              c.endCheck = true
              c.wake.unsafeOffer(undefined)
            }
          } else if (event.seq > c.lastSent) {
            c.live = false
            c.behindTo = event.seq
            c.wake.unsafeOffer(undefined)
          }
        }
        return full === undefined ? Effect.void : Effect.forEach(full, overflowed, { discard: true })
      })

    // The one subscription; if the broker fails (e.g. the LISTEN connection drops) it is re-opened.
    // Events missed meanwhile are read from the database by each connection's next gap.
    yield* broker.events.pipe(
      Stream.runForEach(dispatch),
      Effect.tapErrorCause((cause) => Effect.logWarning("SSE hub: broker subscription failed; re-subscribing", cause)),
      Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))),
      Effect.forkScoped
    )

    // One timer for every connection; a full buffer skips a beat (that client is behind anyway).
    yield* Effect.sync(() => {
      for (const set of streams.values()) for (const c of set) c.queue.unsafeOffer(KEEPALIVE)
    }).pipe(Effect.repeat(Schedule.spaced(sseHeartbeatMs)), Effect.delay(sseHeartbeatMs), Effect.forkScoped)

    /** Registers a connection positioned after `start`, not yet live (its filler reads first). */
    const register = (stream: string, start: number, mayEnd: (event: Events.EventWire) => boolean) =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const c: Connection = {
            stream,
            queue: yield* Queue.bounded<Uint8Array | null>(sseBuffer),
            wake: yield* Queue.sliding<void>(1),
            overflow: yield* Deferred.make<void>(),
            lastSent: start,
            live: false,
            behindTo: start,
            progressMark: start,
            stalledFor: 0,
            mayEnd,
            endCheck: false
          }
          if (closed) yield* Queue.shutdown(c.queue)
          const set = streams.get(stream) ?? new Set()
          set.add(c)
          streams.set(stream, set)
          metrics.sseConnections.inc()
          return c
        }),
        (c) =>
          Effect.sync(() => {
            const set = streams.get(stream)
            set?.delete(c)
            if (set?.size === 0) streams.delete(stream)
            metrics.sseConnections.dec()
          }).pipe(Effect.zipRight(Queue.shutdown(c.queue)), Effect.zipRight(Queue.shutdown(c.wake)))
      )

    /** Ends every open SSE response (graceful shutdown) and refuses new ones. */
    const closeAll = Effect.suspend(() => {
      closed = true
      return Effect.forEach([...streams.values()].flatMap((s) => [...s]), (c) => Queue.shutdown(c.queue), { discard: true })
    })

    yield* Effect.addFinalizer(() => closeAll)
    return { register, closeAll } satisfies {
      register: (
        stream: string,
        start: number,
        mayEnd: (e: Events.EventWire) => boolean
      ) => Effect.Effect<Connection, never, Scope.Scope>
      closeAll: Effect.Effect<void>
    }
  })
}) {}
