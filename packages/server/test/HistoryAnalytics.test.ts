/**
 * History and analytics over real HTTP, against real PostgreSQL, with the server's own background
 * materializer (the README's G5, G6; docs/history-analytics.md). Nothing here sleeps a fixed
 * time: a test that needs the log to hold everything committed so far waits (boundedly) until the
 * server's `asOf` says so.
 *
 * - analytics (summary and timeseries, every bucket, with and without `type`) equal a
 *   recomputation from the `messages` table and from what a random scenario did (property test);
 * - history pages cover each stream's seqs once, in order, with `nextAfter` as documented; `type`
 *   filters; the workspace history is the caller's own stream only;
 * - `asOf` never runs ahead of an in-flight transaction's event, catches up, never moves back;
 * - pruned outbox rows are still served by history and SSE replay;
 * - non-members get 404 on all four endpoints; another member's workspace never shows;
 * - bad parameters are 400 naming the field; the accepted boundaries answer 200.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Events, type Ids } from "@herald/domain"
import { Effect, FastCheck, Option, Runtime } from "effect"
import { randomUUID } from "node:crypto"
import { EventLogStore } from "../src/eventlog/EventLogStore.js"
import { eventColumns, type EventRow, toWire } from "../src/events/EventRow.js"
import { inFlightEvent } from "./support/ChatHarness.js"
import { addMember, createProject, eventually, expectStatus, get, post, send, show } from "./support/HttpTesting.js"
import { awaitEvents, openSse } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

/** Live clock: the server's materializer polls and coalesces in real time. */
// `layer` rather than `it.layer`: the same function, but only its signature accepts this option.
const live = { excludeTestServices: true } as const
const ServerLive = testServerLayer({ pollIntervalMs: 50 })

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR
const BUCKET_MS = { minute: MINUTE, hour: HOUR, day: DAY } as const
type Bucket = keyof typeof BUCKET_MS
const BUCKETS: ReadonlyArray<Bucket> = ["minute", "hour", "day"]
const TYPES: ReadonlyArray<Events.EventType> = [
  "project.created",
  "member.added",
  "member.removed",
  "message.created",
  "message.edited",
  "message.deleted"
]

// ---------------------------------------------------------------------------------------------
// Harness helpers

type Wire = Events.EventWire

const query = (params: Record<string, string | number | undefined>) => {
  const q = new URLSearchParams()
  for (const [k, v] of Object.entries(params)) if (v !== undefined) q.set(k, String(v))
  const s = q.toString()
  return s === "" ? "" : `?${s}`
}

const iso = (ms: number) => new Date(ms).toISOString()

/** The database clock, read after everything committed so far. */
const dbNow = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.orDie(Effect.map(sql<{ now: Date }>`SELECT clock_timestamp() AS now`, ([r]) => r!.now.getTime()))
)

const summaryPath = (projectId: string, range: { from?: number; to?: number } = {}) =>
  `/api/projects/${projectId}/analytics/summary${
    query({
      from: range.from === undefined ? undefined : iso(range.from),
      to: range.to === undefined ? undefined : iso(range.to)
    })
  }`

/** Waits until the server says every event committed before `atLeast` is in the log. */
const waitForAsOf = (as: TestUser, projectId: Ids.ProjectId, atLeast: number) =>
  eventually(
    `asOf ≥ ${iso(atLeast)}`,
    Effect.map(get(as, summaryPath(projectId)), (body) =>
      body.asOf !== null && Date.parse(body.asOf) >= atLeast ? Option.some(Date.parse(body.asOf)) : Option.none())
  )

/**
 * Reads a whole history with `after`/`limit`, checking every page on the way: ascending seqs, at
 * most `limit` items, `nextAfter` = the last seq returned, and null exactly on the last page.
 */
const readHistory = (as: TestUser, path: string, limit: number, type?: Events.EventType) =>
  Effect.gen(function*() {
    const items: Array<Wire> = []
    let after = 0
    for (let pages = 0; pages < 1_000; pages++) {
      const page = yield* get(as, `${path}${query({ after, limit, type })}`)
      const seqs = (page.items as Array<Wire>).map((e) => e.seq)
      expect(seqs.length).toBeLessThanOrEqual(limit)
      expect(seqs.every((s, i) => s > (i === 0 ? after : seqs[i - 1]!))).toBe(true)
      items.push(...page.items)
      if (page.nextAfter === null) {
        // The last page: asking again after its last seq gives nothing more.
        const last = seqs.length === 0 ? after : seqs[seqs.length - 1]!
        const beyond = yield* get(as, `${path}${query({ after: last, limit, type })}`)
        expect(beyond).toEqual({ items: [], nextAfter: null, heldFrom: null })
        return items
      }
      expect(seqs.length, "a page with a next page is full").toBe(limit)
      expect(page.nextAfter).toBe(seqs[seqs.length - 1])
      after = page.nextAfter
    }
    return yield* Effect.die(new Error("history did not end"))
  })

const projectHistory = (projectId: string) => `/api/projects/${projectId}/events`
const workspaceHistory = (projectId: string) => `/api/projects/${projectId}/workspace/events`

/** The outbox's envelopes of a stream, as the database holds them. */
const outboxEnvelopes = (stream: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(Effect.map(
      sql<EventRow>`
        SELECT ${sql.literal(eventColumns)} FROM event_outbox WHERE stream_id = ${stream} ORDER BY seq`,
      (rows) => rows.map(toWire)
    )))

