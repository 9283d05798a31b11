/**
 * `GET /api/stream` over real HTTP against real PostgreSQL (SPEC §5 "Multiplexed stream"): every
 * stream the caller may read on one connection, the `heads` first frame, per-stream exact resume
 * by an opaque cursor (`Last-Event-ID` or `?cursor=`), membership joining and leaving, isolation
 * and bad input. Events are checked per stream by the envelope's `stream` and `seq`, as a client
 * de-duplicates and orders them.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Deferred, Effect, FastCheck, Fiber, Schedule } from "effect"
import type { SseConnection, SseEvent } from "../../../test-support/SseClient.js"
import { EventReader } from "../src/stream/EventReader.js"
import { addMember, createProject, expectStatus, post, postMany, send } from "./support/HttpTesting.js"
import { awaitEvents, connectStalling, openSse, sseConnectionsGauge } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

const live = { excludeTestServices: true } as const

const projectStream = (projectId: string) => `project:${projectId}`
const workspaceStream = (projectId: string, userId: string) => `workspace:${projectId}:${userId}`

/** A multiplexed connection as `as`, resumed by `cursor` (sent as Last-Event-ID unless `byQuery`). */
const openMux = (
  as: { readonly token: string },
  options: { readonly cursor?: string; readonly byQuery?: boolean; readonly streams?: ReadonlyArray<string> } = {}
) => {
  const query = new URLSearchParams()
  if (options.streams !== undefined) query.set("streams", options.streams.join(","))
  if (options.cursor !== undefined && options.byQuery) query.set("cursor", options.cursor)
  const path = `/api/stream${query.size > 0 ? `?${query}` : ""}`
  return openSse(path, {
    token: as.token,
    ...(options.cursor !== undefined && !options.byQuery ? { lastEventId: options.cursor } : {})
  })
}

/** The events (not `heads`) of a connection, as `stream → seqs` in arrival order. */
const byStream = (events: ReadonlyArray<SseEvent>) => {
  const at = new Map<string, Array<number>>()
  for (const e of events) {
    if (e.event === "heads") continue
    const seqs = at.get(e.data.stream) ?? []
    seqs.push(e.data.seq)
    at.set(e.data.stream, seqs)
  }
  return at
}

/** Waits until the connection has received an event of `stream` with `seq` (fails with what came). */
const awaitSeq = (sse: SseConnection, stream: string, seq: number, timeoutMs = 10_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (sse.events.some((e) => e.data?.stream === stream && e.data?.seq === seq)) return
      await new Promise((r) => setTimeout(r, 10))
    }
    throw new Error(
      `no ${stream} seq ${seq} within ${timeoutMs} ms; got ${JSON.stringify([...byStream(sse.events)])}`
    )
  })

const lastCursor = (sse: SseConnection) => {
  const id = sse.events.at(-1)?.id
  expect(id, "the last frame has an id").toBeDefined()
  return id!
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i)

/** Every event of a stream in the database, ascending. */
const committed = (stream: string) =>
  Effect.flatMap(EventReader, (reader) => Effect.orDie(reader.range(stream, 0, undefined, 100_000)))

const removeMember = (owner: TestUser, projectId: Ids.ProjectId, user: { readonly id: Ids.UserId }) =>
  Effect.map(
    send(owner, "DELETE", `/api/projects/${projectId}/members/${user.id}`),
    (res) => expectStatus(res, 204, "remove member")
  )

