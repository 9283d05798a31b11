/**
 * The event log at service level, against real PostgreSQL, with no background materializer: every
 * pass is a `materializeOnce` the test runs itself, so what the log and the watermark hold between
 * passes is exactly what the materializer did (the README's G6; docs/history-analytics.md).
 *
 * - a pass copies every committed outbox row into event_log as the same envelope, exactly once,
 *   also when passes run twice, concurrently with each other and with writers;
 * - `asOf` means "every event committed before it is in event_log": it stays behind a committed
 *   event until a pass copies it, never passes an in-flight transaction's commit or a row another
 *   materializer still holds, and never moves backwards;
 * - prune deletes only published + materialized rows older than the cutoff, and history and SSE
 *   replay still serve what it deleted.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Events } from "@herald/domain"
import { DateTime, Deferred, Effect, Fiber, Layer, Option, Ref } from "effect"
import { ChatService } from "../src/chat/ChatService.js"
import { asUser } from "../src/chat/Policy.js"
import { EventHistory } from "../src/eventlog/EventHistory.js"
import { EventLogStore } from "../src/eventlog/EventLogStore.js"
import { materializeOnce } from "../src/eventlog/Materializer.js"
import { eventColumns, type EventRow, toWire } from "../src/events/EventRow.js"
import { EventReader } from "../src/stream/EventReader.js"
import { ChatTestLive, inFlightEvent, newUser } from "./support/ChatHarness.js"

/** The request path over a fresh database, plus the event log's store and readers — no materializer fiber. */
const EventLogTestLive = Layer.mergeAll(EventLogStore.Default, EventHistory.Default, EventReader.Default).pipe(
  Layer.provideMerge(ChatTestLive)
)

/** Live clock: transactions are held open across real database round trips. */
// `layer` rather than `it.layer`: the same function, but only its signature accepts this option.
const live = { excludeTestServices: true } as const

// ---------------------------------------------------------------------------------------------
// Helpers

const sqlClient = SqlClient.SqlClient

/** The database clock, read in a statement of its own (after anything committed before it). */
const dbNow = Effect.flatMap(
  sqlClient,
  (sql) => Effect.orDie(Effect.map(sql<{ now: Date }>`SELECT clock_timestamp() AS now`, ([r]) => r!.now.getTime()))
)

/** The watermark in epoch ms (none before the first pass that left nothing behind). */
const asOfMs = Effect.flatMap(
  EventLogStore,
  (store) => Effect.map(Effect.orDie(store.asOf), Option.map(DateTime.toEpochMillis))
)

const expectAsOf = Effect.map(asOfMs, (o) => {
  expect(Option.isSome(o), "asOf should be set").toBe(true)
  return Option.getOrThrow(o)
})

const pass = (batchSize = 1_000) => Effect.orDie(materializeOnce(batchSize))

/** Envelopes as the given table holds them, in stream and seq order. */
const envelopes = (table: "event_outbox" | "event_log", projectId?: string) =>
  Effect.flatMap(sqlClient, (sql) =>
    Effect.orDie(Effect.map(
      sql<EventRow>`
        SELECT ${sql.literal(eventColumns)} FROM ${sql(table)}
        ${projectId === undefined ? sql`` : sql`WHERE project_id = ${projectId}`}
        ORDER BY stream_id, seq`,
      (rows) => rows.map(toWire)
    )))

/**
 * Outbox rows and event_log rows that differ, compared in SQL at full (microsecond) precision:
 * a row missing on either side, or any envelope column different.
 */
const logMismatches = (projectId: string) =>
  Effect.flatMap(sqlClient, (sql) =>
    Effect.orDie(sql<{ id: string; inOutbox: boolean; inLog: boolean }>`
      SELECT coalesce(o.id, l.id) AS id, o.id IS NOT NULL AS in_outbox, l.id IS NOT NULL AS in_log
      FROM (SELECT * FROM event_outbox WHERE project_id = ${projectId}) o
      FULL JOIN (SELECT * FROM event_log WHERE project_id = ${projectId}) l ON l.id = o.id
      WHERE o.id IS NULL OR l.id IS NULL
         OR (o.stream_id, o.seq, o.type, o.project_id, o.actor_id, o.occurred_at, o.data)
            IS DISTINCT FROM (l.stream_id, l.seq, l.type, l.project_id, l.actor_id, l.occurred_at, l.data)`))

