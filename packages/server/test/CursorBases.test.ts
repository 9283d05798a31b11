/**
 * The bases of `GET /api/stream` cursors (SPEC §5 "Multiplexed stream", G11): shared by a user's
 * connections whose positions are the same, so page loads at an unchanged head write one row;
 * kept `last_used_at` coarsely; deleted after `HERALD_CURSOR_RETENTION` unused (by the server on
 * its own and by the same prune the CLI runs); and a resume from a deleted base is a 400
 * `CursorExpired`, told apart from a malformed, forged or another user's cursor (400 BadRequest) —
 * through the SSE door and through the HTTP app alike. Real HTTP, real PostgreSQL.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Duration, Effect, Option } from "effect"
import { CursorStore, MAX_BASES_PER_USER } from "../src/stream/CursorStore.js"
import { createProject, eventually, post, postMany, send } from "./support/HttpTesting.js"
import { awaitEvents, fetchSse, openSse, withoutSseDoor } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

const live = { excludeTestServices: true } as const

const projectStream = (projectId: string) => `project:${projectId}`

const HEADS = /^id: (\S+)\nevent: heads\ndata: (.*)$/m

/** A page load: `GET /api/stream` without a cursor, read up to its `heads` frame, closed. */
const pageLoad = (as: { readonly token: string }) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const res = yield* fetchSse(server.url, "/api/stream", {
      headers: { authorization: `Bearer ${as.token}` },
      until: (text) => HEADS.test(text)
    })
    expect(res.status).toBe(200)
    const m = HEADS.exec(res.text)!
    return { cursor: m[1]!, heads: JSON.parse(m[2]!).streams as Record<string, number> }
  })

const sql = (strings: TemplateStringsArray, ...values: Array<unknown>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => Effect.orDie(sql<any>(strings, ...values)))

const basesOf = (user: { readonly id: Ids.UserId }) =>
  Effect.map(sql`SELECT count(*)::int AS n FROM stream_cursors WHERE user_id = ${user.id}`, ([r]) => r.n as number)

