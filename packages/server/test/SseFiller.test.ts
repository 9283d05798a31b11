/**
 * An SSE connection that is catching up from the database (its filler) when the database fails
 * under it: the response must end — cleanly, so the client resumes by `Last-Event-ID` — and not
 * hang on keepalives; the resumed connection gets every event exactly once, in seq order (G4).
 *
 * The failure is a real one, timed with locks: the filler's first page is held back by a lock
 * on `event_log`, a second lock request queues behind that page's read, so the filler's next
 * read waits on it, and that waiting statement is cancelled (`pg_cancel_backend`) — mid-fill,
 * after the first page, every time.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Logger, LogLevel } from "effect"
import { awaitEvents, ids, openSse, range, settlesWithin } from "./support/SseTesting.js"
import { TestServer, testServerLayer } from "./support/TestServer.js"

/** More than the filler reads per page (500), so that catching up takes a second read. */
const EVENTS = 520

const warnings: Array<string> = []
const captureWarnings = Logger.add(Logger.make(({ logLevel, message }) => {
  if (LogLevel.greaterThanEqual(logLevel, LogLevel.Warning)) warnings.push(String(message))
}))

/** Holds `LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE` in a transaction until `release` runs. */
const lockEventLog = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const locked = yield* Deferred.make<void>()
  const released = yield* Deferred.make<void>()
  const fiber = yield* sql.withTransaction(
    sql`LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE`.pipe(
      Effect.zipRight(Deferred.succeed(locked, undefined)),
      Effect.zipRight(Deferred.await(released))
    )
  ).pipe(Effect.orDie, Effect.fork)
  return {
    locked: Deferred.await(locked),
    release: Effect.zipRight(Deferred.succeed(released, undefined), Fiber.join(fiber))
  }
})

/** The backends of this database whose statement matches `pattern` and waits for a lock. */
const waitingOnLock = (pattern: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(sql<{ pid: number }>`
      SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND wait_event_type = 'Lock' AND query LIKE ${pattern}`)).pipe(
      Effect.map((rows) => rows.map((r) => r.pid))
    )

/** Polls until a statement matching `pattern` is waiting for a lock, and returns its backend. */
const untilWaiting = (pattern: string) =>
  waitingOnLock(pattern).pipe(
    Effect.delay("10 millis"),
    Effect.repeat({ until: (pids) => pids.length === 1 }),
    Effect.timeoutFail({
      duration: "10 seconds",
      onTimeout: () => new Error(`no statement like ${pattern} waits for a lock`)
    }),
    Effect.orDie,
    Effect.map((pids) => pids[0]!)
  )

/** The event reader's statement (EventReader.range), the one the filler runs. */
const FILLER_READ = "%SELECT DISTINCT ON (seq)%"

layer(testServerLayer().pipe(Layer.provide(captureWarnings)), { excludeTestServices: true })("SSE filler", (it) => {
  it.scoped(
    "a database failure mid-fill ends the response; resuming by Last-Event-ID gets every event exactly once, in order",
    () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const sql = yield* SqlClient.SqlClient
        const owner = yield* server.user("owner")
        const project = yield* server.request("POST", "/api/projects", { token: owner.token, json: { name: "filler" } })
        expect(project.status).toBe(201)
        const path = `/api/projects/${project.body.id}/stream`
        const post = (body: string) =>
          Effect.tap(
            server.request("POST", `/api/projects/${project.body.id}/messages`, { token: owner.token, json: { body } }),
            (res) => expect(res.status).toBe(201)
          )
        yield* Effect.forEach(range(2, EVENTS), (i) => post(`m${i}`), { concurrency: 16, discard: true })

        // The filler's first read waits for the first lock; a second lock request queues behind it.
        const first = yield* lockEventLog
        yield* first.locked
        const sse = yield* openSse(path, { token: owner.token, after: "0" })
        expect(sse.status).toBe(200)
        yield* untilWaiting(FILLER_READ)
        const second = yield* lockEventLog
        yield* untilWaiting("LOCK TABLE event_log%")
        // The first page is read once the first lock goes; the second lock is granted after that
        // read, so the filler's next read waits for it — and is cancelled: a database error mid-fill.
        yield* first.release
        yield* second.locked
        const nextRead = yield* untilWaiting(FILLER_READ)
        yield* Effect.orDie(sql`SELECT pg_cancel_backend(${nextRead})`)
        yield* second.release

        expect(yield* settlesWithin(sse.ended, 5_000), "the response ends after its filler failed").toBe(true)
        const got = ids(sse.events)
        expect(got.length, "the first page arrived before the failure").toBeGreaterThan(0)
        expect(got.length).toBeLessThan(EVENTS)
        expect(got).toEqual(range(1, got.length))
        expect(warnings.some((w) => w.includes(`reading project:${project.body.id}`)), warnings.join("\n")).toBe(true)

        // The client resumes from its last id: the rest, then live, each event once, in order.
        const last = got.at(-1)!
        const resumed = yield* openSse(path, { token: owner.token, lastEventId: String(last) })
        yield* awaitEvents(resumed, EVENTS - last)
        yield* post("sentinel")
        yield* Effect.promise(() => resumed.waitForEvents(EVENTS - last + 1, 5_000).catch(() => []))
        yield* Effect.sleep("100 millis")
        expect(ids(resumed.events)).toEqual(range(last + 1, EVENTS + 1))
      }),
    { timeout: 60_000 }
  )
})
