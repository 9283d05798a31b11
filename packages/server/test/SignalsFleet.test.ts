/**
 * Live signals across a fleet (SPEC §5 "Live signals", G10; issue 21 item 5): compiled server
 * processes on one PostgreSQL database, for each broker with a signal side (postgres: NOTIFY
 * herald_signals; redis: pub/sub on a real redis-server), first as two nodes, then as three (two
 * joining the survivor of the first). Clients read SSE on every node; presence, typing and drafts
 * started on one node must reach the right connections on the others, and never the wrong ones; a
 * node killed with SIGKILL takes its users' presence with it within HERALD_PRESENCE_TTL, a SIGTERM'd
 * one at once. The cases of one fleet build on each other and run in order.
 */
import { NodeContext } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { pollUntil, type ServerNode, startServerNode, stopServerNodes } from "../../../test-support/Process.js"
import { type RedisServer, startRedis } from "../../../test-support/Redis.js"
import { connectSse, type SseConnection, type SseEvent } from "../../../test-support/SseClient.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { clientLayer } from "../src/db/Database.js"
import { runMigrations } from "../src/db/Migrations.js"

const ADMIN = "signals-fleet-admin"
/** Short, so that a killed node's users must be gone within seconds (beats every TTL/3 = 1 s). */
const PRESENCE_TTL_MS = 3_000
/** SPEC §5: users come and go "within 2 s fleet-wide". */
const FLEET_MS = 2_000

// ---- processes -------------------------------------------------------------------------------

interface Node extends ServerNode {
  readonly name: string
  /** Every connection opened to its fleet's nodes (one array per fleet). */
  readonly connections: Array<Conn>
}

const call = async (node: Node, method: string, path: string, token: string, body?: unknown) => {
  const res = await fetch(node.url + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" })
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, body: text === "" ? undefined : JSON.parse(text) as any }
}

const expectStatus = async (answer: Promise<{ status: number; body: any }>, status: number) => {
  const { body, status: got } = await answer
  expect(got, JSON.stringify(body)).toBe(status)
  return body
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

// ---- SSE connections -------------------------------------------------------------------------

/** One SSE connection of a user on a node, with when each frame arrived. */
interface Conn {
  readonly label: string
  readonly node: Node
  readonly sse: SseConnection
  /** Arrival time (Date.now()) of `sse.all[i]`. */
  readonly arrivals: Array<number>
}

const SIGNAL_KINDS = new Set(["presence", "typing", "draft"])

const open = async (node: Node, path: string, token: string, label: string): Promise<Conn> => {
  const sse = await connectSse(node.url, path, { token })
  expect(sse.status, `${label}: ${JSON.stringify(sse.errorBody)}`).toBe(200)
  // Frames that came with the response's first chunk, before this: stamped now.
  const arrivals: Array<number> = sse.all.map(() => Date.now())
  // Stamps each frame as the reader appends it: latencies are measured at arrival, not when polled.
  const push = sse.all.push.bind(sse.all)
  sse.all.push = (...items: Array<SseEvent>) => {
    for (let i = 0; i < items.length; i++) arrivals.push(Date.now())
    return push(...items)
  }
  const conn = { label: `${label} on ${node.name}`, node, sse, arrivals }
  node.connections.push(conn)
  return conn
}

const closeConn = (conn: Conn) => conn.sse.close()

const describeEvents = (conn: Conn) =>
  conn.sse.all.map((e) => `${e.event}:${JSON.stringify(e.data).slice(0, 160)}`).join("\n  ")

/**
 * Resolves with the index and arrival time of the first event at or after `from` matching `pred`;
 * rejects after `timeoutMs`, listing what the connection got.
 */
const frame = async (
  conn: Conn,
  what: string,
  pred: (e: SseEvent) => boolean,
  timeoutMs = 5_000,
  from = 0
): Promise<{ index: number; at: number; event: SseEvent }> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const index = conn.sse.all.findIndex((e, i) => i >= from && pred(e))
    if (index >= 0) return { index, at: conn.arrivals[index]!, event: conn.sse.all[index]! }
    if (Date.now() > deadline) {
      throw new Error(`${conn.label}: no ${what} within ${timeoutMs} ms; got:\n  ${describeEvents(conn)}`)
    }
    await sleep(10)
  }
}