const countBy = <A>(items: ReadonlyArray<A>, key: (a: A) => string) => {
  const counts: Record<string, number> = {}
  for (const a of items) counts[key(a)] = (counts[key(a)] ?? 0) + 1
  return counts
}

const withoutZeros = (counts: Record<string, number>) =>
  Object.fromEntries(Object.entries(counts).filter(([, n]) => n !== 0))

/** topAuthors: most messages first, as a set of {userId, messages}. */
const expectTopAuthors = (
  actual: ReadonlyArray<{ userId: string; messages: number }>,
  expected: Record<string, number>
) => {
  for (let i = 1; i < actual.length; i++) expect(actual[i]!.messages).toBeLessThanOrEqual(actual[i - 1]!.messages)
  const sortById = (xs: ReadonlyArray<{ userId: string; messages: number }>) =>
    [...xs].sort((a, b) => a.userId < b.userId ? -1 : 1)
  expect(sortById(actual)).toEqual(
    sortById(Object.entries(expected).map(([userId, messages]) => ({ userId, messages })))
  )
}

/**
 * Checks a timeseries against `[from, to)`: contiguous UTC buckets from the bucket holding `from`
 * up to the last one starting before `to`, each with the count of `times` inside it.
 */
const expectSeries = (
  body: any,
  bucket: Bucket,
  range: { readonly from: number; readonly to: number },
  times: ReadonlyArray<number>,
  label: string
) => {
  const size = BUCKET_MS[bucket]
  const expected: Array<{ t: number; count: number }> = []
  for (let t = Math.floor(range.from / size) * size; t < range.to; t += size) expected.push({ t, count: 0 })
  for (const time of times) {
    if (time < range.from || time >= range.to) continue
    const i = Math.floor(time / size) - Math.floor(range.from / size)
    expected[i]!.count += 1
  }
  expect(body.bucket, label).toBe(bucket)
  const actual = (body.points as Array<{ t: string; count: number }>).map((p) => ({
    t: Date.parse(p.t),
    count: p.count
  }))
  expect(actual.map((p) => iso(p.t)), `${label}: bucket starts`).toEqual(expected.map((p) => iso(p.t)))
  expect(actual, `${label}: counts`).toEqual(expected)
}

// ---------------------------------------------------------------------------------------------
// The property: analytics equal a recomputation

type Op =
  | { readonly _tag: "post"; readonly actor: number; readonly workspace: boolean; readonly worker: boolean }
  | { readonly _tag: "edit"; readonly actor: number; readonly pick: number }
  | { readonly _tag: "delete"; readonly actor: number; readonly pick: number }
  | { readonly _tag: "add"; readonly target: number }
  | { readonly _tag: "remove"; readonly target: number }

const actor = FastCheck.nat(3)
const target = FastCheck.integer({ min: 1, max: 3 })
const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  {
    weight: 6,
    arbitrary: FastCheck.record({
      _tag: FastCheck.constant("post" as const),
      actor,
      // One post in four goes to the author's workspace.
      workspace: FastCheck.nat(3).map((n) => n === 0),
      worker: FastCheck.boolean()
    })
  },
  {
    weight: 3,
    arbitrary: FastCheck.record({ _tag: FastCheck.constant("edit" as const), actor, pick: FastCheck.nat() })
  },
  {
    weight: 2,
    arbitrary: FastCheck.record({ _tag: FastCheck.constant("delete" as const), actor, pick: FastCheck.nat() })
  },
  { weight: 1, arbitrary: FastCheck.record({ _tag: FastCheck.constant("add" as const), target }) },
  { weight: 1, arbitrary: FastCheck.record({ _tag: FastCheck.constant("remove" as const), target }) }
)
const scenario = FastCheck.record({
  initialMembers: FastCheck.subarray([1, 2, 3], { minLength: 1 }),
  ops: FastCheck.array(op, { minLength: 8, maxLength: 24 }),
  /** Page size for reading history back. */
  limit: FastCheck.integer({ min: 1, max: 5 }),
  /** Two positions in the project history: a sub-range [from, to) cut at event times. */
  cut: FastCheck.tuple(FastCheck.nat(), FastCheck.nat()),
  /** Sub-millisecond offsets keep the range edges off bucket boundaries. */
  skew: FastCheck.integer({ min: 1, max: 59_999 })
})
type Scenario = typeof scenario extends FastCheck.Arbitrary<infer A> ? A : never

interface MessageRow {
  readonly id: string
  readonly authorId: string
  readonly scope: "project" | "workspace"
  readonly createdAt: Date
  readonly deletedAt: Date | null
}