const countWhere = (table: "event_outbox" | "event_log", projectId: string) =>
  Effect.flatMap(sqlClient, (sql) =>
    Effect.orDie(Effect.map(
      sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(table)} WHERE project_id = ${projectId}`,
      ([r]) => r!.n
    )))

const inLog = (eventId: string) =>
  Effect.flatMap(
    sqlClient,
    (sql) =>
      Effect.orDie(
        Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM event_log WHERE id = ${eventId}`, ([r]) => r!.n)
      )
  )

const unmaterialized = Effect.flatMap(sqlClient, (sql) =>
  Effect.orDie(Effect.map(
    sql<{ n: number }>`SELECT count(*)::int AS n FROM event_outbox WHERE materialized_at IS NULL`,
    ([r]) => r!.n
  )))

/** A project with some of every kind of event: members, posts, an edit, a delete, workspace posts. */
const busyProject = (name: string) =>
  Effect.gen(function*() {
    const chat = yield* ChatService
    const alice = yield* newUser("alice")
    const bob = yield* newUser("bob")
    const project = yield* chat.createProject(name).pipe(asUser(alice))
    yield* chat.addMember(project.id, bob.id).pipe(asUser(alice))
    const first = yield* chat.postMessage(project.id, { body: "one" }).pipe(asUser(alice))
    yield* chat.postMessage(project.id, { body: "two" }).pipe(asUser(bob))
    yield* chat.editMessage(project.id, first.message.id, "one, edited").pipe(asUser(alice))
    yield* chat.deleteMessage(project.id, first.message.id).pipe(asUser(alice))
    yield* chat.postWorkspaceMessage(project.id, { body: "note" }).pipe(asUser(alice))
    yield* chat.postWorkspaceMessage(project.id, { body: "by my worker", role: "worker" }).pipe(asUser(alice))
    yield* chat.postWorkspaceMessage(project.id, { body: "bob's note" }).pipe(asUser(bob))
    yield* chat.removeMember(project.id, bob.id).pipe(asUser(alice))
    return { alice, bob, project }
  })

const openTransaction = inFlightEvent

// ---------------------------------------------------------------------------------------------

