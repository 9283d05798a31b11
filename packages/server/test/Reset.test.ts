/**
 * `event: reset` (SPEC §5, "Past retention, or ahead of the head") over real HTTP against real
 * PostgreSQL: a resume position the database cannot continue from — older than what
 * `event_outbox ∪ event_log` still holds, or beyond the stream's head — is answered with a reset
 * frame (`data: {stream, from}`, `from` = the oldest seq held) and then the stream from `from`,
 * never with silence or a partial replay; per stream and on `GET /api/stream`, per stream.
 *
 * - past retention: the oldest events are made unavailable in SQL, the way retention and prune
 *   will (both tables, once published and materialized);
 * - ahead of the head: a position no commit reached, and one reached by a commit still in flight
 *   (a held transaction of the real post function), which must not reset;
 * - the real thing: the compiled server on Debian's PostgreSQL 15, a `pg_dump` taken, more posts,
 *   the server stopped, the dump restored, the server started, and the clients resume: our SSE
 *   reader and Chromium's own EventSource, which reconnects by itself.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Deferred, Effect, Fiber, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import { chromium } from "playwright-core"
import { debianCluster } from "../../../test-support/DebianPostgres.js"
import { freePort, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { connectSse, type SseConnection, type SseEvent } from "../../../test-support/SseClient.js"
import * as Cursor from "../src/stream/Cursor.js"
import { CursorStore } from "../src/stream/CursorStore.js"
import { chromiumArgs, ensureChromium } from "./support/Browser.js"
import { createProject, eventually, post, postMany } from "./support/HttpTesting.js"
import { awaitEvents, fetchSse, openSse, range, settlesWithin } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

const live = { excludeTestServices: true } as const

const projectPath = (projectId: string) => `/api/projects/${projectId}/stream`
const workspacePath = (projectId: string) => `/api/projects/${projectId}/workspace/stream`
const projectStream = (projectId: string) => `project:${projectId}`
const workspaceStream = (projectId: string, userId: string) => `workspace:${projectId}:${userId}`

/** What a client reads: `reset:<stream>:<from>` for a reset frame, `<stream>#<seq>` for an event. */
const frames = (events: ReadonlyArray<SseEvent>) =>
  events.map((e) => e.event === "reset" ? `reset:${e.data.stream}:${e.data.from}` : `${e.data.stream}#${e.data.seq}`)
const seqsOf = (stream: string, from: number, to: number) => range(from, to).map((seq) => `${stream}#${seq}`)

/** A new user who owns a new project whose stream holds project.created and then `posts` messages. */
const projectWith = (posts: number) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const owner = yield* server.user("owner")
    const project = yield* createProject(owner, "reset")
    yield* postMany(owner, project.id, posts, { concurrency: 1 })
    return { server, owner, projectId: project.id, stream: projectStream(project.id) }
  })

/** A cursor of `GET /api/stream` standing for these positions, as the server issues them (its own base row). */
const cursorAt = (user: TestUser, positions: ReadonlyArray<readonly [string, number]>) =>
  Effect.map(
    Effect.flatMap(
      CursorStore,
      (cursors) => cursors.create(user.id, positions.map(([stream, seq]) => [stream, { seq, tag: undefined }]))
    ),
    (base) => Cursor.encode(base, new Map())!.text
  )

/**
 * The oldest events up to `seq` are no longer held, as retention will leave it: once they are
 * published and materialized, gone from `event_log` and pruned from `event_outbox` (one transaction).
 */
const dropUpTo = (stream: string, seq: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* eventually(
      `${stream} published and materialized`,
      Effect.map(
        Effect.orDie(sql<{ n: number }>`
          SELECT count(*)::int AS n FROM event_outbox
          WHERE stream_id = ${stream} AND (status <> 'published' OR materialized_at IS NULL)`),
        (rows) => rows[0]!.n === 0 ? Option.some(true) : Option.none()
      )
    )
    yield* Effect.orDie(sql.withTransaction(Effect.zipRight(
      sql`DELETE FROM event_log WHERE stream_id = ${stream} AND seq <= ${seq}`,
      sql`DELETE FROM event_outbox WHERE stream_id = ${stream} AND seq <= ${seq}`
    )))
  })

/**
 * What a restore from a backup taken at `seq` leaves of a stream: its events after `seq` gone from
 * both tables, with their messages, and its counter back at `seq`, so new posts take those seqs again.
 */
