import { SqlClient } from "@effect/sql"
import { type Api, Events, Ids } from "@herald/domain"
import { DateTime, Effect, Option, Schema } from "effect"
import { EventLogStore } from "./EventLogStore.js"

export interface Range {
  readonly from: DateTime.Utc
  readonly to: DateTime.Utc
}

const TOP_AUTHORS = 10

const decodeTopAuthors = Schema.decodeUnknown(
  Schema.Array(Schema.Struct({ userId: Ids.UserId, messages: Schema.Number }))
)

/**
 * Analytics over event_log, `[from, to)` by `occurred_at`, for one project's stream (and the
 * caller's own workspace stream, for the workspace figure). Every answer carries `asOf`.
 */
export class Analytics extends Effect.Service<Analytics>()("Herald/Analytics", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const log = yield* EventLogStore
    const asOf = Effect.map(log.asOf, Option.getOrNull)

    const summary = (projectId: Ids.ProjectId, workspaceStream: Events.StreamId, range: Range) =>
      Effect.gen(function*() {
        const stream = Events.projectStream(projectId)
        const from = DateTime.toDateUtc(range.from)
        const to = DateTime.toDateUtc(range.to)
        const watermark = yield* asOf
        const [byType, [people], authors, [workspace]] = yield* Effect.all([
          sql<{ type: string; n: number }>`
            SELECT type, count(*)::int AS n FROM event_log
            WHERE project_id = ${projectId} AND stream_id = ${stream}
              AND occurred_at >= ${from} AND occurred_at < ${to}
            GROUP BY type`,
          sql<{ n: number }>`
            SELECT count(DISTINCT actor_id)::int AS n FROM event_log
            WHERE project_id = ${projectId} AND stream_id = ${stream}
              AND occurred_at >= ${from} AND occurred_at < ${to}`,
          sql`
            SELECT actor_id AS user_id, count(*)::int AS messages FROM event_log
            WHERE project_id = ${projectId} AND type = 'message.created' AND stream_id = ${stream}
              AND occurred_at >= ${from} AND occurred_at < ${to}
            GROUP BY actor_id ORDER BY messages DESC, actor_id LIMIT ${TOP_AUTHORS}`.pipe(
            Effect.flatMap(decodeTopAuthors)
          ),
          sql<{ n: number }>`
            SELECT count(*)::int AS n FROM event_log
            WHERE project_id = ${projectId} AND stream_id = ${workspaceStream}
              AND occurred_at >= ${from} AND occurred_at < ${to}`
        ], { concurrency: "unbounded" })
        const counts = Object.fromEntries(byType.map((r) => [r.type, r.n])) as Record<string, number>
        return {
          projectId,
          from: range.from,
          to: range.to,
          asOf: watermark,
          heldFrom: Option.getOrNull(yield* log.heldFrom),
          events: { total: byType.reduce((sum, r) => sum + r.n, 0), byType: counts },
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
        // Bucketing on naive UTC timestamps: no session time zone or DST can shift a bucket.
        const points = yield* sql<{ t: Date; count: number }>`
          WITH counts AS (
            SELECT date_trunc(${unit}, occurred_at AT TIME ZONE 'UTC') AS t, count(*)::int AS n FROM event_log
            WHERE project_id = ${projectId} AND stream_id = ${Events.projectStream(projectId)}
              ${type === undefined ? sql`` : sql`AND type = ${type}`}
              AND occurred_at >= ${DateTime.toDateUtc(range.from)} AND occurred_at < ${DateTime.toDateUtc(range.to)}
            GROUP BY 1
          )
          SELECT s.t AT TIME ZONE 'UTC' AS t, coalesce(c.n, 0)::int AS count
          FROM generate_series(
            date_trunc(${unit}, ${DateTime.toDateUtc(range.from)}::timestamptz AT TIME ZONE 'UTC'),
            (${DateTime.toDateUtc(range.to)}::timestamptz AT TIME ZONE 'UTC') - interval '1 microsecond',
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