layer(EventLogTestLive, live)("materializer", (it) => {
  it.effect("a pass copies every committed event into event_log as the very envelope the outbox holds", () =>
    Effect.gen(function*() {
      const { project } = yield* busyProject("copy")
      const outbox = yield* envelopes("event_outbox", project.id)
      // 7 on the project stream, 2 in alice's workspace, 1 in bob's.
      expect(outbox.length).toBe(10)
      expect(yield* countWhere("event_log", project.id)).toBe(0)

      // A small batch size: the pass has to loop over several batches to copy everything.
      const copied = yield* pass(3)
      expect(copied).toBe(10)
      expect(yield* envelopes("event_log", project.id)).toEqual(outbox)
      expect(yield* logMismatches(project.id)).toEqual([])
      expect(yield* unmaterialized).toBe(0)
      // Every copied row decodes as a domain event.
      for (const e of yield* envelopes("event_log", project.id)) yield* Effect.orDie(Events.decodeEvent(e))
    }))

  it.effect("a second pass copies nothing more and changes nothing", () =>
    Effect.gen(function*() {
      const { project } = yield* busyProject("twice")
      expect(yield* pass()).toBe(10)
      const log = yield* envelopes("event_log", project.id)
      expect(yield* pass()).toBe(0)
      expect(yield* pass(1)).toBe(0)
      expect(yield* envelopes("event_log", project.id)).toEqual(log)
      expect(yield* logMismatches(project.id)).toEqual([])
    }))

  it.effect("an event already in event_log (copied by hand, a rebuild) is neither copied again nor in the way of the rest", () =>
    Effect.gen(function*() {
      const { project } = yield* busyProject("already copied")
      const sql = yield* sqlClient
      // The 5th event of the project, copied by hand: batches are copied with a plain INSERT, so
      // the batch holding it is refused by event_log's unique key and runs again tolerating copies.
      yield* Effect.orDie(sql`
        INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
        SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox
        WHERE project_id = ${project.id} ORDER BY position OFFSET 4 LIMIT 1`)
      expect(yield* countWhere("event_log", project.id)).toBe(1)
      // Every row is stamped (the hand-copied one too); the log holds each event once.
      expect(yield* pass(3)).toBe(10)
      expect(yield* envelopes("event_log", project.id)).toEqual(yield* envelopes("event_outbox", project.id))
      expect(yield* logMismatches(project.id)).toEqual([])
      expect(yield* unmaterialized).toBe(0)
    }))

  it.effect("two passes at once copy every event exactly once", () =>
    Effect.gen(function*() {
      yield* pass()
      const chat = yield* ChatService
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("two at once").pipe(asUser(alice))
      yield* Effect.forEach(
        Array.from({ length: 60 }, (_, i) => i),
        (i) =>
          i % 3 === 0
            ? chat.postWorkspaceMessage(project.id, { body: `w${i}` }).pipe(asUser(alice))
            : chat.postMessage(project.id, { body: `m${i}` }).pipe(asUser(alice)),
        { concurrency: 6 }
      )
      const [a, b] = yield* Effect.all([pass(4), pass(4)], { concurrency: 2 })
      // What one pass skipped because the other held it, a later pass picks up.
      const rest = yield* pass(4)
      expect(a + b + rest).toBe(61)
      expect(yield* countWhere("event_log", project.id)).toBe(61)
      expect(yield* logMismatches(project.id)).toEqual([])
    }))

  it.effect("passes racing each other and the writers still leave event_log equal to the outbox, each event once", () =>
    Effect.gen(function*() {
      yield* pass()
      const chat = yield* ChatService
      const alice = yield* newUser("alice")
      const bob = yield* newUser("bob")
      const project = yield* chat.createProject("racing").pipe(asUser(alice))
      yield* chat.addMember(project.id, bob.id).pipe(asUser(alice))
      const writing = yield* Ref.make(true)
      const copied = yield* Ref.make(0)
      // Each materializer loops until the writers are done, recording the watermark after each pass.
      const materializer = Effect.gen(function*() {
        const seen: Array<number> = []
        while (yield* Ref.get(writing)) {
          const n = yield* pass(5)
          yield* Ref.update(copied, (c) => c + n)
          const now = yield* asOfMs
          if (Option.isSome(now)) seen.push(now.value)
        }
        return seen
      }).pipe(Effect.fork)
      const materializers = yield* Effect.all([materializer, materializer, materializer])
      yield* Effect.forEach(
        Array.from({ length: 80 }, (_, i) => i),
        (i) => {
          const who = i % 2 === 0 ? alice : bob
          return i % 4 === 1
            ? chat.postWorkspaceMessage(project.id, { body: `w${i}` }).pipe(asUser(who))
            : chat.postMessage(project.id, { body: `m${i}` }).pipe(asUser(who))
        },
        { concurrency: 8 }
      )
      yield* Ref.set(writing, false)
      const watermarks = yield* Effect.forEach(materializers, Fiber.join)
      yield* Effect.all([pass(5), pass(5)], { concurrency: 2 }).pipe(
        Effect.flatMap(([x, y]) => Ref.update(copied, (c) => c + x + y))
      )
      yield* pass(5).pipe(Effect.flatMap((n) => Ref.update(copied, (c) => c + n)))

      // 1 project.created + 1 member.added + 80 posts, each copied (and stamped) exactly once.
      expect(yield* countWhere("event_outbox", project.id)).toBe(82)
      expect(yield* Ref.get(copied)).toBe(82)
      expect(yield* countWhere("event_log", project.id)).toBe(82)
      expect(yield* logMismatches(project.id)).toEqual([])
      expect(yield* unmaterialized).toBe(0)
      // Each materializer saw the watermark only ever move forward.
      for (const seen of watermarks) {
        for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThanOrEqual(seen[i - 1]!)
      }
    }))
})