const restoreTo = (stream: string, seq: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(sql.withTransaction(Effect.all([
      sql`DELETE FROM messages WHERE id IN (
        SELECT (data->>'messageId')::uuid FROM event_outbox
        WHERE stream_id = ${stream} AND seq > ${seq} AND type = 'message.created')`,
      sql`DELETE FROM event_log WHERE stream_id = ${stream} AND seq > ${seq}`,
      sql`DELETE FROM event_outbox WHERE stream_id = ${stream} AND seq > ${seq}`,
      sql`UPDATE event_streams SET last_seq = ${seq} WHERE stream_id = ${stream}`
    ], { discard: true }))))

/**
 * A message post through the real post function (migrations/0006) in a transaction held open
 * until `commit`: its seq is bumped (the stream's row lock taken) but not committed.
 */
const postInFlight = (owner: TestUser, projectId: Ids.ProjectId) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const seq = yield* Deferred.make<number>()
    const commit = yield* Deferred.make<void>()
    const messageId = randomUUID()
    const data = JSON.stringify({ messageId, authorId: owner.id, role: "user", body: "in flight" })
    const fiber = yield* sql.withTransaction(
      Effect.gen(function*() {
        const rows = yield* sql<{ createdEventSeq: number }>`
          SELECT created_event_seq FROM herald_post_message(
            ${projectStream(projectId)}, ${randomUUID()}::uuid, ${messageId}::uuid, ${projectId}::uuid,
            ${owner.id}::uuid, 'project', 'user', 'in flight', NULL, ${data}::jsonb, 0)`
        yield* Deferred.succeed(seq, Number(rows[0]!.createdEventSeq))
        yield* Deferred.await(commit)
      })
    ).pipe(Effect.orDie, Effect.fork)
    return {
      seq: yield* Deferred.await(seq),
      commit: Effect.zipRight(Deferred.succeed(commit, undefined), Fiber.join(fiber))
    }
  })

// ---------------------------------------------------------------------------------------------

