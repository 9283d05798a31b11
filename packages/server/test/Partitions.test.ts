/**
 * event_log partitioned by month, against real PostgreSQL (SPEC §3, §7; docs/history-analytics.md):
 *
 * - migration 0007 converts a log holding events of several months without losing or changing a
 *   row: one partition per UTC month from the oldest event's through next month, history and
 *   analytics answering as the generated events say, `(stream_id, seq)` and the id still unique;
 * - partitions are created ahead (this month and the next) by the server at start-up, idempotently
 *   and safely from several sessions at once;
 * - an analytics range query reads only the partitions its range overlaps (its plan says so);
 * - retention drops whole partitions wholly older than the cutoff, moves `heldFrom`, and never
 *   loses an event the outbox still holds (pending, dead, unmaterialized: still readable);
 * - the materializer copes with a month that has no partition and with rows below the floor;
 * - `HERALD_EVENT_LOG_RETENTION` is read like the CLI's `--older-than`; a bad value names it.
 */
import { NodeContext } from "@effect/platform-node"
import { Migrator, SqlClient, Statement } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import { expect, layer } from "@effect/vitest"
import { describe, it } from "@effect/vitest"
import { Events, Ids } from "@herald/domain"
import { Clock, ConfigProvider, DateTime, Duration, Effect, Either, Layer, Option, Redacted, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { migrations } from "../../../migrations/index.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { AppConfig, formatConfigError } from "../src/config/AppConfig.js"
import { clientLayer } from "../src/db/Database.js"
import { runMigrations } from "../src/db/Migrations.js"
import { Analytics } from "../src/eventlog/Analytics.js"
import { EventHistory } from "../src/eventlog/EventHistory.js"
import { EventLogStore } from "../src/eventlog/EventLogStore.js"
import { materializeOnce } from "../src/eventlog/Materializer.js"
import { nodeServerLayer } from "../src/http/HttpApp.js"
import { serverLayer } from "../src/Server.js"
import { EventReader } from "../src/stream/EventReader.js"
import { eventually } from "./support/HttpTesting.js"
import { makeTestServer, TestServer } from "./support/TestServer.js"

/** Live clock: the server's fibers and the database run in real time. */
const live = { excludeTestServices: true } as const

const DAY = 86_400_000

// ---------------------------------------------------------------------------------------------
// Months and partitions

/** The first instant of the UTC month `offset` months from the current one. */
const month = (offset: number) => {
  const now = new Date()
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1))
}
const partitionOf = (d: Date) => `event_log_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, "0")}`

const sqlClient = SqlClient.SqlClient

/** event_log's partitions as the catalog has them: name and bounds, oldest first. */
const partitions = Effect.flatMap(EventLogStore, (store) =>
  Effect.map(
    Effect.orDie(store.partitions),
    (ps) => ps.map((p) => ({ name: p.name, from: p.from?.toISOString(), to: p.to?.toISOString(), rows: p.rows }))
  ))
const partitionNames = Effect.map(partitions, (ps) => ps.map((p) => p.name))

/** Every event_log row, every column as text (full precision), in id order. */
const logSnapshot = Effect.flatMap(
  sqlClient,
  (sql) => Effect.orDie(sql<{ row: string }>`SELECT l::text AS row FROM event_log l ORDER BY id`)
)

// ---------------------------------------------------------------------------------------------
// Generated events

interface Gen {
  readonly id: string
  readonly streamId: string
  readonly seq: number
  readonly type: Events.EventType
  readonly projectId: string
  readonly actorId: string
  readonly occurredAt: Date
  readonly data: Record<string, unknown>
}

/** A stream's events at the given times, seq 1.. in time order; a project stream opens with `project.created`. */
const streamEvents = (
  streamId: string,
  projectId: string,
  actors: ReadonlyArray<string>,
  times: ReadonlyArray<Date>
): Array<Gen> =>
  [...times].sort((a, b) => a.getTime() - b.getTime()).map((occurredAt, i) => {
    const actorId = actors[i % actors.length]!
    const opens = i === 0 && streamId.startsWith("project:")
    return {
      id: randomUUID(),
      streamId,
      seq: i + 1,
      type: opens ? "project.created" : "message.created",
      projectId,
      actorId,
      occurredAt,
      data: opens
        ? { name: "p", ownerId: actorId }
        : { messageId: randomUUID(), authorId: actorId, role: "user", body: `message ${i + 1}` }
    }
  })

/** `n` instants spread evenly over `[from, to)`, at whole milliseconds. */
const spread = (from: Date, to: Date, n: number) =>
  Array.from({ length: n }, (_, i) => new Date(from.getTime() + Math.floor(((to.getTime() - from.getTime()) * i) / n)))

