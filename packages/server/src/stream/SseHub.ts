import type { Events } from "@herald/domain"
import { Effect, FiberSet, Schedule, Stream } from "effect"
import type { PassThrough } from "node:stream"
import { BrokerSubscriber } from "../broker/BrokerSubscriber.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../observability/Metrics.js"
import { EventReader } from "./EventReader.js"

const encoder = new TextEncoder()

/** One event as an SSE frame, encoded once however many connections it goes to. */
export const encodeFrame = (event: Events.EventWire) =>
  encoder.encode(`id: ${event.seq}\nevent: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`)

const KEEPALIVE = encoder.encode(": keepalive\n\n")

/** Events read from the database per round trip, for replay and gap filling. */
const PAGE = 500

/** How long an overflowed connection gets to take its end before its socket is destroyed. */
const OVERFLOW_GRACE_MS = 1_000

/**
 * One SSE connection: the response body (a stream of encoded frames piped to the socket) and
 * plain state. The state is only ever read and changed synchronously — by the hub's dispatch or
 * by the connection's filler between its awaits — so no decision is taken on stale state.
 */
interface Connection {
  readonly stream: string
  readonly out: PassThrough
  /** The last seq written: frames are only ever appended as lastSent + 1. */
  lastSent: number
  /** Live: the hub appends the next event itself. Not live: the filler is reading the database. */
  live: boolean
  filling: boolean
  /** While not live, the highest seq the broker announced: the filler reads at least up to it. */
  behindTo: number
  /** While not live: lastSent at the previous live event, and how many arrived with no progress. */
  progressMark: number
  stalledFor: number
  /** An event after which the response may end, and the decision (e.g. the caller's removal). */
  readonly mayEnd: (event: Events.EventWire) => boolean
  readonly ends: Effect.Effect<boolean>
  endCheck: boolean
}

export interface Registration {
  readonly stream: string
  /** The body: frames are written into it, and it is piped to the response. */
  readonly out: PassThrough
  readonly start: number
  readonly mayEnd: (event: Events.EventWire) => boolean
  readonly ends: Effect.Effect<boolean>
}

/**
 * The process's single broker subscription and every SSE connection of the process.
 *
 * Each live event is encoded once and written to every live connection whose next seq it is —
 * a plain loop, no effect per connection. A connection that is behind (just connected with a
 * position, or a gap: broker reordering, a dead event, a missed notification) is handed to a
 * filler, a fiber that reads the missing events from the database with backpressure and hands
 * the connection back to the hub once it has caught up with everything the broker announced.
 * Duplicates (seq ≤ last sent) are dropped. A connection whose buffer (`HERALD_SSE_BUFFER`
 * events) is full, or that makes no progress while a buffer's worth of live events goes by, is
 * ended; its client resumes from its last id. One timer writes every keepalive.
 */