layer(testServerLayer({ sseHeartbeatMs: 200, pollIntervalMs: 100 }), live)("event: reset", (it) => {
  describe("past retention", () => {
    it.scoped("per stream: a position before the oldest held event gets reset {stream, from} first, then exactly the held events, then live", () =>
      Effect.gen(function*() {
        const { owner, projectId, server, stream } = yield* projectWith(7) // seqs 1..8
        yield* dropUpTo(stream, 4) // 5..8 held

        // The raw bytes: `retry:`, then the reset frame (its id is from − 1), the presence snapshot
        // (a live signal without an id, G10), then seq 5 — a keepalive may come between, on a slow machine.
        const raw = yield* fetchSse(server.url, projectPath(projectId), {
          headers: { authorization: `Bearer ${owner.token}`, "last-event-id": "2" },
          until: (text) => /id: 5\.[0-9a-f]{8}\n/.test(text)
        })
        expect(raw.status).toBe(200)
        expect(raw.text).toMatch(
          new RegExp(
            `^retry: \\d+\\n\\nid: 4\\nevent: reset\\ndata: \\{"stream":"${stream}","from":5\\}\\n\\n` +
              `(: keepalive\\n\\n)*event: presence\\ndata: \\{[^\\n]*\\}\\n\\n(: keepalive\\n\\n)*id: 5\\.[0-9a-f]{8}\\n`
          )
        )

        for (const position of [{ lastEventId: "2" }, { after: "0" }, { lastEventId: "3" }]) {
          const sse = yield* openSse(projectPath(projectId), { token: owner.token, ...position })
          yield* awaitEvents(sse, 5)
          expect(sse.events[0]).toEqual({ id: "4", event: "reset", data: { stream, from: 5 } })
          expect(frames(sse.events)).toEqual([`reset:${stream}:5`, ...seqsOf(stream, 5, 8)])
        }
        // One that still has its next event held resumes as ever: no reset.
        const ordinary = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: "4" })
        yield* awaitEvents(ordinary, 4)
        expect(frames(ordinary.events)).toEqual(seqsOf(stream, 5, 8))

        // Live after the replay: the next post arrives right after the held events.
        const sse = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: "1" })
        yield* awaitEvents(sse, 5)
        yield* post(owner, projectId, { body: "after the reset" })
        yield* awaitEvents(sse, 6)
        yield* Effect.sleep("100 millis")
        expect(frames(sse.events)).toEqual([`reset:${stream}:5`, ...seqsOf(stream, 5, 9)])
      }))

    it.scoped("a stream with nothing held any more resets to what comes next (head + 1)", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* projectWith(0)
        yield* postMany(owner, projectId, 2, { workspace: true, concurrency: 1 })
        const stream = workspaceStream(projectId, owner.id)
        yield* dropUpTo(stream, 2)

        const sse = yield* openSse(workspacePath(projectId), { token: owner.token, after: "0" })
        yield* awaitEvents(sse, 1)
        expect(sse.events[0]).toEqual({ id: "2", event: "reset", data: { stream, from: 3 } })
        yield* post(owner, projectId, { workspace: true, body: "next" })
        yield* awaitEvents(sse, 2)
        expect(frames(sse.events)).toEqual([`reset:${stream}:3`, `${stream}#3`])
        // At the head, there is nothing to reset.
        const caughtUp = yield* openSse(workspacePath(projectId), { token: owner.token, lastEventId: "2" })
        yield* awaitEvents(caughtUp, 1)
        expect(frames(caughtUp.events)).toEqual([`${stream}#3`])
      }))

    it.scoped("multiplexed: a reset frame for that stream only, with a cursor at from − 1; the other streams go on as they were", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(7) // 1..8
        yield* post(owner, projectId, { workspace: true }) // workspace 1
        const workspace = workspaceStream(projectId, owner.id)
        yield* dropUpTo(stream, 4)

        const cursor = yield* cursorAt(owner, [[stream, 2], [workspace, 0]])
        const sse = yield* openSse("/api/stream", { token: owner.token, lastEventId: cursor })
        yield* awaitEvents(sse, 6)
        expect(sse.events[0]!.event).toBe("reset")
        expect(sse.events[0]!.data).toEqual({ stream, from: 5 })
        expect(sse.events[0]!.id).toMatch(/^[A-Za-z0-9_-]{1,1024}$/)
        expect(frames(sse.events).filter((f) => f.startsWith(stream) || f.startsWith("reset"))).toEqual([
          `reset:${stream}:5`,
          ...seqsOf(stream, 5, 8)
        ])
        expect(frames(sse.events).filter((f) => f.startsWith(workspace))).toEqual([`${workspace}#1`])

        // The reset's id resumes from `from` without resetting again; the workspace from where it was.
        const again = yield* openSse("/api/stream", { token: owner.token, lastEventId: sse.events[0]!.id! })
        yield* awaitEvents(again, 5)
        expect(frames(again.events).filter((f) => f.startsWith(stream))).toEqual(seqsOf(stream, 5, 8))
        expect(frames(again.events).filter((f) => f.startsWith(workspace))).toEqual([`${workspace}#1`])
        expect(again.events.some((e) => e.event === "reset")).toBe(false)
      }))
  })

  describe("diverged: the event at the client's position is no longer the one it saw (G9)", () => {
    it.scoped("per stream: resuming with <seq>.<tag> after new events took the lost seqs is a reset from the oldest held; a bare <seq> cannot tell", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(7) // 1..8
        const seen = yield* openSse(projectPath(projectId), { token: owner.token, after: "0" })
        yield* awaitEvents(seen, 8)
        const lastId = seen.events[7]!.id!
        expect(lastId).toMatch(/^8\.[0-9a-f]{8}$/)
        expect(lastId).toBe(`8.${seen.events[7]!.data.id.slice(0, 8)}`)
        seen.close()
        yield* restoreTo(stream, 4)
        yield* postMany(owner, projectId, 4, { concurrency: 1 }) // new 5..8: the head is the client's seq again

        const resumed = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: lastId })
        yield* awaitEvents(resumed, 9)
        expect(resumed.events[0]).toEqual({ id: "0", event: "reset", data: { stream, from: 1 } })
        expect(frames(resumed.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 8)])
        yield* postMany(owner, projectId, 2, { concurrency: 1 }) // 9, 10: past the client's seq
        yield* awaitEvents(resumed, 11)
        // The same client one step earlier (at 7), and after the head moved past it (at 8): a reset either way.
        for (const at of [6, 7]) {
          const again = yield* openSse(projectPath(projectId), {
            token: owner.token,
            lastEventId: seen.events[at]!.id!
          })
          yield* awaitEvents(again, 11)
          expect(frames(again.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 10)])
        }
        // A position it still shares with the database (seq 4, from before the restore) resumes as ever.
        const shared = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: seen.events[3]!.id! })
        yield* awaitEvents(shared, 6)
        expect(frames(shared.events)).toEqual(seqsOf(stream, 5, 10))
        // A bare seq (or ?after=) carries nothing to check: it goes on past the lost events (docs/http.md).
        const bare = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: "8" })
        yield* awaitEvents(bare, 2)
        expect(frames(bare.events)).toEqual(seqsOf(stream, 9, 10))
      }))

    it.scoped("multiplexed: the cursor's tag for that stream no longer matches: a reset for it, the other stream goes on", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(3) // 1..4
        const workspace = workspaceStream(projectId, owner.id)
        const mux = yield* openSse("/api/stream", { token: owner.token })
        yield* awaitEvents(mux, 1) // heads: project 4, workspace 0
        yield* postMany(owner, projectId, 2, { concurrency: 1 }) // 5, 6
        yield* post(owner, projectId, { workspace: true }) // workspace 1
        yield* awaitEvents(mux, 4)
        const cursor = mux.events.at(-1)!.id!
        mux.close()
        yield* restoreTo(stream, 4)
        yield* postMany(owner, projectId, 3, { concurrency: 1 }) // new 5, 6, 7
        const resumed = yield* openSse("/api/stream", { token: owner.token, lastEventId: cursor })
        yield* awaitEvents(resumed, 8)
        expect(frames(resumed.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 7)])
        // The reset's id goes on from there; the workspace stream stays where it was (nothing new).
        yield* post(owner, projectId, { workspace: true })
        yield* awaitEvents(resumed, 9)
        expect(frames(resumed.events).at(-1)).toBe(`${workspace}#2`)
      }))

    it.scoped("multiplexed: a page loaded before the restore (heads, nothing since) resets a stream whose head event changed", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(3) // 1..4
        const mux = yield* openSse("/api/stream", { token: owner.token })
        yield* awaitEvents(mux, 1)
        const cursor = mux.events[0]!.id!
        mux.close()
        yield* restoreTo(stream, 3)
        yield* post(owner, projectId, { body: "a new 4" })
        const resumed = yield* openSse("/api/stream", { token: owner.token, lastEventId: cursor })
        yield* awaitEvents(resumed, 5)
        expect(frames(resumed.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 4)])
      }))
  })

  describe("ahead of the head", () => {
    it.scoped("per stream: Last-Event-ID 500 on a stream at 4 gets reset from 1 (id 0), the stream from 1, then new posts live", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(3) // 1..4
        const sse = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: "500" })
        expect(sse.status).toBe(200)
        yield* awaitEvents(sse, 5)
        expect(sse.events[0]).toEqual({ id: "0", event: "reset", data: { stream, from: 1 } })
        yield* post(owner, projectId, { body: "new" })
        yield* awaitEvents(sse, 6)
        expect(frames(sse.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 5)])
        // A stream with no events at all: reset to seq 1, which is what comes next.
        const workspace = workspaceStream(projectId, owner.id)
        const empty = yield* openSse(workspacePath(projectId), { token: owner.token, after: "7" })
        yield* awaitEvents(empty, 1)
        expect(empty.events[0]).toEqual({ id: "0", event: "reset", data: { stream: workspace, from: 1 } })
        yield* post(owner, projectId, { workspace: true })
        yield* awaitEvents(empty, 2)
        expect(frames(empty.events)).toEqual([`reset:${workspace}:1`, `${workspace}#1`])
      }))

    it.scoped("multiplexed: one reset per stream ahead, each before that stream's events, each id a cursor of the resets so far", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(3) // 1..4
        yield* post(owner, projectId, { workspace: true }) // workspace 1
        const workspace = workspaceStream(projectId, owner.id)
        const cursor = yield* cursorAt(owner, [[stream, 500], [workspace, 40]])
        const sse = yield* openSse("/api/stream", { token: owner.token, lastEventId: cursor })
        yield* awaitEvents(sse, 7)
        const got = frames(sse.events)
        expect(got.slice(0, 2).sort()).toEqual([`reset:${stream}:1`, `reset:${workspace}:1`].sort())
        expect(got.filter((f) => f.startsWith(stream))).toEqual(seqsOf(stream, 1, 4))
        expect(got.filter((f) => f.startsWith(workspace))).toEqual([`${workspace}#1`])

        // Resuming by the first reset's id: that stream goes on from its `from`, the other resets again.
        const first = sse.events[0]!
        const second = sse.events[1]!
        const afterFirst = yield* openSse("/api/stream", { token: owner.token, lastEventId: first.id! })
        yield* awaitEvents(afterFirst, 6)
        expect(frames(afterFirst.events)[0]).toBe(`reset:${second.data.stream}:1`)
        expect(afterFirst.events.filter((e) => e.event === "reset")).toHaveLength(1)
        // … and by the second's: no reset at all, every stream from 1.
        const afterBoth = yield* openSse("/api/stream", { token: owner.token, lastEventId: second.id! })
        yield* awaitEvents(afterBoth, 5)
        expect(afterBoth.events.some((e) => e.event === "reset")).toBe(false)
        expect(frames(afterBoth.events).filter((f) => f.startsWith(stream))).toEqual(seqsOf(stream, 1, 4))
      }))
  })

  describe("in flight is not ahead", () => {
    it.scoped("per stream: a position equal to a seq still being committed waits for the commit, then goes on with no reset", () =>
      Effect.gen(function*() {
        const { owner, projectId, server, stream } = yield* projectWith(2) // 1..3
        const inFlight = yield* postInFlight(owner, projectId)
        expect(inFlight.seq).toBe(4)
        const opening = connectSse(server.url, projectPath(projectId), {
          token: owner.token,
          lastEventId: String(inFlight.seq)
        })
        // The server does not guess: it waits for the writer's row lock before it answers.
        expect(yield* settlesWithin(opening, 500)).toBe(false)
        yield* inFlight.commit
        const sse = yield* Effect.acquireRelease(Effect.promise(() => opening), (c) => Effect.sync(() => c.close()))
        expect(sse.status).toBe(200)
        yield* post(owner, projectId, { body: "next" })
        yield* awaitEvents(sse, 1)
        yield* Effect.sleep("300 millis") // the in-flight event is published meanwhile: not sent again
        expect(frames(sse.events)).toEqual([`${stream}#5`])
      }))

    it.scoped("multiplexed: the same, for a cursor at the in-flight seq", () =>
      Effect.gen(function*() {
        const { owner, projectId, server, stream } = yield* projectWith(2) // 1..3
        const workspace = workspaceStream(projectId, owner.id)
        const inFlight = yield* postInFlight(owner, projectId)
        const cursor = yield* cursorAt(owner, [[stream, inFlight.seq], [workspace, 0]])
        const opening = connectSse(server.url, "/api/stream", { token: owner.token, lastEventId: cursor })
        expect(yield* settlesWithin(opening, 500)).toBe(false)
        yield* inFlight.commit
        const sse = yield* Effect.acquireRelease(Effect.promise(() => opening), (c) => Effect.sync(() => c.close()))
        expect(sse.status).toBe(200)
        yield* post(owner, projectId, { body: "next" })
        yield* awaitEvents(sse, 1)
        yield* Effect.sleep("300 millis")
        expect(frames(sse.events)).toEqual([`${stream}#5`])
      }))
  })

  describe("bad input", () => {
    it.scoped("malformed positions are still 400; the largest valid one is a reset, not an error", () =>
      Effect.gen(function*() {
        const { owner, projectId, stream } = yield* projectWith(1) // 1..2
        for (const lastEventId of ["-1", "abc", "9007199254740993"]) {
          const sse = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId })
          expect(sse.status, `Last-Event-ID ${lastEventId}`).toBe(400)
        }
        const cursor = yield* openSse("/api/stream", { token: owner.token, lastEventId: "not-a-cursor" })
        expect(cursor.status).toBe(400)
        expect(cursor.errorBody).toMatchObject({ _tag: "BadRequest", field: "cursor" })

        const largest = String(Number.MAX_SAFE_INTEGER)
        const sse = yield* openSse(projectPath(projectId), { token: owner.token, lastEventId: largest })
        expect(sse.status).toBe(200)
        yield* awaitEvents(sse, 3)
        expect(frames(sse.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 2)])
        const far = yield* cursorAt(owner, [[stream, Number.MAX_SAFE_INTEGER]])
        const mux = yield* openSse("/api/stream", { token: owner.token, lastEventId: far })
        expect(mux.status).toBe(200)
        yield* awaitEvents(mux, 3)
        expect(frames(mux.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 2)])
      }))
  })
})