const wire = (e: Gen): Events.EventWire => ({
  id: e.id as Ids.EventId,
  stream: e.streamId as Events.StreamId,
  seq: e.seq,
  type: e.type,
  projectId: e.projectId as Ids.ProjectId,
  actorId: e.actorId as Ids.UserId,
  occurredAt: e.occurredAt.toISOString(),
  data: e.data
} as unknown as Events.EventWire)

type Delivery = "published" | "pending" | "dead"

/** The envelope columns of `e`, as both tables hold them. */
const envelopeRow = (e: Gen) => ({
  id: e.id,
  streamId: e.streamId,
  seq: e.seq,
  type: e.type,
  projectId: e.projectId,
  actorId: e.actorId,
  occurredAt: e.occurredAt,
  data: JSON.stringify(e.data)
})

/** Outbox rows for `events` in a delivery state, materialized or not. */
const insertOutbox = (events: ReadonlyArray<Gen>, state: { status: Delivery; materialized: boolean }) =>
  Effect.flatMap(sqlClient, (sql) =>
    events.length === 0 ? Effect.void : Effect.orDie(sql`
      INSERT INTO event_outbox ${
      sql.insert(events.map((e) => ({
        ...envelopeRow(e),
        status: state.status,
        attempts: state.status === "pending" ? 0 : 3,
        publishedAt: state.status === "published" ? e.occurredAt : null,
        materializedAt: state.materialized ? new Date() : null,
        lastError: state.status === "dead" ? "broker unreachable" : null
      })))
    }`.pipe(Effect.asVoid)))

/** Copies of `events` in event_log, as the materializer would have made them. */
const insertLog = (events: ReadonlyArray<Gen>) =>
  Effect.flatMap(sqlClient, (sql) =>
    events.length === 0 ? Effect.void : Effect.orDie(sql`
      INSERT INTO event_log ${sql.insert(events.map(envelopeRow))}`.pipe(Effect.asVoid)))

/**
 * The hourly rollups of everything event_log holds, as the materializer would have kept them for
 * rows `insertLog` wrote straight into the log (migration 0008's backfill).
 */
const rollUp = Effect.flatMap(sqlClient, (sql) =>
  Effect.orDie(Effect.gen(function*() {
    yield* sql`TRUNCATE event_log_hourly, event_log_hourly_actors`
    yield* sql`
      INSERT INTO event_log_hourly (stream_id, hour, project_id, type, n)
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*)
      FROM event_log GROUP BY 1, 2, 3, 4`
    yield* sql`
      INSERT INTO event_log_hourly_actors (stream_id, hour, project_id, actor_id, messages)
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id,
        count(*) FILTER (WHERE type = 'message.created')
      FROM event_log WHERE stream_id NOT LIKE 'workspace:%' GROUP BY 1, 2, 3, 4`
  })))

/** What the summary counts for a project over `[from, to)`, computed from generated events. */
const expectedSummary = (events: ReadonlyArray<Gen>, projectId: string, from: Date, to: Date) => {
  const inRange = events.filter((e) =>
    e.streamId === `project:${projectId}` && e.occurredAt >= from && e.occurredAt < to
  )
  const byType: Record<string, number> = {}
  for (const e of inRange) byType[e.type] = (byType[e.type] ?? 0) + 1
  const authors: Record<string, number> = {}
  for (const e of inRange.filter((e) => e.type === "message.created")) {
    authors[e.actorId] = (authors[e.actorId] ?? 0) + 1
  }
  return {
    total: inRange.length,
    byType,
    activeUsers: new Set(inRange.map((e) => e.actorId)).size,
    authors
  }
}

const utc = (d: Date) => DateTime.unsafeFromDate(d)

/** The whole history of a stream through EventHistory, `limit` at a time. */
const wholeHistory = (stream: string, limit: number) =>
  Effect.gen(function*() {
    const history = yield* EventHistory
    const items: Array<Events.EventWire> = []
    let after = 0
    while (true) {
      const page = yield* history.page({ stream: stream as Events.StreamId, after, limit, type: undefined })
      items.push(...page.items.map((e) => Schema.encodeSync(Events.Event)(e)))
      if (page.nextAfter === null) return { items, heldFrom: page.heldFrom }
      after = page.nextAfter
    }
  })

// ---------------------------------------------------------------------------------------------
// Layers

/** Migrations 0001–0006 only: the schema before event_log was partitioned. */
const before0007 = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < "0007"))

const databaseAt = (url: string) =>
  Layer.mergeAll(EventHistory.Default, EventReader.Default, Analytics.Default).pipe(
    Layer.provideMerge(EventLogStore.Default),
    Layer.provideMerge(clientLayer({ url: Redacted.make(url), maxConnections: 12 })),
    Layer.provideMerge(NodeContext.layer)
  )

