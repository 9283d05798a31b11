import { type Chat, Signals as Wire } from "@herald/domain"
import { Duration, Effect, FiberSet, Schedule, Stream } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfig } from "../config/AppConfig.js"
import { type Signal, SignalBus } from "./SignalBus.js"

export type SignalKind = "presence" | "typing" | "draft"

/** Where signal frames go: the SSE hub's connections on this node. */
export interface SignalSink {
  /**
   * Writes `frame` (no `id:`) to every connection carrying `stream` whose user may read it now —
   * except `except`'s own connections. `key` names what the frame is the latest state of (a user's
   * presence or typing, a draft): a connection that cannot take it now gets the latest per key later.
   */
  readonly write: (kind: SignalKind, stream: string, key: string, frame: Uint8Array, except?: string) => void
}

const encoder = new TextEncoder()
const frameOf = (kind: SignalKind, data: unknown) => encoder.encode(`event: ${kind}\ndata: ${JSON.stringify(data)}\n\n`)
const iso = (ms: number) => new Date(ms).toISOString()

const projectStream = (projectId: string) => `project:${projectId}`
const workspaceStream = (projectId: string, userId: string) => `workspace:${projectId}:${userId}`

/** Typing calls of one user in one project closer together than this are one signal. */
const TYPING_COALESCE_MS = 1_000
/** At most 10 frames a second per draft. */
const DRAFT_INTERVAL_MS = 100
/**
 * Live drafts per workspace, at most (G11: a draft is up to 10 000 characters kept on every node):
 * one more ends the one updated longest ago.
 */
export const MAX_DRAFTS_PER_WORKSPACE = 16
/** A beat carries at most this many entries (a NOTIFY payload's worth). */
const BEAT_ENTRIES = 60

interface Draft {
  readonly role: Chat.AuthorRole
  readonly body: string
  readonly updatedAt: number
}

/** An outgoing draft's coalescing: when it last went out, and the latest body waiting for its turn. */
interface Outgoing {
  lastAt: number
  pending: Draft | undefined
  timer: boolean
}

/**
 * Live signals (SPEC §5, G10): presence, typing and drafts, in memory only. This node's own
 * signals are applied here at once and told to the fleet through the broker's signal side; those
 * of other nodes arrive from it. Frames go to the SSE hub's connections through the sink it
 * attaches (SseHub), which alone knows who carries which stream and may read it.
 *
 * - Presence: the hub says when a connection starts or stops carrying a project stream (`enter`,
 *   `leave`); a user is present while any node has one. Each node tells the others of its changes
 *   at once, and of everyone present on it every TTL/3 (a beat); an entry not refreshed within
 *   HERALD_PRESENCE_TTL (a node that died) is dropped. A starting node says hello and is answered
 *   with beats; a stopping one says bye.
 * - Typing: coalesced per user and project to one signal a second, `until` now + 5 s.
 * - Drafts: coalesced per draft to 10 frames a second by the node that takes the updates, the latest
 *   body always going out; every node keeps every live draft (a connection that starts carrying the
 *   workspace stream gets them first) and ends it on DELETE, after 60 s without an update, or at the
 *   message posted with its id as `clientMessageId` (the hub writes the end after that message).
 */