// ---------------------------------------------------------------------------------------------
// A real restore: the compiled server on Debian's PostgreSQL 15, whose pg_dump and pg_restore match it.

const ADMIN = "reset-test-admin"

/** One Herald process on `databaseUrl` and `port`, as production runs it; stopped with the scope. */
const herald = (databaseUrl: string, port: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const proc = spawnServer({
        DATABASE_URL: databaseUrl,
        PORT: String(port),
        HERALD_ADMIN_TOKEN: ADMIN,
        HERALD_POLL_INTERVAL_MS: "200"
      })
      await proc.waitFor(/API docs at/)
      return proc
    }),
    (proc: Spawned) => Effect.promise(() => proc.stop())
  )

const call = (base: string, method: string, urlPath: string, token: string, body?: unknown) =>
  Effect.promise(async () => {
    const res = await fetch(base + urlPath, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${urlPath} → ${res.status} ${text}`)
    return JSON.parse(text) as any
  })

const sseUntil = (base: string, urlPath: string, options: Parameters<typeof connectSse>[2]) =>
  Effect.acquireRelease(
    Effect.promise(() => connectSse(base, urlPath, options)),
    (c: SseConnection) => Effect.sync(() => c.close())
  )

/** The compiled server on a fresh Debian cluster, with one user and a project of theirs. */
const heraldWithProject = (name: string) =>
  Effect.gen(function*() {
    const cluster = yield* debianCluster
    const port = yield* Effect.promise(() => freePort())
    const base = `http://127.0.0.1:${port}`
    const first = yield* herald(cluster.url, port)
    const user = yield* call(base, "POST", "/api/admin/users", ADMIN, { name })
    const token = user.token as string
    const project = yield* call(base, "POST", "/api/projects", token, { name })
    const projectId = project.id as string
    return { cluster, port, base, first, user, token, projectId, stream: projectStream(projectId) }
  })

/** The events Chromium's own EventSource received, as `frames` reads them. */
interface BrowserSeen {
  readonly frames: Array<{ readonly id: string; readonly event: string; readonly data: string }>
  opened: number
}

describe("after a database restore (pg_dump, more posts, pg_restore)", () => {
  it.scoped(
    "clients at a head the restore took back get reset from 1, the stream from 1, then new posts live: our reader and Chromium's EventSource",
    () =>
      Effect.gen(function*() {
        const { base, cluster, first, port, projectId, stream, token, user } = yield* heraldWithProject("restored")
        const workspace = workspaceStream(projectId, user.id)
        const postTo = (body: string, where: "project" | "workspace" = "project") =>
          call(
            base,
            "POST",
            where === "project"
              ? `/api/projects/${projectId}/messages`
              : `/api/projects/${projectId}/workspace/messages`,
            token,
            { body }
          )
        for (const i of [2, 3, 4]) yield* postTo(`before the backup ${i}`)
        yield* postTo("workspace before the backup", "workspace")

        // The clients, connected before the backup (a multiplexed cursor's base must be in the dump).
        const perStream = yield* sseUntil(base, projectPath(projectId), { token, after: "0" })
        const mux = yield* sseUntil(base, "/api/stream", { token })
        const executablePath = ensureChromium()
        const browser = yield* Effect.acquireRelease(
          Effect.promise(() => chromium.launch({ executablePath, args: chromiumArgs })),
          (b) => Effect.promise(() => b.close())
        )
        const page = yield* Effect.promise(() => browser.newPage())
        yield* Effect.promise(() => page.goto(`${base}/health/live`))
        yield* Effect.promise(() =>
          page.evaluate(({ url }) => {
            const seen: BrowserSeen = { frames: [], opened: 0 }
            ;(window as unknown as { seen: BrowserSeen }).seen = seen
            const source = new EventSource(url)
            source.onopen = () => seen.opened++
            for (const type of ["reset", "project.created", "message.created"]) {
              source.addEventListener(type, (e) => {
                const m = e as MessageEvent<string>
                seen.frames.push({ id: m.lastEventId, event: type, data: m.data })
              })
            }
          }, { url: `${projectPath(projectId)}?after=0&access_token=${encodeURIComponent(token)}` })
        )
        const browserSeen = Effect.promise(() => page.evaluate(() => (window as unknown as { seen: BrowserSeen }).seen))
        const browserFrames = Effect.map(browserSeen, (seen) =>
          seen.frames.map((f) => {
            const data = JSON.parse(f.data)
            // The seq part of the id (`<seq>.<tag>`; a reset's is a bare seq).
            const at = f.id.split(".")[0]
            return f.event === "reset"
              ? `reset:${data.stream}:${data.from}@${at}`
              : `${data.stream}#${data.seq}@${at}`
          }))
        // And Herald's web client, signed in: one multiplexed EventSource, its chat loaded over HTTP.
        const webClient = (name: string) =>
          Effect.gen(function*() {
            const app = yield* Effect.promise(() => browser.newPage())
            yield* Effect.promise(async () => {
              await app.goto(`${base}/`)
              await app.getByLabel("Token").fill(token)
              await app.getByRole("button", { name: "Sign in" }).click()
            })
            const shown = Effect.promise(() =>
              app.locator("#project-chat li.message .body").evaluateAll((els) => els.map((el) => el.textContent))
            )
            /** Waits until the project chat shows exactly `bodies`; fails with what it shows. */
            return (label: string, bodies: ReadonlyArray<string>) =>
              eventually(
                `${name}: ${label}`,
                Effect.map(shown, (got) =>
                  JSON.stringify(got) === JSON.stringify(bodies) ? Option.some(true) : Option.none()),
                20_000
              ).pipe(Effect.catchAllDefect(() =>
                Effect.flatMap(shown, (got) =>
                  Effect.sync(() => expect(got, `${name}: ${label}`).toEqual(bodies)))
              ))
          })
        const until = yield* webClient("signed in before the backup")
        const before = [2, 3, 4].map((i) => `before the backup ${i}`)
        yield* until("the web client shows the chat", before)
        yield* awaitEvents(perStream, 4)
        yield* awaitEvents(mux, 1) // heads
        yield* eventually(
          "Chromium has the stream up to 4",
          Effect.map(browserSeen, (seen) => seen.frames.length >= 4 ? Option.some(true) : Option.none())
        )

        const dump = path.join(cluster.dir, "herald.dump")
        yield* cluster.dump(dump)

        // A page signed in after the backup: its cursor's base is not in the dump.
        const untilLate = yield* webClient("signed in after the backup")
        yield* untilLate("the web client shows the chat", before)

        // After the backup: more posts, which every client receives; they are at 10 (workspace 3).
        for (const i of range(5, 10)) yield* postTo(`after the backup ${i}`)
        yield* postTo("workspace after the backup 2", "workspace")
        yield* postTo("workspace after the backup 3", "workspace")
        yield* awaitEvents(perStream, 10)
        yield* awaitEvents(mux, 1 + 6 + 2)
        yield* eventually(
          "Chromium has the stream up to 10",
          Effect.map(browserSeen, (seen) => seen.frames.length >= 10 ? Option.some(true) : Option.none())
        )
        const after = range(5, 10).map((i) => `after the backup ${i}`)
        yield* until("the web client shows the posts after the backup", [...before, ...after])
        yield* untilLate("the web client shows the posts after the backup", [...before, ...after])
        expect(perStream.events.at(-1)!.data.seq).toBe(10)
        const lastId = perStream.events.at(-1)!.id!
        const cursor = mux.events.at(-1)!.id!

        // The server goes, the database is restored from the backup, the server comes back on the same port.
        yield* Effect.promise(() => first.stop())
        yield* cluster.restore(dump)
        yield* herald(cluster.url, port)

        // Per stream, resuming at 10 on a stream whose head is 4 again: reset from 1, then 1..4.
        const resumed = yield* sseUntil(base, projectPath(projectId), { token, lastEventId: lastId })
        expect(resumed.status).toBe(200)
        yield* awaitEvents(resumed, 5)
        expect(resumed.events[0]).toEqual({ id: "0", event: "reset", data: { stream, from: 1 } })
        // Multiplexed, by its cursor: a reset for each stream, then each stream from 1.
        const muxResumed = yield* sseUntil(base, "/api/stream", { token, lastEventId: cursor })
        expect(muxResumed.status).toBe(200)
        yield* awaitEvents(muxResumed, 2 + 4 + 1)
        expect(frames(muxResumed.events.slice(0, 2)).sort()).toEqual(
          [`reset:${stream}:1`, `reset:${workspace}:1`].sort()
        )

        // Chromium's EventSource reconnected by itself with Last-Event-ID: 10 and got the same.
        yield* eventually(
          "Chromium got the reset and the restored stream",
          Effect.map(browserSeen, (seen) => seen.frames.length >= 15 ? Option.some(true) : Option.none()),
          20_000
        )

        // New posts arrive live on all of them, right after the restored events.
        const next = yield* postTo("after the restore")
        expect(next.event.seq).toBe(5)
        yield* awaitEvents(resumed, 6)
        yield* awaitEvents(muxResumed, 8)
        yield* eventually(
          "Chromium got the post after the restore",
          Effect.map(browserSeen, (seen) => seen.frames.length >= 16 ? Option.some(true) : Option.none())
        )
        yield* Effect.sleep("200 millis")
        expect(frames(resumed.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 5)])
        expect(resumed.events[5]!.data.data.body).toBe("after the restore")
        expect(frames(muxResumed.events).filter((f) => f.startsWith(stream))).toEqual(seqsOf(stream, 1, 5))
        expect(frames(muxResumed.events).filter((f) => f.startsWith(workspace))).toEqual([`${workspace}#1`])
        expect(yield* browserFrames).toEqual([
          ...range(1, 10).map((seq) => `${stream}#${seq}@${seq}`),
          `reset:${stream}:1@0`,
          ...range(1, 5).map((seq) => `${stream}#${seq}@${seq}`)
        ])
        expect((yield* browserSeen).opened).toBe(2)
        // The web client took its resets and reloaded the chat over HTTP: what the database holds now.
        yield* until("the web client shows the restored chat, then the new post", [...before, "after the restore"])
        // The later page's cursor is unknown to the restored database (400): the page starts over
        // without one (fresh heads, chat over HTTP) — it does not stay on what the restore took back.
        yield* untilLate("the web client shows the restored chat, then the new post", [...before, "after the restore"])
      }),
    { timeout: 180_000 }
  )
})