/** A fresh database migrated up to 0006, with the event log's services (built lazily: no query at construction). */
const UnpartitionedLive = Layer.unwrapScoped(Effect.map(freshDatabaseUrl, databaseAt)).pipe(
  Layer.tap((ctx) =>
    Effect.provide(PgMigrator.run({ loader: Migrator.fromRecord(before0007), table: "herald_migrations" }), ctx)
  )
)

/** A fresh database, migrated to the latest schema. */
const MigratedLive = Layer.unwrapScoped(Effect.map(freshDatabaseUrl, databaseAt)).pipe(
  Layer.tap((ctx) => Effect.provide(runMigrations, ctx))
)

// ---------------------------------------------------------------------------------------------

layer(UnpartitionedLive, live)("migration 0007", (it) => {
  it.effect(
    "converts a log of several months: every row kept, one partition a month, same history and analytics, keys unique",
    () =>
      Effect.gen(function*() {
        const sql = yield* sqlClient
        // Five months of two projects (project and workspace streams), the oldest four months ago.
        const [alice, bob, carol] = [randomUUID(), randomUUID(), randomUUID()]
        const [p1, p2] = [randomUUID(), randomUUID()]
        const first = new Date(month(-4).getTime() + 9 * DAY + 3_600_000)
        const last = new Date(Date.now() - 60_000)
        const events = [
          ...streamEvents(`project:${p1}`, p1, [alice, bob, carol, alice], spread(first, last, 61)),
          ...streamEvents(`workspace:${p1}:${alice}`, p1, [alice], spread(month(-3), last, 13)),
          ...streamEvents(`project:${p2}`, p2, [bob, carol], spread(new Date(month(-2).getTime() + DAY), last, 29))
        ]
        yield* insertOutbox(events, { status: "published", materialized: true })
        yield* insertLog(events)
        const before = yield* logSnapshot
        expect(before).toHaveLength(103)

        const applied = yield* Effect.orDie(runMigrations)
        // Later migrations follow; these two are what this test is about.
        expect(applied.map(([, name]) => name).slice(0, 2)).toEqual(["event_log_partitions", "event_log_rollups"])

        // Every row, every column, unchanged; the old table is gone.
        expect(yield* logSnapshot).toEqual(before)
        expect(
          yield* Effect.orDie(sql`SELECT to_regclass('event_log_unpartitioned')::text AS old`)
        ).toEqual([{ old: null }])
        expect(
          yield* Effect.orDie(sql`SELECT relkind::text AS kind FROM pg_class WHERE relname = 'event_log'`)
        ).toEqual([{ kind: "p" }])

        // One partition per UTC month, from the oldest event's month through next month, each
        // holding exactly that month's events.
        const months = [-4, -3, -2, -1, 0, 1]
        expect(yield* partitions).toEqual(months.map((m) => ({
          name: partitionOf(month(m)),
          from: month(m).toISOString(),
          to: month(m + 1).toISOString(),
          rows: events.filter((e) => e.occurredAt >= month(m) && e.occurredAt < month(m + 1)).length
        })))

        // Each partition carries the keys and the indexes history and analytics read.
        const indexes = yield* Effect.orDie(sql<{ def: string }>`
          SELECT regexp_replace(indexdef, 'INDEX \\S+ ON \\S+', 'INDEX ON p') AS def FROM pg_indexes
          WHERE tablename = ${partitionOf(month(-2))} ORDER BY 1`)
        expect(indexes.map((i) => i.def)).toEqual([
          "CREATE INDEX ON p USING btree (project_id, occurred_at)",
          "CREATE INDEX ON p USING btree (project_id, type, occurred_at)",
          "CREATE INDEX ON p USING btree (stream_id, occurred_at) INCLUDE (project_id, type, actor_id)",
          "CREATE UNIQUE INDEX ON p USING btree (id, occurred_at)",
          "CREATE UNIQUE INDEX ON p USING btree (stream_id, seq, occurred_at)"
        ])

        // History: every stream whole, in seq order, page by page; nothing dropped yet.
        for (const stream of [`project:${p1}`, `workspace:${p1}:${alice}`, `project:${p2}`]) {
          const expected = events.filter((e) => e.streamId === stream).map(wire)
          for (const limit of [7, 1000]) {
            const { heldFrom, items } = yield* wholeHistory(stream, limit)
            expect(items).toEqual(expected)
            expect(heldFrom).toBe(null)
          }
        }

        // Analytics over ranges inside one month and across months agree with the events.
        const analytics = yield* Analytics
        const ranges = [
          [month(-4), month(2)],
          [new Date(month(-3).getTime() + 5 * DAY), new Date(month(-1).getTime() + 11 * DAY)],
          [new Date(month(-2).getTime() + 2 * DAY), new Date(month(-2).getTime() + 20 * DAY)]
        ] as const
        for (const [from, to] of ranges) {
          for (const project of [p1, p2]) {
            const got = yield* analytics.summary(
              Ids.ProjectId.make(project),
              Events.workspaceStream(Ids.ProjectId.make(project), Ids.UserId.make(alice)),
              { from: utc(from), to: utc(to) }
            )
            const want = expectedSummary(events, project, from, to)
            expect(got.events).toEqual({ total: want.total, byType: want.byType })
            expect(got.activeUsers).toBe(want.activeUsers)
            expect(Object.fromEntries(got.topAuthors.map((a) => [a.userId, a.messages]))).toEqual(want.authors)
            expect(got.workspace.events).toBe(
              events.filter((e) =>
                e.streamId === `workspace:${project}:${alice}` && e.occurredAt >= from && e.occurredAt < to
              ).length
            )
            expect(got.heldFrom).toBe(null)
          }
          const series = yield* analytics.timeseries(
            Ids.ProjectId.make(p1),
            "day",
            { from: utc(from), to: utc(to) },
            undefined
          )
          expect(series.heldFrom).toBe(null)
          const inRange = events.filter((e) =>
            e.streamId === `project:${p1}` && e.occurredAt >= from && e.occurredAt < to
          )
          expect(series.points.reduce((n, p) => n + p.count, 0)).toBe(inRange.length)
          for (const p of series.points) {
            const t = DateTime.toEpochMillis(p.t)
            expect(p.count).toBe(
              inRange.filter((e) => e.occurredAt.getTime() >= t && e.occurredAt.getTime() < t + DAY).length
            )
          }
        }

        // Keys: the same (stream_id, seq) at the same occurred_at conflicts, and so does the same id.
        const e = events[40]!
        const copy = (id: string, seq: number) =>
          sql`
            INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
            VALUES (${id}, ${e.streamId}, ${seq}, ${e.type}, ${e.projectId}, ${e.actorId}, ${e.occurredAt}, ${
            JSON.stringify(e.data)
          })`
        const sqlState = (exit: Either.Either<unknown, { cause?: unknown }>) =>
          Either.isLeft(exit) ? (exit.left.cause as { code?: string; constraint?: string }) : undefined
        const sameSeq = sqlState(yield* Effect.either(copy(randomUUID(), e.seq)))
        expect(sameSeq).toMatchObject({ code: "23505" })
        const sameId = sqlState(yield* Effect.either(copy(e.id, 10_000)))
        expect(sameId).toMatchObject({ code: "23505" })
        // And the materializer's copy of an event already there is a no-op.
        const again = yield* Effect.orDie(sql`
          INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
          SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox
          ON CONFLICT DO NOTHING RETURNING 1`)
        expect(again).toHaveLength(0)
        expect(yield* logSnapshot).toEqual(before)
      }),
    60_000
  )
})