export class SseHub extends Effect.Service<SseHub>()("Herald/SseHub", {
  scoped: Effect.gen(function*() {
    const broker = yield* BrokerSubscriber
    const reader = yield* EventReader
    const metrics = yield* Metrics
    const { sseBuffer, sseHeartbeatMs } = yield* AppConfig
    const streams = new Map<string, Set<Connection>>()
    const fillers = yield* FiberSet.make()
    const runFiller = yield* FiberSet.runtime(fillers)<never>()
    let closed = false

    const buffered = (c: Connection) => c.out.readableLength + c.out.writableLength
    /** Ended by us, or closed underneath us (the client went away). */
    const gone = (c: Connection) => c.out.writableEnded || c.out.destroyed

    const end = (c: Connection) => {
      c.live = false
      if (!gone(c)) c.out.end()
    }

    const overflow = (c: Connection) => {
      end(c)
      // Its socket is full: if it does not take the end in time, cut the connection.
      setTimeout(() => {
        if (!c.out.readableEnded) c.out.destroy()
      }, OVERFLOW_GRACE_MS).unref()
    }

    const drained = (c: Connection) =>
      Effect.async<void>((resume) => {
        if (c.out.destroyed) return resume(Effect.void)
        const done = () => {
          c.out.off("drain", done)
          c.out.off("close", done)
          resume(Effect.void)
        }
        c.out.on("drain", done)
        c.out.on("close", done)
      })

    /** Reads what the connection misses, then makes it live (or ends it). */
    const fill = (c: Connection) =>
      Effect.gen(function*() {
        while (!gone(c)) {
          if (c.endCheck) {
            c.endCheck = false
            if (yield* c.ends) return end(c)
          }
          const events = yield* Effect.orDie(reader.range(c.stream, c.lastSent, undefined, PAGE))
          for (const event of events) {
            if (event.seq !== c.lastSent + 1 || gone(c)) break
            const more = c.out.write(encodeFrame(event))
            c.lastSent = event.seq
            metrics.sseEventsSent.inc()
            if (c.mayEnd(event)) c.endCheck = true
            if (!more) yield* drained(c)
          }
          // Caught up with the database and with every announced event: live, in the same step.
          if (events.length < PAGE && c.behindTo <= c.lastSent && !c.endCheck) {
            c.live = !gone(c)
            c.filling = false
            return
          }
        }
        c.filling = false
      }).pipe(Effect.onInterrupt(() => Effect.sync(() => (c.filling = false))))

    const startFilling = (c: Connection) => {
      c.live = false
      if (c.filling || gone(c)) return
      c.filling = true
      runFiller(fill(c))
    }

    const dispatch = (event: Events.EventWire) =>
      Effect.sync(() => {
        const targets = streams.get(event.stream)
        if (targets === undefined) return
        let frame: Uint8Array | undefined
        for (const c of targets) {
          if (gone(c)) continue
          if (!c.live) {
            if (event.seq > c.behindTo) c.behindTo = event.seq
            if (c.lastSent !== c.progressMark) {
              c.progressMark = c.lastSent
              c.stalledFor = 0
            } else if (++c.stalledFor > sseBuffer) overflow(c)
          } else if (event.seq === c.lastSent + 1) {
            if (buffered(c) >= sseBuffer) {
              overflow(c)
              continue
            }
            c.out.write(frame ??= encodeFrame(event))
            c.lastSent = event.seq
            metrics.sseEventsSent.inc()
            if (c.mayEnd(event)) {
              c.endCheck = true
              startFilling(c)
            }
          } else if (event.seq > c.lastSent) {
            c.behindTo = event.seq
            startFilling(c)
          }
        }
      })

    // The one subscription; if the broker fails (e.g. the LISTEN connection drops) it is re-opened.
    // Events missed meanwhile are read from the database at each connection's next gap.
    yield* broker.events.pipe(
      Stream.runForEach(dispatch),
      Effect.tapErrorCause((cause) => Effect.logWarning("SSE hub: broker subscription failed; re-subscribing", cause)),
      Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))),
      Effect.forkScoped
    )

    // One timer for every connection; a full buffer skips a beat (that client is behind anyway).
    yield* Effect.sync(() => {
      for (const set of streams.values()) {
        for (const c of set) if (buffered(c) < sseBuffer && !gone(c)) c.out.write(KEEPALIVE)
      }
    }).pipe(Effect.repeat(Schedule.spaced(sseHeartbeatMs)), Effect.delay(sseHeartbeatMs), Effect.forkScoped)

    /** Adds a connection positioned after `start`; it is live once its filler has caught up. */
    const register = (r: Registration) =>
      Effect.sync(() => {
        const c: Connection = {
          stream: r.stream,
          out: r.out,
          lastSent: r.start,
          live: false,
          filling: false,
          behindTo: r.start,
          progressMark: r.start,
          stalledFor: 0,
          mayEnd: r.mayEnd,
          ends: r.ends,
          endCheck: false
        }
        const set = streams.get(r.stream) ?? new Set()
        set.add(c)
        streams.set(r.stream, set)
        metrics.sseConnections.inc()
        r.out.once("close", () => {
          set.delete(c)
          if (set.size === 0 && streams.get(r.stream) === set) streams.delete(r.stream)
          metrics.sseConnections.dec()
        })
        if (closed) end(c)
        else startFilling(c)
      })

    /** Ends every open SSE response (graceful shutdown) and refuses new ones. */
    const closeAll = Effect.sync(() => {
      closed = true
      for (const set of streams.values()) for (const c of set) end(c)
    })

    yield* Effect.addFinalizer(() => closeAll)
    return { register, closeAll } as const
  })
}) {}
