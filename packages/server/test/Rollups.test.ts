/**
 * The hourly rollups behind analytics, against real PostgreSQL, with no background materializer:
 * every pass is a `materializeOnce` the test runs itself (docs/history-analytics.md).
 *
 * - for random ranges (on and off the hour, empty, inside one hour, in the future) over a seeded
 *   log, summary and timeseries (every bucket, with and without `type`) equal the full-scan SQL
 *   that answered before the rollups existed (kept here as the reference);
 * - the rollups equal a recount of event_log after two materializers drain one backlog at once,
 *   and after the outbox is copied again (`--rebuild`);
 * - the migration builds the rollups of the events already in event_log;
 * - `dropRollupsBefore` deletes exactly the hours before the cutoff.
 */
import { NodeContext } from "@effect/platform-node"
import { Migrator, SqlClient } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import { describe, expect, it, layer } from "@effect/vitest"
import { Events, Ids } from "@herald/domain"
import { DateTime, Effect, FastCheck, Fiber, Layer, Redacted, Runtime } from "effect"
import { randomUUID } from "node:crypto"
import { migrations } from "../../../migrations/index.js"
import { freshDatabaseUrl, TestDatabaseLive } from "../../../test-support/TestDatabase.js"
import { clientLayer } from "../src/db/Database.js"
import { runMigrations } from "../src/db/Migrations.js"
import { Analytics } from "../src/eventlog/Analytics.js"
import { EventLogStore } from "../src/eventlog/EventLogStore.js"
import { materializeOnce } from "../src/eventlog/Materializer.js"
import { OutboxStore } from "../src/outbox/OutboxStore.js"

const RollupsTestLive = Layer.mergeAll(Analytics.Default, OutboxStore.Default).pipe(
  Layer.provideMerge(EventLogStore.Default),
  Layer.provideMerge(TestDatabaseLive),
  Layer.provide(NodeContext.layer)
)

/** Live clock: materializers run concurrently over real round trips. */
// `layer` rather than `it.layer`: the same function, but only its signature accepts this option.
const live = { excludeTestServices: true } as const

const MINUTE = 60_000
const HOUR = 60 * MINUTE
/** The seeded log starts on an hour and spans SPAN_HOURS hours. */
const BASE = Date.UTC(2026, 10, 20, 0, 0, 0)
const SPAN_HOURS = 50
const TYPES: ReadonlyArray<Events.EventType> = Events.EventType.literals

// ---------------------------------------------------------------------------------------------
// A seeded log

/** mulberry32: a small deterministic generator, so a failure reproduces. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
}

interface SeedEvent {
  readonly id: string
  readonly stream_id: string
  readonly seq: number
  readonly type: string
  readonly project_id: string
  readonly actor_id: string
  /** Microseconds after BASE: some exactly on an hour, most anywhere. */
  readonly us: number
}

interface Seed {
  readonly projectId: Ids.ProjectId
  readonly workspace: Events.StreamId
  readonly events: ReadonlyArray<SeedEvent>
}

/**
 * `count` events of one project's stream (actors skewed to the first ones, ties in topAuthors
 * likely), one member's workspace stream and another project's stream, in random outbox order.
 */
const seedLog = (seed: number, count: number, spanHours = SPAN_HOURS): Seed => {
  const next = random(seed)
  const projectId = Ids.ProjectId.make(randomUUID())
  const other = randomUUID()
  const actors = Array.from({ length: 6 }, () => randomUUID())
  const workspace = Events.workspaceStream(projectId, Ids.UserId.make(actors[0]!))
  const streams = [
    { stream: Events.projectStream(projectId) as string, project: projectId as string, weight: 0.7 },
    { stream: workspace as string, project: projectId as string, weight: 0.15 },
    { stream: `project:${other}`, project: other, weight: 0.15 }
  ]
  const seqs = new Map<string, number>()
  const events: Array<SeedEvent> = []
  for (let i = 0; i < count; i++) {
    const r = next()
    const s = r < streams[0]!.weight
      ? streams[0]!
      : r < streams[0]!.weight + streams[1]!.weight
      ? streams[1]!
      : streams[2]!
    const seq = (seqs.get(s.stream) ?? 0) + 1
    seqs.set(s.stream, seq)
    const onTheHour = next() < 0.1
    const us = onTheHour
      ? Math.floor(next() * spanHours) * HOUR * 1000
      : Math.floor(next() * spanHours * HOUR * 1000)
    events.push({
      id: randomUUID(),
      stream_id: s.stream,
      seq,
      type: TYPES[Math.floor(next() * next() * TYPES.length)]!,
      project_id: s.project,
      actor_id: actors[Math.floor(next() * next() * actors.length)]!,
      us
    })
  }
  // Outbox order is not time order: a batch touches many hours.
  for (let i = events.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1))
    ;[events[i], events[j]] = [events[j]!, events[i]!]
  }
  return { projectId, workspace, events }
}