const runScenario = (s: Scenario) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const sql = yield* SqlClient.SqlClient
    const users: Array<TestUser> = yield* Effect.forEach([0, 1, 2, 3], (i) => server.user(`u${i}`))
    const owner = users[0]!
    const t0 = yield* dbNow
    const projectId = (yield* createProject(owner)).id

    // The model: what the scenario did, as the API answered it.
    const members = new Set<number>([0])
    let added = 0
    let removed = 0
    let edited = 0
    const posted: Array<{ readonly id: string; readonly author: number; deleted: boolean }> = []
    for (const t of s.initialMembers) {
      yield* addMember(owner, projectId, users[t]!)
      members.add(t)
      added++
    }
    for (const o of s.ops) {
      switch (o._tag) {
        case "post": {
          const res = yield* send(
            users[o.actor],
            "POST",
            `/api/projects/${projectId}/${o.workspace ? "workspace/" : ""}messages`,
            o.workspace ? { body: `w${o.actor}`, role: o.worker ? "worker" : "user" } : { body: `m${o.actor}` }
          )
          expectStatus(res, members.has(o.actor) ? 201 : 404, "post")
          if (res.status === 201 && !o.workspace) {
            posted.push({ id: res.body.message.id, author: o.actor, deleted: false })
          }
          break
        }
        case "edit": {
          const mine = posted.filter((m) => m.author === o.actor)
          if (mine.length === 0) break
          const m = mine[o.pick % mine.length]!
          const res = yield* send(users[o.actor], "PATCH", `/api/projects/${projectId}/messages/${m.id}`, {
            body: "edited"
          })
          expectStatus(res, !members.has(o.actor) ? 404 : m.deleted ? 409 : 200, "edit")
          if (res.status === 200) edited++
          break
        }
        case "delete": {
          if (posted.length === 0) break
          const m = posted[o.pick % posted.length]!
          const res = yield* send(users[o.actor], "DELETE", `/api/projects/${projectId}/messages/${m.id}`)
          expectStatus(res, !members.has(o.actor) ? 404 : m.author === o.actor || o.actor === 0 ? 204 : 403, "delete")
          if (res.status === 204) m.deleted = true
          break
        }
        case "add": {
          const res = yield* send(owner, "POST", `/api/projects/${projectId}/members`, { userId: users[o.target]!.id })
          expectStatus(res, members.has(o.target) ? 409 : 201, "add")
          if (res.status === 201) {
            members.add(o.target)
            added++
          }
          break
        }
        case "remove": {
          const res = yield* send(owner, "DELETE", `/api/projects/${projectId}/members/${users[o.target]!.id}`)
          expectStatus(res, members.has(o.target) ? 204 : 404, "remove")
          if (res.status === 204) {
            members.delete(o.target)
            removed++
          }
          break
        }
      }
    }
    const t1 = yield* dbNow
    yield* waitForAsOf(owner, projectId, t1)

    // The recomputation: messages and authors from the `messages` table, the rest from the model.
    const rows = yield* Effect.orDie(sql<MessageRow>`
      SELECT id, author_id, scope, created_at, deleted_at FROM messages WHERE project_id = ${projectId}`)
    const projectMessages = rows.filter((r) => r.scope === "project")
    const deletedMessages = projectMessages.filter((r) => r.deletedAt !== null)
    const byType = withoutZeros({
      "project.created": 1,
      "member.added": added,
      "member.removed": removed,
      "message.created": projectMessages.length,
      "message.edited": edited,
      "message.deleted": deletedMessages.length
    })
    const total = Object.values(byType).reduce((a, b) => a + b, 0)
    const activeUsers = new Set([owner.id, ...projectMessages.map((r) => r.authorId)]).size
    const authors = countBy(projectMessages, (r) => r.authorId)
    const workspaceEvents = (u: TestUser) => rows.filter((r) => r.scope === "workspace" && r.authorId === u.id).length

    // The full range, edges off every bucket boundary.
    const full = { from: t0 - 3 * DAY - s.skew, to: t1 + DAY + s.skew }
    for (const [i, u] of users.entries()) {
      const res = yield* send(u, "GET", summaryPath(projectId, full))
      if (!members.has(i)) {
        // A removed (or never added) user sees nothing of the project.
        expect(res.status, show(res)).toBe(404)
        continue
      }
      expect(res.status, show(res)).toBe(200)
      const summary = res.body
      expect(summary.projectId).toBe(projectId)
      expect(Date.parse(summary.from)).toBe(full.from)
      expect(Date.parse(summary.to)).toBe(full.to)
      expect(Date.parse(summary.asOf)).toBeGreaterThanOrEqual(t1)
      expect(summary.events.total).toBe(total)
      expect(withoutZeros(summary.events.byType)).toEqual(byType)
      expect(summary.messages).toEqual({
        created: projectMessages.length,
        edited,
        deleted: deletedMessages.length
      })
      expect(summary.activeUsers).toBe(activeUsers)
      expectTopAuthors(summary.topAuthors, authors)
      // Only the caller's own workspace is counted.
      expect(summary.workspace).toEqual({ events: workspaceEvents(u) })
    }

    // History read back in pages: the same events, per type, as the recomputation.
    const history = yield* readHistory(owner, projectHistory(projectId), s.limit)
    expect(history.map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    expect(countBy(history, (e) => e.type)).toEqual(byType)
    const times = (type?: Events.EventType) =>
      history.filter((e) => type === undefined || e.type === type).map((e) => Date.parse(e.occurredAt))

    // Timeseries: every bucket, with and without `type`; sums equal the totals, buckets cover the range.
    const ranges: Record<Bucket, { from: number; to: number }> = {
      minute: { from: t0 - 7 * MINUTE - s.skew, to: t1 + 3 * MINUTE + s.skew },
      hour: { from: t0 - 5 * HOUR - s.skew, to: t1 + 2 * HOUR + s.skew },
      day: full
    }
    for (const bucket of BUCKETS) {
      const range = ranges[bucket]
      for (const type of [undefined, ...TYPES]) {
        const label = `${bucket}${type === undefined ? "" : ` ${type}`}`
        const body = yield* get(
          owner,
          `/api/projects/${projectId}/analytics/timeseries${
            query({ bucket, from: iso(range.from), to: iso(range.to), type })
          }`
        )
        expect(Date.parse(body.asOf), label).toBeGreaterThanOrEqual(t1)
        const sum = (body.points as Array<{ count: number }>).reduce((a, p) => a + p.count, 0)
        expect(sum, label).toBe(type === undefined ? total : byType[type] ?? 0)
        // Message creations and deletions are placed by the messages table's own timestamps.
        const when = type === "message.created"
          ? projectMessages.map((r) => r.createdAt.getTime())
          : type === "message.deleted"
          ? deletedMessages.map((r) => r.deletedAt!.getTime())
          : times(type)
        expectSeries(body, bucket, range, when, label)
      }
    }

    // A sub-range cut at two event times: [from, to) by occurredAt, recomputed from the history.
    const [i, j] = [s.cut[0] % history.length, s.cut[1] % history.length].sort((a, b) => a - b)
    const cut = { from: Date.parse(history[i!]!.occurredAt), to: Date.parse(history[j!]!.occurredAt) }
    const inCut = history.filter((e) => Date.parse(e.occurredAt) >= cut.from && Date.parse(e.occurredAt) < cut.to)
    const ownWorkspace = yield* readHistory(owner, workspaceHistory(projectId), 1_000)
    const part = yield* get(owner, summaryPath(projectId, cut))
    expect(part.events.total).toBe(inCut.length)
    expect(withoutZeros(part.events.byType)).toEqual(countBy(inCut, (e) => e.type))
    expect(part.messages).toEqual({
      created: inCut.filter((e) => e.type === "message.created").length,
      edited: inCut.filter((e) => e.type === "message.edited").length,
      deleted: inCut.filter((e) => e.type === "message.deleted").length
    })
    expect(part.activeUsers).toBe(new Set(inCut.map((e) => e.actorId)).size)
    expectTopAuthors(part.topAuthors, countBy(inCut.filter((e) => e.type === "message.created"), (e) => e.actorId))
    expect(part.workspace.events).toBe(
      ownWorkspace.filter((e) => Date.parse(e.occurredAt) >= cut.from && Date.parse(e.occurredAt) < cut.to).length
    )
    if (cut.from < cut.to) {
      const series = yield* get(
        owner,
        `/api/projects/${projectId}/analytics/timeseries${
          query({ bucket: "minute", from: iso(cut.from), to: iso(cut.to) })
        }`
      )
      expectSeries(series, "minute", cut, times(), "minute over the cut")
    }
  })

