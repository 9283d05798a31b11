import { digestOf, type Envelope } from "./Envelope.js"
import {
  type ClientRecord,
  type ConnectionRecord,
  type HistoryRecord,
  type Observation,
  type Project,
  projectStream,
  type User,
  workspaceStream,
  type WriteRecord
} from "./Records.js"
import { type DbEvent, eventKey, head, type Truth } from "./Truth.js"

/**
 * The checker: it knows only the database's final state (`event_outbox ∪ event_log`, `messages`,
 * `project_members`) and what each client received, and says what is wrong:
 *
 *  1. isolation (G5): every frame a user received is of a stream they could read at that event's
 *     commit — for a project stream, the membership timeline its own `project.created`,
 *     `member.added` and `member.removed` events draw (a user receives their own removal, and
 *     nothing after it until they are added again); a workspace stream, only its owner. History
 *     that a per-stream endpoint replays to a user who is a member again (or for the first time)
 *     when the connection opens is history they may read now, not a leak; `GET /api/stream`
 *     promises more (SPEC §5: "up to and including the member.removed … and nothing after") and is
 *     held to it;
 *  2. per connection and stream, seqs strictly increasing with no gap but right after an
 *     `event: reset` (then from `from`) — on `GET /api/stream` also across a removal and a later
 *     re-add — and every frame's envelope equal to the database's event at its (stream, seq);
 *  3. after quiescence every client holds every event of every stream it may read, once: per
 *     stream, the union of its connections from where it started (or reset) to the head;
 *  4. history read with `after` is contiguous, and reaches the head;
 *  5. G1: every message has its `message.created` event and every `message.*` event its message;
 *     and what follows from it: seqs 1…n per stream, the memberships the events describe, the
 *     writes the servers confirmed.
 */

export type ViolationKind =
  | "isolation"
  | "foreign-stream"
  | "gap"
  | "duplicate"
  | "start"
  | "join"
  | "invented"
  | "mismatch"
  | "stalled"
  | "unserved"
  | "incomplete"
  | "resume-refused"
  | "history-gap"
  | "history-mismatch"
  | "history-incomplete"
  | "g1"
  | "seq"
  | "membership"
  | "write-isolation"
  | "lost-write"
  | "idempotency"
  | "outbox"
  | "shutdown"
  | "signal"

export interface Violation {
  readonly kind: ViolationKind
  readonly message: string
  /** Milliseconds since the run started, when it happened (or was seen). */
  readonly at?: number | undefined
  readonly stream?: string | undefined
  readonly seq?: number | undefined
  readonly client?: string | undefined
  readonly node?: string | undefined
}

export interface Shutdown {
  readonly node: string
  readonly code: number | null
  readonly ms: number
  /** Its last lines of output. */
  readonly tail: string
}

export interface CheckInput {
  readonly t0: number
  readonly truth: Truth
  readonly users: ReadonlyArray<User>
  readonly projects: ReadonlyArray<Project>
  readonly clients: ReadonlyArray<ClientRecord>
  readonly histories: ReadonlyArray<HistoryRecord>
  readonly writes: ReadonlyArray<WriteRecord>
  readonly observations: ReadonlyArray<Observation>
  readonly shutdowns: ReadonlyArray<Shutdown>
  /** Why quiescence was not reached, if it was not. */
  readonly unsettled: string | undefined
}

// ---------------------------------------------------------------------------------------------
// Membership timelines

interface Change {
  readonly seq: number
  readonly joined: boolean
  readonly event: DbEvent
}

/** Who may read a project stream at each seq, from the stream's own membership events. */
export class Timeline {
  private readonly changes = new Map<string, Array<Change>>()

  constructor(events: ReadonlyArray<DbEvent>) {
    for (const event of events) {
      const data = event.data as { userId?: unknown; ownerId?: unknown } | null
      const userId = event.type === "project.created"
        ? data?.ownerId
        : event.type === "member.added" || event.type === "member.removed"
        ? data?.userId
        : undefined
      if (typeof userId !== "string") continue
      const list = this.changes.get(userId) ?? []
      list.push({ seq: event.seq, joined: event.type !== "member.removed", event })
      this.changes.set(userId, list)
    }
  }

  private of(userId: string): ReadonlyArray<Change> {
    return this.changes.get(userId) ?? []
  }