const signals = (conn: Conn, kind: string) => conn.sse.all.filter((e) => e.event === kind)

const isPresence = (stream: string, userId: string, present: boolean) => (e: SseEvent) =>
  e.event === "presence" && e.data.stream === stream && e.data.userId === userId && e.data.present === present

const isSnapshot = (stream: string) => (e: SseEvent) =>
  e.event === "presence" && e.data.stream === stream && Array.isArray(e.data.users)

const isTyping = (stream: string, userId: string) => (e: SseEvent) =>
  e.event === "typing" && e.data.stream === stream && e.data.userId === userId

const isDraft = (draftId: string) => (e: SseEvent) =>
  e.event === "draft" && e.data.draftId === draftId && e.data.ended !== true

const isDraftEnd = (draftId: string) => (e: SseEvent) =>
  e.event === "draft" && e.data.draftId === draftId && e.data.ended === true

/** The first frame of `conn` that concerns `stream` (a multiplexed connection's `heads` aside). */
const firstFrameOf = (conn: Conn, stream: string) => conn.sse.all.find((e) => e.data?.stream === stream)

/** Where two long texts first differ (for a failure message that does not print 10 000 characters). */
const difference = (got: string, want: string) => {
  if (got === want) return "same"
  let i = 0
  while (i < got.length && got[i] === want[i]) i++
  return `length ${got.length} (want ${want.length}), first difference at ${i}: ${JSON.stringify(got.slice(i, i + 8))}`
}

/**
 * A draft body of exactly 10 000 UTF-16 units (the most a draft takes) — emoji (surrogate pairs, one a ZWJ
 * sequence), CJK and accents, so its UTF-8 is about 25 KB: the postgres bus sends it in pieces,
 * some of them cut next to a surrogate pair. `shift` moves every boundary by that many units.
 */
const longBody = (marker: string, shift: number) => {
  const parts = ["😀", "漢字", "かな", "🎉🚀", "é", "中文字", "👩‍💻", "ü"]
  let body = marker + "a".repeat(shift)
  for (let i = 0; body.length + parts[i % parts.length]!.length <= 10_000; i++) body += parts[i % parts.length]
  return body + "z".repeat(10_000 - body.length)
}

// ---- the database, from outside --------------------------------------------------------------

const tableCounts = async (db: pg.Client) => {
  const { rows } = await db.query<{ outbox: string; log: string }>(
    "SELECT (SELECT count(*) FROM event_outbox) AS outbox, (SELECT count(*) FROM event_log) AS log"
  )
  return { outbox: Number(rows[0]!.outbox), log: Number(rows[0]!.log) }
}

/** Row counts once the materializer has copied every outbox row into event_log. */
const settledCounts = (db: pg.Client) =>
  pollUntil("event_log to hold every outbox row", async () => {
    const counts = await tableCounts(db)
    return counts.log === counts.outbox ? { done: counts } : { seen: counts }
  }, 15_000)

// ---- a project and its members, on a fleet ----------------------------------------------------

interface User {
  readonly name: string
  readonly id: string
  readonly token: string
}

interface World {
  readonly projectId: string
  readonly project: string
  readonly users: Record<"olga" | "vic" | "uma" | "wes" | "xia" | "kat" | "sam", User>
  readonly workspace: (user: User) => string
  readonly presenceOn: (node: Node) => Promise<ReadonlyArray<string>>
}

const setUpWorld = async (node: Node, name: string): Promise<World> => {
  const create = async (user: string): Promise<User> => {
    const body = await expectStatus(call(node, "POST", "/api/admin/users", ADMIN, { name: user }), 201)
    return { name: user, id: body.id, token: body.token }
  }
  const olga = await create("olga")
  const project = await expectStatus(call(node, "POST", "/api/projects", olga.token, { name }), 201)
  const users = { olga } as Record<keyof World["users"], User>
  for (const user of ["vic", "uma", "wes", "xia", "kat", "sam"] as const) {
    users[user] = await create(user)
    await expectStatus(
      call(node, "POST", `/api/projects/${project.id}/members`, olga.token, { userId: users[user].id }),
      201
    )
  }
  return {
    projectId: project.id,
    project: `project:${project.id}`,
    users,
    workspace: (user) => `workspace:${project.id}:${user.id}`,
    presenceOn: async (on) => {
      const body = await expectStatus(call(on, "GET", `/api/projects/${project.id}/presence`, olga.token), 200)
      expect(body.projectId).toBe(project.id)
      return body.users.map((u: { userId: string }) => u.userId)
    }
  }
}