/** The base a cursor names (its id: bytes 1–16 of the cursor). */
const baseIdOf = (cursor: string) => {
  const hex = Buffer.from(cursor, "base64url").subarray(1, 17).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const lastUsed = (cursor: string) =>
  Effect.map(
    sql`SELECT last_used_at AS at FROM stream_cursors WHERE id = ${baseIdOf(cursor)}`,
    (rows) => rows[0]?.at as Date | undefined
  )

const setLastUsed = (cursor: string, ago: string) =>
  sql`UPDATE stream_cursors SET last_used_at = now() - ${ago}::interval WHERE id = ${baseIdOf(cursor)}`

/** A resume by Last-Event-ID or ?cursor=, answered as is (an SSE 200 is read no further than its status). */
const resume = (as: { readonly token: string }, cursor: string, via: "header" | "query") =>
  via === "header"
    ? send(as, "GET", "/api/stream", undefined, { "last-event-id": cursor })
    : send(as, "GET", `/api/stream?cursor=${encodeURIComponent(cursor)}`)

/** Resumes `cursor` as `as` and reads it until every stream of `expected` reached its last seq. */
const resumeAndRead = (as: TestUser, cursor: string, expected: Record<string, ReadonlyArray<number>>) =>
  Effect.gen(function*() {
    const sse = yield* openSse("/api/stream", { token: as.token, lastEventId: cursor })
    expect(sse.status).toBe(200)
    const total = Object.values(expected).reduce((n, seqs) => n + seqs.length, 0)
    yield* awaitEvents(sse, total)
    yield* Effect.sleep("150 millis")
    const got: Record<string, Array<number>> = {}
    for (const e of sse.events) (got[e.data.stream] ??= []).push(e.data.seq)
    expect(got).toEqual(expected)
    sse.close()
  })

layer(testServerLayer({ sseHeartbeatMs: 200 }), live)("cursor bases", (it) => {
  describe("shared", () => {
    it.scoped(
      "100 page loads by one user at an unchanged head write one base (10 of them at once too); another user gets their own",
      () =>
        Effect.gen(function*() {
          const server = yield* TestServer
          const me = yield* server.user("reloader")
          const other = yield* server.user("other")
          const a = yield* createProject(me, "a")
          const b = yield* createProject(me, "b")
          yield* postMany(me, a.id, 3)
          yield* post(me, b.id, { workspace: true })
          yield* createProject(other, "theirs")
          expect(yield* basesOf(me)).toBe(0)

          const loads = []
          for (let i = 0; i < 90; i++) loads.push(yield* pageLoad(me))
          // Many tabs at once: the same positions race to write the same base.
          loads.push(...yield* Effect.all(Array.from({ length: 10 }, () => pageLoad(me)), { concurrency: 10 }))
          const rows = yield* basesOf(me)
          yield* Effect.logInfo(`100 page loads at an unchanged head: ${rows} cursor base row(s)`)
          expect(rows).toBe(1)
          expect(new Set(loads.map((l) => baseIdOf(l.cursor))).size).toBe(1)
          expect(new Set(loads.map((l) => JSON.stringify(l.heads))).size).toBe(1)

          yield* pageLoad(other)
          yield* pageLoad(other)
          expect(yield* basesOf(other)).toBe(1)
          expect(yield* basesOf(me)).toBe(1)
        }),
      120_000
    )

    it.scoped("after posts, a new base only when the positions differ", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("poster"))
        const p = yield* createProject(me)
        const first = yield* pageLoad(me)
        yield* pageLoad(me)
        expect(yield* basesOf(me)).toBe(1)
        yield* post(me, p.id)
        const second = yield* pageLoad(me)
        expect(second.heads[projectStream(p.id)]).toBe(2)
        expect(baseIdOf(second.cursor)).not.toBe(baseIdOf(first.cursor))
        yield* pageLoad(me)
        expect(yield* basesOf(me)).toBe(2)
        // A workspace post moves the positions too.
        yield* post(me, p.id, { workspace: true })
        yield* pageLoad(me)
        yield* pageLoad(me)
        expect(yield* basesOf(me)).toBe(3)
      }))

    it.scoped(`a user keeps at most ${MAX_BASES_PER_USER} bases: one more deletes their least recently used (its cursor: CursorExpired)`, () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("many positions")
        const other = yield* server.user("bystander")
        const p = yield* createProject(me)
        yield* createProject(other)
        const oldest = yield* pageLoad(me)
        const theirs = yield* pageLoad(other)
        yield* setLastUsed(oldest.cursor, "2 days")
        yield* setLastUsed(theirs.cursor, "3 days")
        // As if the user had loaded pages at MAX - 1 other positions since.
        yield* sql`
          INSERT INTO stream_cursors (id, user_id, key, positions, digest, last_used_at)
          SELECT gen_random_uuid(), ${me.id}, 'k', '[]'::jsonb, 'filler-' || g, now() - interval '1 hour'
          FROM generate_series(1, ${MAX_BASES_PER_USER - 1}) g`
        expect(yield* basesOf(me)).toBe(MAX_BASES_PER_USER)
        yield* post(me, p.id)
        const newest = yield* pageLoad(me)
        expect(yield* basesOf(me)).toBe(MAX_BASES_PER_USER)
        expect(yield* lastUsed(newest.cursor)).toBeDefined()
        expect(yield* lastUsed(oldest.cursor)).toBeUndefined()
        // Another user's bases are theirs: untouched, however old.
        expect(yield* lastUsed(theirs.cursor)).toBeDefined()
        const res = yield* resume(me, oldest.cursor, "query")
        expect(res.status).toBe(400)
        expect(res.body._tag).toBe("CursorExpired")
      }))

    it.scoped("two tabs on one shared base each resume exactly: every later event once, in order", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("tabs"))
        const p = yield* createProject(me)
        const q = yield* createProject(me)
        const tab1 = yield* pageLoad(me)
        const tab2 = yield* pageLoad(me)
        expect(baseIdOf(tab2.cursor)).toBe(baseIdOf(tab1.cursor))
        yield* postMany(me, p.id, 5, { concurrency: 1 })
        yield* post(me, q.id, { workspace: true })
        const expected = {
          [projectStream(p.id)]: [2, 3, 4, 5, 6],
          [`workspace:${q.id}:${me.id}`]: [1]
        }
        yield* resumeAndRead(me, tab1.cursor, expected)
        yield* resumeAndRead(me, tab2.cursor, expected)
        yield* resumeAndRead(me, tab1.cursor, expected)
      }))
  })

  describe("last_used_at", () => {
    it.scoped("a resume touches a base not touched for a while, not one touched recently; a HEAD never", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("toucher"))
        yield* createProject(me)
        const { cursor } = yield* pageLoad(me)
        const server = yield* TestServer

        yield* setLastUsed(cursor, "2 days")
        const head = yield* Effect.promise(() =>
          fetch(`${server.url}/api/stream?cursor=${cursor}`, {
            method: "HEAD",
            headers: { authorization: `Bearer ${me.token}` }
          })
        )
        expect(head.status).toBe(200)
        const afterHead = (yield* lastUsed(cursor))!
        expect(Date.now() - afterHead.getTime()).toBeGreaterThan(Duration.toMillis("47 hours"))

        const a = yield* openSse("/api/stream", { token: me.token, lastEventId: cursor })
        expect(a.status).toBe(200)
        a.close()
        const touched = (yield* lastUsed(cursor))!
        expect(Date.now() - touched.getTime()).toBeLessThan(60_000)

        // Touched five minutes ago: a resume writes nothing (the default retention touches at most hourly).
        yield* setLastUsed(cursor, "5 minutes")
        const before = (yield* lastUsed(cursor))!
        for (const via of ["header", "query"] as const) {
          const again = yield* openSse(
            via === "header" ? "/api/stream" : `/api/stream?cursor=${cursor}`,
            { token: me.token, ...(via === "header" ? { lastEventId: cursor } : {}) }
          )
          expect(again.status).toBe(200)
          again.close()
        }
        expect(yield* lastUsed(cursor)).toEqual(before)
        // A page load sharing it counts as a use too, under the same rule.
        yield* setLastUsed(cursor, "2 days")
        yield* pageLoad(me)
        expect(Date.now() - (yield* lastUsed(cursor))!.getTime()).toBeLessThan(60_000)
      }))
  })

  describe("expiry", () => {
    it.scoped(
      "prune deletes only bases unused longer than the retention; resuming from one is 400 CursorExpired on both paths, and a bad cursor is still BadRequest",
      () =>
        Effect.gen(function*() {
          const server = yield* TestServer
          const me = yield* server.user("expiring")
          const other = yield* server.user("someone else")
          const p = yield* createProject(me)
          yield* createProject(other)
          const old = yield* pageLoad(me)
          yield* post(me, p.id)
          const recent = yield* pageLoad(me)
          const theirs = yield* pageLoad(other)
          yield* setLastUsed(old.cursor, "31 days")
          yield* setLastUsed(recent.cursor, "29 days")
          yield* setLastUsed(theirs.cursor, "29 days 23 hours")

          const store = yield* CursorStore
          const deleted = yield* store.prune(Duration.days(30))
          expect(deleted).toBe(1)
          expect(yield* lastUsed(old.cursor)).toBeUndefined()
          expect(yield* lastUsed(recent.cursor)).toBeDefined()
          expect(yield* lastUsed(theirs.cursor)).toBeDefined()

          const bytes = Buffer.from(old.cursor, "base64url")
          const flipped = (i: number) => {
            const copy = Buffer.from(bytes)
            copy[i] = copy[i]! ^ 1
            return copy.toString("base64url")
          }
          const check = (way: string) =>
            Effect.gen(function*() {
              for (const via of ["header", "query"] as const) {
                const res = yield* resume(me, old.cursor, via)
                expect(res.status, `${way}, by ${via}: ${JSON.stringify(res.body)}`).toBe(400)
                expect(res.headers.get("content-type")).toMatch(/^application\/json/)
                expect(res.body).toEqual({ _tag: "CursorExpired", message: expect.stringMatching(/expired/) })

                // Not ours to tell apart: the same cursor changed, or used by someone else.
                for (
                  const [what, as, bad] of [
                    ["a changed signature", me, flipped(bytes.length - 1)],
                    ["a changed base id", me, flipped(5)],
                    ["another user's expired cursor", other, old.cursor]
                  ] as const
                ) {
                  const refused = yield* resume(as, bad, via)
                  expect(refused.status, `${way}, ${what} by ${via}`).toBe(400)
                  expect(refused.body, `${way}, ${what} by ${via}`).toMatchObject({
                    _tag: "BadRequest",
                    field: "cursor"
                  })
                }
                const ok = yield* openSse(
                  via === "header" ? "/api/stream" : `/api/stream?cursor=${recent.cursor}`,
                  { token: me.token, ...(via === "header" ? { lastEventId: recent.cursor } : {}) }
                )
                expect(ok.status, `${way}: the base used within the retention still resumes`).toBe(200)
                ok.close()
              }
              const head = yield* Effect.promise(() =>
                fetch(`${server.url}/api/stream?cursor=${old.cursor}`, {
                  method: "HEAD",
                  headers: { authorization: `Bearer ${me.token}` }
                })
              )
              expect(head.status, `${way}: HEAD`).toBe(400)
            })
          yield* check("the door")
          yield* Effect.scoped(Effect.zipRight(withoutSseDoor, check("the HTTP app")))

          // Starting over: a page load without a cursor works and writes the base again.
          const fresh = yield* pageLoad(me)
          expect(fresh.heads[projectStream(p.id)]).toBe(2)
        }),
      60_000
    )
  })
})