// ---------------------------------------------------------------------------------------------

layer(MigratedLive, live)("partitions ahead, plans, materializer", (it) => {
  it.effect("on an empty database the migration creates this month's and next month's partitions", () =>
    Effect.gen(function*() {
      expect(yield* partitions).toEqual([
        { name: partitionOf(month(0)), from: month(0).toISOString(), to: month(1).toISOString(), rows: 0 },
        { name: partitionOf(month(1)), from: month(1).toISOString(), to: month(2).toISOString(), rows: 0 }
      ])
    }))

  it.effect("ensuring partitions is idempotent and safe from many sessions at once; a reversed range is refused", () =>
    Effect.gen(function*() {
      const store = yield* EventLogStore
      // 24 months far ahead, asked for by 8 sessions at the same time, twice.
      const from = month(30)
      const to = new Date(month(54).getTime() - 1)
      const created = yield* Effect.all(
        Array.from({ length: 16 }, () => Effect.orDie(store.ensurePartitions(from, to))),
        { concurrency: 8 }
      )
      expect(created.reduce((a, b) => a + b, 0)).toBe(24)
      const names = yield* partitionNames
      for (let m = 30; m < 54; m++) expect(names.filter((n) => n === partitionOf(month(m)))).toHaveLength(1)
      expect(yield* Effect.orDie(store.ensurePartitions(from, to))).toBe(0)
      const reversed = yield* Effect.flip(store.ensurePartitions(to, from))
      expect(String((reversed.cause as Error).message)).toMatch(/bad range/)
    }))

  it.effect("an analytics range query reads only the partitions its range overlaps", () =>
    Effect.gen(function*() {
      const sql = yield* sqlClient
      const store = yield* EventLogStore
      const analytics = yield* Analytics
      yield* Effect.orDie(store.ensurePartitions(month(-8), month(0)))
      const [alice, project] = [randomUUID(), randomUUID()]
      const events = streamEvents(`project:${project}`, project, [alice], spread(month(-8), new Date(), 200))
      yield* insertOutbox(events, { status: "published", materialized: true })
      yield* insertLog(events)
      yield* Effect.orDie(sql`ANALYZE event_log`)

      /** The statements Analytics sends for a call, as compiled (text and parameters). */
      const capture = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
        Effect.gen(function*() {
          const captured: Array<readonly [string, ReadonlyArray<unknown>]> = []
          yield* Statement.withTransformer(effect, (statement) =>
            Effect.sync(() => {
              const [text, params] = statement.compile()
              if (/\bevent_log\b/.test(text)) captured.push([text, params])
              return statement
            }))
          return captured
        })
      /** The relations a statement's plan scans (EXPLAIN with the same parameters). */
      const scanned = (text: string, params: ReadonlyArray<unknown>) =>
        Effect.map(
          Effect.orDie(sql.unsafe<{ queryPlan: string }>(`EXPLAIN ${text}`, params as Array<never>)),
          (rows) => {
            const plan = rows.map((r) => Object.values(r)[0] as string).join("\n")
            return [...new Set([...plan.matchAll(/ on (event_log\w*)/g)].map((m) => m[1]!))].sort()
          }
        )

      const pid = Ids.ProjectId.make(project)
      const MIN = 60_000
      const at = (m: number, days: number, minutes: number) => new Date(month(m).getTime() + days * DAY + minutes * MIN)
      // [from, to), the months a full read of it overlaps (a minute series), and the months of its
      // partial first and last hours: the rest of summary and hour/day series comes from the hourly
      // rollups, so only those edges are read from event_log.
      const cases = [
        // Inside one month, across two, across four — off the hour at both ends.
        [at(-5, 3, 17), at(-5, 20, 5), [-5], [-5]],
        [at(-3, 20, 17), at(-2, 3, 5), [-3, -2], [-3, -2]],
        [at(-7, 0, 17), at(-4, 0, 5), [-7, -6, -5, -4], [-7, -4]],
        // On the hour at both ends: no edges.
        [month(-7), month(-4), [-7, -6, -5], []]
      ] as const
      const rollups = ["event_log_hourly", "event_log_hourly_actors"]
      const partitionsOf = (months: ReadonlyArray<number>) => months.map((m) => partitionOf(month(m))).sort()
      for (const [from, to, overlapped, edges] of cases) {
        const range = { from: utc(from), to: utc(to) }
        const statements = [
          ...(yield* capture(analytics.summary(pid, Events.workspaceStream(pid, Ids.UserId.make(alice)), range))),
          ...(yield* capture(analytics.timeseries(pid, "hour", range, undefined))),
          ...(yield* capture(analytics.timeseries(pid, "day", range, "message.created")))
        ]
        // Whatever statements Analytics sends on event_log (it may change them), each prunes.
        expect(statements.length).toBeGreaterThan(0)
        for (const [text, params] of statements) {
          const relations = yield* scanned(text, params)
          expect(relations.filter((r) => !rollups.includes(r)), text).toEqual(partitionsOf(edges))
        }
        const minutes = yield* capture(analytics.timeseries(pid, "minute", range, undefined))
        expect(minutes.length).toBeGreaterThan(0)
        for (const [text, params] of minutes) {
          expect(yield* scanned(text, params), text).toEqual(partitionsOf(overlapped))
        }
      }
    }))

  it.effect("the materializer creates a missing month's partition, and a row of any month is copied", () =>
    Effect.gen(function*() {
      const sql = yield* sqlClient
      const [alice, project] = [randomUUID(), randomUUID()]
      // Months no partition covers: long ago, and next year (a server clock ahead of this one).
      const times = [
        new Date(Date.UTC(2021, 4, 17, 12)),
        new Date(Date.UTC(2021, 6, 2)),
        new Date(),
        new Date(month(14).getTime() + 5 * DAY)
      ]
      const events = streamEvents(`project:${project}`, project, [alice], times)
      yield* insertOutbox(events, { status: "pending", materialized: false })
      const before = yield* partitionNames
      expect(before).not.toContain("event_log_y2021m05")

      // Batches of one: each batch finds its own month missing.
      yield* Effect.orDie(materializeOnce(1))
      const logged = yield* Effect.orDie(
        sql<{ id: string }>`SELECT id FROM event_log WHERE project_id = ${project} ORDER BY seq`
      )
      expect(logged.map((r) => r.id)).toEqual(events.map((e) => e.id))
      // Each batch's months, and only those: June 2021 had no event.
      const after = yield* partitionNames
      for (const m of ["event_log_y2021m05", "event_log_y2021m07", partitionOf(month(14))]) expect(after).toContain(m)
      expect(after).not.toContain("event_log_y2021m06")
      const left = yield* Effect.orDie(
        sql<{ n: number }>`SELECT count(*)::int AS n FROM event_outbox WHERE materialized_at IS NULL`
      )
      expect(left).toEqual([{ n: 0 }])
    }))
})