  /** Member after every change up to and including `seq`? */
  memberAfter(userId: string, seq: number): boolean {
    let member = false
    for (const c of this.of(userId)) {
      if (c.seq > seq) break
      member = c.joined
    }
    return member
  }

  /** May `userId` receive the event at `seq`: a member then, or the event adds or removes them. */
  visible(userId: string, seq: number): boolean {
    return this.memberAfter(userId, seq - 1) || this.of(userId).some((c) => c.seq === seq)
  }

  /** The first seq after `after` (up to `head`) the user may receive. */
  nextVisible(userId: string, after: number, head: number): number | undefined {
    for (let s = after + 1; s <= head; s++) if (this.visible(userId, s)) return s
    return undefined
  }

  /** Is the event at `seq` the user's removal? */
  removedAt(userId: string, seq: number): boolean {
    return this.of(userId).some((c) => c.seq === seq && !c.joined)
  }

  final(userId: string): boolean {
    const list = this.of(userId)
    return list.length > 0 && list[list.length - 1]!.joined
  }

  /** The seq of the user's removal that is their last change before `seq`, if that change is a removal. */
  lastRemovalBefore(userId: string, seq: number): number | undefined {
    const before = this.of(userId).filter((c) => c.seq < seq)
    const last = before[before.length - 1]
    return last !== undefined && !last.joined ? last.seq : undefined
  }

  lastRemoval(userId: string): number | undefined {
    const removals = this.of(userId).filter((c) => !c.joined)
    return removals.length === 0 ? undefined : removals[removals.length - 1]!.seq
  }

  /** The joins of the user after `seq`. */
  joinsAfter(userId: string, seq: number): ReadonlyArray<Change> {
    return this.of(userId).filter((c) => c.joined && c.seq > seq)
  }

  /** The user's changes, e.g. `+1 −25 +36`: who to blame is plain to see. */
  describe(userId: string): string {
    const list = this.of(userId)
    return list.length === 0 ? "never a member" : list.map((c) => `${c.joined ? "+" : "−"}${c.seq}`).join(" ")
  }

  members(): ReadonlySet<string> {
    return new Set([...this.changes.keys()].filter((u) => this.final(u)))
  }
}

// ---------------------------------------------------------------------------------------------
// Envelopes

const digests = new WeakMap<DbEvent, string>()
const digestOfEvent = (e: DbEvent) => {
  let d = digests.get(e)
  if (d === undefined) digests.set(e, d = digestOf(e.data))
  return d
}

const describeMismatch = (e: Envelope, event: string | undefined, db: DbEvent): string | undefined => {
  const problems: Array<string> = []
  if (e.id !== db.id) problems.push(`id ${String(e.id)} ≠ ${db.id}`)
  if (e.type !== db.type) problems.push(`type ${String(e.type)} ≠ ${db.type}`)
  if (event !== undefined && event !== db.type) problems.push(`event: ${event} ≠ ${db.type}`)
  if (e.projectId !== db.projectId) problems.push(`projectId ${String(e.projectId)} ≠ ${db.projectId}`)
  if (e.actorId !== db.actorId) problems.push(`actorId ${String(e.actorId)} ≠ ${db.actorId}`)
  if (typeof e.occurredAt !== "string" || Date.parse(e.occurredAt) !== db.occurredAt) {
    problems.push(`occurredAt ${String(e.occurredAt)} ≠ ${new Date(db.occurredAt).toISOString()}`)
  }
  if (e.digest !== digestOfEvent(db)) problems.push("data differs")
  return problems.length === 0 ? undefined : problems.join(", ")
}

// ---------------------------------------------------------------------------------------------
// The check

/** How a connection started, and when. */
export const describePosition = (conn: ConnectionRecord) =>
  `${
    conn.position._tag === "after"
      ? `opened with ?after=${conn.position.after}`
      : conn.position._tag === "lastEventId"
      ? `resumed with Last-Event-ID ${
        conn.position.id.length > 24 ? conn.position.id.slice(0, 24) + "…" : conn.position.id
      }`
      : "opened without a position"
  } at ${conn.openedAt} ms`

interface Segment {
  /** The last seq of the stream this client has in the current segment. */
  last: number
  /** After a reset: the stream is replayed from `from` (history), not filtered by the timeline. */
  readonly replay: boolean
}