layer(testServerLayer({ sseHeartbeatMs: 200, cursorRetention: Duration.seconds(3) }), live)(
  "the server prunes cursor bases by itself",
  (it) => {
    it.scoped("a base unused for HERALD_CURSOR_RETENTION is deleted; one in use is kept", () =>
      Effect.gen(function*() {
        const me = yield* Effect.flatMap(TestServer, (s) => s.user("idle"))
        const p = yield* createProject(me)
        const left = yield* pageLoad(me)
        yield* post(me, p.id)
        const kept = yield* pageLoad(me)
        const started = Date.now()
        // `kept` is resumed every half second; `left` never again.
        const gone = yield* eventually(
          "the unused base deleted",
          Effect.gen(function*() {
            const sse = yield* openSse("/api/stream", { token: me.token, lastEventId: kept.cursor })
            expect(sse.status, "a base in use is never deleted").toBe(200)
            sse.close()
            yield* Effect.sleep("500 millis")
            return Option.liftPredicate(yield* lastUsed(left.cursor), (at) => at === undefined)
          }).pipe(Effect.scoped),
          20_000
        )
        expect(gone).toBeUndefined()
        const after = Date.now() - started
        yield* Effect.logInfo(`unused base deleted after ${after} ms (retention 3 s)`)
        expect(after).toBeGreaterThan(2_000)
        expect(yield* lastUsed(kept.cursor)).toBeDefined()
        const res = yield* resume(me, left.cursor, "header")
        expect(res.status).toBe(400)
        expect(res.body._tag).toBe("CursorExpired")
      }), 30_000)
  }
)