// ---------------------------------------------------------------------------------------------

layer(MigratedLive, live)("retention", (it) => {
  it.effect(
    "drops only partitions wholly older than the cutoff, moves heldFrom, keeps every event the outbox holds",
    () =>
      Effect.gen(function*() {
        const sql = yield* sqlClient
        const store = yield* EventLogStore
        const reader = yield* EventReader
        const analytics = yield* Analytics
        yield* Effect.orDie(store.ensurePartitions(month(-5), month(0)))
        const [alice, project] = [randomUUID(), randomUUID()]
        const stream = `project:${project}`
        // 6 events in each of the last six months (this one included), in seq order.
        const times = [-5, -4, -3, -2, -1, 0].flatMap((m) =>
          spread(
            new Date(month(m).getTime() + 60_000),
            new Date(Math.min(month(m + 1).getTime(), Date.now() - 60_000)),
            6
          )
        )
        const events = streamEvents(stream, project, [alice], times)
        const inMonth = (m: number) => events.filter((e) => e.occurredAt >= month(m) && e.occurredAt < month(m + 1))
        const old = [...inMonth(-5), ...inMonth(-4)]
        // The old months' events in every delivery state: delivered and copied; pending, dead and
        // published but not copied yet; pending and copied.
        const delivered = old.filter((_, i) => i % 4 === 0)
        const pending = old.filter((_, i) => i % 4 === 1)
        const dead = old.filter((_, i) => i % 4 === 2)
        const uncopied = old.filter((_, i) => i % 4 === 3)
        yield* insertOutbox(delivered, { status: "published", materialized: true })
        yield* insertOutbox(pending.slice(0, 2), { status: "pending", materialized: true })
        yield* insertOutbox(pending.slice(2), { status: "pending", materialized: false })
        yield* insertOutbox(dead, { status: "dead", materialized: false })
        yield* insertOutbox(uncopied, { status: "published", materialized: false })
        yield* insertLog([...delivered, ...pending.slice(0, 2)])
        const recent = events.filter((e) => e.occurredAt >= month(-3))
        yield* insertOutbox(recent, { status: "published", materialized: true })
        yield* insertLog(recent)
        yield* rollUp
        const outboxBefore = yield* Effect.orDie(sql`SELECT * FROM event_outbox ORDER BY seq`)

        // The cutoff falls inside month -3: months -5 and -4 are wholly older, -3 is not.
        const cutoff = new Date(month(-3).getTime() + 10 * DAY)
        const age = Date.now() - cutoff.getTime()
        const dry = yield* Effect.orDie(store.dropOlderThan(age, { dryRun: true }))
        expect(dry.dropped.map((p) => [p.name, p.rows])).toEqual([
          [
            partitionOf(month(-5)),
            [...delivered, ...pending.slice(0, 2)].filter((e) => e.occurredAt < month(-4)).length
          ],
          [
            partitionOf(month(-4)),
            [...delivered, ...pending.slice(0, 2)].filter((e) => e.occurredAt >= month(-4)).length
          ]
        ])
        expect(Option.isNone(dry.heldFrom)).toBe(true)
        expect(yield* partitionNames).toContain(partitionOf(month(-5)))

        const result = yield* Effect.orDie(store.dropOlderThan(age, { dryRun: false }))
        expect(result.dropped.map((p) => p.name)).toEqual([partitionOf(month(-5)), partitionOf(month(-4))])
        expect(Math.abs(result.cutoff.getTime() - cutoff.getTime())).toBeLessThan(10_000)
        expect(Option.map(result.heldFrom, DateTime.formatIso)).toEqual(Option.some(month(-3).toISOString()))
        expect(yield* partitionNames).toEqual([-3, -2, -1, 0, 1].map((m) => partitionOf(month(m))))
        // The log holds the recent months whole, nothing older.
        const logged = yield* Effect.orDie(sql<{ id: string }>`SELECT id FROM event_log ORDER BY seq`)
        expect(logged.map((r) => r.id)).toEqual(recent.map((e) => e.id))

        // The outbox is untouched, and every event of the stream is still readable through it.
        expect(yield* Effect.orDie(sql`SELECT * FROM event_outbox ORDER BY seq`)).toEqual(outboxBefore)
        const all = yield* Effect.orDie(reader.range(stream, 0, undefined, 1_000))
        expect(all.map((e) => e.id)).toEqual(events.map((e) => e.id))

        // History and analytics say where the log starts.
        const { heldFrom, items } = yield* wholeHistory(stream, 1_000)
        expect(heldFrom).not.toBe(null)
        expect(DateTime.formatIso(heldFrom!)).toBe(month(-3).toISOString())
        expect(items.map((e) => e.id)).toEqual(recent.map((e) => e.id))
        const pid = Ids.ProjectId.make(project)
        const range = { from: utc(month(-6)), to: utc(new Date()) }
        const summary = yield* analytics.summary(pid, Events.workspaceStream(pid, Ids.UserId.make(alice)), range)
        expect(summary.heldFrom === null ? null : DateTime.formatIso(summary.heldFrom)).toBe(month(-3).toISOString())
        expect(summary.events.total).toBe(recent.length)
        const series = yield* analytics.timeseries(pid, "day", range, undefined)
        expect(series.heldFrom === null ? null : DateTime.formatIso(series.heldFrom)).toBe(month(-3).toISOString())

        // The materializer stamps the old months' waiting rows without re-creating their months;
        // the outbox keeps them (status unchanged) until prune, which deletes only published ones.
        yield* Effect.orDie(materializeOnce(2))
        expect(yield* partitionNames).toEqual([-3, -2, -1, 0, 1].map((m) => partitionOf(month(m))))
        expect(yield* Effect.orDie(sql`SELECT id FROM event_log ORDER BY seq`)).toEqual(logged)
        const states = yield* Effect.orDie(sql<{ status: string; materialized: boolean; n: number }>`
          SELECT status, materialized_at IS NOT NULL AS materialized, count(*)::int AS n
          FROM event_outbox WHERE occurred_at < ${month(-3)} GROUP BY 1, 2 ORDER BY 1, 2`)
        expect(states).toEqual([
          { status: "dead", materialized: true, n: dead.length },
          { status: "pending", materialized: true, n: pending.length },
          { status: "published", materialized: true, n: delivered.length + uncopied.length }
        ])
        // And a partition for a month below the floor is never created again.
        expect(yield* Effect.orDie(store.ensurePartitions(month(-5), month(-4)))).toBe(0)
        expect(yield* partitionNames).not.toContain(partitionOf(month(-5)))

        // The floor only moves forward: a longer retention drops nothing and keeps it.
        const longer = yield* Effect.orDie(store.dropOlderThan(age + 200 * DAY, { dryRun: false }))
        expect(longer.dropped).toEqual([])
        expect(Option.map(longer.heldFrom, DateTime.formatIso)).toEqual(Option.some(month(-3).toISOString()))
        // A cutoff inside this month never drops it (nor next month's).
        const zero = yield* Effect.orDie(store.dropOlderThan(0, { dryRun: true }))
        expect(zero.dropped.map((p) => p.name)).toEqual([-3, -2, -1].map((m) => partitionOf(month(m))))
      }),
    60_000
  )
})

