import { SqlClient } from "@effect/sql"
import { DateTime, Effect, Option } from "effect"

/**
 * Writes and reads of `event_log`, its hourly rollups and its watermark. The log is append-only:
 * rows are only ever inserted (`ON CONFLICT DO NOTHING`, so copying twice is harmless), never
 * updated; a rollup row only ever grows by the events copied in its hour.
 */
export class EventLogStore extends Effect.Service<EventLogStore>()("Herald/EventLogStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /**
     * The start of a pass: when it looked (statement time) and the highest outbox position then
     * waiting. Every event committed before `at` is either in the log or at a position ≤ `upTo`.
     */
    const passStart = Effect.map(
      sql<{ at: Date; upTo: number | null }>`
        SELECT statement_timestamp() AS at, max(position) AS up_to
        FROM event_outbox WHERE materialized_at IS NULL`,
      ([row]) => ({ at: row!.at, upTo: row!.upTo })
    )

    /**
     * Copies up to `batchSize` unmaterialized outbox rows (positions ≤ `upTo`) into event_log,
     * adds them to the hourly rollups and stamps them, in one statement. Rows another materializer
     * holds are skipped, not waited for. Only rows actually inserted are counted in the rollups (the
     * INSERT's RETURNING), so copying twice or `--rebuild` never counts an event twice; the rollup
     * rows are upserted table by table in key order, so concurrent materializers wait on each other,
     * never deadlock. Actors are not rolled up for workspace streams (one actor; analytics never asks).
     */
    const materializeBatch = (upTo: number, batchSize: number) =>
      Effect.map(
        sql<{ n: number }>`
          WITH batch AS (
            SELECT ctid, id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox
            WHERE materialized_at IS NULL AND position <= ${upTo}
            ORDER BY position
            LIMIT ${batchSize}
            FOR UPDATE SKIP LOCKED
          ), copied AS (
            INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
            SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM batch
            ON CONFLICT DO NOTHING
            RETURNING stream_id, project_id, type, actor_id, occurred_at
          ), by_type AS (
            INSERT INTO event_log_hourly AS h (stream_id, hour, project_id, type, n)
            SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*)
            FROM copied
            GROUP BY 1, 2, 3, 4
            ORDER BY 1, 2, 3, 4
            ON CONFLICT (stream_id, hour, project_id, type) DO UPDATE SET n = h.n + EXCLUDED.n
          ), by_actor AS (
            INSERT INTO event_log_hourly_actors AS a (stream_id, hour, project_id, actor_id, messages)
            SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id,
              count(*) FILTER (WHERE type = 'message.created')
            FROM copied
            WHERE stream_id NOT LIKE 'workspace:%'
            GROUP BY 1, 2, 3, 4
            ORDER BY 1, 2, 3, 4
            ON CONFLICT (stream_id, hour, project_id, actor_id) DO UPDATE SET messages = a.messages + EXCLUDED.messages
              WHERE EXCLUDED.messages > 0
          ), stamped AS (
            UPDATE event_outbox o SET materialized_at = now() FROM batch WHERE o.ctid = batch.ctid RETURNING 1
          )
          SELECT count(*)::int AS n FROM stamped`,
        ([row]) => row!.n
      )

    /** Whether anything at or below `upTo` is still waiting (locked rows included). */
    const remaining = (upTo: number) =>
      Effect.map(
        sql<{ left: boolean }>`
          SELECT EXISTS (SELECT 1 FROM event_outbox WHERE materialized_at IS NULL AND position <= ${upTo}) AS left`,
        ([row]) => row!.left
      )

    /** Moves the watermark forward to `at` (never back). */
    const advance = (at: Date) =>
      sql`
        INSERT INTO event_log_watermark (id, as_of) VALUES (true, ${at})
        ON CONFLICT (id) DO UPDATE SET as_of = GREATEST(event_log_watermark.as_of, EXCLUDED.as_of)`.pipe(Effect.asVoid)

    const asOf = Effect.map(
      sql<{ asOf: Date }>`SELECT as_of FROM event_log_watermark`,
      (rows) => Option.map(Option.fromNullable(rows[0]), (r) => DateTime.unsafeFromDate(r.asOf))
    )

    /**
     * Deletes outbox rows that are published, materialized and published before `olderThan`,
     * in batches; never a row that is pending, dead or not yet in event_log.
     */
    const prune = (olderThanMs: number, batchSize: number) =>
      Effect.map(
        sql<{ n: number }>`
          WITH doomed AS (
            SELECT id FROM event_outbox
            WHERE status = 'published' AND materialized_at IS NOT NULL
              AND published_at < now() - ${olderThanMs} * interval '1 millisecond'
            ORDER BY published_at
            LIMIT ${batchSize}
            FOR UPDATE SKIP LOCKED
          ), gone AS (
            DELETE FROM event_outbox o USING doomed WHERE o.id = doomed.id RETURNING 1
          )
          SELECT count(*)::int AS n FROM gone`,
        ([row]) => row!.n
      )

    /**
     * Deletes the hourly rollups of the hours starting before `cutoff`, for retention once it has
     * dropped the events before `cutoff` (a month boundary, so whole hours). Returns the rows deleted.
     */
    const dropRollupsBefore = (cutoff: Date) =>
      Effect.map(
        sql<{ n: number }>`
          WITH types AS (DELETE FROM event_log_hourly WHERE hour < ${cutoff} RETURNING 1),
            actors AS (DELETE FROM event_log_hourly_actors WHERE hour < ${cutoff} RETURNING 1)
          SELECT (SELECT count(*) FROM types)::int + (SELECT count(*) FROM actors)::int AS n`,
        ([row]) => row!.n
      )

    return { passStart, materializeBatch, remaining, advance, asOf, prune, dropRollupsBefore } as const
  })
}) {}