/** Writes the seeded events as committed outbox rows (as the request path would). */
const writeOutbox = (events: ReadonlyArray<SeedEvent>) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`
      INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
      SELECT id, stream_id, seq, type, project_id, actor_id,
        ${new Date(BASE)}::timestamptz + us * interval '1 microsecond', '{}'::jsonb
      FROM jsonb_to_recordset(${JSON.stringify(events)}::jsonb)
        AS r(id uuid, stream_id text, seq bigint, type text, project_id uuid, actor_id uuid, us bigint)`)

const clearLog = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => sql`TRUNCATE event_outbox, event_log, event_log_hourly, event_log_hourly_actors, event_log_watermark`
)

/** Both rollup tables, in key order. */
const rollups = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all({
    types: sql<{ streamId: string; hour: Date; projectId: string; type: string; n: number }>`
      SELECT stream_id, hour, project_id, type, n::int AS n FROM event_log_hourly
      ORDER BY stream_id, hour, project_id, type`,
    actors: sql<{ streamId: string; hour: Date; projectId: string; actorId: string; messages: number }>`
      SELECT stream_id, hour, project_id, actor_id, messages::int AS messages FROM event_log_hourly_actors
      ORDER BY stream_id, hour, project_id, actor_id`
  }))

/** The rollups as they should be: a recount of everything event_log holds. */
const recount = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.all({
    types: sql<{ streamId: string; hour: Date; projectId: string; type: string; n: number }>`
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC') AS hour, project_id, type, count(*)::int AS n
      FROM event_log GROUP BY 1, 2, 3, 4
      ORDER BY 1, 2, 3, 4`,
    actors: sql<{ streamId: string; hour: Date; projectId: string; actorId: string; messages: number }>`
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC') AS hour, project_id, actor_id,
        count(*) FILTER (WHERE type = 'message.created')::int AS messages
      FROM event_log WHERE stream_id NOT LIKE 'workspace:%' GROUP BY 1, 2, 3, 4
      ORDER BY 1, 2, 3, 4`
  }))