layer(testServerLayer({ sseHeartbeatMs: 200 }), live)("GET /api/stream", (it) => {
  describe("wire format and heads", () => {
    it.scoped("answers an SSE stream whose first frame is `heads` with every stream the caller may read", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("me")
        const other = yield* server.user("other")
        const a = yield* createProject(me, "a")
        const b = yield* createProject(other, "b")
        yield* addMember(other, b.id, me)
        yield* postMany(me, a.id, 2)
        yield* post(me, b.id, { workspace: true })
        const hidden = yield* createProject(other, "not mine")

        const sse = yield* openMux(me)
        expect(sse.status).toBe(200)
        expect(sse.headers["content-type"]).toBe("text/event-stream")
        expect(sse.headers["cache-control"]).toBe("no-cache, no-transform")
        expect(sse.headers["x-accel-buffering"]).toBe("no")
        expect(sse.headers.connection).toBeUndefined()
        const [heads] = yield* awaitEvents(sse, 1)
        expect(sse.retry[0]).toBeGreaterThan(0)
        expect(heads!.event).toBe("heads")
        expect(heads!.data).toEqual({
          streams: {
            [projectStream(a.id)]: 3,
            [workspaceStream(a.id, me.id)]: 0,
            [projectStream(b.id)]: 2,
            [workspaceStream(b.id, me.id)]: 1
          }
        })
        expect(JSON.stringify(heads!.data)).not.toContain(hidden.id)
        expect(heads!.id).toMatch(/^[A-Za-z0-9_-]{1,1024}$/)

        // Then every stream, live: both projects and the caller's workspaces, frames like the per-stream ones.
        yield* post(other, b.id, { body: "in b" })
        yield* post(me, a.id, { workspace: true, body: "in my workspace" })
        yield* post(me, a.id, { body: "in a" })
        yield* awaitEvents(sse, 4)
        const frames = sse.events.slice(1)
        // Order is per stream (the spec promises nothing across streams).
        expect(frames.map((e) => [e.data.stream, e.data.seq, e.event]).sort()).toEqual([
          [projectStream(a.id), 4, "message.created"],
          [projectStream(b.id), 3, "message.created"],
          [workspaceStream(a.id, me.id), 1, "message.created"]
        ].sort())
        for (const e of frames) {
          expect(e.event).toBe(e.data.type)
          expect(e.id).toMatch(/^[A-Za-z0-9_-]{1,1024}$/)
        }
        expect(new Set(sse.events.map((e) => e.id)).size, "every frame has its own cursor").toBe(4)
      }))

    it.scoped("keeps the connection alive with comments while nothing happens", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("idle"))
        yield* createProject(me)
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        yield* Effect.sleep("700 millis")
        expect(sse.comments.filter((c) => c.includes("keepalive")).length).toBeGreaterThanOrEqual(2)
      }))

    it.scoped("?streams= narrows the connection to those streams", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("narrow"))
        const a = yield* createProject(me, "a")
        const b = yield* createProject(me, "b")
        const sse = yield* openMux(me, { streams: [projectStream(b.id)] })
        const [heads] = yield* awaitEvents(sse, 1)
        expect(heads!.data).toEqual({ streams: { [projectStream(b.id)]: 1 } })
        yield* post(me, a.id)
        yield* post(me, a.id, { workspace: true })
        yield* post(me, b.id)
        yield* awaitSeq(sse, projectStream(b.id), 2)
        expect([...byStream(sse.events)]).toEqual([[projectStream(b.id), [2]]])
      }))
  })

  describe("resume by cursor", () => {
    it.scoped("by Last-Event-ID and by ?cursor=: every later event of every stream, once, in order", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("resumer"))
        const projects = yield* Effect.forEach(range(1, 4), (i) => createProject(me, `p${i}`))
        const first = yield* openMux(me)
        yield* awaitEvents(first, 1)
        for (const p of projects) yield* postMany(me, p.id, 2, { concurrency: 1 })
        yield* awaitSeq(first, projectStream(projects[3]!.id), 3)
        const cursor = lastCursor(first)
        first.close()

        // While away: more in every stream, the workspaces too.
        for (const p of projects) {
          yield* postMany(me, p.id, 3, { concurrency: 1 })
          yield* post(me, p.id, { workspace: true })
        }
        for (const byQuery of [false, true]) {
          const again = yield* openMux(me, { cursor, byQuery })
          expect(again.status).toBe(200)
          for (const p of projects) yield* awaitSeq(again, workspaceStream(p.id, me.id), 1)
          for (const p of projects) yield* awaitSeq(again, projectStream(p.id), 6)
          yield* Effect.sleep("100 millis")
          expect(again.events.some((e) => e.event === "heads"), "no heads frame on a resume").toBe(false)
          const got = byStream(again.events)
          for (const p of projects) {
            expect(got.get(projectStream(p.id))).toEqual([4, 5, 6])
            expect(got.get(workspaceStream(p.id, me.id))).toEqual([1])
          }
          again.close()
        }
      }))

    it.scoped("a cursor stays within 1 KB however many streams move, and still resumes exactly", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("many"))
        const projects = yield* Effect.forEach(range(1, 60), (i) => createProject(me, `p${i}`), { concurrency: 8 })
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        yield* Effect.forEach(projects, (p) => post(me, p.id), { concurrency: 8 })
        yield* Effect.forEach(projects, (p) => post(me, p.id, { workspace: true }), { concurrency: 8 })
        yield* awaitEvents(sse, 1 + 120)
        const longest = Math.max(...sse.events.map((e) => e.id!.length))
        expect(longest).toBeLessThanOrEqual(1024)
        const cursor = lastCursor(sse)
        sse.close()
        yield* Effect.forEach(projects, (p) => post(me, p.id), { concurrency: 8 })
        const again = yield* openMux(me, { cursor })
        yield* awaitEvents(again, 60)
        yield* Effect.sleep("200 millis")
        const got = byStream(again.events)
        expect(got.size).toBe(60)
        for (const p of projects) expect(got.get(projectStream(p.id))).toEqual([3])
      }))

    it.scoped("tabs at the same cursor get the same events, a tab behind gets its own, and each resumes exactly", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("tabs"))
        const projects = yield* Effect.forEach(range(1, 60), (i) => createProject(me, `t${i}`), { concurrency: 8 })
        const a = yield* openMux(me)
        const b = yield* openMux(me)
        const [headsA] = yield* awaitEvents(a, 1)
        const [headsB] = yield* awaitEvents(b, 1)
        expect(headsB!.id, "one base for both tabs").toBe(headsA!.id)
        yield* post(me, projects[0]!.id)
        yield* awaitEvents(a, 2)
        yield* awaitEvents(b, 2)
        // A third tab resumed from the heads: behind by one event, then at the others' cursor.
        const c = yield* openMux(me, { cursor: headsA!.id! })
        yield* awaitSeq(c, projectStream(projects[0]!.id), 2)
        // Enough moves that the cursor outgrows its budget and takes a new base while all three are open.
        yield* Effect.forEach(projects, (p) => post(me, p.id), { concurrency: 8 })
        yield* Effect.forEach(projects, (p) => post(me, p.id, { workspace: true }), { concurrency: 8 })
        yield* awaitEvents(a, 2 + 120)
        yield* awaitEvents(b, 2 + 120)
        yield* awaitEvents(c, 1 + 120) // resumed: no heads frame
        // The same events, each stream in order (ids may differ while one tab's new base is written and not the other's).
        expect(byStream(b.events), "tabs at one cursor: the same events").toEqual(byStream(a.events))
        for (const sse of [a, b, c]) expect(Math.max(...sse.events.map((e) => e.id!.length))).toBeLessThanOrEqual(1024)
        const cursors = [a, b, c].map(lastCursor)
        for (const sse of [a, b, c]) sse.close()
        yield* Effect.forEach(projects, (p) => post(me, p.id), { concurrency: 8 })
        for (const cursor of cursors) {
          const again = yield* openMux(me, { cursor })
          yield* awaitEvents(again, 60)
          yield* Effect.sleep("100 millis")
          const got = byStream(again.events)
          expect(got.size).toBe(60)
          for (const [i, p] of projects.entries()) expect(got.get(projectStream(p.id))).toEqual([i === 0 ? 4 : 3])
          again.close()
        }
      }))

    it.scoped("the first frame's cursor (heads) resumes right after the heads", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("heads"))
        const p = yield* createProject(me)
        const sse = yield* openMux(me)
        const [heads] = yield* awaitEvents(sse, 1)
        sse.close()
        yield* postMany(me, p.id, 3, { concurrency: 1 })
        const again = yield* openMux(me, { cursor: heads!.id! })
        yield* awaitSeq(again, projectStream(p.id), 4)
        expect(byStream(again.events).get(projectStream(p.id))).toEqual([2, 3, 4])
      }))
  })

  describe("membership", () => {
    it.scoped("a project the caller is added to joins with its member.added; after member.removed it leaves", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("joiner")
        const owner = yield* server.user("owner")
        const mine = yield* createProject(me, "mine")
        const theirs = yield* createProject(owner, "theirs")
        yield* postMany(owner, theirs.id, 2, { concurrency: 1 })
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        expect(Object.keys(sse.events[0]!.data.streams)).not.toContain(projectStream(theirs.id))

        const added = yield* addMember(owner, theirs.id, me)
        expect(added.userId).toBe(me.id)
        yield* awaitSeq(sse, projectStream(theirs.id), 4)
        const joined = sse.events.find((e) => e.data?.stream === projectStream(theirs.id))!
        expect(joined.event).toBe("member.added")
        expect(joined.data.seq).toBe(4)
        yield* post(owner, theirs.id, { body: "welcome" })
        yield* post(me, theirs.id, { workspace: true })
        yield* awaitSeq(sse, projectStream(theirs.id), 5)
        yield* awaitSeq(sse, workspaceStream(theirs.id, me.id), 1)

        yield* removeMember(owner, theirs.id, me)
        yield* awaitSeq(sse, projectStream(theirs.id), 6)
        yield* postMany(owner, theirs.id, 2, { concurrency: 1 })
        yield* post(me, mine.id, { body: "other streams go on" })
        yield* awaitSeq(sse, projectStream(mine.id), 2)
        yield* Effect.sleep("200 millis")
        const got = byStream(sse.events)
        expect(got.get(projectStream(theirs.id))).toEqual([4, 5, 6])
        expect(sse.events.filter((e) => e.data?.stream === projectStream(theirs.id)).at(-1)!.event).toBe(
          "member.removed"
        )
        expect(got.get(projectStream(mine.id))).toEqual([2])
      }))

    it.scoped("an event and an add committed while the connection is being opened both reach it", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const sql = yield* SqlClient.SqlClient
        const me = yield* server.user("opening-racer")
        const owner = yield* server.user("opening-owner")
        const mine = yield* createProject(me, "mine")
        const theirs = yield* createProject(owner, "theirs")
        // The cursor table held: a fresh opening reads the caller's projects and the heads, then
        // waits for it (its cursor base) — registered with the hub only after what follows.
        const held = yield* Deferred.make<void>()
        const release = yield* Deferred.make<void>()
        yield* sql.withTransaction(Effect.zipRight(
          sql`LOCK TABLE stream_cursors IN ACCESS EXCLUSIVE MODE`,
          Effect.zipRight(Deferred.succeed(held, undefined), Deferred.await(release))
        )).pipe(Effect.forkScoped)
        yield* Deferred.await(held)
        const opening = yield* Effect.forkScoped(openMux(me))
        yield* Effect.repeat(
          sql<{ n: number }>`
            SELECT count(*)::int AS n FROM pg_locks
            WHERE relation = 'stream_cursors'::regclass AND NOT granted`,
          { schedule: Schedule.spaced("20 millis"), until: (rows) => rows[0]!.n > 0 }
        ).pipe(Effect.timeout("10 seconds"))
        // Committed, and delivered to the hub, after those reads and before the connection is there.
        yield* post(me, mine.id, { body: "while you were opening" })
        yield* addMember(owner, theirs.id, me)
        yield* Effect.sleep("300 millis")
        yield* Deferred.succeed(release, undefined)
        const sse = yield* Fiber.join(opening)
        yield* awaitEvents(sse, 1)
        expect(sse.events[0]!.data.streams[projectStream(mine.id)], "the heads were read before the post").toBe(1)
        // Nothing else happens: the connection must find both by itself, not at a later event.
        yield* awaitSeq(sse, projectStream(mine.id), 2)
        yield* awaitSeq(sse, projectStream(theirs.id), 2)
        const got = byStream(sse.events)
        expect(got.get(projectStream(mine.id))).toEqual([2])
        expect(got.get(projectStream(theirs.id))).toEqual([2])
        expect(sse.events.find((e) => e.data?.stream === projectStream(theirs.id))!.event).toBe("member.added")
      }))

    it.scoped("a project the caller creates joins with its project.created", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("creator"))
        const sse = yield* openMux(me)
        const [heads] = yield* awaitEvents(sse, 1)
        expect(heads!.data).toEqual({ streams: {} })
        const p = yield* createProject(me, "new")
        yield* post(me, p.id)
        yield* awaitSeq(sse, projectStream(p.id), 2)
        expect(byStream(sse.events).get(projectStream(p.id))).toEqual([1, 2])
        expect(sse.events[1]!.event).toBe("project.created")
      }))

    it.scoped("while away: a project left delivers up to its removal; one joined starts at its member.added", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("away")
        const owner = yield* server.user("owner")
        const leaving = yield* createProject(owner, "leaving")
        const joining = yield* createProject(owner, "joining")
        const rejoining = yield* createProject(owner, "rejoining")
        yield* addMember(owner, leaving.id, me)
        yield* addMember(owner, rejoining.id, me)
        yield* post(owner, joining.id)
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        const cursor = lastCursor(sse)
        sse.close()

        yield* post(owner, leaving.id) // 3
        yield* removeMember(owner, leaving.id, me) // 4
        yield* postMany(owner, leaving.id, 2, { concurrency: 1 }) // 5, 6: not for me
        yield* addMember(owner, joining.id, me) // 3
        yield* post(owner, joining.id) // 4
        yield* post(owner, rejoining.id) // 3
        yield* removeMember(owner, rejoining.id, me) // 4
        yield* post(owner, rejoining.id) // 5: not for me
        yield* addMember(owner, rejoining.id, me) // 6
        yield* post(owner, rejoining.id) // 7

        const again = yield* openMux(me, { cursor })
        yield* awaitSeq(again, projectStream(joining.id), 4)
        yield* awaitSeq(again, projectStream(rejoining.id), 7)
        yield* Effect.sleep("300 millis")
        const got = byStream(again.events)
        expect(got.get(projectStream(leaving.id))).toEqual([3, 4])
        expect(got.get(projectStream(joining.id))).toEqual([3, 4])
        expect(got.get(projectStream(rejoining.id))).toEqual([3, 4, 6, 7])
        // Nothing after the removal, even live.
        yield* post(owner, leaving.id)
        yield* post(owner, joining.id)
        yield* awaitSeq(again, projectStream(joining.id), 5)
        expect(byStream(again.events).get(projectStream(leaving.id))).toEqual([3, 4])
      }))
  })

  describe("isolation and bad input", () => {
    it.scoped("never carries another user's workspace, and ?streams= of a stream not visible is a 404", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("me")
        const owner = yield* server.user("owner")
        const shared = yield* createProject(owner, "shared")
        const secret = yield* createProject(owner, "secret")
        yield* addMember(owner, shared.id, me)
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        yield* post(owner, shared.id, { workspace: true, body: "owner's private" })
        yield* post(owner, secret.id, { body: "not for me" })
        yield* post(owner, shared.id, { body: "for everyone" })
        yield* awaitSeq(sse, projectStream(shared.id), 3)
        yield* Effect.sleep("200 millis")
        expect([...byStream(sse.events).keys()]).toEqual([projectStream(shared.id)])

        for (
          const stream of [
            workspaceStream(shared.id, owner.id),
            projectStream(secret.id),
            projectStream("7d8f2a51-1c7b-4e0a-9b3e-5f6a7b8c9d0e")
          ]
        ) {
          const res = yield* send(me, "GET", `/api/stream?streams=${projectStream(shared.id)},${stream}`)
          expect(res.status, stream).toBe(404)
          expect(res.body._tag).toBe("NotFound")
        }
      }))

    it.scoped("a malformed, forged, unknown or another user's cursor is a 400 naming the cursor", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("me")
        const other = yield* server.user("other")
        const p = yield* createProject(me)
        yield* createProject(other)
        const mine = yield* openMux(me)
        yield* awaitEvents(mine, 1)
        yield* post(me, p.id)
        yield* awaitEvents(mine, 2)
        const cursor = lastCursor(mine)
        const theirs = yield* openMux(other)
        const [otherHeads] = yield* awaitEvents(theirs, 1)

        const bytes = Buffer.from(cursor, "base64url")
        const flipped = (i: number) => {
          const copy = Buffer.from(bytes)
          copy[i] = copy[i]! ^ 1
          return copy.toString("base64url")
        }
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["not base64url", "not a cursor!"],
          ["empty", ""],
          ["too long", "A".repeat(1025)],
          ["a seq", "12"],
          ["truncated", cursor.slice(0, 20)],
          ["a changed seq", flipped(bytes.length - 13)],
          ["a changed base", flipped(3)],
          ["a changed signature", flipped(bytes.length - 1)],
          ["another user's", otherHeads!.id!]
        ]
        for (const [what, bad] of cases) {
          for (const via of ["header", "query"] as const) {
            const res = via === "header"
              ? yield* send(me, "GET", "/api/stream", undefined, { "last-event-id": bad })
              : yield* send(me, "GET", `/api/stream?cursor=${encodeURIComponent(bad)}`)
            expect(res.status, `${what} by ${via}: ${JSON.stringify(res.body)}`).toBe(400)
            expect(res.body._tag, what).toMatch(/^(BadRequest|HttpApiDecodeError)$/)
            expect(JSON.stringify(res.body), what).toMatch(via === "header" ? /cursor|last-event-id/ : /cursor/)
          }
        }
        // The good one still works, and nothing was lost.
        const again = yield* openMux(me, { cursor })
        expect(again.status).toBe(200)
      }))

    it.scoped("no token is a 401; a malformed ?streams= is a 400 naming streams", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("me"))
        const none = yield* send(undefined, "GET", "/api/stream")
        expect(none.status).toBe(401)
        expect(none.body._tag).toBe("Unauthorized")
        const bad = yield* send(undefined, "GET", "/api/stream?access_token=nope")
        expect(bad.status).toBe(401)
        for (const streams of ["", "project:", "project:x", "room:7d8f2a51-1c7b-4e0a-9b3e-5f6a7b8c9d0e", ",", "a,,b"]) {
          const res = yield* send(me, "GET", `/api/stream?streams=${encodeURIComponent(streams)}`)
          expect(res.status, streams).toBe(400)
          expect(JSON.stringify(res.body)).toContain("streams")
        }
        const byQueryToken = yield* openSse("/api/stream", { accessToken: me.token })
        expect(byQueryToken.status).toBe(200)
        const [heads] = yield* awaitEvents(byQueryToken, 1)
        expect(heads!.event).toBe("heads")
      }))

    it.scoped("one connection however many projects: herald_sse_connections counts it once", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("one"))
        yield* Effect.forEach(range(1, 8), (i) => createProject(me, `p${i}`))
        const before = yield* sseConnectionsGauge
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        expect(yield* sseConnectionsGauge).toBe(before + 1)
        sse.close()
      }))
  })

  describe("property", () => {
    /**
     * Random posts across projects and workspaces (by the caller and by others), random membership
     * changes and random disconnects resumed by the last cursor. Over all the connections, per
     * stream: no seq twice, ascending, no gap except a jump from the caller's removal to the
     * member.added that brought them back; a stream starts right after its head in `heads` or at
     * the event that made the caller a member; a project the caller is in at the end is complete up
     * to its head; one they left ends with the member.removed that removed them; and nothing else
     * ever arrives (another user's workspace, a project never joined).
     */
    it.effect.prop(
      "every readable stream arrives exactly once, in order, with no gap, across disconnects and membership changes",
      {
        actions: FastCheck.array(
          FastCheck.oneof(
            FastCheck.record({
              kind: FastCheck.constant("post" as const),
              project: FastCheck.nat(3),
              by: FastCheck.boolean(),
              workspace: FastCheck.boolean()
            }),
            FastCheck.record({
              kind: FastCheck.constant("toggle" as const),
              project: FastCheck.integer({ min: 1, max: 3 })
            }),
            FastCheck.record({ kind: FastCheck.constant("reconnect" as const), viaQuery: FastCheck.boolean() })
          ),
          { minLength: 4, maxLength: 18 }
        ),
        initially: FastCheck.array(FastCheck.boolean(), { minLength: 3, maxLength: 3 })
      },
      ({ actions, initially }) =>
        Effect.scoped(Effect.gen(function*() {
          const server = yield* TestServer
          const me = yield* server.user("me")
          const owner = yield* server.user("owner")
          const stranger = yield* server.user("stranger")
          const own = yield* createProject(me, "own")
          const others = yield* Effect.forEach(range(1, 3), (i) => createProject(owner, `o${i}`))
          const projects = [own, ...others]
          const member = [true, ...initially]
          for (const [i, p] of others.entries()) if (initially[i]) yield* addMember(owner, p.id, me)
          const hidden = yield* createProject(stranger, "hidden")

          const connections: Array<SseConnection> = []
          let current = yield* openMux(me)
          connections.push(current)
          yield* awaitEvents(current, 1)
          const heads = current.events[0]!.data.streams as Record<string, number>
          let cursor = current.events[0]!.id!

          for (const action of actions) {
            if (action.kind === "post") {
              const p = projects[action.project]!
              if (action.by && member[action.project]) yield* post(me, p.id, { workspace: action.workspace })
              else if (action.project > 0) yield* post(owner, p.id, { workspace: action.workspace })
              else yield* post(me, p.id)
              yield* post(stranger, hidden.id)
            } else if (action.kind === "toggle") {
              const p = projects[action.project]!
              if (member[action.project]) yield* removeMember(owner, p.id, me)
              else yield* addMember(owner, p.id, me)
              member[action.project] = !member[action.project]
            } else {
              cursor = current.events.at(-1)?.id ?? cursor
              current.close()
              current = yield* openMux(me, { cursor, byQuery: action.viaQuery })
              expect(current.status).toBe(200)
              connections.push(current)
            }
          }
          // Settle: a sentinel in the caller's own project is the last event to arrive.
          const sentinel = yield* post(me, own.id, { body: "sentinel" })
          yield* awaitSeq(current, projectStream(own.id), sentinel.event.seq)
          yield* Effect.sleep("150 millis")

          const received = new Map<string, Array<number>>()
          for (const c of connections) {
            for (const [stream, seqs] of byStream(c.events)) {
              received.set(stream, [...(received.get(stream) ?? []), ...seqs])
            }
          }
          const readable = new Set(projects.flatMap((p) => [projectStream(p.id), workspaceStream(p.id, me.id)]))
          for (const stream of received.keys()) {
            expect(readable.has(stream), `${stream} is one of mine`).toBe(true)
          }

          for (const [i, p] of projects.entries()) {
            for (const stream of [projectStream(p.id), workspaceStream(p.id, me.id)]) {
              const events = yield* committed(stream)
              const bySeq = new Map(events.map((e) => [e.seq, e]))
              const got = received.get(stream) ?? []
              const what = `${stream}: got ${JSON.stringify(got)} of ${events.length}`
              expect(new Set(got).size, `no duplicates in ${what}`).toBe(got.length)
              const isMine = (seq: number, type: string) => {
                const e = bySeq.get(seq)
                if (e === undefined || e.type !== type) return false
                const data = e.data as { userId?: string; ownerId?: string }
                return (data.userId ?? data.ownerId) === me.id
              }
              const joinedAt = (seq: number) => isMine(seq, "member.added") || isMine(seq, "project.created")
              if (got.length > 0) {
                const startsAtHead = got[0] === (heads[stream] ?? -1) + 1
                expect(startsAtHead || joinedAt(got[0]!) || stream.startsWith("workspace:"), `start of ${what}`).toBe(
                  true
                )
              }
              for (let k = 1; k < got.length; k++) {
                if (got[k] === got[k - 1]! + 1) continue
                expect(isMine(got[k - 1]!, "member.removed") && joinedAt(got[k]!), `gap in ${what}`).toBe(true)
              }
              const head = events.at(-1)?.seq ?? 0
              if (member[i]) {
                if (got.length > 0 || (heads[stream] ?? 0) < head) expect(got.at(-1), `complete ${what}`).toBe(head)
              } else if (stream.startsWith("project:") && got.length > 0) {
                expect(isMine(got.at(-1)!, "member.removed"), `${what} ends with the removal`).toBe(true)
              }
            }
          }
        })),
      { fastCheck: { numRuns: 12 } }
    )
  })
})

