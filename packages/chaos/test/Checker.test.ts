import { describe, expect, it } from "@effect/vitest"
import { check, type CheckInput, type ViolationKind } from "../src/Checker.js"
import { envelopeOf } from "../src/Envelope.js"
import type { ClientRecord, ConnectionRecord, Frame, HistoryRecord, Position, User } from "../src/Records.js"
import { type DbEvent, eventKey, type Truth } from "../src/Truth.js"

/**
 * The checker on its own, on small made-up histories: what is a violation and what is not. The
 * campaign's verdict is only worth something if these hold — a violation must be a real one.
 */

const T0 = 1_000_000
const P = "00000000-0000-0000-0000-0000000000a1"
const PS = `project:${P}`
const alice: User = { index: 0, id: "00000000-0000-0000-0000-00000000a11c", name: "alice", token: "ta" }
const bob: User = { index: 1, id: "00000000-0000-0000-0000-000000000b0b", name: "bob", token: "tb" }
const WS = `workspace:${P}:${bob.id}`

/** Events of the project stream, one per 100 ms from T0: alice creates it, bob is added at 2, removed at `removedAt`, maybe added back. */
const projectEvents = (length: number, removedAt?: number, addedBackAt?: number): Array<DbEvent> =>
  Array.from({ length }, (_, i) => {
    const seq = i + 1
    const [type, data] = seq === 1
      ? ["project.created", { name: "p", ownerId: alice.id }]
      : seq === 2 || seq === addedBackAt
      ? ["member.added", { userId: bob.id, role: "member" }]
      : seq === removedAt
      ? ["member.removed", { userId: bob.id }]
      : ["message.created", { messageId: `m${seq}`, authorId: alice.id, role: "user", body: `b${seq}` }]
    return { id: `e${seq}`, stream: PS, seq, type, projectId: P, actorId: alice.id, occurredAt: T0 + seq * 100, data }
  })

const truthOf = (events: ReadonlyArray<DbEvent>): Truth => {
  const streams = new Map<string, Array<DbEvent>>()
  for (const e of events) streams.set(e.stream, [...(streams.get(e.stream) ?? []), e])
  const members = new Map<string, string>()
  for (const e of events) {
    const d = e.data as { userId?: string; ownerId?: string }
    if (e.type === "project.created") members.set(d.ownerId!, "owner")
    if (e.type === "member.added") members.set(d.userId!, "member")
    if (e.type === "member.removed") members.delete(d.userId!)
  }
  return {
    streams,
    byKey: new Map(events.map((e) => [eventKey(e.stream, e.seq), e])),
    counters: new Map([...streams].map(([s, es]) => [s, es[es.length - 1]!.seq])),
    // The messages the events describe, so that G1 holds unless a test breaks it.
    messages: events.filter((e) => e.type === "message.created").map((e) => {
      const d = e.data as { messageId: string; authorId: string; body: string }
      return {
        id: d.messageId,
        projectId: P,
        authorId: d.authorId,
        scope: e.stream === PS ? "project" as const : "workspace" as const,
        body: d.body,
        clientMessageId: null,
        createdEventId: e.id,
        createdEventSeq: e.seq,
        edited: false,
        deleted: false
      }
    }),
    members: new Map([[P, members]]),
    divergent: [],
    outbox: { pending: 0, dead: 0, unmaterialized: 0 }
  }
}

/** The envelope a server sends for `e`, as the client records it. */
const envelope = (e: DbEvent) =>
  envelopeOf({
    id: e.id,
    stream: e.stream,
    seq: e.seq,
    type: e.type,
    projectId: e.projectId,
    actorId: e.actorId,
    occurredAt: new Date(e.occurredAt).toISOString(),
    data: e.data
  })!

const wire = (e: DbEvent): Frame => ({
  at: e.occurredAt - T0 + 50,
  id: String(e.seq),
  event: e.type,
  envelope: envelope(e),
  data: undefined
})