const logged = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM event_log`, ([r]) => r!.n)
)

// ---------------------------------------------------------------------------------------------
// The reference: the full-scan statements analytics ran before the rollups

const referenceSummary = (projectId: Ids.ProjectId, workspaceStream: string, from: Date, to: Date) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const stream = Events.projectStream(projectId)
    const byType = yield* sql<{ type: string; n: number }>`
      SELECT type, count(*)::int AS n FROM event_log
      WHERE project_id = ${projectId} AND stream_id = ${stream}
        AND occurred_at >= ${from} AND occurred_at < ${to}
      GROUP BY type`
    const [people] = yield* sql<{ n: number }>`
      SELECT count(DISTINCT actor_id)::int AS n FROM event_log
      WHERE project_id = ${projectId} AND stream_id = ${stream}
        AND occurred_at >= ${from} AND occurred_at < ${to}`
    const authors = yield* sql<{ userId: string; messages: number }>`
      SELECT actor_id AS user_id, count(*)::int AS messages FROM event_log
      WHERE project_id = ${projectId} AND type = 'message.created' AND stream_id = ${stream}
        AND occurred_at >= ${from} AND occurred_at < ${to}
      GROUP BY actor_id ORDER BY messages DESC, actor_id LIMIT 10`
    const [workspace] = yield* sql<{ n: number }>`
      SELECT count(*)::int AS n FROM event_log
      WHERE project_id = ${projectId} AND stream_id = ${workspaceStream}
        AND occurred_at >= ${from} AND occurred_at < ${to}`
    return {
      byType: Object.fromEntries(byType.map((r) => [r.type, r.n])),
      total: byType.reduce((sum, r) => sum + r.n, 0),
      activeUsers: people!.n,
      topAuthors: authors.map((a) => ({ userId: a.userId, messages: a.messages })),
      workspace: workspace!.n
    }
  })

const referenceTimeseries = (
  projectId: Ids.ProjectId,
  bucket: "minute" | "hour" | "day",
  from: Date,
  to: Date,
  type: Events.EventType | undefined
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const step = sql.literal(`interval '1 ${bucket}'`)
    const unit = sql.literal(`'${bucket}'`)
    const points = yield* sql<{ t: Date; count: number }>`
      WITH counts AS (
        SELECT date_trunc(${unit}, occurred_at AT TIME ZONE 'UTC') AS t, count(*)::int AS n FROM event_log
        WHERE project_id = ${projectId} AND stream_id = ${Events.projectStream(projectId)}
          ${type === undefined ? sql`` : sql`AND type = ${type}`}
          AND occurred_at >= ${from} AND occurred_at < ${to}
        GROUP BY 1
      )
      SELECT s.t AT TIME ZONE 'UTC' AS t, coalesce(c.n, 0)::int AS count
      FROM generate_series(
        date_trunc(${unit}, ${from}::timestamptz AT TIME ZONE 'UTC'),
        (${to}::timestamptz AT TIME ZONE 'UTC') - interval '1 microsecond',
        ${step}
      ) AS s(t)
      LEFT JOIN counts c ON c.t = s.t
      ORDER BY s.t`
    return points.map((p) => ({ t: p.t.getTime(), count: p.count }))
  })

// ---------------------------------------------------------------------------------------------
// Random ranges over the seeded log

const instant = (eventMs: ReadonlyArray<number>) =>
  FastCheck.oneof(
    // on an hour, before, inside and after the log
    FastCheck.integer({ min: -3, max: SPAN_HOURS + 3 }).map((h) => BASE + h * HOUR),
    // anywhere, to the millisecond
    FastCheck.integer({ min: -3 * HOUR, max: (SPAN_HOURS + 3) * HOUR }).map((ms) => BASE + ms),
    // at an event's millisecond (an event on the hour lands exactly on the edge)
    FastCheck.nat(eventMs.length - 1).map((i) => eventMs[i]!),
    // just off an hour
    FastCheck.tuple(FastCheck.integer({ min: 0, max: SPAN_HOURS }), FastCheck.integer({ min: -2, max: 2 })).map((
      [h, d]
    ) => BASE + h * HOUR + d)
  )

const rangeOf = (eventMs: ReadonlyArray<number>) =>
  FastCheck.oneof(
    FastCheck.tuple(instant(eventMs), instant(eventMs)).map(([a, b]) => ({ from: Math.min(a, b), to: Math.max(a, b) })),
    // empty
    instant(eventMs).map((a) => ({ from: a, to: a })),
    // inside one hour or across one boundary
    FastCheck.tuple(instant(eventMs), FastCheck.integer({ min: 1, max: 2 * HOUR })).map(([a, d]) => ({
      from: a,
      to: a + d
    })),
    // in the future of the log
    FastCheck.integer({ min: 1, max: 48 }).map((h) => ({
      from: BASE + (SPAN_HOURS + h) * HOUR + 17,
      to: BASE + (SPAN_HOURS + h + 30) * HOUR
    }))
  )

const utc = (ms: number) => DateTime.unsafeMake(ms)

layer(RollupsTestLive, live)("analytics from rollups", (it) => {
  it.effect(
    "for random ranges, summary and timeseries equal the full scan of event_log",
    () =>
      Effect.gen(function*() {
        yield* clearLog
        const seed = seedLog(7, 3_000)
        yield* writeOutbox(seed.events)
        // Small batches: an hour's rollup rows grow over many statements.
        yield* materializeOnce(97)
        expect(yield* logged).toBe(seed.events.length)
        const analytics = yield* Analytics
        const eventMs = seed.events.map((e) => BASE + Math.floor(e.us / 1000))
        const check = (r: { from: number; to: number }, bucket: "minute" | "hour" | "day", type: number) =>
          Effect.gen(function*() {
            const range = { from: utc(r.from), to: utc(r.to) }
            const [from, to] = [new Date(r.from), new Date(r.to)]
            const label = `[${from.toISOString()}, ${to.toISOString()})`
            const summary = yield* analytics.summary(seed.projectId, seed.workspace, range)
            const expected = yield* referenceSummary(seed.projectId, seed.workspace, from, to)
            expect({
              byType: summary.events.byType,
              total: summary.events.total,
              activeUsers: summary.activeUsers,
              topAuthors: summary.topAuthors,
              workspace: summary.workspace.events
            }, label).toEqual(expected)
            // Minute series of a long range are long: keep them to ranges of up to a day.
            if (bucket === "minute" && r.to - r.from > 24 * HOUR) return
            const ofType = type < TYPES.length ? TYPES[type] : undefined
            const series = yield* analytics.timeseries(seed.projectId, bucket, range, ofType)
            expect(
              series.points.map((p) => ({ t: DateTime.toEpochMillis(p.t), count: p.count })),
              `${bucket} ${ofType ?? "all"} ${label}`
            ).toEqual(yield* referenceTimeseries(seed.projectId, bucket, from, to, ofType))
          })
        const runtime = yield* Effect.runtime<Analytics | SqlClient.SqlClient>()
        yield* Effect.promise(() =>
          FastCheck.assert(
            FastCheck.asyncProperty(
              rangeOf(eventMs),
              FastCheck.constantFrom("minute" as const, "hour" as const, "day" as const),
              FastCheck.nat(TYPES.length + 2),
              (r, bucket, type) => Runtime.runPromise(runtime)(Effect.orDie(check(r, bucket, type)))
            ),
            { numRuns: 300, seed: 42 }
          )
        )
        // And the whole log at once: every hour from rollups, nothing at the edges.
        yield* check({ from: BASE, to: BASE + SPAN_HOURS * HOUR }, "hour", TYPES.length)
        yield* check({ from: BASE, to: BASE + SPAN_HOURS * HOUR }, "day", 3)
      }),
    120_000
  )

  it.effect("an event copied again (rebuild) is not counted twice", () =>
    Effect.gen(function*() {
      yield* clearLog
      const seed = seedLog(11, 800)
      yield* writeOutbox(seed.events)
      yield* materializeOnce(250)
      const before = yield* rollups
      expect(before).toEqual(yield* recount)
      const outbox = yield* OutboxStore
      expect(yield* outbox.resetMaterialized).toBe(seed.events.length)
      expect(yield* materializeOnce(250)).toBe(seed.events.length)
      expect(yield* rollups).toEqual(before)
      expect(before.types.reduce((n, r) => n + r.n, 0)).toBe(seed.events.length)
    }))

  it.effect(
    "two materializers draining one backlog at once leave rollups equal to a recount",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        for (const round of [1, 2, 3]) {
          yield* clearLog
          // Few hours and actors: the two materializers' batches upsert the same rollup rows.
          const seed = seedLog(100 + round, 6_000, 3)
          yield* writeOutbox(seed.events)
          const drains = yield* Effect.forEach([0, 1], () => Effect.fork(materializeOnce(150)))
          const copied = yield* Effect.forEach(drains, Fiber.join)
          expect(copied[0]! + copied[1]!, `round ${round}`).toBe(seed.events.length)
          expect(copied.every((n) => n > 0), `round ${round}: both materializers copied`).toBe(true)
          expect(yield* logged).toBe(seed.events.length)
          const [left] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM event_outbox WHERE materialized_at IS NULL`
          expect(left!.n).toBe(0)
          expect(yield* rollups, `round ${round}`).toEqual(yield* recount)
        }
      }),
    60_000
  )

  it.effect("dropRollupsBefore deletes the hours before the cutoff and keeps the rest", () =>
    Effect.gen(function*() {
      yield* clearLog
      const seed = seedLog(13, 1_000)
      yield* writeOutbox(seed.events)
      yield* materializeOnce(1_000)
      const cutoff = new Date(BASE + 20 * HOUR)
      const all = yield* rollups
      const after = <A extends { readonly hour: Date }>(rows: ReadonlyArray<A>) =>
        rows.filter((r) => r.hour.getTime() >= cutoff.getTime())
      const kept = { types: after(all.types), actors: after(all.actors) }
      const size = (r: typeof all) => r.types.length + r.actors.length
      expect(kept.types.length).toBeGreaterThan(0)
      expect(kept.actors.length).toBeGreaterThan(0)
      expect(kept.types.length).toBeLessThan(all.types.length)
      expect(kept.actors.length).toBeLessThan(all.actors.length)
      const store = yield* EventLogStore
      expect(yield* store.dropRollupsBefore(cutoff)).toBe(size(all) - size(kept))
      expect(yield* rollups).toEqual(kept)
      // From the cutoff on, analytics still answer as before.
      const analytics = yield* Analytics
      const [from, to] = [cutoff, new Date(BASE + SPAN_HOURS * HOUR)]
      const summary = yield* analytics.summary(seed.projectId, seed.workspace, {
        from: utc(from.getTime()),
        to: utc(to.getTime())
      })
      expect(summary.events.total).toBe((yield* referenceSummary(seed.projectId, seed.workspace, from, to)).total)
      expect(yield* store.dropRollupsBefore(cutoff)).toBe(0)
    }))
})