layer(ServerLive, live)("analytics", (it) => {
  it.effect(
    "after random posts, edits, deletes and member changes, summary and timeseries equal a recomputation",
    () =>
      Effect.gen(function*() {
        const runtime = yield* Effect.runtime<TestServer | SqlClient.SqlClient>()
        yield* Effect.promise(() =>
          FastCheck.assert(
            FastCheck.asyncProperty(scenario, (s) => Runtime.runPromise(runtime)(runScenario(s))),
            { numRuns: 15 }
          )
        )
      }),
    60_000
  )

  it.effect("without from and to, the summary covers the last 30 days up to now", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const projectId = (yield* createProject(alice)).id
      yield* post(alice, projectId, { body: "hello" })
      const before = yield* dbNow
      yield* waitForAsOf(alice, projectId, before)
      const summary = yield* get(alice, summaryPath(projectId))
      const to = Date.parse(summary.to)
      expect(to).toBeGreaterThanOrEqual(before)
      expect(to - Date.parse(summary.from)).toBe(30 * DAY)
      expect(summary.events.byType).toEqual({ "project.created": 1, "message.created": 1 })
      // Only `from`: up to now. Only `to`: the 30 days before it — an old `to` sees nothing.
      const fromOnly = yield* get(alice, summaryPath(projectId, { from: before - HOUR }))
      expect(fromOnly.events.total).toBe(2)
      const old = yield* get(alice, summaryPath(projectId, { to: before - DAY }))
      expect(Date.parse(old.from)).toBe(before - 31 * DAY)
      expect(old.events.total).toBe(0)
    }))
})

// ---------------------------------------------------------------------------------------------
// History

