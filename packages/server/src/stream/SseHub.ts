import type { Events } from "@herald/domain"
import { type Chunk, Data, Effect, Exit, FiberSet, Option, Schedule, Stream } from "effect"
import type { Writable } from "node:stream"
import { type BrokerDelivery, BrokerSubscriber } from "../broker/BrokerSubscriber.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../observability/Metrics.js"
import { eventAttributes, parentOf, startSpan } from "../observability/Tracing.js"
import { type SignalKind, Signals } from "../signals/Signals.js"
import { supervised } from "../Supervised.js"
import * as Cursor from "./Cursor.js"
import { CursorStore } from "./CursorStore.js"
import { EventReader } from "./EventReader.js"
import * as Position from "./Position.js"
import { resetFrame } from "./Reset.js"

const encoder = new TextEncoder()

/** The part of an event's frame every connection shares: `event:` and `data:`. */
const frameTail = (event: Events.EventWire) => `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`

/** One event as a per-stream SSE frame (`id: <seq>.<tag>`), encoded once however many connections it goes to. */
const encodeFrame = (event: Events.EventWire) => encoder.encode(`id: ${Position.frameId(event)}\n${frameTail(event)}`)

/** An event's frames, each made at most once however many connections it goes to. */
interface Frames {
  readonly event: Events.EventWire
  /** Where a connection that received it stands in its stream. */
  readonly position: Position.Position
  /** The per-stream frame. */
  readonly single: () => Uint8Array
  /** What a multiplexed frame has after its own `id:` line. */
  readonly tail: () => Uint8Array
  /** The user a `member.added`/`member.removed` is about (their connections' signals go on or stop). */
  readonly memberId: string | undefined
  /** The `clientMessageId` of a workspace message (it may end the live draft of that id). */
  readonly draftId: string | undefined
  /**
   * Multiplexed connections that stood at the same cursor before this event stand at the same one
   * after it: cursor before → the frame (and cursor) after, made for the first of them and written
   * to the rest — no signing and no buffer per connection (a user's tabs, a burst of reconnects at
   * a shared base).
   */
  afterCursor: Map<string, MuxFrame> | undefined
}

interface MuxFrame {
  readonly cursor: string
  readonly frame: Uint8Array
  /** The cursor is past its budget: the connection writes a new base. */
  readonly outgrown: boolean
}

/** The `clientMessageId` of a workspace message created by `event`, if any (it may end a live draft). */
const draftEndOf = (event: Events.EventWire) =>
  event.type === "message.created" && event.stream.startsWith("workspace:")
    ? (event.data as { clientMessageId?: string }).clientMessageId
    : undefined

const framesOf = (event: Events.EventWire): Frames => {
  let single: Uint8Array | undefined
  let tail: Uint8Array | undefined
  return {
    event,
    position: Position.after(event),
    single: () => single ??= encodeFrame(event),
    tail: () => tail ??= encoder.encode(frameTail(event)),
    memberId: event.type === "member.removed" || event.type === "member.added"
      ? (event.data as { userId: string }).userId
      : undefined,
    draftId: draftEndOf(event),
    afterCursor: undefined
  }
}

/** A multiplexed frame: its own `id:` line (ASCII) before the tail every connection shares, in one buffer. */
const withId = (cursor: string, tail: Uint8Array) => {
  const frame = Buffer.allocUnsafe(cursor.length + 5 + tail.length)
  frame.write("id: ", 0, "latin1")
  frame.write(cursor, 4, "latin1")
  frame[cursor.length + 4] = 10
  frame.set(tail, cursor.length + 5)
  return frame
}

const KEEPALIVE = encoder.encode(": keepalive\n\n")

/** Events read from the database per round trip, for replay and gap filling. */
const PAGE = 500

/** How long a connection opened by an ended token is ended at once (longer than any opening takes). */
const ENDED_TOKEN_MEMORY_MS = 2 * 60_000

/** How long an overflowed connection gets to take its end before its socket is destroyed. */
const OVERFLOW_GRACE_MS = 1_000

/**
 * Where a subscription (one stream on one connection) is. The hub's dispatch and the
 * subscription's filler only ever read and change it synchronously (the filler between its
 * awaits, re-reading it after each), so no decision is taken on a stale state.
 */
type SubState = Data.TaggedEnum<{
  /** A filler fiber is reading the database; the hub only notes what the broker announces. */
  Filling: {
    /** The highest seq the broker announced: the filler reads at least up to it. */
    readonly behindTo: number
    /** lastSent at the previous announcement, and how many arrived since with no progress. */
    readonly progressMark: number
    readonly stalledFor: number
    /** The caller's removal was sent: ask `rejoinAfter` before anything else goes out. */
    readonly endCheck: boolean
  }
  /** Caught up: the hub appends each next event itself. */
  Live: {}
  /** Over (ended by us, or its connection closed): nothing more is written for it. */
  Ending: {}
}>
const { Ending, Filling, Live } = Data.taggedEnum<SubState>()

/** What a multiplexed connection knows beyond its subscriptions: whose it is and its cursor. */
interface Mux {
  readonly userId: string
  /** Narrowed by `?streams=`: it carries those streams only, and nobody joins it. */
  readonly narrowed: boolean
  base: Cursor.Base
  /**
   * Streams whose position differs from the base's: stream → the position after the last event
   * sent. Made at the first such stream (an idle connection at its base's positions has none).
   */
  moved: Map<string, Position.Position> | undefined
  rebasing: boolean
  /**
   * The cursor as it stands, once made (shared with the connections at the same positions);
   * undefined again at any change of `base` or `moved`.
   */
  cursor: string | undefined
  /** Shared by every connection: each asks it about its own user. */
  readonly membership: Membership
}

/**
 * What multiplexed connections ask about their users' memberships: one object for all of them
 * (not closures per connection, each with its context).
 */
export interface Membership {
  /** Is the user a member of this project now? (Streams join on that answer.) */
  readonly isMember: (userId: string, projectId: string) => Effect.Effect<boolean>
  /** After the user's removal from a project at `removal`, the seq of the event that admitted them again. */
  readonly rejoinAfter: (userId: string, projectId: string, removal: number) => Effect.Effect<number | undefined>
  /** The projects the user is a member of whose streams `carried` lacks, with the seq of their add. */
  readonly missingJoins: (
    userId: string,
    carried: ReadonlySet<string>
  ) => Effect.Effect<ReadonlyArray<readonly [string, number]>>
}