/** The migration runner up to (not including) the rollups, then the rest. */
const upTo = (last: string) =>
  PgMigrator.run({
    loader: Migrator.fromRecord(Object.fromEntries(Object.entries(migrations).filter(([id]) => id <= last))),
    table: "herald_migrations"
  })

describe("rollups migration", () => {
  it.live("builds the rollups of the events event_log already holds", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      const client = yield* Layer.build(clientLayer({ url: Redacted.make(url), maxConnections: 4 }))
      yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* upTo("0006_post_message")
        const seed = seedLog(17, 1_500)
        // Straight into event_log, as an older version's materializer left it.
        yield* sql`
          INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
          SELECT id, stream_id, seq, type, project_id, actor_id,
            ${new Date(BASE)}::timestamptz + us * interval '1 microsecond', '{}'::jsonb
          FROM jsonb_to_recordset(${JSON.stringify(seed.events)}::jsonb)
            AS r(id uuid, stream_id text, seq bigint, type text, project_id uuid, actor_id uuid, us bigint)`
        yield* runMigrations
        const built = yield* rollups
        expect(built.types.reduce((n, r) => n + r.n, 0)).toBe(seed.events.length)
        expect(built).toEqual(yield* recount)
      }).pipe(Effect.provide(client))
    }).pipe(Effect.scoped, Effect.provide(NodeContext.layer)), 60_000)
})