// ---------------------------------------------------------------------------------------------

/** The real server (HTTP, publisher, materializer, partition maintenance) over an existing database. */
const serverOver = (url: string, config: Partial<typeof AppConfig.Service>) =>
  Layer.effect(TestServer, makeTestServer).pipe(
    Layer.provideMerge(serverLayer(nodeServerLayer({ port: 0, host: "127.0.0.1" }))),
    Layer.provideMerge(clientLayer({ url: Redacted.make(url), maxConnections: 12 })),
    Layer.provideMerge(AppConfig.layerWith(config)),
    Layer.provide(NodeContext.layer),
    Layer.provide(Layer.setClock(Clock.make()))
  )

describe("the server", () => {
  it.live(
    "creates this month's and next month's partitions at start-up, applies HERALD_EVENT_LOG_RETENTION, materializes into a missing month",
    () =>
      Effect.gen(function*() {
        const url = yield* freshDatabaseUrl
        const [alice, project] = [randomUUID(), randomUUID()]
        const oldEvent = streamEvents(`project:${project}`, project, [alice], [new Date(month(-6).getTime() + DAY)])
        const lastMonth = streamEvents(`workspace:${project}:${alice}`, project, [alice], [
          new Date(month(-1).getTime() + 2 * DAY)
        ])
        // A database whose next month's partition is missing, with an old month held and an
        // event of last month (no partition yet) waiting to be materialized.
        yield* Effect.gen(function*() {
          const sql = yield* sqlClient
          yield* Effect.orDie(runMigrations)
          yield* Effect.orDie(sql`DROP TABLE ${sql(partitionOf(month(1)))}`)
          yield* Effect.orDie((yield* EventLogStore).ensurePartitions(month(-6), month(-6)))
          yield* insertOutbox(oldEvent, { status: "published", materialized: true })
          yield* insertLog(oldEvent)
          yield* insertOutbox(lastMonth, { status: "pending", materialized: false })
          expect(yield* partitionNames).toEqual([partitionOf(month(-6)), partitionOf(month(0))])
        }).pipe(Effect.provide(databaseAt(url)))

        yield* Effect.gen(function*() {
          const server = yield* TestServer
          const sql = yield* sqlClient
          // Before the server serves: this month and the next.
          const started = yield* partitionNames
          expect(started).toContain(partitionOf(month(0)))
          expect(started).toContain(partitionOf(month(1)))
          // The retention (120 days: month -6 is wholly older) runs by itself; the old month goes.
          const names = yield* eventually(
            "the old partition dropped",
            Effect.map(partitionNames, (ns) => ns.includes(partitionOf(month(-6))) ? Option.none() : Option.some(ns))
          )
          expect(names).toEqual(expect.arrayContaining([partitionOf(month(0)), partitionOf(month(1))]))
          // The event of last month is materialized into a partition created for it.
          yield* eventually(
            "last month's event in event_log",
            Effect.map(
              Effect.orDie(sql<{ n: number }>`SELECT count(*)::int AS n FROM event_log WHERE id = ${lastMonth[0]!.id}`),
              ([r]) => r!.n === 1 ? Option.some(true) : Option.none()
            )
          )
          expect(yield* partitionNames).toEqual([-1, 0, 1].map((m) => partitionOf(month(m))))
          // Over HTTP: history and analytics say where the log starts.
          const owner = yield* server.user("alice")
          const res = yield* server.request("POST", "/api/projects", { token: owner.token, json: { name: "p" } })
          const pid = res.body.id as string
          const history = yield* server.request("GET", `/api/projects/${pid}/events`, { token: owner.token })
          expect(history.status).toBe(200)
          expect(history.body).toMatchObject({ nextAfter: null, heldFrom: month(-5).toISOString() })
          const summary = yield* server.request("GET", `/api/projects/${pid}/analytics/summary`, { token: owner.token })
          expect(summary.body.heldFrom).toBe(month(-5).toISOString())
          const series = yield* server.request("GET", `/api/projects/${pid}/analytics/timeseries?bucket=day`, {
            token: owner.token
          })
          expect(series.body.heldFrom).toBe(month(-5).toISOString())
        }).pipe(
          Effect.provide(serverOver(url, { eventLogRetention: Option.some(Duration.days(120)), pollIntervalMs: 50 }))
        )
      }).pipe(Effect.scoped),
    60_000
  )

  it.live("without a retention nothing is dropped, and history says heldFrom: null", () =>
    Effect.gen(function*() {
      const url = yield* freshDatabaseUrl
      yield* Effect.gen(function*() {
        yield* Effect.orDie(runMigrations)
        yield* Effect.orDie((yield* EventLogStore).ensurePartitions(new Date(Date.UTC(2020, 0, 1)), month(0)))
      }).pipe(Effect.provide(databaseAt(url)))
      yield* Effect.gen(function*() {
        const server = yield* TestServer
        yield* Effect.sleep("300 millis")
        expect(yield* partitionNames).toContain("event_log_y2020m01")
        const owner = yield* server.user("alice")
        const res = yield* server.request("POST", "/api/projects", { token: owner.token, json: { name: "p" } })
        const history = yield* server.request("GET", `/api/projects/${res.body.id}/events`, { token: owner.token })
        expect(history.body).toMatchObject({ heldFrom: null })
      }).pipe(Effect.provide(serverOver(url, {})))
    }).pipe(Effect.scoped), 60_000)
})