layer(EventLogTestLive, live)("asOf watermark", (it) => {
  it.effect("there is no asOf before the first pass; a pass with nothing to copy sets it to the pass's time", () =>
    Effect.gen(function*() {
      expect(Option.isNone(yield* asOfMs)).toBe(true)
      const before = yield* dbNow
      expect(yield* pass()).toBe(0)
      const after = yield* dbNow
      const asOf = yield* expectAsOf
      expect(asOf).toBeGreaterThanOrEqual(before)
      expect(asOf).toBeLessThanOrEqual(after)
    }))

  it.effect("asOf stays behind a committed event until a pass copies it, then moves past its commit", () =>
    Effect.gen(function*() {
      const chat = yield* ChatService
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("behind").pipe(asUser(alice))
      yield* pass()
      const first = yield* expectAsOf

      const posted = yield* chat.postMessage(project.id, { body: "not yet in the log" }).pipe(asUser(alice))
      const committedBy = yield* dbNow
      // Committed, but no pass has run: not in the log, and asOf does not claim it is.
      expect(yield* inLog(posted.event.id)).toBe(0)
      expect(yield* expectAsOf).toBe(first)
      expect(first).toBeLessThanOrEqual(DateTime.toEpochMillis(posted.message.createdAt))

      expect(yield* pass()).toBe(1)
      expect(yield* inLog(posted.event.id)).toBe(1)
      expect(yield* expectAsOf).toBeGreaterThanOrEqual(committedBy)
    }))

  it.effect("an in-flight transaction's event does not let asOf pass its commit; the next pass copies it and moves on", () =>
    Effect.gen(function*() {
      const chat = yield* ChatService
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("in flight").pipe(asUser(alice))
      yield* pass()

      // The transaction takes its seq and outbox row first …
      const inFlight = yield* openTransaction(Events.workspaceStream(project.id, alice.id), project.id, alice.id)
      // … then a later transaction (another stream) commits, and a pass runs while the first is open.
      const later = yield* chat.postMessage(project.id, { body: "committed after the in-flight one began" }).pipe(
        asUser(alice)
      )
      expect(yield* pass()).toBe(1)
      expect(yield* inLog(later.event.id)).toBe(1)
      expect(yield* inLog(inFlight.event.id)).toBe(0)

      const beforeCommit = yield* dbNow
      yield* inFlight.commit
      const committedBy = yield* dbNow
      // Committed now, yet not copied: asOf must still be at or before the commit.
      expect(yield* inLog(inFlight.event.id)).toBe(0)
      expect(yield* expectAsOf).toBeLessThanOrEqual(beforeCommit)

      expect(yield* pass()).toBe(1)
      expect(yield* inLog(inFlight.event.id)).toBe(1)
      expect(yield* expectAsOf).toBeGreaterThanOrEqual(committedBy)
      expect(yield* logMismatches(project.id)).toEqual([])
    }))

  it.effect("a row another materializer still holds is not counted as copied: asOf waits for it", () =>
    Effect.gen(function*() {
      const chat = yield* ChatService
      const sql = yield* sqlClient
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("held").pipe(asUser(alice))
      yield* pass()
      const start = yield* expectAsOf

      const held = yield* chat.postMessage(project.id, { body: "held by another materializer" }).pipe(asUser(alice))
      const other = yield* chat.postMessage(project.id, { body: "free" }).pipe(asUser(alice))
      // Another materializer's batch: the row is locked FOR UPDATE until its transaction ends.
      const locked = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const holder = yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT id FROM event_outbox WHERE id = ${held.event.id} FOR UPDATE`
        yield* Deferred.succeed(locked, undefined)
        yield* Deferred.await(release)
      })).pipe(Effect.orDie, Effect.fork)
      yield* Deferred.await(locked)

      yield* pass()
      expect(yield* inLog(other.event.id)).toBe(1)
      expect(yield* inLog(held.event.id)).toBe(0)
      // `held` committed before this pass and is not in the log: asOf must not pass its commit.
      const asOf = yield* expectAsOf
      expect(asOf).toBe(start)
      expect(asOf).toBeLessThanOrEqual(DateTime.toEpochMillis(held.message.createdAt))

      yield* Deferred.succeed(release, undefined)
      yield* Fiber.join(holder)
      const releasedBy = yield* dbNow
      yield* pass()
      expect(yield* inLog(held.event.id)).toBe(1)
      expect(yield* expectAsOf).toBeGreaterThanOrEqual(releasedBy)
    }))

  it.effect("asOf never moves backwards: not when an older pass finishes last, not across many racing passes", () =>
    Effect.gen(function*() {
      const store = yield* EventLogStore
      const chat = yield* ChatService
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("monotone").pipe(asUser(alice))
      yield* pass()
      const current = yield* expectAsOf
      // A pass that started earlier finishing after a later one would report an older time.
      yield* Effect.orDie(store.advance(new Date(current - 60_000)))
      expect(yield* expectAsOf).toBe(current)

      const samples: Array<number> = []
      const sampler = Effect.gen(function*() {
        for (let i = 0; i < 40; i++) {
          samples.push(yield* expectAsOf)
          yield* Effect.yieldNow()
        }
      })
      yield* Effect.all([
        sampler,
        Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) => chat.postMessage(project.id, { body: `${i}` }).pipe(asUser(alice)),
          {
            concurrency: 4
          }
        ),
        Effect.forEach(Array.from({ length: 12 }), () => pass(3), { concurrency: 3 })
      ], { concurrency: "unbounded" })
      for (let i = 1; i < samples.length; i++) expect(samples[i]!).toBeGreaterThanOrEqual(samples[i - 1]!)
      expect(samples[0]!).toBeGreaterThanOrEqual(current)
    }))
})

layer(EventLogTestLive, live)("prune", (it) => {
  const HOUR = 3_600_000

  /** Sets an outbox row's delivery state as if the publisher had handled it `agoMs` ago. */
  const setDelivery = (id: string, status: "pending" | "published" | "dead", agoMs: number) =>
    Effect.flatMap(sqlClient, (sql) =>
      Effect.orDie(sql`
        UPDATE event_outbox SET
          status = ${status},
          occurred_at = occurred_at - ${agoMs} * interval '1 millisecond',
          published_at = ${status === "published" ? sql`now() - ${agoMs} * interval '1 millisecond'` : sql`NULL`},
          last_error = ${status === "dead" ? "broker unreachable" : null},
          attempts = ${status === "pending" ? 0 : 3}
        WHERE id = ${id}`))

  const outboxIds = (projectId: string) =>
    Effect.flatMap(sqlClient, (sql) =>
      Effect.orDie(Effect.map(
        sql<{ id: string; seq: number }>`SELECT id, seq FROM event_outbox WHERE project_id = ${projectId} ORDER BY seq`,
        (rows) => rows
      )))

  const pruneAll = (olderThanMs: number, batchSize: number) =>
    Effect.gen(function*() {
      const store = yield* EventLogStore
      const rounds: Array<number> = []
      while (true) {
        const n = yield* Effect.orDie(store.prune(olderThanMs, batchSize))
        rounds.push(n)
        if (n === 0 || rounds.length > 50) return rounds
      }
    })

  it.effect("deletes only published, materialized rows older than the cutoff — never a pending, dead or uncopied one", () =>
    Effect.gen(function*() {
      const chat = yield* ChatService
      const history = yield* EventHistory
      const reader = yield* EventReader
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("retention").pipe(asUser(alice))
      const stream = Events.projectStream(project.id)
      for (let i = 1; i <= 6; i++) yield* chat.postMessage(project.id, { body: `m${i}` }).pipe(asUser(alice))
      const rows = yield* outboxIds(project.id)
      expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
      // seq 1–4: published two hours ago (prunable); 5: still pending; 6: dead; 7: published a minute ago.
      for (const r of rows.slice(0, 4)) yield* setDelivery(r.id, "published", 2 * HOUR)
      yield* setDelivery(rows[4]!.id, "pending", 2 * HOUR)
      yield* setDelivery(rows[5]!.id, "dead", 2 * HOUR)
      yield* setDelivery(rows[6]!.id, "published", 60_000)
      yield* pass()
      // seq 8: published two hours ago by the clock, but no pass has copied it yet.
      const late = yield* chat.postMessage(project.id, { body: "not yet copied" }).pipe(asUser(alice))
      yield* setDelivery(late.event.id, "published", 2 * HOUR)

      // What history and replay serve before any pruning: everything committed.
      const snapshot = yield* envelopes("event_outbox", project.id)
      expect(snapshot.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])

      const rounds = yield* pruneAll(HOUR, 2)
      // At most a batch per call, and only the four eligible rows in all.
      expect(rounds.every((n) => n <= 2)).toBe(true)
      expect(rounds.reduce((a, b) => a + b, 0)).toBe(4)
      expect((yield* outboxIds(project.id)).map((r) => r.seq)).toEqual([5, 6, 7, 8])

      // The pruned events are still history (from the log), and so is seq 8, committed but not
      // copied yet (from the outbox): history, like replay (SSE's source), has every event.
      const page = yield* Effect.orDie(history.page({ stream, after: 0, limit: 100, type: undefined }))
      expect(yield* Effect.orDie(Effect.forEach(page.items, (e) => Events.encodeEvent(e)))).toEqual(snapshot)
      expect(yield* Effect.orDie(reader.range(stream, 0, undefined, 100))).toEqual(snapshot)

      // Once copied, seq 8 becomes prunable too; the outbox keeps only what it must.
      expect(yield* pass()).toBe(1)
      expect(yield* pruneAll(HOUR, 2)).toEqual([1, 0])
      expect((yield* outboxIds(project.id)).map((r) => r.seq)).toEqual([5, 6, 7])
      const full = yield* Effect.orDie(history.page({ stream, after: 0, limit: 100, type: undefined }))
      expect(yield* Effect.orDie(Effect.forEach(full.items, (e) => Events.encodeEvent(e)))).toEqual(snapshot)
      expect(yield* Effect.orDie(reader.range(stream, 0, undefined, 100))).toEqual(snapshot)
      expect(yield* Effect.orDie(reader.range(stream, 2, 6, 100))).toEqual(snapshot.slice(2, 6))
    }))

  it.effect("a pending, dead or uncopied row survives any cutoff, however old", () =>
    Effect.gen(function*() {
      const chat = yield* ChatService
      const alice = yield* newUser("alice")
      const project = yield* chat.createProject("never").pipe(asUser(alice))
      yield* chat.postMessage(project.id, { body: "pending" }).pipe(asUser(alice))
      yield* chat.postMessage(project.id, { body: "dead" }).pipe(asUser(alice))
      yield* chat.postMessage(project.id, { body: "published and copied" }).pipe(asUser(alice))
      const [created, pending, dead, done] = yield* outboxIds(project.id)
      yield* setDelivery(created!.id, "pending", 400 * 24 * HOUR)
      yield* setDelivery(pending!.id, "pending", 400 * 24 * HOUR)
      yield* setDelivery(dead!.id, "dead", 400 * 24 * HOUR)
      yield* setDelivery(done!.id, "published", 1_000)
      yield* pass()
      const uncopied = yield* chat.postMessage(project.id, { body: "published, not copied" }).pipe(asUser(alice))
      yield* setDelivery(uncopied.event.id, "published", 400 * 24 * HOUR)
      // A cutoff of zero: "anything older than now". Only the published, copied row goes.
      yield* pruneAll(0, 100)
      expect((yield* outboxIds(project.id)).map((r) => r.seq)).toEqual([1, 2, 3, 5])
    }))
})