describe("diverged after a real restore (pg_dump at 4, posts to 8 seen, pg_restore, new posts take 5..10)", () => {
  it.scoped(
    "a client resuming with its last id or cursor gets reset from 1 and the events the database holds now, per stream and on /api/stream",
    () =>
      Effect.gen(function*() {
        const { base, cluster, first, port, projectId, stream, token } = yield* heraldWithProject("diverged")
        const postTo = (body: string) => call(base, "POST", `/api/projects/${projectId}/messages`, token, { body })
        for (const i of [2, 3, 4]) yield* postTo(`kept ${i}`)
        const perStream = yield* sseUntil(base, projectPath(projectId), { token, after: "0" })
        const mux = yield* sseUntil(base, "/api/stream", { token })
        yield* awaitEvents(perStream, 4)
        yield* awaitEvents(mux, 1)
        const dump = path.join(cluster.dir, "diverged.dump")
        yield* cluster.dump(dump)
        for (const i of range(5, 8)) yield* postTo(`lost ${i}`)
        yield* awaitEvents(perStream, 8)
        yield* awaitEvents(mux, 1 + 4)
        const lastId = perStream.events.at(-1)!.id!
        const cursor = mux.events.at(-1)!.id!
        perStream.close()
        mux.close()

        yield* Effect.promise(() => first.stop())
        yield* cluster.restore(dump)
        yield* herald(cluster.url, port)
        // New events take the lost seqs and go past the client's position: only the tag tells.
        for (const i of range(5, 10)) yield* postTo(`new ${i}`)

        const resumed = yield* sseUntil(base, projectPath(projectId), { token, lastEventId: lastId })
        expect(resumed.status).toBe(200)
        yield* awaitEvents(resumed, 11)
        expect(frames(resumed.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 10)])
        expect(resumed.events.slice(5).map((e) => e.data.data.body)).toEqual(range(5, 10).map((i) => `new ${i}`))
        const muxResumed = yield* sseUntil(base, "/api/stream", { token, lastEventId: cursor })
        expect(muxResumed.status).toBe(200)
        yield* awaitEvents(muxResumed, 11)
        expect(frames(muxResumed.events)).toEqual([`reset:${stream}:1`, ...seqsOf(stream, 1, 10)])
      }),
    { timeout: 120_000 }
  )
})