/** A frame that is not an event (heads, reset). */
const control = (event: string, data: unknown): Frame => ({ at: 0, id: "c", event, envelope: undefined, data })

let connections = 0
const conn = (
  position: Position,
  frames: ReadonlyArray<Frame>,
  options: { phase?: "run" | "final"; openedAt?: number } = {}
): ConnectionRecord => {
  const openedAt = options.openedAt ?? (frames[0]?.at ?? 0) - 10
  return {
    index: connections++,
    node: "n1",
    phase: options.phase ?? "run",
    position,
    startedAt: openedAt,
    openedAt,
    openedEpoch: T0 + openedAt,
    status: 200,
    frames: [...frames],
    endedAt: undefined,
    end: "client-closed",
    errorBody: undefined
  }
}

const client = (kind: ClientRecord["kind"], ...cs: ReadonlyArray<ConnectionRecord>): ClientRecord => ({
  name: `bob/${kind}`,
  kind,
  user: 1,
  projectId: kind === "multiplexed" ? undefined : P,
  connections: [...cs]
})

const run = (events: ReadonlyArray<DbEvent>, extra: Partial<CheckInput>): ReadonlyArray<ViolationKind> =>
  check({
    t0: T0,
    truth: truthOf(events),
    users: [alice, bob],
    projects: [{ id: P, name: "p", owner: 0 }],
    clients: [],
    histories: [],
    writes: [],
    observations: [],
    shutdowns: [],
    unsettled: undefined,
    ...extra
  }).map((v) => v.kind)

const frames = (events: ReadonlyArray<DbEvent>, from: number, to: number) =>
  events.filter((e) => e.seq >= from && e.seq <= to).map(wire)

const after = (n: number): Position => ({ _tag: "after", after: n })
const resumed: Position = { _tag: "lastEventId", id: "opaque" }