export const check = (input: CheckInput): ReadonlyArray<Violation> => {
  const { truth } = input
  const out: Array<Violation> = []
  const add = (v: Violation) => out.push(v)
  const rel = (epoch: number) => epoch - input.t0
  const userById = new Map(input.users.map((u) => [u.id, u]))
  const timelines = new Map<string, Timeline>()
  const timeline = (projectId: string) => {
    let t = timelines.get(projectId)
    if (t === undefined) {
      t = new Timeline(truth.streams.get(projectStream(projectId)) ?? [])
      timelines.set(projectId, t)
    }
    return t
  }
  const projectOf = (stream: string) => stream.startsWith("project:") ? stream.slice(8) : undefined
  const workspaceOf = (stream: string) => {
    const m = /^workspace:([^:]+):([^:]+)$/.exec(stream)
    return m === null ? undefined : { projectId: m[1]!, userId: m[2]! }
  }

  // --- 1–3: every client's frames --------------------------------------------------------------
  for (const client of input.clients) {
    const user = input.users[client.user]!
    /**
     * What is wrong with a signal frame, if anything: an `id:`, a draft of another user's workspace,
     * presence or typing of a project the user was never a member of, the user's own typing.
     */
    const signalFault = (id: string | undefined, event: string, data: Record<string, unknown> | null) => {
      if (id !== undefined) return `with an id (${id})`
      const stream = typeof data?.stream === "string" ? data.stream : ""
      if (event === "draft") {
        return workspaceOf(stream)?.userId === user.id ? undefined : `of a workspace not ${user.name}'s`
      }
      const projectId = projectOf(stream)
      if (projectId === undefined) return "of no project stream"
      if (timeline(projectId).describe(user.id) === "never a member") {
        return `of a project ${user.name} never belonged to`
      }
      if (event === "typing" && data?.userId === user.id) return `of ${user.name}'s own typing`
      return undefined
    }
    const who = `${client.name} (${user.name})`
    const single = client.kind === "project"
      ? projectStream(client.projectId!)
      : client.kind === "workspace"
      ? workspaceStream(client.projectId!, user.id)
      : undefined
    const segments = new Map<string, Segment>()
    let noneStart: { headBefore: number | undefined } | undefined
    interface Leak {
      readonly conn: ConnectionRecord
      readonly stream: string
      readonly from: number
      to: number
      readonly types: Array<string>
      readonly context: Omit<Violation, "kind" | "message">
      readonly where: string
      readonly committed: number
      readonly membership: string
    }
    const leaks: Array<Leak> = []
    let leak: Leak | undefined

    /**
     * Where a frame of `stream` may be next, given the segment (the first is the one a gap is
     * counted from). A multiplexed stream outside a replay is held to the timeline. Elsewhere the
     * next seq — or, right after the user's own removal, the event that admitted them again: the
     * server skips what they could not read, on both endpoints, live and replayed (G5); a
     * per-stream replay of that window to a member is history (see 1), not a leak.
     */
    const expectedNext = (stream: string, seg: Segment): ReadonlyArray<number> => {
      const projectId = projectOf(stream)
      if (projectId === undefined) return [seg.last + 1]
      const t = timeline(projectId)
      const next = t.nextVisible(user.id, seg.last, head(truth, stream)) ?? seg.last + 1
      if (client.kind === "multiplexed" && !seg.replay) return [next]
      return t.removedAt(user.id, seg.last) ? [seg.last + 1, next] : [seg.last + 1]
    }

    /** Is this frame's event one the user could read (see 1)? */
    const readable = (conn: ConnectionRecord, stream: string, seq: number, seg: Segment | undefined) => {
      const projectId = projectOf(stream)
      if (projectId !== undefined) {
        const t = timeline(projectId)
        if (t.visible(user.id, seq)) return true
        // A per-stream endpoint (or any after a reset) replaying history to who is a member when it opens.
        const replaysHistory = client.kind !== "multiplexed" || seg?.replay === true
        return replaysHistory && conn.openedEpoch !== undefined &&
          t.joinsAfter(user.id, seq).some((j) => j.event.occurredAt <= conn.openedEpoch!)
      }
      const ws = workspaceOf(stream)
      return ws !== undefined && ws.userId === user.id
    }

    for (const conn of client.connections) {
      if (conn.status !== 200) {
        if (conn.status === 400 && conn.position._tag === "lastEventId") {
          add({
            kind: "resume-refused",
            message: `${who} connection #${conn.index} on ${conn.node}: the server refused the position it gave ` +
              `(Last-Event-ID ${conn.position.id}): 400 ${JSON.stringify(conn.errorBody)}`,
            at: conn.openedAt,
            client: client.name,
            node: conn.node
          })
        }
        continue
      }
      const where = `${who} connection #${conn.index} on ${conn.node} (${conn.phase})`
      noneStart = undefined
      if (single !== undefined) {
        if (conn.position._tag === "after") segments.set(single, { last: conn.position.after, replay: false })
        if (conn.position._tag === "none") {
          segments.delete(single)
          noneStart = { headBefore: conn.position.headBefore }
        }
      } else if (conn.position._tag === "none") {
        // A fresh multiplexed connection: every stream starts again at the heads it announces.
        segments.clear()
      }
      const seenHere = new Set<string>()
      for (const frame of conn.frames) {
        const data = frame.data as Record<string, unknown> | null
        if (frame.event === "heads") {
          const streams = data?.streams
          if (typeof streams === "object" && streams !== null) {
            for (const [stream, h] of Object.entries(streams as Record<string, unknown>)) {
              if (typeof h === "number") segments.set(stream, { last: h, replay: false })
            }
          }
          continue
        }
        if (frame.event === "reset") {
          if (typeof data?.stream === "string" && typeof data.from === "number") {
            segments.set(data.stream, { last: data.from - 1, replay: true })
            seenHere.add(data.stream)
          }
          continue
        }
        const envelope = frame.envelope
        if (envelope === undefined) {
          // A live signal (G10): no id, and only of what the user may read.
          if (frame.event === "presence" || frame.event === "typing" || frame.event === "draft") {
            const wrong = signalFault(frame.id, frame.event, data)
            if (wrong !== undefined) {
              add({
                kind: "signal",
                at: frame.at,
                client: client.name,
                node: conn.node,
                message: `${where} received a ${frame.event} frame ${wrong}: ${JSON.stringify(data).slice(0, 200)}`
              })
            }
          }
          continue
        }
        const { seq, stream } = envelope
        const context = { at: frame.at, stream, seq, client: client.name, node: conn.node }
        if (single !== undefined && stream !== single) {
          add({ ...context, kind: "foreign-stream", message: `${where} received ${stream} seq ${seq} on ${single}` })
          continue
        }
        const db = truth.byKey.get(eventKey(stream, seq))
        if (db === undefined) {
          add({
            ...context,
            kind: "invented",
            message: `${where} received ${stream} seq ${seq}, which the database does not hold`
          })
          continue
        }
        const mismatch = describeMismatch(envelope, frame.event, db)
        if (mismatch !== undefined) {
          add({
            ...context,
            kind: "mismatch",
            message: `${where}: ${stream} seq ${seq} is not the database's event: ${mismatch}`
          })
        }
        let seg = segments.get(stream)
        if (!readable(conn, stream, seq, seg)) {
          // The client has it (its next resume goes on from here): the stream moves on, without a second verdict.
          if (seg !== undefined) seg.last = Math.max(seg.last, seq)
          seenHere.add(stream)
          // Consecutive leaks on one connection are one violation.
          if (leak !== undefined && leak.conn === conn && leak.stream === stream && leak.to === seq - 1) {
            leak.to = seq
            leak.types.push(db.type)
            continue
          }
          const projectId = projectOf(stream)
          leak = {
            conn,
            stream,
            from: seq,
            to: seq,
            types: [db.type],
            context,
            where,
            committed: rel(db.occurredAt),
            membership: projectId === undefined
              ? "not the owner of this workspace"
              : timeline(projectId).describe(user.id)
          }
          leaks.push(leak)
          continue
        }
        if (seg === undefined) {
          if (single !== undefined) {
            if (noneStart?.headBefore !== undefined && seq <= noneStart.headBefore) {
              add({
                ...context,
                kind: "start",
                message: `${where} opened without a position after the head was ${noneStart.headBefore}, ` +
                  `yet its first event is seq ${seq}`
              })
            }
          } else if (projectOf(stream) !== undefined) {
            const joined = (db.type === "member.added" && (db.data as { userId?: unknown }).userId === user.id) ||
              (db.type === "project.created" && (db.data as { ownerId?: unknown }).ownerId === user.id)
            if (!joined) {
              add({
                ...context,
                kind: "join",
                message:
                  `${where}: ${stream} joined the connection at seq ${seq} (${db.type}), not at the event that added ${user.name}`
              })
            }
          }
          seg = { last: seq - 1, replay: false }
          segments.set(stream, seg)
        }
        const allowed = expectedNext(stream, seg)
        const expected = allowed[0]!
        const across = !seenHere.has(stream)
        seenHere.add(stream)
        if (allowed.includes(seq)) {
          seg.last = seq
          continue
        }
        if (seq <= seg.last) {
          add({
            ...context,
            kind: "duplicate",
            message: `${where}: ${stream} seq ${seq} again (it had up to ${seg.last}${
              across ? ", from an earlier connection: the resume went back" : ""
            })`
          })
          continue
        }
        const missing = seq - expected
        add({
          ...context,
          kind: "gap",
          message: `${where}: ${stream} jumped from seq ${seg.last} to ${seq}: ${missing} event${
            missing === 1 ? "" : "s"
          } (${expected}${missing > 1 ? `…${seq - 1}` : ""}) never delivered${
            across ? " (the first frame of this stream on this connection: lost across the resume)" : ""
          }`
        })
        seg.last = seq
      }
    }

    for (const l of leaks) {
      const n = l.to - l.from + 1
      add({
        ...l.context,
        kind: "isolation",
        message: `${l.where}, ${describePosition(l.conn)}, received ${l.stream} seq ${l.from}${
          n > 1 ? `…${l.to} (${n} events: ${[...new Set(l.types)].join(", ")})` : ` (${l.types[0]})`
        }, committed from ${l.committed} ms, which ${user.name} could not read then (${user.name}'s membership there: ${l.membership}); ${
          l.conn.openedAt !== undefined && l.committed >= l.conn.openedAt
            ? "sent live, after the connection opened"
            : "replayed: committed before the connection opened"
        }`
      })
    }

    // 3: after quiescence, the client's final connection must have brought every stream to its end.
    const finalConn = [...client.connections].reverse().find((c) => c.phase === "final" && c.status === 200)
    if (finalConn === undefined) continue
    const ends = new Map<string, number>()
    const memberAtEnd = (projectId: string) => timeline(projectId).final(user.id)
    if (single !== undefined) {
      if (memberAtEnd(client.projectId!) && head(truth, single) > 0) ends.set(single, head(truth, single))
    } else {
      for (const project of input.projects) {
        const ps = projectStream(project.id)
        const ws = workspaceStream(project.id, user.id)
        if (memberAtEnd(project.id)) {
          ends.set(ps, head(truth, ps))
          if (head(truth, ws) > 0) ends.set(ws, head(truth, ws))
        } else if (segments.has(ps)) {
          // Left: the stream ends with the removal, which the client must have got (SPEC §5, resume).
          const removal = timeline(project.id).lastRemoval(user.id)
          if (removal !== undefined) ends.set(ps, removal)
        }
      }
    }
    for (const [stream, end] of ends) {
      const seg = segments.get(stream)
      if (seg !== undefined && seg.last >= end) continue
      add({
        kind: "incomplete",
        message: `${who}: after quiescence and a resume (connection #${finalConn.index} on ${finalConn.node}), ` +
          (seg === undefined
            ? `it never received anything of ${stream}, whose head is ${end}`
            : `${stream} is at seq ${seg.last}, its end is ${end}`),
        at: finalConn.openedAt,
        stream,
        seq: seg === undefined ? 1 : seg.last + 1,
        client: client.name,
        node: finalConn.node
      })
    }
  }

  // --- what the waits after the run saw -------------------------------------------------------
  for (const o of input.observations) {
    add({
      kind: o.kind,
      message: o.kind === "stalled"
        ? `${o.client}: a live connection (#${o.connection} on ${o.node}) did not deliver what was committed and ` +
          `published while it was open, with every node up and the outbox drained: ${o.detail}`
        : `${o.client}: could not resume ${o.stream} after the run: ${o.detail}`,
      at: o.at,
      stream: o.stream,
      seq: (o.reached ?? 0) + 1,
      client: o.client,
      node: o.node
    })
  }

  // --- 4: history ------------------------------------------------------------------------------
  for (const reader of input.histories) {
    const user = input.users[reader.user]!
    const stream = reader.scope === "project"
      ? projectStream(reader.projectId)
      : workspaceStream(reader.projectId, user.id)
    const who = `${reader.name} (${user.name})`
    let last = 0
    for (const page of reader.pages) {
      if (page.status !== 200) continue
      let expected = page.after + 1
      for (const envelope of page.items) {
        const context = { at: page.at, stream, seq: envelope.seq, client: reader.name, node: page.node }
        if (envelope.stream !== stream) {
          add({
            ...context,
            kind: "isolation",
            message: `${who}: history of ${stream} gave an event of ${envelope.stream}`
          })
          continue
        }
        const db = truth.byKey.get(eventKey(stream, envelope.seq))
        const mismatch = db === undefined ? "not in the database" : describeMismatch(envelope, undefined, db)
        if (mismatch !== undefined) {
          add({
            ...context,
            kind: "history-mismatch",
            message: `${who}: history ${stream} seq ${envelope.seq}: ${mismatch}`
          })
        }
        if (envelope.seq !== expected) {
          add({
            ...context,
            kind: "history-gap",
            message:
              `${who}: GET …/events?after=${page.after} on ${page.node} gave seq ${envelope.seq} where ${expected} ` +
              `was due (${envelope.seq > expected ? `skipped ${expected}…${envelope.seq - 1}` : "went back"})`
          })
        }
        expected = envelope.seq + 1
        last = Math.max(last, envelope.seq)
      }
    }
    const projectId = reader.projectId
    if (timeline(projectId).final(user.id) && last < head(truth, stream)) {
      add({
        kind: "history-incomplete",
        message: `${who}: history of ${stream} read up to seq ${last} after quiescence; the head is ${
          head(truth, stream)
        }`,
        stream,
        seq: last + 1,
        client: reader.name
      })
    }
  }

  // --- 5: the database on its own (G1, G4, memberships) ----------------------------------------
  for (const d of truth.divergent) add({ kind: "seq", message: `event_outbox and event_log disagree: ${d}` })
  for (const [stream, events] of truth.streams) {
    events.forEach((e, i) => {
      if (e.seq !== i + 1) {
        add({
          kind: "seq",
          message: `${stream} has no seq ${i + 1} (next held: ${e.seq})`,
          stream,
          seq: i + 1,
          at: rel(e.occurredAt)
        })
      }
    })
    const counter = truth.counters.get(stream)
    const last = events[events.length - 1]?.seq ?? 0
    if (counter !== last) {
      add({
        kind: "seq",
        message: `${stream}: event_streams.last_seq is ${counter}, the last event held is ${last}`,
        stream
      })
    }
  }
  const messageById = new Map(truth.messages.map((m) => [m.id, m]))
  const messageEvents = new Map<string, Array<DbEvent>>()
  for (const events of truth.streams.values()) {
    for (const e of events) {
      if (!e.type.startsWith("message.")) continue
      const messageId = (e.data as { messageId?: unknown }).messageId
      if (typeof messageId !== "string") {
        add({
          kind: "g1",
          message: `${e.stream} seq ${e.seq} (${e.type}) names no message`,
          stream: e.stream,
          seq: e.seq
        })
        continue
      }
      const list = messageEvents.get(messageId) ?? []
      list.push(e)
      messageEvents.set(messageId, list)
      const m = messageById.get(messageId)
      if (m === undefined) {
        add({
          kind: "g1",
          message: `${e.stream} seq ${e.seq} (${e.type}) is about message ${messageId}, which does not exist`,
          stream: e.stream,
          seq: e.seq,
          at: rel(e.occurredAt)
        })
      }
    }
  }
  for (const m of truth.messages) {
    const stream = m.scope === "project" ? projectStream(m.projectId) : workspaceStream(m.projectId, m.authorId)
    const events = (messageEvents.get(m.id) ?? []).sort((a, b) => a.seq - b.seq)
    const created = events.filter((e) => e.type === "message.created")
    const at = truth.byKey.get(eventKey(stream, m.createdEventSeq))
    const say = (message: string) => add({ kind: "g1", message: `message ${m.id} in ${stream}: ${message}`, stream })
    if (created.length !== 1) say(`${created.length} message.created events`)
    if (at === undefined || at.id !== m.createdEventId || at.type !== "message.created") {
      say(`its created event ${m.createdEventId} is not at seq ${m.createdEventSeq}`)
    }
    if (events.some((e) => e.stream !== stream)) say("has events in another stream")
    const edits = events.filter((e) => e.type === "message.edited")
    const deletes = events.filter((e) => e.type === "message.deleted")
    const lastBody = edits.length > 0
      ? (edits[edits.length - 1]!.data as { body?: unknown }).body
      : (created[0]?.data as { body?: unknown } | undefined)?.body
    if (lastBody !== m.body) say("its body is not the one its last event says")
    if (m.edited !== (edits.length > 0)) say(`edited_at ${m.edited ? "set" : "unset"} with ${edits.length} edit events`)
    if (m.deleted !== (deletes.length > 0)) {
      say(`deleted_at ${m.deleted ? "set" : "unset"} with ${deletes.length} delete events`)
    }
    // G5 on the write side: a project message's author was a member when it committed.
    if (
      m.scope === "project" && created[0] !== undefined && !timeline(m.projectId).visible(m.authorId, created[0].seq)
    ) {
      add({
        kind: "write-isolation",
        message: `message ${m.id} by ${userById.get(m.authorId)?.name ?? m.authorId} committed at ${stream} seq ${
          created[0].seq
        }, when its author was not a member`,
        stream,
        seq: created[0].seq,
        at: rel(created[0].occurredAt)
      })
    }
  }
  for (const project of input.projects) {
    const fromEvents = timeline(project.id).members()
    const inTable = new Set(truth.members.get(project.id)?.keys() ?? [])
    const name = (id: string) => userById.get(id)?.name ?? id
    for (const u of fromEvents) {
      if (!inTable.has(u)) {
        add({
          kind: "membership",
          message: `${project.name}: events say ${name(u)} is a member; project_members does not`
        })
      }
    }
    for (const u of inTable) {
      if (!fromEvents.has(u)) {
        add({ kind: "membership", message: `${project.name}: project_members has ${name(u)}; the events do not` })
      }
    }
  }

  // --- what the servers confirmed -------------------------------------------------------------
  for (const w of input.writes) {
    const user = input.users[w.user]!
    const what = `${w.kind} by ${user.name} at ${w.at} ms (statuses ${w.statuses.join(",")})`
    const ids = new Set(w.answeredMessageIds)
    if (ids.size > 1) {
      add({
        kind: "idempotency",
        message: `${what}, clientMessageId ${w.clientMessageId}: answered with messages ${[...ids].join(", ")}`,
        at: w.at
      })
    }
    if (w.outcome !== "confirmed") continue
    const lost = (why: string) => add({ kind: "lost-write", message: `${what}: confirmed, but ${why}`, at: w.at })
    if ((w.kind === "post" || w.kind === "workspace-post") && w.messageId !== undefined) {
      const m = messageById.get(w.messageId)
      if (m === undefined) lost(`message ${w.messageId} is not in the database`)
      if (w.event !== undefined && truth.byKey.get(eventKey(w.event.stream, w.event.seq))?.id !== w.event.id) {
        lost(`its event ${w.event.id} is not at ${w.event.stream} seq ${w.event.seq}`)
      }
    }
    if (w.kind === "edit" && w.event !== undefined) {
      const e = truth.byKey.get(eventKey(w.event.stream, w.event.seq))
      if (e?.id !== w.event.id || e.type !== "message.edited") {
        lost(`its event ${w.event.id} is not at ${w.event.stream} seq ${w.event.seq}`)
      }
    }
    if (w.kind === "delete" && w.target !== undefined && messageById.get(w.target)?.deleted !== true) {
      lost(`message ${w.target} is not deleted`)
    }
    if ((w.kind === "add-member" || w.kind === "remove-member") && w.member !== undefined) {
      const member = input.users[w.member]!
      const type = w.kind === "add-member" ? "member.added" : "member.removed"
      const found = (truth.streams.get(projectStream(w.projectId)) ?? []).some((e) =>
        e.type === type && (e.data as { userId?: unknown }).userId === member.id
      )
      if (!found) lost(`no ${type} event for ${member.name}`)
    }
  }

  if (input.unsettled !== undefined) add({ kind: "outbox", message: input.unsettled })
  for (const s of input.shutdowns) {
    if (s.code !== 0 || s.ms > 10_000) {
      add({
        kind: "shutdown",
        message: `${s.node}: SIGTERM → exit ${s.code} after ${s.ms} ms (G8: 0 within 10 s); its last lines: ${s.tail}`,
        node: s.node
      })
    }
  }
  return out
}