layer(testServerLayer({ broker: "postgres", chaosPublishFailureRate: 1 }), live)(
  "GET /api/stream over a broker that duplicates, reorders and loses deliveries",
  (it) => {
    it.scoped("every stream exactly once, in order, whatever the broker delivers", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const sql = yield* SqlClient.SqlClient
        const me = yield* server.user("me")
        const a = yield* createProject(me, "a")
        const b = yield* createProject(me, "b")
        const sse = yield* openMux(me)
        yield* awaitEvents(sse, 1)
        yield* postMany(me, a.id, 5, { concurrency: 1 })
        yield* postMany(me, b.id, 5, { concurrency: 1 })
        yield* Effect.sleep("300 millis")
        expect(sse.events.length, "the control: nothing arrives by itself").toBe(1)
        const payload = (stream: string, seq: number, reference = false) =>
          Effect.map(committed(stream), (events) => {
            const e = events.find((x) => x.seq === seq)!
            return JSON.stringify(reference ? { stream, seq } : e)
          })
        const deliveries = [
          [projectStream(b.id), 4],
          [projectStream(a.id), 3],
          [projectStream(a.id), 3],
          [projectStream(a.id), 2],
          [projectStream(b.id), 6],
          [projectStream(a.id), 6],
          [projectStream(b.id), 2],
          [projectStream(a.id), 6]
        ] as const
        const payloads = yield* Effect.forEach(deliveries, ([stream, seq], i) => payload(stream, seq, i === 5))
        yield* Effect.orDie(
          sql`SELECT pg_notify('herald_events', p) FROM unnest(${payloads}::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`
        )
        yield* awaitSeq(sse, projectStream(a.id), 6)
        yield* awaitSeq(sse, projectStream(b.id), 6)
        yield* Effect.sleep("200 millis")
        const got = byStream(sse.events)
        expect(got.get(projectStream(a.id))).toEqual([2, 3, 4, 5, 6])
        expect(got.get(projectStream(b.id))).toEqual([2, 3, 4, 5, 6])
      }))
  }
)