/** `GET …/presence` on every node of `nodes` answers a set matching `ok`; within `timeoutMs`. */
const presenceEverywhere = (
  world: World,
  nodes: ReadonlyArray<Node>,
  what: string,
  ok: (users: ReadonlyArray<string>) => boolean,
  timeoutMs: number
) =>
  Promise.all(nodes.map((node) =>
    pollUntil(`GET presence on ${node.name}: ${what}`, async () => {
      const users = await world.presenceOn(node)
      return ok(users) ? { done: Date.now() } : { seen: users }
    }, timeoutMs)
  ))

// ---- the suite -------------------------------------------------------------------------------

/** The fleet's nodes as named in the cases: node 0 is "A", the last one "C" (or "B" with two). */
interface Fleet {
  readonly nodes: () => ReadonlyArray<Node>
  readonly db: () => pg.Client
  /** Every connection a phase opened: each is checked for `id:` lines on signals, and closed at the end. */
  readonly connections: Array<Conn>
}

/**
 * Presence, typing and drafts on the fleet's running nodes, and what they must not leave behind,
 * on a project of their own. The world and its observers stay open for the node-death cases after.
 */
const signalCases = (fleet: Fleet, size: number) => {
  let world: World
  /** Olga's multiplexed and Vic's per-stream connections on every node: the other members watching. */
  let observers: Array<Conn> = []
  /** Uma's connections on every node (the typist, the drafts' owner). */
  let umas: Array<Conn> = []
  let before: { outbox: number; log: number }
  const marker = `DRAFT-${randomBytes(6).toString("hex")}`
  const nodes = () => {
    const running = fleet.nodes()
    expect(running).toHaveLength(size)
    return running
  }

  it("set-up: a project, its members, and the other members watching on every node", async () => {
    world = await setUpWorld(nodes()[0]!, `signals on ${size} nodes`)
    before = await settledCounts(fleet.db())
    const { olga, vic } = world.users
    const projectPath = `/api/projects/${world.projectId}/stream`
    observers = []
    for (const node of nodes()) {
      observers.push(await open(node, "/api/stream", olga.token, "olga's multiplexed connection"))
      observers.push(await open(node, projectPath, vic.token, "vic's project stream"))
    }
    // Each starts with who is present: from now on, comings and goings are frames.
    await Promise.all(observers.map((c) => frame(c, "a presence snapshot", isSnapshot(world.project))))
    // Everyone has heard of everyone: olga and vic are present on every node.
    await presenceEverywhere(world, nodes(), "olga and vic", (u) => u.includes(olga.id) && u.includes(vic.id), 5_000)
  })

  it("presence: a connection opening on A (multiplexed, and per-stream) is a `present: true` frame on every node within 2 s, in GET presence everywhere; a connection starting on the last node gets everyone in its snapshot first; closing it is `present: false` within 2 s", async () => {
    const [a, b] = nodes() as [Node, Node]
    const last = nodes()[size - 1]!
    const { olga, uma, vic, wes, xia } = world.users
    const stream = world.project

    const started = Date.now()
    const umaMux = await open(a, "/api/stream", uma.token, "uma's multiplexed connection")
    const wesProject = await open(a, `/api/projects/${world.projectId}/stream`, wes.token, "wes's project stream")
    for (const user of [uma, wes]) {
      const seen = await Promise.all(
        observers.map((c) => frame(c, `${user.name} present`, isPresence(stream, user.id, true)))
      )
      for (const { at, event } of seen) {
        expect(at - started, `${user.name}: present within 2 s`).toBeLessThan(FLEET_MS)
        expect(Object.keys(event.data).sort()).toEqual(["at", "present", "stream", "userId"])
        expect(Date.parse(event.data.at)).toBeGreaterThanOrEqual(started - 1_000)
        expect(event.id).toBeUndefined()
      }
    }
    const listed = await presenceEverywhere(
      world,
      nodes(),
      "uma and wes",
      (u) => u.includes(uma.id) && u.includes(wes.id),
      FLEET_MS
    )
    for (const at of listed) expect(at - started).toBeLessThan(FLEET_MS)

    // Xia is present on B only; a connection starting on the last node sees A's users and B's in its first frame.
    const xiaOnB = await open(b, "/api/stream", xia.token, "xia's multiplexed connection")
    await Promise.all(observers.map((c) => frame(c, "xia present", isPresence(stream, xia.id, true))))
    const everyone = [olga, vic, uma, wes, xia].map((u) => u.id).sort()
    const lateProject = await open(
      last,
      `/api/projects/${world.projectId}/stream`,
      olga.token,
      "olga's late project stream"
    )
    const lateMux = await open(last, "/api/stream", vic.token, "vic's late multiplexed connection")
    await frame(lateProject, "a snapshot", isSnapshot(stream))
    await frame(lateMux, "a snapshot", isSnapshot(stream))
    expect(lateProject.sse.all[0], describeEvents(lateProject)).toMatchObject({ event: "presence" })
    expect(lateMux.sse.all[0]!.event).toBe("heads")
    for (const late of [lateProject, lateMux]) {
      const snapshot = firstFrameOf(late, stream)!
      expect(snapshot.event, describeEvents(late)).toBe("presence")
      expect(Object.keys(snapshot.data).sort()).toEqual(["stream", "users"])
      expect(snapshot.data.users.map((u: { userId: string }) => u.userId).sort(), late.label).toEqual(everyone)
      for (const u of snapshot.data.users) expect(Number.isNaN(Date.parse(u.since))).toBe(false)
    }

    // Gone: A's two connections close.
    const closed = Date.now()
    closeConn(umaMux)
    closeConn(wesProject)
    for (const user of [uma, wes]) {
      const seen = await Promise.all(
        observers.map((c) => frame(c, `${user.name} gone`, isPresence(stream, user.id, false)))
      )
      for (const { at } of seen) expect(at - closed, `${user.name}: gone within 2 s`).toBeLessThan(FLEET_MS)
    }
    const unlisted = await presenceEverywhere(
      world,
      nodes(),
      "neither uma nor wes",
      (u) => !u.includes(uma.id) && !u.includes(wes.id) && u.includes(xia.id),
      FLEET_MS
    )
    for (const at of unlisted) expect(at - closed).toBeLessThan(FLEET_MS)
    for (const c of [xiaOnB, lateProject, lateMux]) closeConn(c)
    await Promise.all(observers.map((c) => frame(c, "xia gone", isPresence(stream, xia.id, false))))
  })

  it("typing: a POST on A reaches the other members' connections on every node, never the typist's own on any; two calls within a second are one frame", async () => {
    const [a] = nodes() as [Node]
    const { uma } = world.users
    umas = []
    for (const node of nodes()) umas.push(await open(node, "/api/stream", uma.token, "uma's multiplexed connection"))
    await Promise.all(umas.map((c) => frame(c, "a snapshot", isSnapshot(world.project))))
    await Promise.all(observers.map((c) => frame(c, "uma present", isPresence(world.project, uma.id, true))))

    const typing = `/api/projects/${world.projectId}/typing`
    const started = Date.now()
    await expectStatus(call(a, "POST", typing, uma.token), 204)
    await expectStatus(call(a, "POST", typing, uma.token), 204)
    const seen = await Promise.all(observers.map((c) => frame(c, "uma typing", isTyping(world.project, uma.id))))
    for (const { at, event } of seen) {
      expect(at - started).toBeLessThan(FLEET_MS)
      expect(Object.keys(event.data).sort()).toEqual(["stream", "until", "userId"])
      // until = now + 5 s, as the node that took the call saw it.
      const until = Date.parse(event.data.until)
      expect(until).toBeGreaterThanOrEqual(started + 4_000)
      expect(until).toBeLessThanOrEqual(Date.now() + 5_500)
    }
    // A second apart: a second frame, so the one above was the two calls coalesced, not typing sent once ever.
    await sleep(Math.max(0, started + 1_100 - Date.now()))
    await expectStatus(call(a, "POST", typing, uma.token), 204)
    await Promise.all(
      observers.map(async (c) => {
        const first = (await frame(c, "uma typing", isTyping(world.project, uma.id))).index
        await frame(c, "uma typing again", isTyping(world.project, uma.id), 5_000, first + 1)
      })
    )
    await sleep(300)
    for (const c of observers) {
      expect(signals(c, "typing").filter(isTyping(world.project, uma.id)), c.label).toHaveLength(2)
    }
    for (const c of umas) expect(signals(c, "typing"), `${c.label}: the typist's own`).toEqual([])
  })

  it("drafts: a PUT on A reaches the owner's connections on every node — whole at 10 000 characters of emoji and CJK — and no other member's; a connection starting later gets the live draft first; a workspace message with its id posted on B ends it after that message, everywhere", async () => {
    const [a, b] = nodes() as [Node, Node]
    const last = nodes()[size - 1]!
    const { uma } = world.users
    const workspace = world.workspace(uma)
    const workspacePath = `/api/projects/${world.projectId}/workspace/stream`
    const owner = [...umas]
    for (const node of nodes()) owner.push(await open(node, workspacePath, uma.token, "uma's workspace stream"))
    const drafts = `/api/projects/${world.projectId}/workspace/drafts`

    // Two long bodies whose piece boundaries fall in different places.
    const bodies = [longBody(marker, 0), longBody(marker, 1)]
    for (const body of bodies) {
      expect(body).toHaveLength(10_000)
      expect(Buffer.byteLength(body)).toBeGreaterThan(20_000)
      const from = owner.map((c) => c.sse.all.length)
      const started = Date.now()
      await expectStatus(call(a, "PUT", `${drafts}/d1`, uma.token, { body, role: "worker" }), 204)
      const seen = await Promise.all(owner.map((c, i) => frame(c, "draft d1", isDraft("d1"), 5_000, from[i])))
      for (const [i, { at, event }] of seen.entries()) {
        expect(at - started).toBeLessThan(FLEET_MS)
        expect(Object.keys(event.data).sort()).toEqual(["body", "draftId", "role", "stream", "updatedAt"])
        expect(event.data).toMatchObject({ stream: workspace, draftId: "d1", role: "worker" })
        expect(difference(event.data.body, body), owner[i]!.label).toBe("same")
      }
    }
    await expectStatus(call(a, "PUT", `${drafts}/d2`, uma.token, { body: "another draft" }), 204)
    await Promise.all(owner.map((c) => frame(c, "draft d2", isDraft("d2"))))

    // Starting after the PUTs, on the last node: the live drafts' current bodies come first.
    const lateWorkspace = await open(last, workspacePath, uma.token, "uma's late workspace stream")
    const lateMux = await open(last, "/api/stream", uma.token, "uma's late multiplexed connection")
    for (const late of [lateWorkspace, lateMux]) {
      await frame(late, "draft d2", isDraft("d2"))
      const first = late.sse.all.filter((e) => e.data?.stream === workspace).slice(0, 2)
      expect(first.map((e) => [e.event, e.data.draftId]), late.label).toEqual([["draft", "d1"], ["draft", "d2"]])
      expect(difference(first[0]!.data.body, bodies[1]!)).toBe("same")
      expect(first[0]!.data.role).toBe("worker")
      expect(first[1]!.data).toMatchObject({ body: "another draft", role: "user" })
    }
    expect(lateWorkspace.sse.all[0]!.event).toBe("draft")
    owner.push(lateWorkspace, lateMux)

    // The worker's message, with the draft's id, posted on B: on every node, its event and then the draft's end.
    const posted = await expectStatus(
      call(b, "POST", `/api/projects/${world.projectId}/workspace/messages`, uma.token, {
        body: "the worker's reply",
        role: "worker",
        clientMessageId: "d1"
      }),
      201
    )
    for (const c of owner) {
      const message = await frame(
        c,
        "message.created of d1",
        (e) => e.event === "message.created" && e.data.data.clientMessageId === "d1"
      )
      expect(message.event.data.data.messageId).toBe(posted.message.id)
      const ended = await frame(c, "d1 ended", isDraftEnd("d1"))
      expect(ended.index, `${c.label}: the end after the message`).toBeGreaterThan(message.index)
      expect(ended.event.data).toEqual({ stream: workspace, draftId: "d1", ended: true })
      expect(c.sse.all.filter(isDraftEnd("d1")), c.label).toHaveLength(1)
    }
    // A connection starting now gets the draft still live, not the one that became a message.
    for (const node of nodes()) {
      const fresh = await open(node, workspacePath, uma.token, "uma's fresh workspace stream")
      await frame(fresh, "draft d2", isDraft("d2"))
      await sleep(200)
      expect(fresh.sse.all.map((e) => [e.event, e.data.draftId]), fresh.label).toEqual([["draft", "d2"]])
      closeConn(fresh)
    }

    // DELETE on the last node ends d2 everywhere.
    await expectStatus(call(last, "DELETE", `${drafts}/d2`, uma.token), 204)
    await Promise.all(owner.map((c) => frame(c, "d2 ended", isDraftEnd("d2"))))

    // No other member's connection, on any node, got a draft.
    for (const c of observers) expect(signals(c, "draft"), c.label).toEqual([])
  })

  it("G10: no signal frame carries an `id:` line, and none reached event_outbox or event_log", async () => {
    let checked = 0
    for (const c of fleet.connections) {
      for (const e of c.sse.all) {
        if (e.event !== undefined && SIGNAL_KINDS.has(e.event)) {
          expect(e.id, `${c.label}: ${e.event}`).toBeUndefined()
          checked++
        }
      }
    }
    expect(checked).toBeGreaterThan(50)
    // The only chat change since the set-up: the worker's message.
    const after = await settledCounts(fleet.db())
    expect(after).toEqual({ outbox: before.outbox + 1, log: before.log + 1 })
    for (const table of ["event_outbox", "event_log"]) {
      const { rows } = await fleet.db().query<{ n: string }>(
        `SELECT count(*) AS n FROM ${table} WHERE data::text LIKE '%' || $1 || '%' OR NOT (type LIKE ANY ($2))`,
        [marker, ["project.created", "member.%", "message.%"]]
      )
      expect(Number(rows[0]!.n), table).toBe(0)
    }
  })

  return {
    world: () => world,
    observers: () => observers,
    closeAll: () => {
      for (const c of fleet.connections.splice(0)) closeConn(c)
    }
  }
}

