import { SqlClient, type Statement } from "@effect/sql"
import { type Api, Events, Ids } from "@herald/domain"
import { DateTime, Effect, Option, Schema } from "effect"
import { EventLogStore } from "./EventLogStore.js"

export interface Range {
  readonly from: DateTime.Utc
  readonly to: DateTime.Utc
}

const TOP_AUTHORS = 10
const HOUR_MS = 3_600_000

const decodeTopAuthors = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ userId: Ids.UserId, messages: Schema.Number }))
)

/**
 * `[from, to)` cut at whole UTC hours: `[hours.from, hours.to)` is answered from the hourly
 * rollups, the edges `[from, hours.from)` and `[hours.to, to)` — each inside one hour — from the
 * rollups when their hour's events all fall inside the edge, else from event_log. A range inside
 * one hour is one edge (the other and the hours empty).
 */
export interface Split {
  readonly hours: { readonly from: Date; readonly to: Date }
  readonly edges: readonly [{ readonly from: Date; readonly to: Date }, { readonly from: Date; readonly to: Date }]
}

/** The UTC hour an edge lies in (an edge never crosses an hour). */
const hourOf = (e: Split["edges"][number]) => new Date(Math.floor(e.from.getTime() / HOUR_MS) * HOUR_MS)

export const splitRange = (range: Range): Split => {
  const from = DateTime.toEpochMillis(range.from)
  const to = DateTime.toEpochMillis(range.to)
  const first = Math.ceil(from / HOUR_MS) * HOUR_MS
  const last = Math.floor(to / HOUR_MS) * HOUR_MS
  const at = (ms: number) => new Date(ms)
  // Inside one hour (neither end on it): one edge. Otherwise each edge stays in its own hour
  // (the hours between may be none), so an edge hour answered from its rollup is that edge alone.
  return first <= last
    ? {
      hours: { from: at(first), to: at(last) },
      edges: [{ from: at(from), to: at(first) }, { from: at(last), to: at(to) }]
    }
    : {
      hours: { from: at(first), to: at(first) },
      edges: [{ from: at(from), to: at(to) }, { from: at(to), to: at(to) }]
    }
}

/**
 * Analytics over event_log, `[from, to)` by `occurred_at`, for one project's stream (and the
 * caller's own workspace stream, for the workspace figure). Whole hours come from the hourly
 * rollups the materializer keeps in the same statement that copies the rows (so they are exactly
 * as fresh as `asOf`), the partial edges from event_log; minute buckets from event_log alone.
 * Every answer carries `asOf`.
 */
