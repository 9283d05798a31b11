/**
 * The SSE hub's gap filler under attack (issue 19): what a client gets when events reach its
 * connection through the database rather than live from the broker.
 *
 * - G5: a member removed from a project gets their `member.removed` and nothing after it — also
 *   when the removal and later posts reach an open connection through the filler (a gap, an
 *   envelope that travelled by reference), on `GET /api/projects/:id/stream` and `GET /api/stream`.
 * - G9: a hole inside what `event_outbox ∪ event_log` holds is a `reset` from the next held seq,
 *   never a stall, and the server never re-reads a range without progress.
 *
 * The server's own publisher fails every publish (chaos rate 1) on the postgres broker, so nothing
 * reaches the hub except what a test delivers itself on the broker's channel — exactly the way the
 * broker itself announces a large envelope: `{"stream", "seq"}`, a reference.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Effect, Option } from "effect"
import type { SseConnection } from "../../../test-support/SseClient.js"
import { EventReader } from "../src/stream/EventReader.js"
import { addMember, createProject, eventually, post, postMany } from "./support/HttpTesting.js"
import { awaitEvents, openSse, settlesWithin } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

const live = { excludeTestServices: true } as const

const projectPath = (projectId: string) => `/api/projects/${projectId}/stream`

/** What a client reads: `reset:<stream>:<from>`, or `<type>#<seq>` for an event. */
const frames = (events: ReadonlyArray<{ readonly event: string | undefined; readonly data: any }>) =>
  events.map((e) => e.event === "reset" ? `reset:${e.data.from}` : `${e.event}#${e.data.seq}`)

/** Announces committed events of `stream` by reference on the postgres broker's channel. */
const announce = (stream: string, seqs: ReadonlyArray<number>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(
      sql`SELECT pg_notify('herald_events', p) FROM unnest(${
        seqs.map((seq) => JSON.stringify({ stream, seq }))
      }::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`
    ))

const ownedProject = Effect.gen(function*() {
  const server = yield* TestServer
  const owner = yield* server.user("owner")
  const project = yield* createProject(owner, "faults")
  return { server, owner, projectId: project.id }
})

const member = (owner: TestUser, projectId: Ids.ProjectId, name: string) =>
  Effect.gen(function*() {
    const user = yield* (yield* TestServer).user(name)
    yield* addMember(owner, projectId, user)
    return user
  })

const remove = (owner: TestUser, projectId: Ids.ProjectId, user: TestUser) =>
  Effect.gen(function*() {
    const res = yield* (yield* TestServer).request("DELETE", `/api/projects/${projectId}/members/${user.id}`, {
      token: owner.token
    })
    expect(res.status).toBe(204)
  })

/** Transactions committed on the test's database, as pg_stat_database counts them. */
const commits = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.orDie(
    Effect.map(
      sql<{ n: number }>`SELECT xact_commit::int8 AS n FROM pg_stat_database WHERE datname = current_database()`,
      (rows) => Number(rows[0]!.n)
    )
  ))

/** The database's commits during `ms` of the server doing nothing but what its clients make it do. */
const commitsDuring = (ms: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* Effect.orDie(sql`SELECT pg_stat_clear_snapshot()`)
    const before = yield* commits
    yield* Effect.sleep(ms)
    yield* Effect.orDie(sql`SELECT pg_stat_clear_snapshot()`)
    return (yield* commits) - before
  })

/** Deletes one event from both tables, as retention and prune together can leave it missing. */
const punchHole = (stream: string, seq: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(Effect.all([
      sql`DELETE FROM event_outbox WHERE stream_id = ${stream} AND seq = ${seq}`,
      sql`DELETE FROM event_log WHERE stream_id = ${stream} AND seq = ${seq}`
    ])))