/**
 * `user`'s only connection is on `victim`, seen present by the observers on the other nodes; the
 * victim is stopped by `signal`. Resolves with how long after the signal each observer saw the user
 * go, and when GET presence on each other node stopped listing them.
 */
const leavesWith = async (
  world: World,
  observers: ReadonlyArray<Conn>,
  survivors: ReadonlyArray<Node>,
  victim: Node,
  user: User,
  signal: "SIGKILL" | "SIGTERM"
) => {
  const stream = world.project
  await open(victim, `/api/projects/${world.projectId}/stream`, user.token, `${user.name}'s only connection`)
  const watching = observers.filter((c) => survivors.includes(c.node))
  expect(watching.length).toBeGreaterThanOrEqual(2)
  await Promise.all(watching.map((c) => frame(c, `${user.name} present`, isPresence(stream, user.id, true))))
  await presenceEverywhere(world, survivors, `${user.name} listed`, (u) => u.includes(user.id), FLEET_MS)
  const from = new Map(watching.map((c) => [c, c.sse.all.length]))

  const at = Date.now()
  victim.proc.child.kill(signal)
  const [seen, listed] = await Promise.all([
    Promise.all(
      watching.map((c) =>
        frame(
          c,
          `${user.name} gone after ${signal}`,
          isPresence(stream, user.id, false),
          PRESENCE_TTL_MS + 5_000,
          from.get(c)
        )
      )
    ),
    presenceEverywhere(world, survivors, `${user.name} gone`, (u) => !u.includes(user.id), PRESENCE_TTL_MS + 5_000)
  ])
  const exit = await victim.proc.exited
  // The others stay present: they have connections on the surviving nodes too.
  for (const node of survivors) {
    expect(await world.presenceOn(node)).toEqual(expect.arrayContaining([world.users.olga.id, world.users.vic.id]))
  }
  return { frames: seen.map((s) => s.at - at), listed: listed.map((t) => t - at), exit }
}