describe("the checker", () => {
  const events = projectEvents(8)

  it("a stream read in pieces, each resumed where the last stopped, is clean", () => {
    const c = client(
      "project",
      conn(after(2), frames(events, 3, 5)),
      conn(resumed, frames(events, 6, 8), { phase: "final" })
    )
    expect(run(events, { clients: [c] })).toEqual([])
  })

  it("live signals are no events: without an id, of the user's own workspace and of projects they belong to (G10)", () => {
    const signal = (event: string, data: unknown, id?: string): Frame => ({
      at: 120,
      id,
      event,
      envelope: undefined,
      data
    })
    const clean = [
      signal("presence", { stream: PS, users: [{ userId: bob.id, since: "x" }] }),
      signal("typing", { stream: PS, userId: alice.id, until: "x" }),
      signal("draft", { stream: WS, draftId: "d", role: "worker", body: "b", updatedAt: "x" })
    ]
    const at = (fs: ReadonlyArray<Frame>) => [...frames(events, 3, 5), ...fs, ...frames(events, 6, 8)]
    expect(run(events, { clients: [client("project", conn(after(2), at(clean)))] })).toEqual([])
    const wrong = [
      signal("presence", { stream: PS, userId: alice.id, present: true, at: "x" }, "7"),
      signal("draft", { stream: `workspace:${P}:${alice.id}`, draftId: "d", ended: true }),
      signal("typing", { stream: PS, userId: bob.id, until: "x" }),
      signal("typing", { stream: "project:00000000-0000-0000-0000-0000000000ff", userId: alice.id, until: "x" })
    ]
    expect(run(events, { clients: [client("project", conn(after(2), at(wrong)))] })).toEqual([
      "signal",
      "signal",
      "signal",
      "signal"
    ])
  })

  it("a seq skipped on a connection, or across a resume, is a gap; one sent twice is a duplicate", () => {
    const skipped = client("project", conn(after(2), [...frames(events, 3, 4), ...frames(events, 6, 8)]))
    expect(run(events, { clients: [skipped] })).toEqual(["gap"])
    const back = client("project", conn(after(2), frames(events, 3, 5)), conn(resumed, frames(events, 5, 8)))
    expect(run(events, { clients: [back] })).toEqual(["duplicate"])
  })

  it("an event that is not the database's at its seq is a mismatch; one it does not hold is invented", () => {
    const stale = wire(events[4]!)
    const changed: Frame = { ...stale, envelope: { ...stale.envelope!, id: "other" } }
    expect(run(events, { clients: [client("project", conn(after(4), [changed]))] })).toEqual(["mismatch"])
    const beyond = wire({ ...events[7]!, seq: 9 })
    expect(run(events, { clients: [client("project", conn(after(8), [beyond]))] })).toEqual(["invented"])
  })

  it("after their own removal, a member receives nothing more on that connection", () => {
    const removed = projectEvents(7, 4)
    const leak = client("project", conn(after(2), frames(removed, 3, 6)))
    expect(run(removed, { clients: [leak] })).toEqual(["isolation"])
    const ended = client("project", conn(after(2), frames(removed, 3, 4)))
    expect(run(removed, { clients: [ended] })).toEqual([])
    // What leaked was received all the same: a resume after it goes on from there, with no gap to report.
    const back = projectEvents(8, 4, 7)
    const resumedAfterLeak = client(
      "project",
      conn(after(2), frames(back, 3, 6)),
      conn(resumed, frames(back, 7, 8), { openedAt: 750, phase: "final" })
    )
    expect(run(back, { clients: [resumedAfterLeak] })).toEqual(["isolation"])
  })

  it("a per-stream resume after being added back replays history to a member: not a leak", () => {
    const back = projectEvents(8, 4, 6)
    // Opened after the re-add (seq 6, committed at T0 + 600): events 5 and 6 are history to a member.
    const c = client(
      "project",
      conn(after(2), frames(back, 3, 4)),
      conn(resumed, frames(back, 5, 8), { openedAt: 700, phase: "final" })
    )
    expect(run(back, { clients: [c] })).toEqual([])
  })

  it("per stream, on one connection: a jump from the user's own removal to the add that brought them back is no gap; any other jump is", () => {
    const back = projectEvents(8, 4, 6)
    const jumped = client("project", conn(after(2), [...frames(back, 3, 4), ...frames(back, 6, 8)]))
    expect(run(back, { clients: [jumped] })).toEqual([])
    const tooFar = client("project", conn(after(2), [...frames(back, 3, 4), ...frames(back, 7, 8)]))
    expect(run(back, { clients: [tooFar] })).toEqual(["gap"])
  })

  it("GET /api/stream: across a removal and a re-add it skips the window; sending the window is a leak", () => {
    const back = projectEvents(8, 4, 6)
    const heads = (seq: number) => control("heads", { streams: { [PS]: seq } })
    const clean = client(
      "multiplexed",
      conn({ _tag: "none", headBefore: undefined }, [heads(2), ...frames(back, 3, 4)]),
      conn(resumed, frames(back, 6, 8), { openedAt: 700, phase: "final" })
    )
    expect(run(back, { clients: [clean] })).toEqual([])
    const leaky = client(
      "multiplexed",
      conn({ _tag: "none", headBefore: undefined }, [heads(2), ...frames(back, 3, 4)]),
      conn(resumed, frames(back, 5, 8), { openedAt: 700, phase: "final" })
    )
    expect(run(back, { clients: [leaky] })).toEqual(["isolation"])
  })

  it("GET /api/stream: a project joins at the event that added the user, and not elsewhere", () => {
    const joined = client("multiplexed", conn({ _tag: "none", headBefore: undefined }, frames(events, 2, 8)))
    expect(run(events, { clients: [joined] })).toEqual([])
    const late = client("multiplexed", conn({ _tag: "none", headBefore: undefined }, frames(events, 3, 8)))
    expect(run(events, { clients: [late] })).toEqual(["join"])
  })

  it("a workspace stream is its owner's alone", () => {
    const other: DbEvent = {
      id: "w1",
      stream: `workspace:${P}:${alice.id}`,
      seq: 1,
      type: "message.created",
      projectId: P,
      actorId: alice.id,
      occurredAt: T0 + 50,
      data: { messageId: "w1", authorId: alice.id, role: "user", body: "secret" }
    }
    const all = [...events, other]
    const c = client("multiplexed", conn({ _tag: "none", headBefore: undefined }, [wire(other)]))
    expect(run(all, { clients: [c] })).toContain("isolation")
  })

  it("after `event: reset` the stream starts again at `from`", () => {
    const reset = control("reset", { stream: PS, from: 1 })
    const c = client("project", conn(after(5), [reset, ...frames(events, 1, 8)], { phase: "final", openedAt: 900 }))
    // Events 1 and 2 (before bob was added) are history replayed to a member, not a leak.
    expect(run(events, { clients: [c] })).toEqual([])
  })

  it("a final resume that stops short of the head is incomplete", () => {
    const c = client(
      "project",
      conn(after(2), frames(events, 3, 5)),
      conn(resumed, frames(events, 6, 7), { phase: "final" })
    )
    expect(run(events, { clients: [c] })).toEqual(["incomplete"])
    const ws: DbEvent = {
      id: "w1",
      stream: WS,
      seq: 1,
      type: "message.created",
      projectId: P,
      actorId: bob.id,
      occurredAt: T0 + 50,
      data: { messageId: "w1", authorId: bob.id, role: "user", body: "mine" }
    }
    const mux = client(
      "multiplexed",
      conn({ _tag: "none", headBefore: undefined }, [control("heads", { streams: { [PS]: 8 } })], {
        phase: "final"
      })
    )
    // The workspace's one event never came.
    expect(run([...events, ws], { clients: [mux] })).toEqual(["incomplete"])
  })

  it("history pages must not skip a seq", () => {
    const page = (after: number, seqs: ReadonlyArray<number>) => ({
      at: 1,
      node: "n1",
      after,
      status: 200,
      items: seqs.map((s) => envelope(events[s - 1]!)),
      nextAfter: null
    })
    const reader = (pages: HistoryRecord["pages"]): HistoryRecord => ({
      name: "bob/history",
      user: 1,
      projectId: P,
      scope: "project",
      pages
    })
    expect(run(events, { histories: [reader([page(0, [1, 2, 3]), page(3, [4, 5, 6, 7, 8])])] })).toEqual([])
    expect(run(events, { histories: [reader([page(0, [1, 2, 3]), page(3, [5, 6, 7, 8])])] })).toEqual(["history-gap"])
    expect(run(events, { histories: [reader([page(0, [1, 2, 3])])] })).toEqual(["history-incomplete"])
  })

  it("G1: an event about a message that does not exist, and a message without its event", () => {
    const truth = truthOf(events)
    const withoutMessage = { ...truth, messages: truth.messages.slice(1) }
    expect(
      check({
        t0: T0,
        truth: withoutMessage,
        users: [alice, bob],
        projects: [{ id: P, name: "p", owner: 0 }],
        clients: [],
        histories: [],
        writes: [],
        observations: [],
        shutdowns: [],
        unsettled: undefined
      }).map((v) => v.kind)
    ).toEqual(["g1"])
    const orphan = { ...truth.messages[0]!, id: "m-orphan", createdEventId: "none", createdEventSeq: 99 }
    expect(
      check({
        t0: T0,
        truth: { ...truth, messages: [...truth.messages, orphan] },
        users: [alice, bob],
        projects: [{ id: P, name: "p", owner: 0 }],
        clients: [],
        histories: [],
        writes: [],
        observations: [],
        shutdowns: [],
        unsettled: undefined
      }).map((v) => v.kind)
    ).toEqual(["g1", "g1", "g1"]) // no created event, none at its seq, no body to match
  })
})