export class Analytics extends Effect.Service<Analytics>()("Herald/Analytics", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const log = yield* EventLogStore
    const asOf = Effect.map(log.asOf, Option.getOrNull)

    const ofType = (type: Events.EventType | undefined) => type === undefined ? sql`` : sql`AND type = ${type}`

    type Edge = Split["edges"][number]

    /**
     * Whether the rollups answer edge `e` whole: every event the stream's rollup rows count in the
     * edge's hour lies inside `e` (their bounds do, and cover all they count: `span_n = n`). No rows
     * (an empty hour) or rows without bounds (from before migration 0012) are no: event_log then.
     * Read in the statement's own snapshot, with the rows it then counts: the materializer moves the
     * bounds and the counts in one statement, so a late `occurred_at` or a copy committed meanwhile
     * is either in both or in neither.
     */
    const wholeInRollups = (projectId: Ids.ProjectId, stream: Events.StreamId, e: Edge) =>
      sql`(
          SELECT coalesce(bool_and(coalesce(first_at >= ${e.from} AND last_at < ${e.to} AND span_n = n, false)), false)
          FROM event_log_hourly
          WHERE project_id = ${projectId} AND stream_id = ${stream} AND hour = ${hourOf(e)})`

    /**
     * One stream's part of `[e.from, e.to)` (an edge of a split range) as `columns`: the edge hour's
     * rollup rows from `rollup` when they answer it whole, else its events from event_log (each
     * branch gated by a one-time filter, so only one runs). An empty edge is never whole: its
     * event_log range is empty (and prunes every partition). `herald_serial_plan()` (parallel
     * unsafe, migration 0012) keeps the plan serial: a Gather's workers would be launched even when
     * the filter skips the scan they were planned for, tens of ms for nothing.
     */
    const edge = (
      projectId: Ids.ProjectId,
      stream: Events.StreamId,
      e: Edge,
      rollup: Statement.Fragment,
      columns: string,
      type: Events.EventType | undefined
    ) =>
      sql`
          UNION ALL ${rollup} AND hour = ${hourOf(e)} AND ${wholeInRollups(projectId, stream, e)}
          UNION ALL SELECT ${sql.literal(columns)} FROM event_log
          WHERE project_id = ${projectId} AND stream_id = ${stream} ${ofType(type)}
            AND occurred_at >= ${e.from} AND occurred_at < ${e.to}
            AND NOT ${wholeInRollups(projectId, stream, e)} AND herald_serial_plan()`

    /**
     * One stream's events in the split range as `(at, type, n)`: hourly rows (`at` = the hour, `n`
     * events) and edge events (`n` = 1). Any sum over them equals the same over the range's events.
     */
    const byType = (
      projectId: Ids.ProjectId,
      stream: Events.StreamId,
      split: Split,
      type: Events.EventType | undefined
    ) => {
      const columns = "occurred_at AS at, type, 1::bigint AS n"
      const rollup = sql`
          SELECT hour AS at, type, n FROM event_log_hourly
          WHERE project_id = ${projectId} AND stream_id = ${stream} ${ofType(type)}`
      return sql`
          ${rollup} AND hour >= ${split.hours.from} AND hour < ${split.hours.to}
          ${edge(projectId, stream, split.edges[0], rollup, columns, type)}
          ${edge(projectId, stream, split.edges[1], rollup, columns, type)}`
    }

    /**
     * The project stream's actors in the split range as `(actor_id, n)`: one row per actor and whole
     * hour they acted in (`n` = their `message.created` events then), one per edge event (`n` = 1 if
     * it is a `message.created`). With `messagesOnly`, only rows that count messages.
     */
    const byActor = (projectId: Ids.ProjectId, split: Split, messagesOnly: boolean) => {
      const stream = Events.projectStream(projectId)
      const created = messagesOnly ? "message.created" : undefined
      const columns = "actor_id, (type = 'message.created')::int::bigint AS n"
      const rollup = sql`
          SELECT actor_id, messages AS n FROM event_log_hourly_actors
          WHERE project_id = ${projectId} AND stream_id = ${stream} ${messagesOnly ? sql`AND messages > 0` : sql``}`
      return sql`
          ${rollup} AND hour >= ${split.hours.from} AND hour < ${split.hours.to}
          ${edge(projectId, stream, split.edges[0], rollup, columns, created)}
          ${edge(projectId, stream, split.edges[1], rollup, columns, created)}`
    }

    const summary = (projectId: Ids.ProjectId, workspaceStream: Events.StreamId, range: Range) =>
      Effect.gen(function*() {
        const stream = Events.projectStream(projectId)
        const split = splitRange(range)
        const watermark = yield* asOf
        const [types, [people], authors, [workspace]] = yield* Effect.all([
          sql<{ type: string; n: number }>`
            SELECT type, sum(n)::int AS n FROM (${byType(projectId, stream, split, undefined)}) p
            GROUP BY type`,
          // DISTINCT in a subquery is hashed; count(DISTINCT …) would sort every row.
          sql<{ n: number }>`
            SELECT count(*)::int AS n FROM (SELECT DISTINCT actor_id FROM (${byActor(projectId, split, false)}) p) d`,
          sql`
            SELECT actor_id AS user_id, sum(n)::int AS messages FROM (${byActor(projectId, split, true)}) p
            GROUP BY actor_id ORDER BY messages DESC, actor_id LIMIT ${TOP_AUTHORS}`.pipe(
            Effect.flatMap(decodeTopAuthors)
          ),
          sql<{ n: number }>`
            SELECT coalesce(sum(n), 0)::int AS n FROM (${byType(projectId, workspaceStream, split, undefined)}) p`
        ], { concurrency: "unbounded" })
        const counts = Object.fromEntries(types.map((r) => [r.type, r.n])) as Record<string, number>
        return {
          projectId,
          from: range.from,
          to: range.to,
          asOf: watermark,
          heldFrom: Option.getOrNull(yield* log.heldFrom),
          events: { total: types.reduce((sum, r) => sum + r.n, 0), byType: counts },
          messages: {
            created: counts["message.created"] ?? 0,
            edited: counts["message.edited"] ?? 0,
            deleted: counts["message.deleted"] ?? 0
          },
          activeUsers: people!.n,
          topAuthors: authors,
          workspace: { events: workspace!.n }
        }
      }).pipe(Effect.orDie)

    /** Counts per UTC bucket over the project stream, empty buckets included. */
    const timeseries = (
      projectId: Ids.ProjectId,
      bucket: Api.Bucket,
      range: Range,
      type: Events.EventType | undefined
    ) =>
      Effect.gen(function*() {
        const watermark = yield* asOf
        const step = sql.literal(`interval '1 ${bucket}'`)
        const unit = sql.literal(`'${bucket}'`)
        const stream = Events.projectStream(projectId)
        const from = DateTime.toDateUtc(range.from)
        const to = DateTime.toDateUtc(range.to)
        // A minute is finer than a rollup: minute buckets count event_log rows; hours and days
        // add up whole-hour rollups and the edges' events.
        const events = bucket === "minute"
          ? sql`
            SELECT occurred_at AS at, 1::bigint AS n FROM event_log
            WHERE project_id = ${projectId} AND stream_id = ${stream}
              ${ofType(type)}
              AND occurred_at >= ${from} AND occurred_at < ${to}`
          : byType(projectId, stream, splitRange(range), type)
        // Bucketing on naive UTC timestamps: no session time zone or DST can shift a bucket.
        const points = yield* sql<{ t: Date; count: number }>`
          WITH counts AS (
            SELECT date_trunc(${unit}, at AT TIME ZONE 'UTC') AS t, sum(n)::int AS n FROM (${events}) e
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
        return {
          bucket,
          asOf: watermark,
          heldFrom: Option.getOrNull(yield* log.heldFrom),
          points: points.map((p) => ({ t: DateTime.unsafeFromDate(p.t), count: p.count }))
        }
      }).pipe(Effect.orDie)

    return { summary, timeseries } as const
  })
}) {}