layer(ServerLive, live)("history", (it) => {
  /** alice owns the project, bob is a member; both post in the project and in their workspaces. */
  const fixture = Effect.gen(function*() {
    const server = yield* TestServer
    const alice = yield* server.user("alice")
    const bob = yield* server.user("bob")
    const projectId = (yield* createProject(alice, "history")).id
    yield* addMember(alice, projectId, bob)
    const posts: Array<string> = []
    for (let i = 0; i < 6; i++) {
      posts.push((yield* post(i % 2 === 0 ? alice : bob, projectId, { body: `m${i}` })).message.id)
    }
    for (const id of [posts[0]!, posts[2]!]) {
      const res = yield* send(alice, "PATCH", `/api/projects/${projectId}/messages/${id}`, { body: "edited" })
      expect(res.status, show(res)).toBe(200)
    }
    expect((yield* send(alice, "DELETE", `/api/projects/${projectId}/messages/${posts[1]!}`)).status).toBe(204)
    for (let i = 0; i < 7; i++) yield* post(alice, projectId, { body: `alice's note ${i}`, workspace: true })
    for (let i = 0; i < 4; i++) yield* post(bob, projectId, { body: `bob's note ${i}`, workspace: true })
    yield* waitForAsOf(alice, projectId, yield* dbNow)
    return {
      alice,
      bob,
      projectId,
      // created, member.added, 6 posts, 2 edits, 1 delete
      projectCount: 11
    }
  })

  it.effect("pages of the project history, any limit, cover every seq once in ascending order, as the envelopes committed", () =>
    Effect.gen(function*() {
      const { alice, bob, projectCount, projectId } = yield* fixture
      const committed = yield* outboxEnvelopes(Events.projectStream(projectId as Ids.ProjectId))
      expect(committed).toHaveLength(projectCount)
      // 11 events: limits that divide it (1, 11) and ones that do not; the last page is null-terminated.
      for (const limit of [1, 3, 4, 10, 11, 1000]) {
        expect(yield* readHistory(alice, projectHistory(projectId), limit)).toEqual(committed)
      }
      // Any member reads the same project history.
      expect(yield* readHistory(bob, projectHistory(projectId), 3)).toEqual(committed)
      // Defaults (no after, no limit): everything in one page.
      expect(yield* get(alice, projectHistory(projectId))).toEqual({
        items: committed,
        nextAfter: null,
        heldFrom: null
      })
    }))

  it.effect("limit 3: nextAfter is the last seq returned, and null on the last page", () =>
    Effect.gen(function*() {
      const { alice, projectId } = yield* fixture
      const pages: Array<{ seqs: Array<number>; nextAfter: number | null }> = []
      let after = 0
      while (true) {
        const page = yield* get(alice, `${projectHistory(projectId)}?after=${after}&limit=3`)
        pages.push({ seqs: page.items.map((e: Wire) => e.seq), nextAfter: page.nextAfter })
        if (page.nextAfter === null) break
        after = page.nextAfter
      }
      expect(pages).toEqual([
        { seqs: [1, 2, 3], nextAfter: 3 },
        { seqs: [4, 5, 6], nextAfter: 6 },
        { seqs: [7, 8, 9], nextAfter: 9 },
        { seqs: [10, 11], nextAfter: null }
      ])
      // Starting in the middle, and past the end.
      expect((yield* get(alice, `${projectHistory(projectId)}?after=7&limit=3`)).items.map((e: Wire) => e.seq)).toEqual(
        [8, 9, 10]
      )
      expect(yield* get(alice, `${projectHistory(projectId)}?after=8&limit=3`)).toMatchObject({ nextAfter: null })
      expect(yield* get(alice, `${projectHistory(projectId)}?after=11`)).toEqual({
        items: [],
        nextAfter: null,
        heldFrom: null
      })
      expect(yield* get(alice, `${projectHistory(projectId)}?after=500`)).toEqual({
        items: [],
        nextAfter: null,
        heldFrom: null
      })
    }))

  it.effect("type returns only events of that type, paged the same way", () =>
    Effect.gen(function*() {
      const { alice, projectId } = yield* fixture
      const committed = yield* outboxEnvelopes(Events.projectStream(projectId as Ids.ProjectId))
      for (const type of TYPES) {
        const expected = committed.filter((e) => e.type === type)
        for (const limit of [1, 2, 1000]) {
          expect(yield* readHistory(alice, projectHistory(projectId), limit, type), `${type}, limit ${limit}`).toEqual(
            expected
          )
        }
      }
      expect((yield* readHistory(alice, projectHistory(projectId), 2, "message.edited")).map((e) => e.seq)).toEqual([
        9,
        10
      ])
      expect(yield* readHistory(alice, workspaceHistory(projectId), 3, "member.added")).toEqual([])
    }))

  it.effect("the workspace history is the caller's own workspace stream, and only it", () =>
    Effect.gen(function*() {
      const { alice, bob, projectId } = yield* fixture
      for (const [who, count] of [[alice, 7], [bob, 4]] as const) {
        const stream = Events.workspaceStream(projectId as Ids.ProjectId, who.id as Ids.UserId)
        const committed = yield* outboxEnvelopes(stream)
        expect(committed).toHaveLength(count)
        for (const limit of [1, 3, 1000]) {
          const items = yield* readHistory(who, workspaceHistory(projectId), limit)
          expect(items.every((e) => e.stream === stream && e.actorId === who.id && e.projectId === projectId)).toBe(
            true
          )
          expect(items).toEqual(committed)
        }
        expect(yield* readHistory(who, workspaceHistory(projectId), 3, "message.created")).toEqual(committed)
      }
      // The project history never carries a workspace event.
      const project = yield* readHistory(alice, projectHistory(projectId), 1000)
      expect(project.every((e) => e.stream === `project:${projectId}`)).toBe(true)
    }))
})

// ---------------------------------------------------------------------------------------------
// asOf with the background materializer

const openTransaction = (stream: Events.StreamId, projectId: Ids.ProjectId, actorId: Ids.UserId) =>
  inFlightEvent(stream, projectId, actorId, "slow worker")