// ---------------------------------------------------------------------------------------------

describe("HERALD_EVENT_LOG_RETENTION", () => {
  const readFrom = (env: Record<string, string>) =>
    Effect.withConfigProvider(Effect.either(AppConfig.config), ConfigProvider.fromMap(new Map(Object.entries(env))))

  const good: ReadonlyArray<readonly [string, Duration.Duration]> = [
    ["90d", Duration.days(90)],
    ["12h", Duration.hours(12)],
    ["2w", Duration.weeks(2)],
    ["30 days", Duration.days(30)]
  ]
  for (const [value, duration] of good) {
    it.effect(`${JSON.stringify(value)} is ${Duration.format(duration)}`, () =>
      Effect.gen(function*() {
        const read = Either.getOrThrow(yield* readFrom({ HERALD_EVENT_LOG_RETENTION: value }))
        expect(Option.map(read.eventLogRetention, Duration.toMillis)).toEqual(Option.some(Duration.toMillis(duration)))
      }))
  }

  it.effect("unset or empty keeps everything", () =>
    Effect.gen(function*() {
      expect(Either.getOrThrow(yield* readFrom({})).eventLogRetention).toEqual(Option.none())
      expect(Either.getOrThrow(yield* readFrom({ HERALD_EVENT_LOG_RETENTION: " " })).eventLogRetention).toEqual(
        Option.none()
      )
    }))

  for (const value of ["banana", "-5d", "0d", "90", "7 fortnights"]) {
    it.effect(`${JSON.stringify(value)} stops start-up with one line naming the variable`, () =>
      Effect.gen(function*() {
        const read = yield* readFrom({ HERALD_EVENT_LOG_RETENTION: value })
        expect(Either.isLeft(read)).toBe(true)
        const line = formatConfigError(Either.getLeft(read).pipe(Option.getOrThrow))
        expect(line).toBe(
          `Invalid configuration: HERALD_EVENT_LOG_RETENTION: Expected a duration greater than 0 such as 90d, 12h or "30 days", but received "${value}"`
        )
      }))
  }
})
