import type { Events } from "@herald/domain"
import { Data, Effect, FiberSet, Schedule, Stream } from "effect"
import type { PassThrough } from "node:stream"
import { type BrokerDelivery, BrokerSubscriber } from "../broker/BrokerSubscriber.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../observability/Metrics.js"
import { supervised } from "../Supervised.js"
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
 * Where a connection is. The hub's dispatch and the connection's filler only ever read and
 * change it synchronously (the filler between its awaits, re-reading it after each), so no
 * decision is taken on a stale state.
 */
type ConnectionState = Data.TaggedEnum<{
  /** A filler fiber is reading the database; the hub only notes what the broker announces. */
  Filling: {
    /** The highest seq the broker announced: the filler reads at least up to it. */
    readonly behindTo: number
    /** lastSent at the previous announcement, and how many arrived since with no progress. */
    readonly progressMark: number
    readonly stalledFor: number
    /** An event that may end the response was sent: ask `ends` before going live. */
    readonly endCheck: boolean
  }
  /** Caught up: the hub appends each next event itself. */
  Live: {}
  /** The response is over (ended by us, or closed by the client): nothing more is written. */
  Ending: {}
}>
const { Ending, Filling, Live } = Data.taggedEnum<ConnectionState>()

/** One SSE connection: the response body (a stream of encoded frames piped to the socket) and its state. */
interface Connection {
  readonly stream: string
  readonly out: PassThrough
  /** The last seq written: frames are only ever appended as lastSent + 1. */
  lastSent: number
  state: ConnectionState
  /** An event after which the response may end, and the decision (e.g. the caller's removal). */
  readonly mayEnd: (event: Events.EventWire) => boolean
  readonly ends: Effect.Effect<boolean>
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
 * position, or a gap: broker reordering, a dead event, a missed notification, an event the
 * broker only referenced) is handed to a filler, a fiber that reads the missing events from the
 * database with backpressure and hands the connection back to the hub once it has caught up
 * with everything the broker announced. A filler that fails (the database) ends its response:
 * the client resumes by `Last-Event-ID`. Duplicates (seq ≤ last sent) are dropped. A connection
 * whose buffer (`HERALD_SSE_BUFFER` events) is full, or that makes no progress while a buffer's
 * worth of live events goes by, is ended; its client resumes from its last id. One timer writes
 * every keepalive.
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
    /** Ended by us, or closed underneath us (the client went away; its `close` event may be pending). */
    const gone = (c: Connection) => c.state._tag === "Ending" || c.out.destroyed

    const end = (c: Connection) => {
      c.state = Ending()
      if (!c.out.writableEnded && !c.out.destroyed) c.out.end()
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

    /** Reads what the connection misses until it has caught up, then makes it live (or ends it). */
    const fill = (c: Connection) =>
      Effect.gen(function*() {
        while (c.state._tag === "Filling" && !gone(c)) {
          if (c.state.endCheck) {
            c.state = Filling({ ...c.state, endCheck: false })
            if (yield* c.ends) return end(c)
          }
          const events = yield* reader.range(c.stream, c.lastSent, undefined, PAGE)
          for (const event of events) {
            if (event.seq !== c.lastSent + 1 || gone(c)) break
            const more = c.out.write(encodeFrame(event))
            c.lastSent = event.seq
            metrics.sseEventsSent.inc()
            if (c.mayEnd(event) && c.state._tag === "Filling") c.state = Filling({ ...c.state, endCheck: true })
            if (!more) yield* drained(c)
          }
          // Caught up with the database and with every announced event: live, in the same step.
          const state = c.state
          if (state._tag === "Filling" && events.length < PAGE && state.behindTo <= c.lastSent && !state.endCheck) {
            if (!gone(c)) c.state = Live()
          }
        }
      })

    /** Runs the filler of `c`; however it stops short of live (the database, a defect, shutdown), the response ends. */
    const runFill = (c: Connection) =>
      runFiller(
        fill(c).pipe(
          Effect.catchAllCause((cause) =>
            Effect.zipRight(
              Effect.sync(() => end(c)),
              Effect.logWarning(
                `SSE: reading ${c.stream} after seq ${c.lastSent} failed; response ended, the client resumes`,
                cause
              )
            )
          ),
          Effect.onInterrupt(() => Effect.sync(() => end(c)))
        )
      )

    /** Hands a live connection to a new filler: it is behind (up to `behindTo`), or must ask `ends`. */
    const startFilling = (c: Connection, behindTo: number, endCheck: boolean) => {
      c.state = Filling({ behindTo, progressMark: c.lastSent, stalledFor: 0, endCheck })
      runFill(c)
    }

    /** The broker announced `seq` while `c` is filling: the filler must reach it; no progress for too long is an overflow. */
    const announce = (c: Connection, state: Data.TaggedEnum.Value<ConnectionState, "Filling">, seq: number) => {
      const stalledFor = c.lastSent === state.progressMark ? state.stalledFor + 1 : 0
      if (stalledFor > sseBuffer) return overflow(c)
      c.state = Filling({ ...state, behindTo: Math.max(state.behindTo, seq), progressMark: c.lastSent, stalledFor })
    }

    const dispatch = (delivery: BrokerDelivery) =>
      Effect.sync(() => {
        const { seq, stream } = delivery._tag === "Envelope" ? delivery.event : delivery
        const event = delivery._tag === "Envelope" ? delivery.event : undefined
        const targets = streams.get(stream)
        if (targets === undefined) return
        let frame: Uint8Array | undefined
        for (const c of targets) {
          if (gone(c)) continue
          const state = c.state
          if (state._tag === "Filling") announce(c, state, seq)
          else if (seq <= c.lastSent) continue // a duplicate
          else if (event !== undefined && seq === c.lastSent + 1) {
            if (buffered(c) >= sseBuffer) {
              overflow(c)
              continue
            }
            c.out.write(frame ??= encodeFrame(event))
            c.lastSent = seq
            metrics.sseEventsSent.inc()
            if (c.mayEnd(event)) startFilling(c, seq, true)
          } else {
            // A gap, or an event the broker only referenced: the database has it.
            startFilling(c, seq, false)
          }
        }
      })

    // The one subscription; if the broker fails (e.g. the LISTEN connection drops) it is re-opened.
    // Events missed meanwhile are read from the database at each connection's next gap.
    yield* broker.events.pipe(
      Stream.runForEach(dispatch),
      supervised({ message: (e) => `SSE hub: broker subscription failed; re-subscribing: ${e.message}` }),
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
          state: Filling({ behindTo: r.start, progressMark: r.start, stalledFor: 0, endCheck: false }),
          mayEnd: r.mayEnd,
          ends: r.ends
        }
        const set = streams.get(r.stream) ?? new Set()
        set.add(c)
        streams.set(r.stream, set)
        metrics.sseConnections.inc()
        r.out.once("close", () => {
          c.state = Ending()
          set.delete(c)
          if (set.size === 0 && streams.get(r.stream) === set) streams.delete(r.stream)
          metrics.sseConnections.dec()
        })
        if (closed) end(c)
        else runFill(c)
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