layer(ServerLive, live)("asOf", (it) => {
  it.effect("an in-flight transaction's event is never behind asOf: asOf passes its commit only once it is in the log", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const projectId = (yield* createProject(alice, "slow")).id
      const observed: Array<number> = []
      /** asOf as the summary reports it, recorded to check it never moves backwards. */
      const observeAsOf = Effect.map(get(alice, summaryPath(projectId)), (body) => {
        expect(body.asOf).not.toBeNull()
        observed.push(Date.parse(body.asOf))
        return Date.parse(body.asOf)
      })
      const workspaceSeqs = Effect.map(
        get(alice, workspaceHistory(projectId)),
        (page) => (page.items as Array<Wire>).map((e) => e.seq)
      )
      yield* waitForAsOf(alice, projectId, yield* dbNow)

      const inFlight = yield* openTransaction(
        Events.workspaceStream(projectId as Ids.ProjectId, alice.id as Ids.UserId),
        projectId as Ids.ProjectId,
        alice.id as Ids.UserId
      )
      // Later transactions commit and are materialized while the first is still open …
      const later = yield* post(alice, projectId, { body: "after the slow one began" })
      yield* eventually(
        "the later event in the history",
        Effect.map(
          get(alice, projectHistory(projectId)),
          (page) => (page.items as Array<Wire>).some((e) => e.id === later.event.id) ? Option.some(true) : Option.none()
        )
      )
      // … but the open transaction's event is not there: it is not committed.
      for (let i = 0; i < 5; i++) {
        yield* observeAsOf
        expect(yield* workspaceSeqs).toEqual([])
        yield* Effect.sleep("30 millis")
      }

      yield* inFlight.commit
      const committedBy = yield* dbNow
      // From the commit on: whenever asOf is past the commit, the event must be in the log.
      yield* eventually(
        "asOf past the commit with the event in the log",
        Effect.gen(function*() {
          const asOf = yield* observeAsOf
          const seqs = yield* workspaceSeqs
          if (asOf >= committedBy) {
            expect(seqs, `asOf ${iso(asOf)} is past the commit (≤ ${iso(committedBy)})`).toEqual([inFlight.event.seq])
            return Option.some(true)
          }
          return Option.none()
        })
      )
      const summary = yield* get(alice, summaryPath(projectId))
      expect(summary.workspace.events).toBe(1)
      expect(summary.events.byType).toEqual({ "project.created": 1, "message.created": 1 })
      for (let i = 1; i < observed.length; i++) expect(observed[i]!).toBeGreaterThanOrEqual(observed[i - 1]!)
    }))

  it.effect("asOf follows the writes: after a burst, every committed event is counted once asOf passes it", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const projectId = (yield* createProject(alice, "burst")).id
      yield* Effect.forEach(
        Array.from({ length: 30 }, (_, i) => i),
        (i) => post(alice, projectId, { body: `m${i}`, workspace: i % 3 === 0 }),
        {
          concurrency: 6
        }
      )
      const committedBy = yield* dbNow
      yield* waitForAsOf(alice, projectId, committedBy)
      const summary = yield* get(alice, summaryPath(projectId))
      expect(summary.events.byType).toEqual({ "project.created": 1, "message.created": 20 })
      expect(summary.workspace.events).toBe(10)
      const series = yield* get(alice, `/api/projects/${projectId}/analytics/timeseries?bucket=day`)
      expect(series.points.reduce((a: number, p: { count: number }) => a + p.count, 0)).toBe(21)
    }))
})

// ---------------------------------------------------------------------------------------------
// Prune keeps history

layer(ServerLive, live)("prune", (it) => {
  it.scoped("events pruned from the outbox are still served by history, analytics and SSE replay", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const store = yield* EventLogStore
      const alice = yield* server.user("alice")
      const projectId = (yield* createProject(alice, "pruned")).id
      for (let i = 0; i < 5; i++) yield* post(alice, projectId, { body: `m${i}` })
      for (let i = 0; i < 3; i++) yield* post(alice, projectId, { body: `n${i}`, workspace: true })
      const projectStream = Events.projectStream(projectId as Ids.ProjectId)
      const workspaceStream = Events.workspaceStream(projectId as Ids.ProjectId, alice.id as Ids.UserId)
      const project = yield* outboxEnvelopes(projectStream)
      const workspace = yield* outboxEnvelopes(workspaceStream)
      expect(project).toHaveLength(6)
      expect(workspace).toHaveLength(3)

      // Wait until the publisher and the materializer have handled every row, then prune them all.
      yield* eventually(
        "every row published and materialized",
        Effect.map(
          Effect.orDie(sql<{ n: number }>`
            SELECT count(*)::int AS n FROM event_outbox
            WHERE project_id = ${projectId} AND (status <> 'published' OR materialized_at IS NULL)`),
          ([r]) => r!.n === 0 ? Option.some(true) : Option.none()
        )
      )
      let pruned = 0
      while (true) {
        const n = yield* Effect.orDie(store.prune(0, 4))
        if (n === 0) break
        pruned += n
      }
      expect(pruned).toBe(9)
      expect(yield* outboxEnvelopes(projectStream)).toEqual([])
      expect(yield* outboxEnvelopes(workspaceStream)).toEqual([])

      expect(yield* readHistory(alice, projectHistory(projectId), 4)).toEqual(project)
      expect(yield* readHistory(alice, workspaceHistory(projectId), 2)).toEqual(workspace)
      const summary = yield* get(alice, summaryPath(projectId))
      expect(summary.events.byType).toEqual({ "project.created": 1, "message.created": 5 })
      expect(summary.workspace.events).toBe(3)

      // SSE replay from the beginning and from a Last-Event-ID, then live with no gap.
      const open = (path: string, options: { after?: string; lastEventId?: string }) =>
        openSse(path, { token: alice.token, ...options })
      const fromStart = yield* open(`/api/projects/${projectId}/stream`, { after: "0" })
      const fromThree = yield* open(`/api/projects/${projectId}/stream`, { lastEventId: "3" })
      const ownSpace = yield* open(`/api/projects/${projectId}/workspace/stream`, { after: "0" })
      expect([fromStart.status, fromThree.status, ownSpace.status]).toEqual([200, 200, 200])
      expect((yield* awaitEvents(fromStart, 6)).map((e) => e.data)).toEqual(project)
      expect((yield* awaitEvents(fromThree, 3)).map((e) => e.data)).toEqual(project.slice(3))
      expect((yield* awaitEvents(ownSpace, 3)).map((e) => e.data)).toEqual(workspace)
      const next = yield* post(alice, projectId, { body: "after the prune" })
      const caughtUp = yield* awaitEvents(fromStart, 7)
      expect(caughtUp.map((e) => Number(e.data.seq))).toEqual([1, 2, 3, 4, 5, 6, 7])
      expect(caughtUp[6]!.data.id).toBe(next.event.id)
      expect((yield* awaitEvents(fromThree, 4)).map((e) => Number(e.data.seq))).toEqual([4, 5, 6, 7])
    }))
})

