/**
 * Following a busy stream's history near its head (the README's G6): writers post to one project
 * over HTTP while several materializers copy the outbox into event_log at once — the server's own
 * and more `materializeOnce` loops in parallel fibers, with small batches — and a reader pages
 * `GET …/events?after=<last seq seen>` as fast as it can. Some copies are slow (a trigger sleeps
 * inside the INSERT, as a disk stall would), so while one materializer holds a batch the others
 * skip it (`SKIP LOCKED`) and commit later seqs first. The reader must still see every seq from 1
 * to the head exactly once, in order: a page never skips a committed seq, whatever the
 * materializer is doing.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Events, type Ids } from "@herald/domain"
import { Effect, Fiber, Ref } from "effect"
import { materializeOnce } from "../src/eventlog/Materializer.js"
import { createProject, get, post } from "./support/HttpTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

/** Live clock: the server's materializer and publisher poll in real time. */
// `layer` rather than `it.layer`: the same function, but only its signature accepts this option.
const live = { excludeTestServices: true } as const
const ServerLive = testServerLayer({ pollIntervalMs: 20 })

const POSTS = 800
const WRITERS = 12
/** Every SLOW_EVERY-th seq is copied slowly (SLOW_MS), holding its batch's rows meanwhile. */
const SLOW_EVERY = 16
const SLOW_MS = 40
/** Extra materializers beside the server's, and their batch sizes: small, so batches overlap often. */
const MATERIALIZERS = [3, 4, 5]
const PAGE = 50

interface Followed {
  readonly seqs: ReadonlyArray<number>
  /** Where the reader went forward by more than one seq: the last seq it had, and the next it got. */
  readonly jumps: ReadonlyArray<readonly [number, number]>
}

/**
 * Reads the history from the start, page after page, each from the last seq seen (`nextAfter`, or
 * on the last page the last item), until the writers are done and it has reached `head`. `first`:
 * the first seq it should get (with `type`, the first event of that type).
 */
const follow = (
  as: TestUser,
  path: string,
  options: { readonly type?: Events.EventType; readonly first: number },
  done: Effect.Effect<number | undefined>
) =>
  Effect.gen(function*() {
    const seqs: Array<number> = []
    const jumps: Array<readonly [number, number]> = []
    let after = 0
    const type = options.type === undefined ? "" : `&type=${options.type}`
    while (true) {
      const head = yield* done
      const page = yield* get(as, `${path}?after=${after}&limit=${PAGE}${type}`)
      const items = page.items as ReadonlyArray<Events.EventWire>
      for (const e of items) {
        if (e.seq !== (seqs.length === 0 ? options.first : after + 1)) jumps.push([after, e.seq])
        if (options.type !== undefined) expect(e.type).toBe(options.type)
        seqs.push(e.seq)
        after = e.seq
      }
      // nextAfter: the last seq returned, and null on a short page.
      if (page.nextAfter !== null) expect(page.nextAfter).toBe(after)
      if (items.length < PAGE) expect(page.nextAfter).toBe(null)
      // `head` was read before this page: everything up to it was committed when the page was read.
      if (head !== undefined && after >= head) return { seqs, jumps } satisfies Followed
    }
  })

/**
 * Whether event_log ever held a seq of the stream without all those below it: the materializers
 * copied out of order, the race this test is about (so it cannot pass without one).
 */
const watchForHoles = (stream: string, done: Effect.Effect<number | undefined>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let holes = 0
    while ((yield* done) === undefined) {
      const [row] = yield* Effect.orDie(sql<{ n: number; last: number | null }>`
        SELECT count(*)::int AS n, max(seq) AS last FROM event_log WHERE stream_id = ${stream}`)
      if (row!.last !== null && Number(row!.last) > row!.n) holes++
      yield* Effect.sleep("2 millis")
    }
    return holes
  })

/**
 * Slow copies while the scope lasts: the INSERT into event_log sleeps on every `every`-th seq, before
 * the statement's rollup upserts (which would make the other materializers wait for it).
 */
const slowCopies = (every: number, ms: number) =>
  Effect.acquireRelease(
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      Effect.zipRight(
        sql.unsafe(`
          CREATE FUNCTION test_slow_copy() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN PERFORM pg_sleep(${ms / 1_000}); RETURN NEW; END $$`),
        sql.unsafe(`
          CREATE TRIGGER test_slow_copy BEFORE INSERT ON event_log FOR EACH ROW
          WHEN (NEW.seq % ${every} = 0) EXECUTE FUNCTION test_slow_copy()`)
      )),
    () =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.zipRight(
          sql.unsafe(`DROP TRIGGER test_slow_copy ON event_log`),
          sql.unsafe(`DROP FUNCTION test_slow_copy()`)
        )).pipe(Effect.orDie)
  ).pipe(Effect.orDie)

layer(ServerLive, live)("following the head", (it) => {
  it.scoped(
    "a reader paging after=<last seq> while writers post and materializers race sees every seq once, in order",
    () =>
      Effect.gen(function*() {
        yield* slowCopies(SLOW_EVERY, SLOW_MS)
        const server = yield* TestServer
        const sql = yield* SqlClient.SqlClient
        const alice = yield* server.user("alice")
        const projectId = (yield* createProject(alice, "busy")).id
        const stream = Events.projectStream(projectId as Ids.ProjectId)
        // undefined while the writers write; then the stream's final head.
        const finalHead = yield* Ref.make<number | undefined>(undefined)

        const materializers = yield* Effect.forEach(MATERIALIZERS, (batch) =>
          Effect.gen(function*() {
            while ((yield* Ref.get(finalHead)) === undefined) yield* Effect.orDie(materializeOnce(batch))
          }).pipe(Effect.fork))
        const done = Ref.get(finalHead)
        const path = `/api/projects/${projectId}/events`
        const reader = yield* Effect.fork(follow(alice, path, { first: 1 }, done))
        // A second reader with a type filter: seq 1 is project.created, the rest are the posts.
        const typed = yield* Effect.fork(follow(alice, path, { type: "message.created", first: 2 }, done))
        const watcher = yield* Effect.fork(watchForHoles(stream, done))

        yield* Effect.forEach(
          Array.from({ length: POSTS }, (_, i) => i),
          (i) => post(alice, projectId, { body: `m${i}` }),
          { concurrency: WRITERS }
        )
        const [row] = yield* Effect.orDie(
          sql<{ lastSeq: number }>`SELECT last_seq FROM event_streams WHERE stream_id = ${stream}`
        )
        const head = Number(row!.lastSeq)
        expect(head).toBe(POSTS + 1)
        yield* Ref.set(finalHead, head)
        yield* Effect.forEach(materializers, Fiber.join)

        expect(yield* Fiber.join(watcher), "times event_log was seen with holes").toBeGreaterThan(0)

        const all = yield* Fiber.join(reader)
        const posts = yield* Fiber.join(typed)
        expect(
          { all: all.jumps, "type=message.created": posts.jumps },
          "seqs skipped: [the last seq seen, the next one served]"
        ).toEqual({ all: [], "type=message.created": [] })
        expect(all.seqs).toEqual(Array.from({ length: head }, (_, i) => i + 1))
        expect(posts.seqs).toEqual(Array.from({ length: head - 1 }, (_, i) => i + 2))
      }),
    120_000
  )
})