const BROKERS = ["postgres", "redis"] as const

// The two brokers' fleets run side by side (each on a database of its own); each one's cases in order.
describe.each(BROKERS)("live signals across a fleet, HERALD_BROKER=%s", { concurrent: true }, (broker) => {
  const scope = Effect.runSync(Scope.make())
  let databaseUrl: string
  let db: pg.Client
  let redis: RedisServer | undefined
  let running: Array<Node> = []
  const fleet: Fleet = { nodes: () => running, db: () => db, connections: [] }

  const startNode = async (name: string): Promise<Node> => ({
    name,
    connections: fleet.connections,
    ...await startServerNode({
      DATABASE_URL: databaseUrl,
      HERALD_ADMIN_TOKEN: ADMIN,
      HERALD_BROKER: broker,
      HERALD_PRESENCE_TTL: `${PRESENCE_TTL_MS / 1_000}s`,
      LOG_LEVEL: "warn",
      ...(redis === undefined ? {} : { REDIS_URL: redis.url })
    })
  })

  beforeAll(async () => {
    databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
    // Migrated here, so that both nodes can start at once (each would migrate an empty database).
    await Effect.runPromise(
      Effect.provide(
        runMigrations,
        Layer.merge(clientLayer({ url: Redacted.make(databaseUrl), maxConnections: 1 }), NodeContext.layer)
      )
    )
    if (broker === "redis") redis = await startRedis()
    running = await Promise.all([startNode("node A"), startNode("node B")])
    db = new pg.Client({ connectionString: databaseUrl })
    await db.connect()
  }, 600_000)

  afterAll(async () => {
    for (const c of fleet.connections.splice(0)) closeConn(c)
    await stopServerNodes(running)
    await db?.end()
    await redis?.stop()
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }, 60_000)

  /** Killed with SIGKILL, and the user left every surviving node after the kill, within the TTL + 2 s. */
  const expectLeftAfterKill = (exit: { readonly signal: NodeJS.Signals | null }, delays: ReadonlyArray<number>) => {
    expect(exit.signal).toBe("SIGKILL")
    for (const ms of delays) {
      expect(ms).toBeGreaterThanOrEqual(0)
      expect(ms).toBeLessThan(PRESENCE_TTL_MS + 2_000)
    }
  }

  describe.sequential("two nodes", () => {
    const cases = signalCases(fleet, 2)

    it(`kill -9: the node holding a user's only connection dies; the user leaves presence on the other node after the kill, within HERALD_PRESENCE_TTL (${PRESENCE_TTL_MS} ms) + 2 s`, async () => {
      const [a, b] = running as [Node, Node]
      const { frames, listed, exit } = await leavesWith(
        cases.world(),
        cases.observers(),
        [a],
        b,
        cases.world().users.kat,
        "SIGKILL"
      )
      expectLeftAfterKill(exit, [...frames, ...listed])
      running = [a]
      cases.closeAll()
    })
  })

  describe.sequential("three nodes", () => {
    beforeAll(async () => {
      // Two nodes join the survivor of the two-node cases: they learn who is present from its beats.
      running = [running[0]!, ...await Promise.all([startNode("node B'"), startNode("node C")])]
    }, 120_000)

    const cases = signalCases(fleet, 3)

    it(`kill -9: the node holding a user's only connection dies; the user leaves presence on both other nodes after the kill, within HERALD_PRESENCE_TTL (${PRESENCE_TTL_MS} ms) + 2 s`, async () => {
      const [a, b, c] = running as [Node, Node, Node]
      const { frames, listed, exit } = await leavesWith(
        cases.world(),
        cases.observers(),
        [a, b],
        c,
        cases.world().users.kat,
        "SIGKILL"
      )
      expectLeftAfterKill(exit, [...frames, ...listed])
      running = [a, b]
    })

    it("SIGTERM: a node shutting down says bye — its users leave presence on the other node at once, long before the TTL", async () => {
      const [a, b] = running as [Node, Node]
      const { frames, listed, exit } = await leavesWith(
        cases.world(),
        cases.observers(),
        [a],
        b,
        cases.world().users.sam,
        "SIGTERM"
      )
      expect(exit.code).toBe(0)
      // Expiry could not come before TTL − the beat interval (2 s): sooner means the node said so.
      for (const ms of [...frames, ...listed]) expect(ms).toBeLessThan(1_500)
      running = [a]
      cases.closeAll()
    })
  })
})