layer(testServerLayer({ broker: "postgres", chaosPublishFailureRate: 1, pollIntervalMs: 100 }), live)(
  "the SSE gap filler",
  (it) => {
    describe("a removed member (G5)", () => {
      it.scoped("per stream: a removal and a later post reaching the connection through the database end it at the removal", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const stream = `project:${projectId}`
          const bob = yield* member(owner, projectId, "bob")
          const bobs = yield* openSse(projectPath(projectId), { token: bob.token })
          yield* remove(owner, projectId, bob)
          const secret = yield* post(owner, projectId, { body: "secret" })
          // Only the secret is announced: the filler reads the removal and the secret in one page.
          yield* announce(stream, [secret.event.seq])
          expect(yield* settlesWithin(bobs.ended, 3_000), "bob's stream ended").toBe(true)
          expect(frames(bobs.events)).toEqual([`member.removed#${secret.event.seq - 1}`])
        }))

      it.scoped("multiplexed: the project's streams leave at the removal, nothing after it; other projects go on", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const other = yield* createProject(owner, "other")
          const stream = `project:${projectId}`
          const bob = yield* member(owner, projectId, "bob")
          yield* addMember(owner, other.id, bob)
          const bobs = yield* openSse("/api/stream", { token: bob.token })
          yield* awaitEvents(bobs, 1) // heads
          yield* remove(owner, projectId, bob)
          const secret = yield* post(owner, projectId, { body: "secret" })
          yield* announce(stream, [secret.event.seq])
          const after = yield* post(owner, other.id, { body: "still here" })
          yield* announce(`project:${other.id}`, [after.event.seq])
          yield* awaitEvents(bobs, 3)
          yield* Effect.sleep("300 millis")
          const bodies = bobs.events.filter((e) => e.event === "message.created").map((e) => e.data.data.body)
          expect(bodies).toEqual(["still here"])
          expect(bobs.events.filter((e) => e.data.stream === stream).map((e) => `${e.event}#${e.data.seq}`))
            .toEqual([`member.removed#${secret.event.seq - 1}`])
        }))

      it.scoped("multiplexed, resumed after the removal: up to and including it, and nothing posted after", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const stream = `project:${projectId}`
          const bob = yield* member(owner, projectId, "bob")
          const first = yield* openSse("/api/stream", { token: bob.token })
          yield* awaitEvents(first, 1)
          const cursor = first.events[0]!.id!
          first.close()
          yield* post(owner, projectId, { body: "before" })
          yield* remove(owner, projectId, bob)
          yield* postMany(owner, projectId, 3)
          const resumed = yield* openSse("/api/stream", { token: bob.token, lastEventId: cursor })
          yield* awaitEvents(resumed, 2)
          yield* Effect.sleep("300 millis")
          expect(resumed.events.filter((e) => e.data.stream === stream).map((e) => e.event)).toEqual([
            "message.created",
            "member.removed"
          ])
        }))
    })

    describe("a member removed and added back (G5: nothing from while they were out)", () => {
      /** bob's stream open, then: bob removed, "secret" posted, bob added back, "after" posted. */
      const outAndBack = (
        bobStream: (bob: TestUser, projectId: Ids.ProjectId) => Effect.Effect<SseConnection, never, any>
      ) =>
        Effect.gen(function*() {
          const { owner, projectId, server } = yield* ownedProject
          const stream = `project:${projectId}`
          const bob = yield* member(owner, projectId, "bob")
          const sse = yield* bobStream(bob, projectId)
          yield* remove(owner, projectId, bob)
          yield* post(owner, projectId, { body: "secret" })
          expect(
            (yield* server.request("POST", `/api/projects/${projectId}/members`, {
              token: owner.token,
              json: { userId: bob.id }
            })).status
          ).toBe(201)
          const after = yield* post(owner, projectId, { body: "after" })
          // Announced at once, as a busy broker would: the filler reads all four in one page.
          yield* announce(stream, [after.event.seq])
          return { sse, stream, seq: after.event.seq }
        })

      it.scoped("per stream, live: the removal, then the add and what follows; not what was posted in between", () =>
        Effect.gen(function*() {
          const { seq, sse } = yield* outAndBack((bob, projectId) =>
            openSse(projectPath(projectId), { token: bob.token })
          )
          yield* awaitEvents(sse, 3)
          yield* Effect.sleep("300 millis")
          expect(frames(sse.events)).toEqual([
            `member.removed#${seq - 3}`,
            `member.added#${seq - 1}`,
            `message.created#${seq}`
          ])
        }))

      it.scoped("multiplexed, live: the same on the project stream", () =>
        Effect.gen(function*() {
          const { seq, sse, stream } = yield* outAndBack((bob) =>
            Effect.tap(openSse("/api/stream", { token: bob.token }), (c) => awaitEvents(c, 1))
          )
          yield* awaitEvents(sse, 4)
          yield* Effect.sleep("300 millis")
          expect(frames(sse.events.filter((e) => e.data.stream === stream))).toEqual([
            `member.removed#${seq - 3}`,
            `member.added#${seq - 1}`,
            `message.created#${seq}`
          ])
        }))

      it.scoped("resumed from the removal (its last frame), per stream and multiplexed: from the add on", () =>
        Effect.gen(function*() {
          const { owner, projectId, server } = yield* ownedProject
          const stream = `project:${projectId}`
          const bob = yield* member(owner, projectId, "bob")
          const single = yield* openSse(projectPath(projectId), { token: bob.token })
          const mux = yield* openSse("/api/stream", { token: bob.token })
          yield* awaitEvents(mux, 1)
          yield* remove(owner, projectId, bob)
          const removal = (yield* post(owner, projectId, { body: "secret" })).event.seq - 1
          yield* announce(stream, [removal])
          yield* awaitEvents(single, 1)
          yield* awaitEvents(mux, 2)
          expect(yield* settlesWithin(single.ended, 3_000)).toBe(true)
          const lastId = single.events[0]!.id!
          const cursor = mux.events[1]!.id!
          mux.close()
          yield* server.request("POST", `/api/projects/${projectId}/members`, {
            token: owner.token,
            json: { userId: bob.id }
          })
          yield* post(owner, projectId, { body: "after" })
          const again = yield* openSse(projectPath(projectId), { token: bob.token, lastEventId: lastId })
          const muxAgain = yield* openSse("/api/stream", { token: bob.token, lastEventId: cursor })
          yield* awaitEvents(again, 2)
          yield* awaitEvents(muxAgain, 2)
          yield* Effect.sleep("300 millis")
          const expected = [`member.added#${removal + 2}`, `message.created#${removal + 3}`]
          expect(frames(again.events)).toEqual(expected)
          expect(frames(muxAgain.events.filter((e) => e.data.stream === stream))).toEqual(expected)
        }))
    })

    describe("an add the broker lost (G4: joins survive a broker that lost deliveries)", () => {
      it.scoped("multiplexed: a project the caller was added to while the broker lost the add joins at the broker's Resync", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const other = yield* createProject(owner, "other")
          const bob = yield* member(owner, projectId, "bob")
          const bobs = yield* openSse("/api/stream", { token: bob.token })
          yield* awaitEvents(bobs, 1) // heads: projectId only
          yield* Effect.sleep("500 millis") // the connection's own look for adds that raced its opening is over
          // The add is committed, but its envelope never reaches the hub (every publish fails).
          const added = yield* addMember(owner, other.id, bob)
          expect(added.userId).toBe(bob.id)
          yield* post(owner, other.id, { body: "welcome" })
          // The LISTEN connection dies: the hub listens again, and the broker's Resync follows.
          const sql = yield* SqlClient.SqlClient
          yield* eventually(
            "the LISTEN backend terminated",
            Effect.map(
              Effect.orDie(sql<{ n: number }>`
                SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
                WHERE datname = current_database() AND query ILIKE 'LISTEN%'`),
              (rows) => rows[0]!.n > 0 ? Option.some(true) : Option.none()
            )
          )
          yield* awaitEvents(bobs, 3)
          expect(frames(bobs.events.filter((e) => e.data.stream === `project:${other.id}`))).toEqual([
            "member.added#2",
            "message.created#3"
          ])
        }))
    })

    describe("adds out of order", () => {
      it.scoped("multiplexed: re-added, removed and re-added again, with only the last add delivered: joins at the first add after its removal", () =>
        Effect.gen(function*() {
          const { owner, projectId, server } = yield* ownedProject
          const stream = `project:${projectId}`
          const bob = yield* member(owner, projectId, "bob")
          const bobs = yield* openSse("/api/stream", { token: bob.token })
          yield* awaitEvents(bobs, 1)
          yield* remove(owner, projectId, bob) // 3
          yield* announce(stream, [3])
          yield* awaitEvents(bobs, 2)
          const readd = () =>
            server.request("POST", `/api/projects/${projectId}/members`, {
              token: owner.token,
              json: { userId: bob.id }
            })
          yield* readd() // 4
          yield* post(owner, projectId, { body: "while back" }) // 5
          yield* remove(owner, projectId, bob) // 6
          yield* post(owner, projectId, { body: "while out" }) // 7
          yield* readd() // 8
          // Only the last add arrives (as an envelope: an add joins on its envelope), the first one late.
          const sql = yield* SqlClient.SqlClient
          const reader = yield* EventReader
          const [last] = yield* Effect.orDie(reader.range(stream, 7, 8, 1))
          yield* Effect.orDie(sql`SELECT pg_notify('herald_events', ${JSON.stringify(last)})`)
          yield* awaitEvents(bobs, 6)
          yield* Effect.sleep("300 millis")
          expect(frames(bobs.events.filter((e) => e.data.stream === stream))).toEqual([
            "member.removed#3",
            "member.added#4",
            "message.created#5",
            "member.removed#6",
            "member.added#8"
          ])
        }))
    })

    describe("a hole inside what is held (G9)", () => {
      it.scoped("per stream: a resume before the hole gets the events up to it, reset from the next held seq, then the rest and later posts live", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const stream = `project:${projectId}`
          yield* postMany(owner, projectId, 5, { concurrency: 1 }) // seqs 2..6
          yield* punchHole(stream, 3)
          const sse = yield* openSse(projectPath(projectId), { token: owner.token, after: "1" })
          yield* awaitEvents(sse, 5)
          const next = yield* post(owner, projectId)
          yield* announce(stream, [next.event.seq])
          yield* awaitEvents(sse, 6)
          expect(frames(sse.events)).toEqual([
            "message.created#2",
            "reset:4",
            "message.created#4",
            "message.created#5",
            "message.created#6",
            "message.created#7"
          ])
          // The reset's id is the position before `from`: a reconnect goes on from there.
          expect(sse.events[1]!.id).toBe("3")
        }))

      it.scoped("per stream: a connection waiting at a hole does not make the server re-read the database", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const stream = `project:${projectId}`
          yield* postMany(owner, projectId, 3, { concurrency: 1 }) // seqs 2..4
          const sse = yield* openSse(projectPath(projectId), { token: owner.token })
          const at = yield* post(owner, projectId) // 5, never announced
          yield* punchHole(stream, at.event.seq)
          const next = yield* post(owner, projectId) // 6: its announcement shows the gap
          yield* announce(stream, [next.event.seq])
          yield* awaitEvents(sse, 2)
          expect(frames(sse.events)).toEqual([`reset:${next.event.seq}`, `message.created#${next.event.seq}`])
          // Announced but held nowhere (a stale or forged reference): no spinning on it either.
          yield* announce(stream, [next.event.seq + 5])
          const idle = yield* commitsDuring(1_000)
          // The server's own loops (publisher, materializer polls at 100 ms) commit a few dozen a second.
          expect(idle, "transactions committed in 1 s with one client").toBeLessThan(200)
          const later = yield* post(owner, projectId)
          yield* announce(stream, [later.event.seq])
          yield* awaitEvents(sse, 3)
          expect(frames(sse.events).at(-1)).toBe(`message.created#${later.event.seq}`)
        }))

      it.scoped("multiplexed: a reset for that stream at the hole, the others untouched", () =>
        Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject
          const stream = `project:${projectId}`
          const mux = yield* openSse("/api/stream", { token: owner.token })
          yield* awaitEvents(mux, 1) // heads
          const posts = yield* postMany(owner, projectId, 4, { concurrency: 1 }) // seqs 2..5
          yield* punchHole(stream, 3)
          yield* announce(stream, [posts.at(-1)!.event.seq])
          yield* awaitEvents(mux, 5)
          expect(frames(mux.events.slice(1))).toEqual([
            "message.created#2",
            "reset:4",
            "message.created#4",
            "message.created#5"
          ])
          expect(mux.events[2]!.data.stream).toBe(stream)
          // Its id is a cursor: resuming from it gets what followed, no reset again.
          const resumed = yield* openSse("/api/stream", { token: owner.token, lastEventId: mux.events[2]!.id! })
          yield* awaitEvents(resumed, 2)
          expect(frames(resumed.events)).toEqual(["message.created#4", "message.created#5"])
        }))
    })
  }
)