/** One SSE response: a per-stream connection has one subscription, a multiplexed one any number. */
interface Connection {
  readonly out: Writable
  /**
   * Its subscriptions, at most one per stream. An array, not a map: a connection carries tens of
   * streams, which a scan finds sooner than a hash table of its own would cost in memory (~0.9 KB
   * for twenty, per connection).
   */
  readonly subs: Array<Sub>
  readonly mux: Mux | undefined
  /** Whose it is (live signals: presence, and who is typing). */
  readonly userId: string | undefined
  /**
   * Projects the user was removed from (→ the removal's seq) while their streams are still here
   * (being read up to the removal): no signal of those projects reaches the connection (G10, G5).
   */
  quiet: Map<string, number> | undefined
  /**
   * Live signals that came while the socket was behind, the latest per key (`kind stream key`):
   * written once it drains, so a slow reader still ends with the latest state of each (G10).
   */
  waiting: Map<string, WaitingSignal> | undefined
  ended: boolean
  /** Frames written since the socket last asked us to wait for it to drain. */
  queued: number
}

interface WaitingSignal {
  readonly kind: SignalKind
  readonly stream: string
  readonly frame: Uint8Array
}

/** Signals held for one connection while its socket drains, at most (beyond, dropped: best-effort). */
const MAX_WAITING_SIGNALS = 1_000

interface Sub {
  readonly conn: Connection
  readonly stream: string
  /** The last seq written: frames are only ever appended as lastSent + 1. */
  lastSent: number
  state: SubState
  /** A bounded replay (a project the caller left while away), rare: not live until it is over. */
  replay: Replay | undefined
  /**
   * A project stream read by this user: their removal from the project (`mayEnd`) stops it until
   * `rejoinAfter` says which event admitted them again (what lies between is not theirs to read,
   * G5) — or none: it ends. A user id, not closures: a subscription is a few fields, so that a
   * connection carrying twenty streams stays small.
   */
  readonly removable: string | undefined
}

interface Replay {
  /** The replay ends here… */
  readonly until: number
  /** … after which the stream jumps to here and goes on (the caller was added back meanwhile). */
  readonly rejoinAt: number | undefined
}

/** A stream to carry, positioned after `start`. */
export interface SubRequest {
  readonly stream: string
  readonly start: number
  /** The tag of the event at `start`, when the client's position has one (it goes into the cursor). */
  readonly tag?: string | undefined
  readonly until?: number | undefined
  readonly rejoinAt?: number | undefined
  /**
   * `start` (the client's position) cannot be served (stream/Reset.ts): the connection writes a
   * reset frame for the stream, and the subscription starts after `resetFrom - 1` instead.
   */
  readonly resetFrom?: number | undefined
  /** `start` is the stream's head as read just before: the subscription starts live (see recheckHeads). */
  readonly atHead?: boolean | undefined
  /** A project stream read by this user: it ends at their removal unless they were admitted again (Sub). */
  readonly removable?: string | undefined
  /** The event at `start` is the caller's removal (the client's last frame): decide before anything goes out. */
  readonly removedAtStart?: boolean | undefined
}

export interface MuxRequest {
  readonly userId: string
  readonly narrowed: boolean
  readonly base: Cursor.Base
  /** Every position the client's cursor stood for, carried or not (a stream that joins later continues from it). */
  readonly known: ReadonlyMap<string, Position.Position>
  readonly subs: ReadonlyArray<SubRequest>
  /** Written before anything else (the `heads` frame), given the cursor of the starting positions. */
  readonly first?: (cursor: string) => string
  readonly membership: Membership
  /** The hub's count of deliveries (`mark`) taken before the opening read the caller's projects and heads. */
  readonly since: Mark
}

/**
 * How many broker deliveries a hub has dispatched, and how many of them may have added someone to
 * a project (a `member.added` or `project.created`, an event the broker only referenced, a Resync).
 */
export interface Mark {
  readonly delivered: number
  readonly joins: number
}

const neverRemoved = Effect.succeed(undefined)

/** The states without fields, made once (a subscription changes state without allocating). */
const LIVE = Live()
const ENDING = Ending()

const noJoins = { join: (_projectId: string, _addedSeq: number) => Effect.void, joinsMissed: false }

/** The subscription of `c` to `stream`, if it carries it. */
const subOf = (c: Connection, stream: string): Sub | undefined => {
  for (const s of c.subs) if (s.stream === stream) return s
  return undefined
}

const carries = (c: Connection, stream: string) => subOf(c, stream) !== undefined

/** The streams of `mux` that moved from its base, made at the first. */
const movedOf = (mux: Mux) => mux.moved ??= new Map()

/** The positions of a connection that has moved nowhere from its base. */
const NOT_MOVED: ReadonlyMap<string, Position.Position> = new Map()

const projectOf = (stream: string) => stream.startsWith("project:") ? stream.slice(8) : undefined

/** The project of a project or workspace stream. */
const projectOfAny = (stream: string) =>
  stream.startsWith("project:")
    ? stream.slice(8)
    : stream.startsWith("workspace:")
    ? stream.slice(10, stream.indexOf(":", 10))
    : undefined

/**
 * The process's single broker subscription and every SSE connection of the process.
 *
 * Each live event is encoded once and written to every live subscription whose next seq it is —
 * a plain loop, no effect per connection. A subscription that is behind (just connected with a
 * position, or a gap: broker reordering, a dead event, a missed notification, an event the
 * broker only referenced) is handed to a filler, a fiber that reads the missing events from the
 * database with backpressure and hands it back to the hub once it has caught up with everything
 * the broker announced. A filler that fails (the database) ends its response: the client resumes
 * by `Last-Event-ID`. Duplicates (seq ≤ last sent) are dropped. A connection with
 * `HERALD_SSE_BUFFER` frames waiting for its socket, or a subscription that makes no progress
 * while a buffer's worth of live events goes by, is ended; its client resumes from its last id.
 * One timer writes every keepalive.
 *
 * The hub writes into whatever Writable it is given: the Node response itself (the SSE door) or a
 * stream the HTTP platform pipes to it.
 *
 * A multiplexed connection carries many streams; its frames' `id:` is its cursor (Cursor.ts),
 * re-encoded per frame from the streams that moved. When the broker announces a `member.added`
 * (or `project.created`) of its user, that project's streams join it, starting with that event;
 * after the `member.removed` that removes the user, that project's streams leave it.
 */