/** An event of the project stream at `at`, written committed into the outbox (to be materialized). */
const eventAt = (projectId: string, actor: string, seq: number, at: Date) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql`
      INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
      VALUES (${randomUUID()}, ${`project:${projectId}`}, ${seq}, 'message.created', ${projectId}, ${actor}, ${at},
        '{}'::jsonb)`)

layer(RollupsTestLive, live)("edge hours from the rollups (issue 23)", (it) => {
  it.effect("the by-type rollups keep each hour's first and last occurred_at, covering every event they count", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* clearLog
      const seed = seedLog(19, 2_000, 6)
      yield* writeOutbox(seed.events)
      // Small batches in random outbox order: each row's bounds widen over many statements.
      yield* materializeOnce(61)
      const kept = yield* sql`
        SELECT stream_id, hour, type, n::int AS n, span_n::int AS span_n, first_at, last_at FROM event_log_hourly
        ORDER BY 1, 2, 3`
      const expected = yield* sql`
        SELECT stream_id, date_trunc('hour', occurred_at, 'UTC') AS hour, type, count(*)::int AS n,
          count(*)::int AS span_n, min(occurred_at) AS first_at, max(occurred_at) AS last_at
        FROM event_log GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`
      expect(kept).toEqual(expected)
    }))

  it.effect("a range ending after now answers the current hour from its rollups, not from event_log", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* clearLog
      const [projectId, actor] = [Ids.ProjectId.make(randomUUID()), randomUUID()]
      const [row] = yield* sql<{ now: Date }>`SELECT date_trunc('hour', now(), 'UTC') AS now`
      const hour = row!.now.getTime()
      for (let seq = 1; seq <= 20; seq++) yield* eventAt(projectId, actor, seq, new Date(hour + seq))
      yield* materializeOnce(1_000)
      // Gone from event_log by hand: only the rollups can still count them.
      yield* sql`DELETE FROM event_log WHERE project_id = ${projectId}`
      const analytics = yield* Analytics
      const range = { from: utc(hour - 30 * 24 * HOUR + 17), to: utc(Date.now() + MINUTE) }
      const summary = yield* analytics.summary(
        projectId,
        Events.workspaceStream(projectId, Ids.UserId.make(actor)),
        range
      )
      expect(summary.events.total).toBe(20)
      expect(summary.activeUsers).toBe(1)
      expect(summary.topAuthors).toEqual([{ userId: actor, messages: 20 }])
      const series = yield* analytics.timeseries(projectId, "hour", range, undefined)
      expect(series.points.reduce((n, p) => n + p.count, 0)).toBe(20)
    }))

  it.effect("an edge hour a late event (occurred_at inside the hour, before the range) joins is read from event_log again", () =>
    Effect.gen(function*() {
      yield* clearLog
      const [projectId, actor] = [Ids.ProjectId.make(randomUUID()), randomUUID()]
      const workspace = Events.workspaceStream(projectId, Ids.UserId.make(actor))
      const h = BASE + 5 * HOUR
      const range = { from: utc(h + 30 * MINUTE), to: utc(h + 2 * HOUR + 10 * MINUTE) }
      const expectExact = Effect.gen(function*() {
        const analytics = yield* Analytics
        const [from, to] = [new Date(h + 30 * MINUTE), new Date(h + 2 * HOUR + 10 * MINUTE)]
        const summary = yield* analytics.summary(projectId, workspace, range)
        const reference = yield* referenceSummary(projectId, workspace, from, to)
        expect(summary.events.total).toBe(reference.total)
        expect(summary.topAuthors).toEqual(reference.topAuthors)
        const series = yield* analytics.timeseries(projectId, "hour", range, undefined)
        expect(series.points.map((p) => ({ t: DateTime.toEpochMillis(p.t), count: p.count }))).toEqual(
          yield* referenceTimeseries(projectId, "hour", from, to, undefined)
        )
        return reference.total
      })
      // Both edge hours whole inside the range.
      yield* eventAt(projectId, actor, 1, new Date(h + 40 * MINUTE))
      yield* eventAt(projectId, actor, 2, new Date(h + 2 * HOUR + 5 * MINUTE))
      yield* materializeOnce(1_000)
      expect(yield* expectExact).toBe(2)
      // Late: committed and copied after, but it occurred before the range's start, in the first
      // edge hour; and one after the range's end, in the last.
      yield* eventAt(projectId, actor, 3, new Date(h + 10 * MINUTE))
      yield* eventAt(projectId, actor, 4, new Date(h + 2 * HOUR + 50 * MINUTE))
      yield* materializeOnce(1_000)
      expect(yield* expectExact).toBe(2)
    }))

  it.effect("a rollup row an older build grew (n without its bounds) is not trusted: the edge is read from event_log", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* clearLog
      const [projectId, actor] = [Ids.ProjectId.make(randomUUID()), randomUUID()]
      const h = BASE + 7 * HOUR
      yield* eventAt(projectId, actor, 1, new Date(h + 40 * MINUTE))
      yield* materializeOnce(1_000)
      // What a build from before migration 0012 does with an event at h + 10 min: copies it and
      // adds it to n, leaving the bounds as they were.
      yield* sql`
        INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
        VALUES (${randomUUID()}, ${`project:${projectId}`}, 2, 'message.created', ${projectId}, ${actor},
          ${new Date(h + 10 * MINUTE)}, '{}'::jsonb)`
      yield* sql`UPDATE event_log_hourly SET n = n + 1 WHERE stream_id = ${`project:${projectId}`}`
      const analytics = yield* Analytics
      const summary = yield* analytics.summary(projectId, Events.workspaceStream(projectId, Ids.UserId.make(actor)), {
        from: utc(h + 30 * MINUTE),
        to: utc(h + 5 * HOUR)
      })
      expect(summary.events.total).toBe(1)
    }))

  it.effect(
    "while a materializer copies late, out-of-order events, answers for a range ending now only grow and end equal to the full scan",
    () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* clearLog
        const [projectId, actor] = [Ids.ProjectId.make(randomUUID()), randomUUID()]
        const workspace = Events.workspaceStream(projectId, Ids.UserId.make(actor))
        const [row] = yield* sql<{ now: Date }>`SELECT now() AS now`
        const now = row!.now.getTime()
        const total = 3_000
        // Late and out of order: occurred_at anywhere in the last 90 minutes, outbox order random.
        yield* sql`
          INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
          SELECT gen_random_uuid(), ${`project:${projectId}`}, g, 'message.created', ${projectId}, ${actor},
            ${new Date(now)}::timestamptz - random() * interval '90 minutes', '{}'::jsonb
          FROM generate_series(1, ${total}) g ORDER BY random()`
        const copier = yield* Effect.fork(materializeOnce(50))
        const analytics = yield* Analytics
        const range = { from: utc(now - 30 * MINUTE - 17), to: utc(now + MINUTE) }
        let last = -1
        while (last < 0 || !(yield* Fiber.poll(copier))._tag.startsWith("Some")) {
          const summary = yield* analytics.summary(projectId, workspace, range)
          expect(summary.events.total).toBeGreaterThanOrEqual(last)
          last = summary.events.total
        }
        yield* Fiber.join(copier)
        const summary = yield* analytics.summary(projectId, workspace, range)
        const reference = yield* referenceSummary(
          projectId,
          workspace,
          new Date(now - 30 * MINUTE - 17),
          new Date(now + MINUTE)
        )
        expect(summary.events.total).toBe(reference.total)
        expect(reference.total).toBeGreaterThan(0)
        expect(reference.total).toBeLessThan(total)
      }),
    60_000
  )
})

layer(RollupsTestLive, live)("rollups rebuild (issue 23)", (it) => {
  it.effect(
    "rebuilding while materializers copy events of new and old hours neither fails nor miscounts",
    () =>
      Effect.gen(function*() {
        yield* clearLog
        const store = yield* EventLogStore
        // Many streams and hours: the copies meet rollup rows the rebuild deletes and keys it has not seen.
        const seed = seedLog(23, 20_000, 200)
        yield* writeOutbox(seed.events.slice(0, 5_000))
        yield* materializeOnce(500)
        yield* writeOutbox(seed.events.slice(5_000))
        const copiers = yield* Effect.forEach([0, 1], () => Effect.fork(materializeOnce(40)))
        let rebuilds = 0
        while (!(yield* Effect.forEach(copiers, Fiber.poll)).every((o) => o._tag === "Some")) {
          yield* store.rebuildRollups(rebuilds % 2 === 0 ? null : new Date(BASE + 100 * HOUR))
          rebuilds++
        }
        yield* Effect.forEach(copiers, Fiber.join)
        expect(rebuilds).toBeGreaterThan(1)
        expect(yield* logged).toBe(seed.events.length)
        expect(yield* rollups).toEqual(yield* recount)
      }),
    120_000
  )
})