// ---------------------------------------------------------------------------------------------
// Isolation (G5)

const ENDPOINTS = [
  (p: string) => `/api/projects/${p}/events`,
  (p: string) => `/api/projects/${p}/workspace/events`,
  (p: string) => `/api/projects/${p}/analytics/summary`,
  (p: string) => `/api/projects/${p}/analytics/timeseries?bucket=hour`
]

layer(ServerLive, live)("isolation", (it) => {
  it.effect("a non-member, a removed member and an unknown project all get the same 404 on all four endpoints", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const carol = yield* server.user("carol")
      const dave = yield* server.user("dave")
      const projectId = (yield* createProject(alice, "private")).id
      yield* addMember(alice, projectId, dave)
      yield* post(dave, projectId, { body: "dave was here" })
      yield* post(dave, projectId, { body: "dave's own note", workspace: true })
      expect((yield* send(alice, "DELETE", `/api/projects/${projectId}/members/${dave.id}`)).status).toBe(204)
      yield* waitForAsOf(alice, projectId, yield* dbNow)
      const unknown = randomUUID()
      for (const endpoint of ENDPOINTS) {
        // The member sees it, so the 404s below are about visibility, not a broken endpoint.
        expect((yield* send(alice, "GET", endpoint(projectId))).status).toBe(200)
        const missing = yield* send(carol, "GET", endpoint(unknown))
        expect(missing.status, show(missing)).toBe(404)
        expect(missing.body._tag).toBe("NotFound")
        for (const outsider of [carol, dave]) {
          const res = yield* send(outsider, "GET", endpoint(projectId))
          expect(res.status, show(res)).toBe(404)
          expect(res.body).toEqual(missing.body)
        }
        const anonymous = yield* send(undefined, "GET", endpoint(projectId))
        expect(anonymous.status, show(anonymous)).toBe(401)
      }
    }))

  it.effect("another member's workspace events never appear in workspace/events, summary or timeseries", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const bob = yield* server.user("bob")
      const projectId = (yield* createProject(alice, "shared")).id
      yield* addMember(alice, projectId, bob)
      yield* post(alice, projectId, { body: "hello bob" })
      for (let i = 0; i < 2; i++) yield* post(alice, projectId, { body: `alice ${i}`, workspace: true })
      for (let i = 0; i < 5; i++) yield* post(bob, projectId, { body: `bob ${i}`, workspace: true })
      // Another project of bob's, busy: none of it may leak into this one.
      const other = (yield* createProject(bob, "elsewhere")).id
      for (let i = 0; i < 3; i++) yield* post(bob, other, { body: `o${i}` })
      yield* post(bob, other, { body: "other workspace", workspace: true })
      yield* waitForAsOf(alice, projectId, yield* dbNow)

      for (const [who, count] of [[alice, 2], [bob, 5]] as const) {
        const own = Events.workspaceStream(projectId as Ids.ProjectId, who.id as Ids.UserId)
        const items = yield* readHistory(who, workspaceHistory(projectId), 3)
        expect(items.map((e) => e.stream)).toEqual(Array.from({ length: count }, () => own))
        const summary = yield* get(who, summaryPath(projectId))
        expect(summary.workspace).toEqual({ events: count })
        // The project figures are the project stream's only, the same for both.
        expect(summary.events.byType).toEqual({ "project.created": 1, "member.added": 1, "message.created": 1 })
        expect(summary.activeUsers).toBe(1)
        expect(summary.topAuthors).toEqual([{ userId: alice.id, messages: 1 }])
        const series = yield* get(
          who,
          `/api/projects/${projectId}/analytics/timeseries?bucket=day&type=message.created`
        )
        expect(series.points.reduce((a: number, p: { count: number }) => a + p.count, 0)).toBe(1)
      }
      const project = yield* readHistory(alice, projectHistory(projectId), 1000)
      expect(project.every((e) => e.projectId === projectId && e.stream === `project:${projectId}`)).toBe(true)
      // alice is not a member of bob's other project.
      expect((yield* send(alice, "GET", workspaceHistory(other))).status).toBe(404)
    }))
})

// ---------------------------------------------------------------------------------------------
// Bad parameters

/**
 * Whether a 400 names the field: in a schema issue's `path`, the error's `field`, or (for errors
 * without either) its message.
 */
const namesField = (body: any, field: string): boolean =>
  Array.isArray(body?.issues)
    ? body.issues.some((issue: any) => Array.isArray(issue?.path) && issue.path.includes(field))
    : body?.field === field || (typeof body?.message === "string" && body.message.includes(field))