export class Signals extends Effect.Service<Signals>()("Herald/Signals", {
  scoped: Effect.gen(function*() {
    const bus = yield* SignalBus
    const { presenceTtl } = yield* AppConfig
    const ttlMs = Duration.toMillis(presenceTtl)
    const node = randomUUID()
    const fibers = yield* FiberSet.make()
    const run = yield* FiberSet.runtime(fibers)<never>()
    let sink: SignalSink = { write: () => {} }

    // ---- presence ------------------------------------------------------------------------------

    /** This node's connections: project → user → how many carry the project stream, since when. */
    const local = new Map<string, Map<string, { count: number; since: number }>>()
    /** Other nodes': project → user → node → since, and when last heard of. */
    const remote = new Map<string, Map<string, Map<string, { since: number; seenAt: number }>>>()

    /**
     * A project's `presence` start frame, made once until its presence changes: every connection
     * that starts carrying the project gets the same bytes (a burst of reconnects makes one, not one
     * each — with a hundred users present that is kilobytes of garbage per opening).
     */
    const startFrames = new Map<string, Uint8Array>()

    const isPresent = (projectId: string, userId: string) =>
      local.get(projectId)?.has(userId) === true || (remote.get(projectId)?.get(userId)?.size ?? 0) > 0

    /** Tells this node's connections if `userId`'s presence in the project changed from `before`. */
    const changed = (projectId: string, userId: string, before: boolean) => {
      const now = isPresent(projectId, userId)
      if (now === before) return
      const stream = projectStream(projectId)
      sink.write("presence", stream, userId, frameOf("presence", { stream, userId, present: now, at: iso(Date.now()) }))
    }

    const usersOf = (projectId: string) => {
      const since = new Map<string, number>()
      for (const [userId, entry] of local.get(projectId) ?? []) since.set(userId, entry.since)
      for (const [userId, nodes] of remote.get(projectId) ?? []) {
        for (const entry of nodes.values()) since.set(userId, Math.min(since.get(userId) ?? Infinity, entry.since))
      }
      return [...since].map(([userId, at]) => ({ userId, since: at })).sort((a, b) => a.since - b.since)
    }

    const enter = (projectId: string, userId: string) => {
      const before = isPresent(projectId, userId)
      const users = local.get(projectId) ?? local.set(projectId, new Map()).get(projectId)!
      const entry = users.get(userId)
      if (entry !== undefined) {
        entry.count++
        return
      }
      const since = Date.now()
      users.set(userId, { count: 1, since })
      startFrames.delete(projectId)
      bus.publish({ _tag: "Present", node, projectId, userId, since, present: true })
      changed(projectId, userId, before)
    }

    const leave = (projectId: string, userId: string) => {
      const users = local.get(projectId)
      const entry = users?.get(userId)
      if (users === undefined || entry === undefined || --entry.count > 0) return
      users.delete(userId)
      if (users.size === 0) local.delete(projectId)
      startFrames.delete(projectId)
      bus.publish({ _tag: "Present", node, projectId, userId, since: entry.since, present: false })
      changed(projectId, userId, true)
    }

    const heardPresent = (from: string, projectId: string, userId: string, since: number, now: number) => {
      const before = isPresent(projectId, userId)
      const users = remote.get(projectId) ?? remote.set(projectId, new Map()).get(projectId)!
      const nodes = users.get(userId) ?? users.set(userId, new Map()).get(userId)!
      nodes.set(from, { since, seenAt: now })
      startFrames.delete(projectId)
      changed(projectId, userId, before)
    }

    const heardAbsent = (from: string, projectId: string, userId: string) => {
      const users = remote.get(projectId)
      const nodes = users?.get(userId)
      if (users === undefined || nodes === undefined || !nodes.has(from)) return
      const before = isPresent(projectId, userId)
      nodes.delete(from)
      startFrames.delete(projectId)
      if (nodes.size === 0) users.delete(userId)
      if (users.size === 0) remote.delete(projectId)
      changed(projectId, userId, before)
    }

    /** Drops what `from` said (it said bye), or what nobody refreshed within the TTL (`from` undefined). */
    const forget = (from: string | undefined, now: number) => {
      for (const [projectId, users] of remote) {
        for (const [userId, nodes] of users) {
          for (const [n, entry] of nodes) {
            if (n === from || (from === undefined && now - entry.seenAt > ttlMs)) heardAbsent(n, projectId, userId)
          }
        }
      }
    }

    const beat = () => {
      const entries: Array<readonly [string, string, number]> = []
      for (const [projectId, users] of local) {
        for (const [userId, entry] of users) entries.push([projectId, userId, entry.since])
      }
      for (let i = 0; i < entries.length; i += BEAT_ENTRIES) {
        bus.publish({ _tag: "Beat", node, entries: entries.slice(i, i + BEAT_ENTRIES) })
      }
    }

    // ---- typing --------------------------------------------------------------------------------

    /** `projectId userId` → when its last typing signal went out. */
    const typed = new Map<string, number>()

    const deliverTyping = (projectId: string, userId: string, until: number) => {
      const stream = projectStream(projectId)
      sink.write("typing", stream, userId, frameOf("typing", { stream, userId, until: iso(until) }), userId)
    }

    const typing = (projectId: string, userId: string) =>
      Effect.sync(() => {
        const now = Date.now()
        const key = `${projectId} ${userId}`
        const last = typed.get(key)
        if (last !== undefined && now - last < TYPING_COALESCE_MS) return
        typed.set(key, now)
        const until = now + Wire.TYPING_MS
        deliverTyping(projectId, userId, until)
        bus.publish({ _tag: "Typing", node, projectId, userId, until })
      })

    // ---- drafts --------------------------------------------------------------------------------

    /** Every live draft the fleet told this node of: workspace stream → draft id → draft. */
    const drafts = new Map<string, Map<string, Draft>>()
    /**
     * `stream draftId` of workspace messages posted with a `clientMessageId` → until when an update
     * of that draft is ignored (it arrived late), and whether a live draft ended with it.
     */
    const posted = new Map<string, { until: number; hadDraft: boolean }>()
    /** This node's coalescing of the updates it takes: `stream draftId` → its state. */
    const outgoing = new Map<string, Outgoing>()

    const updateFrame = (stream: string, draftId: string, draft: Draft) =>
      frameOf("draft", { stream, draftId, role: draft.role, body: draft.body, updatedAt: iso(draft.updatedAt) })
    const endFrame = (stream: string, draftId: string) => frameOf("draft", { stream, draftId, ended: true })

    const applyDraft = (stream: string, draftId: string, draft: Draft) => {
      if (posted.has(`${stream} ${draftId}`)) return
      const live = drafts.get(stream) ?? drafts.set(stream, new Map()).get(stream)!
      const known = live.get(draftId)
      if (known !== undefined && known.updatedAt > draft.updatedAt) return
      live.set(draftId, draft)
      sink.write("draft", stream, draftId, updateFrame(stream, draftId, draft))
    }

    const applyEnd = (stream: string, draftId: string) => {
      const live = drafts.get(stream)
      if (live === undefined || !live.delete(draftId)) return
      if (live.size === 0) drafts.delete(stream)
      sink.write("draft", stream, draftId, endFrame(stream, draftId))
    }

    const emitDraft = (projectId: string, userId: string, draftId: string, draft: Draft) => {
      applyDraft(workspaceStream(projectId, userId), draftId, draft)
      bus.publish({ _tag: "Draft", node, projectId, userId, draftId, ...draft })
    }

    const putDraft = (projectId: string, userId: string, draftId: string, role: Chat.AuthorRole, body: string) =>
      Effect.sync(() => {
        const stream = workspaceStream(projectId, userId)
        const key = `${stream} ${draftId}`
        // Its message was posted already: an update that arrives after it changes nothing.
        if (posted.has(key)) return
        const now = Date.now()
        const draft: Draft = { role, body, updatedAt: now }
        const live = drafts.get(stream)
        if (live !== undefined && !live.has(draftId) && live.size >= MAX_DRAFTS_PER_WORKSPACE) {
          // Updated longest ago, counting an update still waiting for its turn.
          const lastUpdate = (id: string, d: Draft) =>
            outgoing.get(`${stream} ${id}`)?.pending?.updatedAt ?? d.updatedAt
          let oldest: string | undefined
          let oldestAt = Infinity
          for (const [id, d] of live) {
            const at = lastUpdate(id, d)
            if (at < oldestAt) [oldest, oldestAt] = [id, at]
          }
          if (oldest !== undefined) endDraft(projectId, userId, oldest)
        }
        const out = outgoing.get(key)
        if (out === undefined) {
          outgoing.set(key, { lastAt: now, pending: undefined, timer: false })
          return emitDraft(projectId, userId, draftId, draft)
        }
        if (now - out.lastAt >= DRAFT_INTERVAL_MS) {
          // Its turn (a waiting update, if any, is older than this one).
          out.lastAt = now
          out.pending = undefined
          return emitDraft(projectId, userId, draftId, draft)
        }
        out.pending = draft
        if (out.timer) return
        out.timer = true
        run(
          Effect.sync(() => {
            out.timer = false
            const latest = out.pending
            out.pending = undefined
            if (latest === undefined || outgoing.get(key) !== out || posted.has(key)) return
            out.lastAt = Date.now()
            emitDraft(projectId, userId, draftId, latest)
          }).pipe(Effect.delay(Duration.millis(out.lastAt + DRAFT_INTERVAL_MS - now)))
        )
      })

    /** Ends a draft here and on every node. */
    const endDraft = (projectId: string, userId: string, draftId: string) => {
      const stream = workspaceStream(projectId, userId)
      outgoing.delete(`${stream} ${draftId}`)
      applyEnd(stream, draftId)
      bus.publish({ _tag: "DraftEnded", node, projectId, userId, draftId })
    }

    const deleteDraft = (projectId: string, userId: string, draftId: string) =>
      Effect.sync(() => endDraft(projectId, userId, draftId))

    /**
     * A workspace message with `clientMessageId` was written to a connection (or seen by this node):
     * the draft of that id is over. The end frame to write after the message, if a draft ended with it.
     */
    const messageSent = (stream: string, clientMessageId: string): Uint8Array | undefined => {
      const key = `${stream} ${clientMessageId}`
      const seen = posted.get(key)
      if (seen !== undefined) return seen.hadDraft ? endFrame(stream, clientMessageId) : undefined
      const live = drafts.get(stream)
      const hadDraft = live?.delete(clientMessageId) === true
      if (live !== undefined && live.size === 0) drafts.delete(stream)
      posted.set(key, { until: Date.now() + Wire.DRAFT_IDLE_MS, hadDraft })
      outgoing.delete(key)
      return hadDraft ? endFrame(stream, clientMessageId) : undefined
    }

    // ---- the fleet -----------------------------------------------------------------------------

    const heard = (signal: Signal) => {
      if (signal.node === node) return
      const now = Date.now()
      switch (signal._tag) {
        case "Present":
          return signal.present
            ? heardPresent(signal.node, signal.projectId, signal.userId, signal.since, now)
            : heardAbsent(signal.node, signal.projectId, signal.userId)
        case "Beat":
          for (const [projectId, userId, since] of signal.entries) {
            heardPresent(signal.node, projectId, userId, since, now)
          }
          return
        case "Hello":
          return beat()
        case "Bye":
          return forget(signal.node, now)
        case "Typing":
          return deliverTyping(signal.projectId, signal.userId, signal.until)
        case "Draft":
          return applyDraft(workspaceStream(signal.projectId, signal.userId), signal.draftId, {
            role: signal.role,
            body: signal.body,
            updatedAt: signal.updatedAt
          })
        case "DraftEnded":
          return applyEnd(workspaceStream(signal.projectId, signal.userId), signal.draftId)
      }
    }

    yield* bus.signals.pipe(Stream.runForEach((signal) => Effect.sync(() => heard(signal))), Effect.forkScoped)

    /** Once a second: presence nobody refreshed, drafts idle for 60 s, and the coalescing maps' old entries. */
    const sweep = Effect.sync(() => {
      const now = Date.now()
      forget(undefined, now)
      for (const [stream, live] of drafts) {
        for (const [draftId, draft] of live) if (now - draft.updatedAt > Wire.DRAFT_IDLE_MS) applyEnd(stream, draftId)
      }
      for (const [key, at] of typed) if (now - at >= TYPING_COALESCE_MS) typed.delete(key)
      for (const [key, seen] of posted) if (now > seen.until) posted.delete(key)
      for (const [key, out] of outgoing) {
        if (!out.timer && now - out.lastAt > Wire.DRAFT_IDLE_MS) outgoing.delete(key)
      }
    })
    yield* sweep.pipe(Effect.repeat(Schedule.spaced(Duration.seconds(1))), Effect.forkScoped)
    yield* Effect.sync(beat).pipe(
      Effect.repeat(Schedule.spaced(Duration.millis(Math.max(1_000, Math.floor(ttlMs / 3))))),
      Effect.forkScoped
    )
    bus.publish({ _tag: "Hello", node })
    yield* Effect.addFinalizer(() => Effect.sync(() => bus.publish({ _tag: "Bye", node })))

    return {
      /** The hub's connections: where frames go from now on. */
      attach: (to: SignalSink) => {
        sink = to
      },
      enter,
      leave,
      /** The first frame of a connection that starts carrying a project stream. */
      presenceFrame: (projectId: string) => {
        const made = startFrames.get(projectId)
        if (made !== undefined) return made
        const stream = projectStream(projectId)
        const frame = frameOf("presence", {
          stream,
          users: usersOf(projectId).map((u) => ({ userId: u.userId, since: iso(u.since) }))
        })
        startFrames.set(projectId, frame)
        return frame
      },
      /** `GET …/presence`. */
      presence: (projectId: string) => Effect.sync(() => usersOf(projectId)),
      /** The first frames of a connection that starts carrying a workspace stream: every live draft. */
      draftFrames: (stream: string): ReadonlyArray<Uint8Array> =>
        [...(drafts.get(stream) ?? [])].map(([draftId, draft]) => updateFrame(stream, draftId, draft)),
      typing,
      putDraft,
      deleteDraft,
      messageSent
    } as const
  })
}) {}