export class SseHub extends Effect.Service<SseHub>()("Herald/SseHub", {
  scoped: Effect.gen(function*() {
    const broker = yield* BrokerSubscriber
    const reader = yield* EventReader
    const cursors = yield* CursorStore
    const metrics = yield* Metrics
    const signals = yield* Signals
    const { sseBuffer, sseHeartbeatMs, tracing } = yield* AppConfig
    const traced = Option.isSome(tracing)
    const tracer = yield* Effect.tracer
    const clock = yield* Effect.clock
    /** Live-capable subscriptions by stream (bounded replays are never here). */
    const streams = new Map<string, Set<Sub>>()
    /**
     * The one copy of each stream id in `streams` that new subscriptions share: every opening
     * makes its own strings (about 100 bytes each), a connection carrying twenty streams keeps none.
     */
    const names = new Map<string, string>()
    const connections = new Set<Connection>()
    /** Multiplexed, not narrowed, by user: the connections streams may join. */
    const joinable = new Map<string, Set<Connection>>()
    /** Every connection of a user (live signals: a removal quiets their connections at once). */
    const byUser = new Map<string, Set<Connection>>()
    /** By the token that opened them (directly or through a ticket): what `endToken` ends. */
    const byToken = new Map<string, Set<Connection>>()
    /** Tokens ended → when: a connection such a token opens later (a race with the revocation) ends at once. */
    const endedTokens = new Map<string, number>()
    /**
     * Counted at each dispatch (Mark). An opening notes them before it reads anything: if nothing was
     * dispatched by the time it registers, nothing it read can have moved since (an event commits
     * before it is delivered), and the second look — the heads again, the joins again — is skipped.
     * In a reconnect storm with no writes, that is two statements fewer per opening.
     */
    let delivered = 0
    let mayHaveJoined = 0
    const mark = (): Mark => ({ delivered, joins: mayHaveJoined })

    const fibers = yield* FiberSet.make()
    const run = yield* FiberSet.runtime(fibers)<never>()
    let closed = false

    /** `event` is the removal of the user whose reading ends `s` (Sub.removable). */
    const removes = (s: Sub, event: Events.EventWire) =>
      s.removable !== undefined && event.type === "member.removed" &&
      (event.data as { userId: string }).userId === s.removable

    /** After the removal at `removal`, the seq of the event that admitted the reader of `s` again, if any. */
    const rejoinAfter = (s: Sub, removal: number): Effect.Effect<number | undefined> =>
      s.removable === undefined
        ? neverRemoved
        : Effect.orDie(reader.firstJoinAfter(s.removable, s.stream, removal))

    const gone = (s: Sub) => s.state._tag === "Ending" || s.conn.ended || s.conn.out.destroyed

    const end = (c: Connection) => {
      c.ended = true
      if (!c.out.writableEnded && !c.out.destroyed) c.out.end()
    }

    const overflow = (c: Connection) => {
      end(c)
      // Its socket is full: if it does not take the end in time, cut the connection.
      setTimeout(() => {
        if (!c.out.destroyed && !c.out.writableFinished) c.out.destroy()
      }, OVERFLOW_GRACE_MS).unref()
    }

    /** Writes a frame; true while the socket takes more without waiting. */
    const write = (c: Connection, bytes: Uint8Array | string) => {
      if (c.out.write(bytes)) return true
      if (c.queued++ === 0) {
        c.out.once("drain", () => {
          c.queued = 0
          if (c.waiting !== undefined) writeWaiting(c)
        })
      }
      return false
    }

    /** The signals held while the socket was behind, those the connection may still read. */
    const writeWaiting = (c: Connection) => {
      const waiting = c.waiting!
      c.waiting = undefined
      for (const { frame, kind, stream } of waiting.values()) {
        if (c.ended || c.out.destroyed) return
        const projectId = projectOfAny(stream)
        if (!carries(c, stream) || (projectId !== undefined && c.quiet?.has(projectId) === true)) continue
        write(c, frame)
        metrics.signalsSent.inc({ kind })
      }
    }

    const drained = (c: Connection) =>
      Effect.async<void>((resume) => {
        if (c.out.destroyed || c.queued === 0) return resume(Effect.void)
        const done = () => {
          c.out.off("drain", done)
          c.out.off("close", done)
          resume(Effect.void)
        }
        c.out.on("drain", done)
        c.out.on("close", done)
      })

    const unindex = (s: Sub) => {
      const set = streams.get(s.stream)
      if (set === undefined || !set.delete(s)) return
      if (set.size === 0) {
        streams.delete(s.stream)
        names.delete(s.stream)
      }
      const projectId = projectOf(s.stream)
      if (projectId !== undefined && s.conn.userId !== undefined) signals.leave(projectId, s.conn.userId)
    }

    /**
     * A subscription that may go live: indexed for the broker's events, and it starts carrying its
     * stream's signals — a project stream's first frame is who is present (the user with it), a
     * workspace stream's are its live drafts.
     */
    const index = (s: Sub) => {
      if (s.replay !== undefined) return
      const set = streams.get(s.stream) ?? new Set()
      const c = s.conn
      const projectId = projectOf(s.stream)
      if (projectId !== undefined && c.userId !== undefined) {
        signals.enter(projectId, c.userId)
        startSignals(c, "presence", [signals.presenceFrame(projectId)])
      } else if (s.stream.startsWith("workspace:")) {
        startSignals(c, "draft", signals.draftFrames(s.stream))
      }
      set.add(s)
      if (set.size === 1) {
        streams.set(s.stream, set)
        names.set(s.stream, s.stream)
      }
    }

    /**
     * A stream's first signal frames (who is present, every live draft) are what the client starts
     * from, not a passing signal: they wait on the socket like events, up to HERALD_SSE_BUFFER
     * frames, instead of being dropped once one long draft has filled the socket's buffer.
     */
    const startSignals = (c: Connection, kind: SignalKind, frames: ReadonlyArray<Uint8Array>) => {
      for (const frame of frames) {
        if (c.ended || c.out.destroyed || c.queued >= sseBuffer) return
        write(c, frame)
        metrics.signalsSent.inc({ kind })
      }
    }

    /** The hub as the signals' sink: a frame to every connection that carries `stream` and may read it now. */
    signals.attach({
      write: (kind, stream, key, frame, except) => {
        const targets = streams.get(stream)
        if (targets === undefined) return
        const projectId = projectOfAny(stream)
        let sent = 0
        for (const s of targets) {
          const c = s.conn
          if (gone(s) || (except !== undefined && c.userId === except)) continue
          if (projectId !== undefined && c.quiet?.has(projectId) === true) continue
          if (c.queued > 0) {
            // Behind on its socket: the latest of each, once it drains (never a cause of overflow).
            const waiting = c.waiting ??= new Map()
            const id = `${kind} ${stream} ${key}`
            waiting.delete(id)
            if (waiting.size < MAX_WAITING_SIGNALS) waiting.set(id, { kind, stream, frame })
            continue
          }
          write(c, frame)
          sent++
        }
        if (sent > 0) metrics.signalsSent.inc({ kind }, sent)
      }
    })

    /** The user's removal from (or add to) a project went out on `c` at `seq`: its signals stop (or go on). */
    const quietAt = (c: Connection, projectId: string, change: "member.removed" | "member.added", seq: number) => {
      if (change === "member.removed") {
        c.quiet ??= new Map()
        if ((c.quiet.get(projectId) ?? 0) < seq) c.quiet.set(projectId, seq)
      } else if (c.quiet !== undefined && (c.quiet.get(projectId) ?? Infinity) < seq) {
        c.quiet.delete(projectId)
      }
    }

    /** Ends one subscription; a per-stream response ends with it, a multiplexed one goes on. */
    const endSub = (s: Sub) => {
      if (s.state._tag === "Ending") return
      s.state = ENDING
      unindex(s)
      const at = s.conn.subs.indexOf(s)
      if (at !== -1) s.conn.subs.splice(at, 1)
      const mux = s.conn.mux
      if (mux === undefined) return end(s.conn)
      // Leaving a project takes the caller's workspace stream there along.
      const projectId = projectOf(s.stream)
      const workspace = projectId && subOf(s.conn, `workspace:${projectId}:${mux.userId}`)
      if (workspace) endSub(workspace)
    }

    /** A multiplexed connection's cursor as it stands, writing a new base when it outgrows its budget. */
    const cursorOf = (c: Connection, mux: Mux): string | undefined => {
      if (mux.cursor !== undefined) return mux.cursor
      if (mux.moved === undefined) return mux.cursor = baseCursor(mux.base)
      const cursor = Cursor.encode(mux.base, mux.moved)
      if (cursor === undefined) return undefined
      if (cursor.entryBytes > Cursor.SOFT_ENTRY_BYTES && !mux.rebasing) rebase(c, mux)
      return mux.cursor = cursor.text
    }

    /** The cursor of a base itself (nothing moved), made once for every connection at it. */
    const baseCursors = new WeakMap<Cursor.Base, string>()
    const baseCursor = (base: Cursor.Base) => {
      const known = baseCursors.get(base)
      if (known !== undefined) return known
      // Always within budget: a base alone has no entries.
      const text = Cursor.encode(base, NOT_MOVED)!.text
      baseCursors.set(base, text)
      return text
    }

    /** Every position the cursor stands for (streams that left included: a later join continues from there). */
    const positionsOf = (c: Connection, mux: Mux) => {
      const at = new Map<string, Position.Position>(
        mux.base.streams.map((stream, i) => [stream, { seq: mux.base.seqs[i]!, tag: mux.base.tags[i] }])
      )
      if (mux.moved !== undefined) { for (const [stream, position] of mux.moved) at.set(stream, position) }
      // A joined stream whose first frame has not gone out yet still has its start position.
      for (const s of c.subs) if (!at.has(s.stream)) at.set(s.stream, Position.untagged(s.lastSent))
      return at
    }

    const rebase = (c: Connection, mux: Mux) => {
      mux.rebasing = true
      const at = positionsOf(c, mux)
      run(
        Effect.map(cursors.create(mux.userId, at), (base) => {
          mux.base = base
          mux.cursor = undefined
          // What moved while the row was written stays in the cursor.
          const moved = mux.moved
          if (moved !== undefined) {
            for (const [stream, position] of [...moved]) {
              if (Cursor.atBase(base, stream, position)) moved.delete(stream)
            }
            if (moved.size === 0 && mux.moved === moved) mux.moved = undefined
          }
          mux.rebasing = false
        }).pipe(Effect.catchAllCause((cause) =>
          Effect.zipRight(
            Effect.sync(() => mux.rebasing = false),
            Effect.logWarning("SSE: writing a new cursor base failed; the cursor stays as it is", cause)
          )
        ))
      )
    }

    /** The connection's position in `stream` is now `position`. */
    const moveTo = (mux: Mux, stream: string, position: Position.Position) => {
      mux.cursor = undefined
      if (!Cursor.atBase(mux.base, stream, position)) movedOf(mux).set(stream, position)
      else if (mux.moved !== undefined) {
        mux.moved.delete(stream)
        if (mux.moved.size === 0) mux.moved = undefined
      }
    }

    /** Appends an event (seq lastSent + 1) to a subscription, from its frames shared by every connection; its caller counts it. */
    const send = (s: Sub, frames: Frames) => {
      const c = s.conn
      const event = frames.event
      s.lastSent = event.seq
      if (frames.memberId !== undefined && frames.memberId === c.userId) {
        quietAt(c, event.projectId, event.type as "member.removed" | "member.added", event.seq)
      }
      const mux = c.mux
      let more: boolean
      if (mux === undefined) {
        more = write(c, frames.single())
      } else {
        const before = mux.cursor
        const known = before === undefined ? undefined : frames.afterCursor?.get(before)
        moveTo(mux, s.stream, frames.position)
        if (known !== undefined) {
          // Where another connection went from the same cursor with this event: the same frame.
          mux.cursor = known.cursor
          if (known.outgrown && !mux.rebasing) rebase(c, mux)
          more = write(c, known.frame)
        } else {
          const cursor = cursorOf(c, mux)
          // A cursor past 1 KB (a new base is being written): end here; the client resumes by its last id.
          if (cursor === undefined) {
            overflow(c)
            return false
          }
          const frame = withId(cursor, frames.tail())
          if (before !== undefined) {
            // Past its budget, this cursor set this connection rebasing: so must it the others.
            const after = frames.afterCursor ??= new Map()
            after.set(before, { cursor, frame, outgrown: mux.rebasing })
          }
          more = write(c, frame)
        }
      }
      // The message a live draft became: the draft's end goes out right after it.
      const draftId = frames.draftId
      const ended = draftId === undefined ? undefined : signals.messageSent(event.stream, draftId)
      if (ended !== undefined) {
        // An update of the draft held for the socket would come after its end: it goes.
        c.waiting?.delete(`draft ${event.stream} ${draftId}`)
        metrics.signalsSent.inc({ kind: "draft" })
        more = write(c, ended) && more
      }
      return more
    }

    /**
     * The events before `from` are not held (G9): a reset frame for the stream (its id: the position
     * before `from`, a cursor on a multiplexed connection), after which it goes on from `from`.
     */
    const resetAt = (s: Sub, from: number) => {
      const c = s.conn
      s.lastSent = from - 1
      const mux = c.mux
      if (mux === undefined) return write(c, resetFrame(String(from - 1), s.stream, from))
      moveTo(mux, s.stream, Position.untagged(from - 1))
      const cursor = cursorOf(c, mux)
      if (cursor === undefined) {
        overflow(c)
        return false
      }
      return write(c, resetFrame(cursor, s.stream, from))
    }

    /** Reads what the subscription misses until it has caught up, then makes it live (or ends it). */
    const fill = (s: Sub) =>
      Effect.gen(function*() {
        while (s.state._tag === "Filling" && !gone(s)) {
          if (s.state.endCheck) {
            s.state = Filling({ ...s.state, endCheck: false })
            const removal = s.lastSent
            const next = yield* rejoinAfter(s, removal)
            if (gone(s)) return
            if (next === undefined) return leave(s, removal)
            // Admitted again later: nothing in between goes out (a jump from the removal to the add).
            if (next - 1 > s.lastSent) s.lastSent = next - 1
            continue
          }
          if (s.replay !== undefined && s.lastSent >= s.replay.until) {
            if (!rejoin(s)) return endSub(s)
            continue
          }
          const announcedBefore = s.state.behindTo
          const events = yield* reader.range(s.stream, s.lastSent, s.replay?.until, PAGE)
          for (const event of events) {
            if (gone(s)) break
            if (event.seq <= s.lastSent) continue
            // A hole inside what is held (G9): one statement's snapshot shows every committed seq of a
            // stream below a visible one, so the missing ones are gone for good — reset past them.
            if (event.seq > s.lastSent + 1 && !resetAt(s, event.seq)) yield* drained(s.conn)
            if (gone(s)) break
            const more = send(s, framesOf(event))
            metrics.sseEventsSent.inc()
            const mayEnd = removes(s, event)
            if (mayEnd && s.state._tag === "Filling") s.state = Filling({ ...s.state, endCheck: true })
            if (!more) yield* drained(s.conn)
            // Nothing more goes out before the decision (G5): the rest of the page may follow a removal.
            if (mayEnd) break
          }
          if (s.replay !== undefined) {
            // A bounded replay is over once it reached its end, or once the database has nothing more of it.
            if (events.length < PAGE && s.state._tag === "Filling" && !s.state.endCheck && !rejoin(s)) return endSub(s)
            continue
          }
          // Caught up with the database and with every announced event: live, in the same step. An
          // announcement the read did not find, and none newer since it began, names an event the
          // database does not hold (a stale or forged reference, a hole at the end): live too — the
          // next event shows any gap — rather than reading the same range again and again.
          const state = s.state
          if (
            state._tag === "Filling" && events.length < PAGE && !state.endCheck &&
            (state.behindTo <= s.lastSent || state.behindTo === announcedBefore)
          ) {
            if (!gone(s)) s.state = LIVE
          }
        }
      })

    /**
     * The caller was removed at `removal` and not admitted again: the subscription ends (a per-stream
     * response with it). On a multiplexed connection an add committed meanwhile would have found the
     * stream still there and not joined it: look once more now that it is gone.
     */
    const leave = (s: Sub, removal: number) => {
      endSub(s)
      const c = s.conn
      const mux = c.mux
      const projectId = projectOf(s.stream)
      if (mux === undefined || mux.narrowed || projectId === undefined || c.ended) return
      run(
        Effect.flatMap(
          rejoinAfter(s, removal),
          (added) =>
            added === undefined ?
              Effect.void :
              Effect.flatMap(mux.membership.isMember(mux.userId, projectId), (member) =>
                Effect.sync(() => {
                  if (member) joinProject(c, mux, projectId, added)
                }))
        ).pipe(Effect.catchAllCause(() => Effect.sync(() => end(c))))
      )
    }

    /** A bounded replay that is over jumps to where the caller rejoined, and becomes an ordinary subscription. */
    const rejoin = (s: Sub) => {
      const mux = s.conn.mux
      const rejoinAt = s.replay?.rejoinAt
      if (rejoinAt === undefined || mux === undefined) return false
      s.lastSent = rejoinAt
      s.replay = undefined
      mux.cursor = undefined
      movedOf(mux).set(s.stream, Position.untagged(s.lastSent))
      index(s)
      return true
    }

    /** Runs the filler of `s`; however it stops short of live (the database, a defect, shutdown), the response ends. */
    const runFill = (s: Sub) =>
      run(
        fill(s).pipe(
          Effect.catchAllCause((cause) =>
            Effect.zipRight(
              Effect.sync(() => end(s.conn)),
              Effect.logWarning(
                `SSE: reading ${s.stream} after seq ${s.lastSent} failed; response ended, the client resumes`,
                cause
              )
            )
          ),
          Effect.onInterrupt(() => Effect.sync(() => end(s.conn)))
        )
      )

    /** Hands a live subscription to a new filler: it is behind (up to `behindTo`), or must ask `ends`. */
    const startFilling = (s: Sub, behindTo: number, endCheck: boolean) => {
      s.state = Filling({ behindTo, progressMark: s.lastSent, stalledFor: 0, endCheck })
      runFill(s)
    }

    /** The broker announced `seq` while `s` is filling: the filler must reach it; no progress for too long is an overflow. */
    const announce = (s: Sub, state: Data.TaggedEnum.Value<SubState, "Filling">, seq: number) => {
      const stalledFor = s.lastSent === state.progressMark ? state.stalledFor + 1 : 0
      if (stalledFor > sseBuffer) return overflow(s.conn)
      s.state = Filling({ ...state, behindTo: Math.max(state.behindTo, seq), progressMark: s.lastSent, stalledFor })
    }

    /** Adds a stream to a connection and starts its filler. */
    const subscribe = (c: Connection, r: SubRequest) => {
      const atHead = r.atHead === true && r.until === undefined
      const stream = names.get(r.stream) ?? r.stream
      const s: Sub = {
        conn: c,
        stream,
        lastSent: r.start,
        state: atHead ? LIVE : Filling({
          behindTo: r.start,
          progressMark: r.start,
          stalledFor: 0,
          endCheck: r.removedAtStart === true
        }),
        replay: r.until === undefined ? undefined : { until: r.until, rejoinAt: r.rejoinAt },
        removable: r.removable
      }
      // At most one per stream: a second replaces the first in its place (as a map's set would).
      const at = c.subs.findIndex((other) => other.stream === stream)
      if (at === -1) c.subs.push(s)
      else c.subs[at] = s
      index(s)
      if (!atHead) runFill(s)
      return s
    }

    /** The database's head of the stream of `s` is `head`: if that is past what it sent, it must read up to there. */
    const catchUpTo = (s: Sub, head: number) => {
      if (gone(s) || head <= s.lastSent) return
      const state = s.state
      if (state._tag === "Live") startFilling(s, head, false)
      else if (state._tag === "Filling") s.state = Filling({ ...state, behindTo: Math.max(state.behindTo, head) })
    }

    /**
     * The broker may have lost deliveries it cannot name (a Resync, e.g. after Redis restarted
     * empty): the head of every stream with live-capable subscriptions is read again, a thousand
     * streams a statement, and whoever is behind is filled — so a stream whose last events were lost
     * catches up now rather than at its next event.
     */
    const resyncAll = () => {
      rejoinAll()
      const ids = [...streams.keys()]
      const pages = Array.from(
        { length: Math.ceil(ids.length / 1_000) },
        (_, i) => ids.slice(i * 1_000, i * 1_000 + 1_000)
      )
      run(
        Effect.forEach(pages, (page) =>
          Effect.flatMap(reader.heads(page), (heads) =>
            Effect.sync(() => {
              for (const [stream, head] of heads) for (const s of streams.get(stream) ?? []) catchUpTo(s, head)
            })), { discard: true }).pipe(
            Effect.catchAllCause((cause) =>
              Effect.logWarning(
                "SSE: re-reading stream heads after a broker resync failed; streams catch up at their next event",
                cause
              )
            )
          )
      )
    }

    /**
     * At a Resync the adds of users with multiplexed connections may have been lost too (their
     * envelope was the event that joins a project, G4): each such connection asks once which of the
     * caller's projects it lacks and joins them from their add — a few at a time, so a fleet-wide
     * reconnect does not take the whole pool.
     */
    const rejoinAll = () => {
      const all = [...joinable.values()].flatMap((set) => [...set])
      run(
        Effect.forEach(all, (c) => {
          const mux = c.mux
          if (c.ended || mux === undefined) return Effect.void
          return Effect.flatMap(
            mux.membership.missingJoins(mux.userId, new Set(c.subs.map((s) => s.stream))),
            (added) => Effect.forEach(added, ([projectId, seq]) => joinFrom(c, mux, projectId, seq), { discard: true })
          )
        }, { concurrency: 4, discard: true }).pipe(
          Effect.catchAllCause((cause) =>
            Effect.logWarning("SSE: looking for joins after a broker resync failed; they join at their next add", cause)
          )
        )
      )
    }

    /**
     * Subscriptions that started live at the head read before they were registered: one read of
     * those heads now, and any that moved meanwhile (an event the hub may have dispatched before
     * they were there) are filled. Anything committed after this read reaches them live. One
     * statement per connection instead of a read per stream; none when the hub dispatched nothing
     * since the opening began (Mark).
     */
    const recheckHeads = (c: Connection, subs: ReadonlyArray<Sub>) => {
      if (subs.length === 0) return
      run(
        Effect.flatMap(reader.heads(subs.map((s) => s.stream)), (heads) =>
          Effect.sync(() => {
            for (const s of subs) catchUpTo(s, heads.get(s.stream) ?? 0)
          })).pipe(
            Effect.catchAllCause((cause) =>
              Effect.zipRight(
                Effect.sync(() => end(c)),
                Effect.logWarning("SSE: reading the heads of a new connection failed; response ended", cause)
              )
            )
          )
      )
    }

    /** The project streams of a multiplexed connection, with the removal that ends them. */
    const projectSub = (mux: Mux, projectId: string, start: number): SubRequest => ({
      stream: `project:${projectId}`,
      start,
      removable: mux.userId
    })

    /** A project's streams join the connection: the project's from `addedSeq` (the event that added the user) on. */
    const joinProject = (c: Connection, mux: Mux, projectId: string, addedSeq: number) => {
      const stream = `project:${projectId}`
      if (c.ended || carries(c, stream)) return
      subscribe(c, projectSub(mux, projectId, addedSeq - 1))
      const workspace = `workspace:${projectId}:${mux.userId}`
      if (!carries(c, workspace)) {
        const known = mux.moved?.get(workspace) ?? Cursor.basePosition(mux.base, workspace)
        subscribe(c, { stream: workspace, start: known?.seq ?? 0, tag: known?.tag })
      }
    }

    /** `event` added the user to a project: once membership confirms it (not a replayed old add), its streams join. */
    const join = (c: Connection, mux: Mux, event: Events.EventWire) =>
      Effect.flatMap(
        mux.membership.isMember(mux.userId, event.projectId),
        (member) => member ? joinFrom(c, mux, event.projectId, event.seq) : Effect.void
      )

    /**
     * Joins a project's streams at the add `addedSeq` — or elsewhere when the connection still knows
     * where it left that stream (its removal), asking which add followed that removal:
     * - before `addedSeq`: adds may arrive out of order (a publisher killed before it published
     *   one), and the events of that earlier membership are the caller's too (G4, G5: the filler
     *   skips from each later removal) — it joins at the earlier add;
     * - past `addedSeq`: the add is one the connection already went through (the broker delivered it
     *   again, or a Resync's look for joins was answered before the caller's removal committed), so
     *   joining there would send again what it sent (G4) — it joins at the add after its removal, or,
     *   with none, not at all.
     */
    const joinFrom = (c: Connection, mux: Mux, projectId: string, addedSeq: number) => {
      const stream = `project:${projectId}`
      const known = mux.moved?.get(stream) ?? Cursor.basePosition(mux.base, stream)
      if (known === undefined || known.seq === addedSeq - 1) {
        return Effect.sync(() => joinProject(c, mux, projectId, addedSeq))
      }
      return Effect.flatMap(
        mux.membership.rejoinAfter(mux.userId, projectId, known.seq),
        (first) =>
          Effect.sync(() => {
            if (known.seq < addedSeq) joinProject(c, mux, projectId, Math.min(first ?? addedSeq, addedSeq))
            else if (first !== undefined) joinProject(c, mux, projectId, first)
          })
      )
    }

    const joinsFor = (event: Events.EventWire) => {
      const data = event.data as { userId?: string; ownerId?: string }
      const userId = event.type === "member.added"
        ? data.userId
        : event.type === "project.created"
        ? data.ownerId
        : undefined
      if (userId === undefined) return
      const set = joinable.get(userId)
      if (set === undefined) return
      for (const c of set) {
        if (!c.ended && !carries(c, event.stream)) {
          run(join(c, c.mux!, event).pipe(Effect.catchAllCause(() => Effect.sync(() => end(c)))))
        }
      }
    }

    /**
     * What an event changes for live signals on this node, whoever carries its stream: the removed
     * user's connections stop getting that project's signals at once (before the filler of a
     * connection that is behind reaches the removal), and a workspace message ends the live draft
     * whose id is its `clientMessageId`.
     */
    const signalsFor = (event: Events.EventWire) => {
      if (event.type === "member.removed") {
        for (const c of byUser.get((event.data as { userId: string }).userId) ?? []) {
          quietAt(c, event.projectId, "member.removed", event.seq)
        }
        return
      }
      const draftId = draftEndOf(event)
      if (draftId !== undefined) signals.messageSent(event.stream, draftId)
    }

    /**
     * Connections written to while a chunk of deliveries is dispatched: corked at their first
     * frame and uncorked after the chunk, so a connection gets the chunk's frames in one write
     * (a system call) instead of one per frame.
     */
    const corked = new Set<Connection>()

    /**
     * With tracing on, an event that came with its publish span's context: a `herald.sse.fanout`
     * span (a child of that publish) around its dispatch, with how many connections it was written to.
     */
    const dispatchTraced = (delivery: BrokerDelivery & { readonly _tag: "Envelope" }, traceparent: string) => {
      const parent = parentOf(traceparent)
      if (parent === undefined) return void dispatch(delivery)
      const span = startSpan(tracer, "herald.sse.fanout", parent, "consumer", clock.unsafeCurrentTimeNanos())
      const written = dispatch(delivery)
      eventAttributes(span, delivery.event)
      span.attribute("herald.sse.connections", written)
      span.end(clock.unsafeCurrentTimeNanos(), Exit.void)
    }

    /** Hands a delivery to the connections it is for; returns how many it was written to at once. */
    const dispatch = (delivery: BrokerDelivery): number => {
      delivered++
      if (
        delivery._tag !== "Envelope" || delivery.event.type === "member.added" ||
        delivery.event.type === "project.created"
      ) mayHaveJoined++
      if (delivery._tag === "Resync") {
        resyncAll()
        return 0
      }
      const { seq, stream } = delivery._tag === "Envelope" ? delivery.event : delivery
      const event = delivery._tag === "Envelope" ? delivery.event : undefined
      if (event !== undefined && joinable.size > 0) joinsFor(event)
      if (event !== undefined) signalsFor(event)
      const targets = streams.get(stream)
      if (targets === undefined) return 0
      const frames = event === undefined ? undefined : framesOf(event)
      let written = 0
      for (const s of targets) {
        if (gone(s)) continue
        const state = s.state
        if (state._tag === "Filling") announce(s, state, seq)
        else if (seq <= s.lastSent) continue // a duplicate
        else if (event !== undefined && seq === s.lastSent + 1) {
          if (s.conn.queued >= sseBuffer) {
            overflow(s.conn)
            continue
          }
          if (!corked.has(s.conn)) {
            corked.add(s.conn)
            s.conn.out.cork()
          }
          send(s, frames!)
          written++
          if (removes(s, event)) startFilling(s, seq, true)
        } else {
          // A gap, or an event the broker only referenced: the database has it.
          startFilling(s, seq, false)
        }
      }
      // Counted once per event, not once per connection (a counter's increment makes two objects).
      if (written > 0) metrics.sseEventsSent.inc(written)
      return written
    }

    const dispatchChunk = (chunk: Chunk.Chunk<BrokerDelivery>) =>
      Effect.sync(() => {
        try {
          for (const delivery of chunk) {
            if (traced && delivery._tag === "Envelope" && delivery.traceparent !== undefined) {
              dispatchTraced(delivery, delivery.traceparent)
            } else {
              dispatch(delivery)
            }
          }
        } finally {
          for (const c of corked) c.out.uncork()
          corked.clear()
        }
      })

    // The one subscription; if the broker fails (e.g. the LISTEN connection drops) it is re-opened,
    // and the broker's Resync on re-subscribing makes every live stream catch up from the database.
    yield* broker.events.pipe(
      Stream.runForEachChunk(dispatchChunk),
      supervised({ message: (e) => `SSE hub: broker subscription failed; re-subscribing: ${e.message}` }),
      Effect.forkScoped
    )

    // One timer for every connection; a connection waiting for its socket skips a beat (it is behind anyway).
    yield* Effect.sync(() => {
      for (const c of connections) if (c.queued === 0 && !c.ended) write(c, KEEPALIVE)
    }).pipe(Effect.repeat(Schedule.spaced(sseHeartbeatMs)), Effect.delay(sseHeartbeatMs), Effect.forkScoped)

    const open = (out: Writable, mux: Mux | undefined, tokenId: string | undefined, userId: string | undefined) => {
      const c: Connection = {
        out,
        subs: [],
        mux,
        userId,
        quiet: undefined,
        waiting: undefined,
        ended: false,
        queued: 0
      }
      connections.add(c)
      const mine = userId === undefined ? undefined : (byUser.get(userId) ?? byUser.set(userId, new Set()).get(userId)!)
      mine?.add(c)
      metrics.sseConnections.inc()
      const users = mux !== undefined && !mux.narrowed
        ? (joinable.get(mux.userId) ?? joinable.set(mux.userId, new Set()).get(mux.userId)!)
        : undefined
      users?.add(c)
      const opener = tokenId === undefined
        ? undefined
        : (byToken.get(tokenId) ?? byToken.set(tokenId, new Set()).get(tokenId)!)
      opener?.add(c)
      // `on`, not `once` (a response closes once): no wrapper object and bound function per connection.
      out.on("close", () => {
        if (opener !== undefined) {
          opener.delete(c)
          if (opener.size === 0 && byToken.get(tokenId!) === opener) byToken.delete(tokenId!)
        }
        c.ended = true
        for (const s of c.subs) {
          s.state = ENDING
          unindex(s)
        }
        connections.delete(c)
        if (mine !== undefined) {
          mine.delete(c)
          if (mine.size === 0 && byUser.get(userId!) === mine) byUser.delete(userId!)
        }
        if (users !== undefined) {
          users.delete(c)
          if (users.size === 0 && joinable.get(mux!.userId) === users) joinable.delete(mux!.userId)
        }
        metrics.sseConnections.dec()
      })
      if (closed || (tokenId !== undefined && endedTokens.has(tokenId))) end(c)
      return c
    }

    /** A per-stream connection positioned after `start`; it is live once its filler has caught up. */
    const register = (out: Writable, r: SubRequest, tokenId?: string, userId?: string) =>
      Effect.sync(() => {
        const c = open(out, undefined, tokenId, userId)
        if (c.ended) return
        const s = subscribe(c, r)
        if (r.atHead) recheckHeads(c, [s])
      })

    /** A multiplexed connection: its first frame, then every stream from its position. */
    const registerMultiplexed = (out: Writable, r: MuxRequest, tokenId?: string) =>
      Effect.sync(() => {
        const mux: Mux = {
          userId: r.userId,
          narrowed: r.narrowed,
          base: r.base,
          moved: undefined,
          rebasing: false,
          cursor: undefined,
          membership: r.membership
        }
        for (const [stream, position] of r.known) moveTo(mux, stream, position)
        for (const s of r.subs) moveTo(mux, s.stream, { seq: s.start, tag: s.tag })
        const c = open(out, mux, tokenId, mux.userId)
        if (c.ended) return noJoins
        if (r.first !== undefined) {
          const cursor = cursorOf(c, mux)
          if (cursor === undefined) {
            overflow(c)
            return noJoins
          }
          write(c, r.first(cursor))
        }
        // One reset frame per stream that cannot go on from its position, each with the cursor of
        // the resets so far: a reconnect after one goes on from its `from`, and still resets the rest.
        for (const s of r.subs) {
          if (s.resetFrom === undefined) continue
          moveTo(mux, s.stream, Position.untagged(s.resetFrom - 1))
          const cursor = cursorOf(c, mux)
          if (cursor === undefined) {
            overflow(c)
            return noJoins
          }
          write(c, resetFrame(cursor, s.stream, s.resetFrom))
        }
        const atHead: Array<Sub> = []
        for (const request of r.subs) {
          const s = request.resetFrom === undefined ? request : { ...request, start: request.resetFrom - 1 }
          const projectId = projectOf(s.stream)
          const sub = subscribe(c, projectId === undefined ? s : { ...s, ...projectSub(mux, projectId, s.start) })
          if (s.atHead) atHead.push(sub)
        }
        // Anything dispatched since the heads were read may have been missed: read them again.
        if (delivered !== r.since.delivered) recheckHeads(c, atHead)
        return {
          /** An add may have been dispatched since the caller's projects were read: look for joins again. */
          joinsMissed: mayHaveJoined !== r.since.joins,
          /** Joins what the caller was added to while the connection was being opened (`addedSeq`: the add). */
          join: (projectId: string, addedSeq: number) => joinFrom(c, mux, projectId, addedSeq)
        }
      })

    /** Ends every open SSE response (graceful shutdown) and refuses new ones. */
    const closeAll = Effect.sync(() => {
      closed = true
      for (const c of connections) end(c)
    })

    /**
     * Ends every connection the token opened (it was revoked or expired), and any it opens from
     * now on for a while (a connection authenticated just before). How many were open.
     */
    const endToken = (tokenId: string) =>
      Effect.sync(() => {
        const now = Date.now()
        endedTokens.set(tokenId, now)
        for (const [id, at] of endedTokens) if (now - at > ENDED_TOKEN_MEMORY_MS) endedTokens.delete(id)
        const open = byToken.get(tokenId)
        if (open === undefined) return 0
        for (const c of open) end(c)
        return open.size
      })

    yield* Effect.addFinalizer(() => closeAll)
    return { register, registerMultiplexed, mark, closeAll, endToken } as const
  })
}) {}