layer(ServerLive, live)("bad parameters", (it) => {
  const fixture = Effect.gen(function*() {
    const server = yield* TestServer
    const alice = yield* server.user("alice")
    const projectId = (yield* createProject(alice, "params")).id
    yield* post(alice, projectId, { body: "one" })
    return { alice, projectId }
  })

  const historyCases: ReadonlyArray<readonly [string, string]> = [
    ["after=-1", "after"],
    ["after=abc", "after"],
    ["after=1.5", "after"],
    ["after=99999999999999999999", "after"],
    ["limit=0", "limit"],
    ["limit=1001", "limit"],
    ["limit=-3", "limit"],
    ["limit=99999999999999999999", "limit"],
    ["limit=2.5", "limit"],
    ["limit=ten", "limit"],
    ["type=message.exploded", "type"],
    ["type=MESSAGE.CREATED", "type"]
  ]
  const dateCases: ReadonlyArray<readonly [string, string]> = [
    ["from=yesterday", "from"],
    ["from=2026-13-01", "from"],
    // Days that do not exist must not roll over into the next month.
    ["from=2026-02-30", "from"],
    ["to=2026-04-31T10:00:00Z", "to"],
    ["from=2026-01-01T25:00:00Z", "from"],
    ["to=2026-01-01T10:00:00", "to"],
    ["to=2026-01-01T10:00", "to"],
    ["to=1767261600000", "to"],
    ["from=2026-02-01&to=2026-01-01", "from"],
    ["from=2026-01-01T10:00:00.001Z&to=2026-01-01T10:00:00Z", "from"]
  ]
  const timeseriesCases: ReadonlyArray<readonly [string, string]> = [
    ["", "bucket"],
    ["bucket=week", "bucket"],
    ["bucket=MINUTE", "bucket"],
    ["bucket=day&type=bogus", "type"],
    ...dateCases.map(([q, f]) => [`bucket=day&${q}`, f] as const),
    // Too many buckets: a year of minutes, two years of hours.
    ["bucket=minute&from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "bucket"],
    ["bucket=hour&from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "bucket"],
    ["bucket=minute&from=2026-01-01T00:00:00Z&to=2026-01-07T22:41:00Z", "bucket"]
  ]
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    ...historyCases.map(([q, f]) => ["events", q, f] as const),
    ...historyCases.map(([q, f]) => ["workspace/events", q, f] as const),
    ...dateCases.map(([q, f]) => ["analytics/summary", q, f] as const),
    ...timeseriesCases.map(([q, f]) => ["analytics/timeseries", q, f] as const)
  ]

  for (const [endpoint, q, field] of cases) {
    it.effect(`${endpoint}?${q} is a 400 naming ${field}`, () =>
      Effect.gen(function*() {
        const { alice, projectId } = yield* fixture
        const res = yield* send(alice, "GET", `/api/projects/${projectId}/${endpoint}?${q}`)
        expect(res.status, show(res)).toBe(400)
        expect(res.headers.get("content-type") ?? "").toContain("application/json")
        expect(typeof res.body._tag, show(res)).toBe("string")
        expect(typeof res.body.message, show(res)).toBe("string")
        expect(namesField(res.body, field), `the answer should name "${field}": ${show(res)}`).toBe(true)
      }))
  }

  it.effect("the accepted boundaries answer 200", () =>
    Effect.gen(function*() {
      const { alice, projectId } = yield* fixture
      const ok = (path: string) =>
        Effect.map(send(alice, "GET", `/api/projects/${projectId}/${path}`), (res) => {
          expect(res.status, `${path}: ${show(res)}`).toBe(200)
          return res.body
        })
      for (const endpoint of ["events", "workspace/events"]) {
        yield* ok(`${endpoint}?limit=1`)
        yield* ok(`${endpoint}?limit=1000`)
        yield* ok(`${endpoint}?after=0&limit=1000&type=message.created`)
        yield* ok(`${endpoint}?after=9007199254740991`)
      }
      yield* ok("analytics/summary?from=2026-01-01&to=2026-01-02")
      yield* ok(`analytics/summary?from=${encodeURIComponent("2026-01-01T10:30:00+05:30")}&to=2026-01-01T10:00:00.5Z`)
      // from = to is an empty range, not an error.
      const empty = yield* ok("analytics/summary?from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z")
      expect(empty.events.total).toBe(0)
      // Exactly 10 000 minute buckets is the most one request may ask for.
      const most = yield* ok("analytics/timeseries?bucket=minute&from=2026-01-01T00:00:00Z&to=2026-01-07T22:40:00Z")
      expect(most.points).toHaveLength(10_000)
      expect(most.points[0].t).toBe("2026-01-01T00:00:00.000Z")
      expect(most.points[9_999].t).toBe("2026-01-07T22:39:00.000Z")
      const days = yield* ok(
        `analytics/timeseries?bucket=day&from=${encodeURIComponent("2026-01-01T10:30:00+05:30")}&to=2026-01-03`
      )
      // 05:00Z on Jan 1 to midnight Jan 3: the UTC days Jan 1 and Jan 2.
      expect(days.points.map((p: { t: string }) => p.t)).toEqual([
        "2026-01-01T00:00:00.000Z",
        "2026-01-02T00:00:00.000Z"
      ])
    }))

  it.effect("a timeseries never has more than 10 000 points, also when from is not on a bucket boundary", () =>
    Effect.gen(function*() {
      const { alice, projectId } = yield* fixture
      // Exactly 10 000 minutes long, but starting mid-minute: it touches 10 001 minute buckets.
      const res = yield* send(
        alice,
        "GET",
        `/api/projects/${projectId}/analytics/timeseries?bucket=minute&from=2026-01-01T00:00:30Z&to=2026-01-07T22:40:30Z`
      )
      if (res.status === 200) expect(res.body.points.length).toBeLessThanOrEqual(10_000)
      else {
        expect(res.status, show(res)).toBe(400)
        expect(namesField(res.body, "bucket"), show(res)).toBe(true)
      }
    }))
})