layer(testServerLayer({ sseBuffer: 5 }), live)("GET /api/stream slow consumers (buffer of 5 events)", (it) => {
  it.scoped(
    "a multiplexed client that stops reading is let go; resuming by its last cursor it gets every stream exactly",
    () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("slow")
        const a = yield* createProject(me, "a")
        const b = yield* createProject(me, "b")
        const stalled = yield* Effect.acquireRelease(
          Effect.promise(() => connectStalling(server.url, "/api/stream", { token: me.token })),
          (c) => Effect.sync(() => c.close())
        )
        expect(stalled.status).toBe(200)
        // ~30 KB per event, over both streams: far more than the sockets' buffers absorb.
        const BIG = "€".repeat(10_000)
        yield* Effect.all([
          postMany(me, a.id, 120, { body: BIG, concurrency: 8 }),
          postMany(me, b.id, 120, { body: BIG, concurrency: 8 })
        ], { concurrency: 2 })
        let open = 1
        for (let i = 0; i < 50 && open > 0; i++) {
          yield* Effect.sleep("100 millis")
          open = yield* sseConnectionsGauge
        }
        expect(open, "SSE connections the server still holds after the overflow").toBe(0)
        stalled.resume()
        yield* Effect.promise(() => stalled.ended)
        const got = byStream(stalled.events)
        // An unbroken prefix of each stream, then the rest on resume from the last cursor.
        for (const p of [a, b]) {
          const seqs = got.get(projectStream(p.id)) ?? []
          expect(seqs).toEqual(range(2, seqs.length + 1))
        }
        const cursor = stalled.events.at(-1)!.id!
        const again = yield* openMux(me, { cursor })
        yield* awaitSeq(again, projectStream(a.id), 121, 20_000)
        yield* awaitSeq(again, projectStream(b.id), 121, 20_000)
        const rest = byStream(again.events)
        for (const p of [a, b]) {
          const before = got.get(projectStream(p.id)) ?? []
          expect([...before, ...(rest.get(projectStream(p.id)) ?? [])]).toEqual(range(2, 121))
        }
      }),
    { timeout: 60_000 }
  )
})
