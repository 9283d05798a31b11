import { SqlClient, type SqlError } from "@effect/sql"
import { Array as Arr, DateTime, Effect, Option } from "effect"

/** One of event_log's partitions: `[from, to)` by `occurred_at` (null for an unbounded side or a default partition). */
export interface EventLogPartition {
  readonly name: string
  readonly from: Date | null
  readonly to: Date | null
  readonly rows: number
  /** Heap, indexes and TOAST. */
  readonly bytes: number
}

/** What a retention drop removed (or, dry, would remove), and where the log is held from afterwards. */
export interface DropResult {
  readonly cutoff: Date
  readonly dropped: ReadonlyArray<EventLogPartition>
  readonly heldFrom: Option.Option<DateTime.Utc>
}

/** "no partition of relation … found for row": a row whose month has no partition yet. */
const isNoPartition = (error: SqlError.SqlError) => (error.cause as { code?: unknown } | undefined)?.code === "23514"

/** One transaction of `rebuildRollups`: the hours `[from, to)` (null: unbounded), rows removed, hours and events counted. */
export interface RebuildChunk {
  readonly from: Date | null
  readonly to: Date | null
  readonly removed: number
  readonly hours: number
  readonly events: number
}

/** One batch of a materializer pass: rows copied, the last position taken, whether copies were tolerated. */
export interface Batch {
  readonly copied: number
  readonly last: number | null
  readonly tolerated: boolean
}

/** A unique index refused a row: here, an event already in event_log. */
const isUniqueViolation = (error: SqlError.SqlError) =>
  (error.cause as { code?: unknown } | undefined)?.code === "23505"

const isUndefinedTable = (error: SqlError.SqlError) => (error.cause as { code?: unknown } | undefined)?.code === "42P01"

/** Ages beyond this (~950 years) mean "before anything": keeps `now() - age` inside timestamptz's range. */
const MAX_AGE_MS = 3e13

/** Attempts of one batch that keep finding a month without a partition (each ensures the batch's months first). */
const PARTITION_ATTEMPTS = 4

/**
 * Writes and reads of `event_log`, its hourly rollups, its watermark, its monthly partitions and
 * its retention floor. The log is append-only: rows are only ever inserted (a copy of an event
 * already there is refused by its key and tolerated, so copying twice is harmless), never updated; a rollup row only ever grows by the
 * events copied in its hour; retention drops whole partitions (and the rollups of their hours).
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
     * Copies up to `batchSize` unmaterialized outbox rows (`after` < position ≤ `upTo`) into
     * event_log, adds them to the hourly rollups and stamps them, in one statement, and says how many
     * and the last position it took (the next batch starts after it, so a pass's batches never scan
     * again the index entries of the rows it has just stamped). With `tolerateCopies`, rows already in
     * event_log are left out (`ON CONFLICT DO NOTHING`); without, they fail the statement. Rows another materializer
     * holds are skipped, not waited for. Only rows actually inserted are counted in the rollups (the
     * INSERT's RETURNING), so copying twice or `--rebuild` never counts an event twice; a by-type
     * row's bounds (`first_at`, `last_at`) widen to the rows added and `span_n` grows with `n` (a row
     * with NULL bounds — from before migration 0012 — keeps them NULL: never trusted); the rollup
     * rows are upserted table by table in key order, so concurrent materializers wait on each other,
     * never deadlock. Actors are not rolled up for workspace streams (one actor; analytics never asks).
     * A row older than the retention floor is stamped without being copied (nor rolled up): its
     * month was dropped and is not created again (the outbox keeps the row until it is pruned).
     */
    const copyBatch = (after: number, upTo: number, batchSize: number, tolerateCopies: boolean) =>
      Effect.map(
        sql<{ n: number; last: number | null }>`
          WITH batch AS (
            SELECT ctid, position, id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox
            WHERE materialized_at IS NULL AND position > ${after} AND position <= ${upTo}
            ORDER BY position
            LIMIT ${batchSize}
            FOR UPDATE SKIP LOCKED
          ), copied AS (
            INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
            SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM batch
            WHERE occurred_at >= coalesce((SELECT held_from FROM event_log_retention), '-infinity')
            ${tolerateCopies ? sql`ON CONFLICT DO NOTHING` : sql``}
            RETURNING stream_id, project_id, type, actor_id, occurred_at
          ), by_type AS (
            INSERT INTO event_log_hourly AS h (stream_id, hour, project_id, type, n, first_at, last_at, span_n)
            SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*),
              min(occurred_at), max(occurred_at), count(*)
            FROM copied
            GROUP BY 1, 2, 3, 4
            ORDER BY 1, 2, 3, 4
            ON CONFLICT (stream_id, hour, project_id, type) DO UPDATE SET n = h.n + EXCLUDED.n,
              first_at = LEAST(h.first_at, EXCLUDED.first_at), last_at = GREATEST(h.last_at, EXCLUDED.last_at),
              span_n = h.span_n + EXCLUDED.span_n
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
          SELECT (SELECT count(*) FROM stamped)::int AS n, (SELECT max(position) FROM batch) AS last`,
        ([row]) => ({ copied: row!.n, last: row!.last === null ? null : Number(row!.last) })
      )

    /** Partitions for every month the next batch's rows fall in (what `copyBatch` would take). */
    const ensureForBatch = (after: number, upTo: number, batchSize: number) =>
      sql`
        SELECT herald_event_log_ensure_partitions(min(occurred_at), max(occurred_at))
        FROM (
          SELECT occurred_at FROM event_outbox
          WHERE materialized_at IS NULL AND position > ${after} AND position <= ${upTo}
          ORDER BY position
          LIMIT ${batchSize}
        ) b
        HAVING count(*) > 0`.pipe(Effect.asVoid)

    /** `copyBatch`, never failing for a missing partition: its months are created and it runs again. */
    const copyIntoPartitions = (after: number, upTo: number, batchSize: number, tolerateCopies: boolean) =>
      copyBatch(after, upTo, batchSize, tolerateCopies).pipe(
        Effect.tapError((error) => isNoPartition(error) ? ensureForBatch(after, upTo, batchSize) : Effect.void),
        Effect.retry({ while: isNoPartition, times: PARTITION_ATTEMPTS - 1 })
      )

    /**
     * One batch (`copyBatch`), never failing for a missing partition — the server creates this
     * month's and the next ahead of time, but a row can still find none (an old event, a server
     * that slept through a month boundary): then its months are created and the batch runs again.
     *
     * Copying is idempotent, but a plain INSERT is not: `ON CONFLICT DO NOTHING` costs a
     * speculative insertion per row (~0.1x of the materializer's rate, docs/benchmarks.md), and an
     * outbox row is already in event_log only after `herald materialize --rebuild`, a stamp that
     * missed its row (updated meanwhile) or a copy by hand. So a batch is first copied plainly; a
     * unique violation (the whole statement rolled back) runs it again with `ON CONFLICT DO
     * NOTHING`, and `tolerated` tells the caller to keep doing so for the rest of its pass.
     */
    const materializeBatch = (after: number, upTo: number, batchSize: number, tolerateCopies = false) =>
      copyIntoPartitions(after, upTo, batchSize, tolerateCopies).pipe(
        Effect.map((batch) => ({ ...batch, tolerated: tolerateCopies })),
        Effect.catchIf(
          (error) => !tolerateCopies && isUniqueViolation(error),
          () => Effect.map(copyIntoPartitions(after, upTo, batchSize, true), (batch) => ({ ...batch, tolerated: true }))
        )
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

    /**
     * Creates every missing monthly partition covering `[from, to]` (none wholly below the
     * retention floor); idempotent, safe from several processes at once. Returns how many it made.
     */
    const ensurePartitions = (from: Date, to: Date) =>
      Effect.map(
        sql<{ created: number }>`SELECT herald_event_log_ensure_partitions(${from}, ${to}) AS created`,
        ([row]) => row!.created
      )

    /** This month's and next month's partitions, by the database clock (start-up, then hourly). */
    const ensureAhead = sql`
      SELECT herald_event_log_ensure_partitions(now(), now() + interval '1 month')`.pipe(Effect.asVoid)

    /** Where what event_log holds starts; none while nothing was ever dropped. */
    const heldFrom = Effect.map(
      sql<{ heldFrom: Date }>`SELECT held_from FROM event_log_retention`,
      (rows) => Option.map(Option.fromNullable(rows[0]), (r) => DateTime.unsafeFromDate(r.heldFrom))
    )

    /** The partitions and their bounds, oldest first, without counting rows. */
    const partitionBounds = sql<{ name: string; from: Date | null; to: Date | null; bytes: number }>`
      SELECT name, m[1]::timestamptz AS from, m[2]::timestamptz AS to, bytes FROM (
        SELECT c.relname AS name,
               pg_total_relation_size(c.oid) AS bytes,
               regexp_match(pg_get_expr(c.relpartbound, c.oid), '^FOR VALUES FROM \\(''([^'']*)''\\) TO \\(''([^'']*)''\\)') AS m
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'event_log'::regclass
      ) p
      ORDER BY m[1]::timestamptz NULLS FIRST, name`

    /** Each partition with its exact row count; one dropped meanwhile (retention elsewhere) is left out. */
    const withRows = (bounds: ReadonlyArray<Omit<EventLogPartition, "rows">>) =>
      Effect.map(
        Effect.forEach(bounds, (p) =>
          sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql(p.name)}`.pipe(
            Effect.map(([row]) => Option.some<EventLogPartition>({ ...p, rows: row!.n })),
            Effect.catchIf(isUndefinedTable, () => Effect.succeed(Option.none()))
          )),
        (found) => Arr.getSomes(found)
      )

    /** Every partition of event_log, oldest first, with its exact row count and size. */
    const partitions = Effect.flatMap(partitionBounds, withRows)

    /**
     * Drops the partitions wholly older than `olderThanMs` (upper bound ≤ now − age) — detached,
     * then dropped — and moves the retention floor to the newest dropped bound, all in one
     * transaction under the partition lock. A partition without an upper bound is never dropped.
     * The rollups of the dropped hours go too. Only event_log (and its rollups) lose rows: the outbox
     * keeps every event that is pending, dead or not yet materialized (its prune never deletes
     * those), and the materializer never copies below the floor.
     */
    const dropOlderThan = (olderThanMs: number, options: { readonly dryRun: boolean }) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT pg_advisory_xact_lock(herald_event_log_partition_lock())`
        const [row] = yield* sql<{ cutoff: Date }>`
          SELECT now() - ${Math.min(olderThanMs, MAX_AGE_MS)} * interval '1 millisecond' AS cutoff`
        const cutoff = row!.cutoff
        const doomed = yield* withRows(
          (yield* partitionBounds).filter((p) => p.to !== null && p.to.getTime() <= cutoff.getTime())
        )
        if (!options.dryRun && doomed.length > 0) {
          // Detaching locks event_log exclusively: behind a long read it would hold every new
          // read up in the lock queue. Give up instead (the next round tries again).
          yield* sql`SET LOCAL lock_timeout = '10s'`
          for (const p of doomed) {
            yield* sql`ALTER TABLE event_log DETACH PARTITION ${sql(p.name)}`
            yield* sql`DROP TABLE ${sql(p.name)}`
          }
          const floor = new Date(Math.max(...doomed.map((p) => p.to!.getTime())))
          yield* sql`
            INSERT INTO event_log_retention (id, held_from) VALUES (true, ${floor})
            ON CONFLICT (id) DO UPDATE SET held_from = GREATEST(event_log_retention.held_from, EXCLUDED.held_from)`
          // The dropped months' hours go with them, in the same transaction: analytics never count
          // a rollup whose events are gone.
          yield* dropRollupsBefore(floor)
        }
        return { cutoff, dropped: doomed, heldFrom: yield* heldFrom } satisfies DropResult
      }))

    /**
     * Re-derives the rollups of the hours in `[from, to)` (on the hour; null: unbounded) from
     * event_log, in one transaction: deletes those hours' rows of both tables and counts them again
     * (with their bounds). `SHARE ROW EXCLUSIVE` on event_log first: reads go on, but no
     * materializer statement inserts meanwhile (one in flight is waited for; the next waits for the
     * commit, then adds to the rebuilt rows), and no second rebuild runs at once — so every event is
     * counted once, whatever commits around it.
     */
    const rebuildRollupsBetween = (from: Date | null, to: Date | null) =>
      sql.withTransaction(Effect.gen(function*() {
        yield* sql`LOCK TABLE event_log IN SHARE ROW EXCLUSIVE MODE`
        const lo = sql`${from?.toISOString() ?? "-infinity"}::timestamptz`
        const hi = sql`${to?.toISOString() ?? "infinity"}::timestamptz`
        const [row] = yield* sql<{ removed: number; hours: number; events: number }>`
          WITH gone AS (DELETE FROM event_log_hourly WHERE hour >= ${lo} AND hour < ${hi} RETURNING 1),
            gone_actors AS (DELETE FROM event_log_hourly_actors WHERE hour >= ${lo} AND hour < ${hi} RETURNING 1)
          SELECT (SELECT count(*) FROM gone)::int + (SELECT count(*) FROM gone_actors)::int AS removed`
        const [types] = yield* sql<{ hours: number; events: number }>`
          WITH added AS (
            INSERT INTO event_log_hourly (stream_id, hour, project_id, type, n, first_at, last_at, span_n)
            SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*),
              min(occurred_at), max(occurred_at), count(*)
            FROM event_log WHERE occurred_at >= ${lo} AND occurred_at < ${hi}
            GROUP BY 1, 2, 3, 4
            RETURNING hour, n
          )
          SELECT count(DISTINCT hour)::int AS hours, coalesce(sum(n), 0)::int AS events FROM added`
        yield* sql`
          INSERT INTO event_log_hourly_actors (stream_id, hour, project_id, actor_id, messages)
          SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id,
            count(*) FILTER (WHERE type = 'message.created')
          FROM event_log
          WHERE occurred_at >= ${lo} AND occurred_at < ${hi} AND stream_id NOT LIKE 'workspace:%'
          GROUP BY 1, 2, 3, 4`
        return { removed: row!.removed, hours: types!.hours, events: types!.events }
      }))

    /**
     * The rollups of every hour from `since` (its hour; none: all) re-derived from event_log, one
     * transaction per month partition (`rebuildRollupsBetween`), so the materializer waits at most
     * for one month's recount, never for the whole log. The last chunk is unbounded above: a month
     * created meanwhile, or rollup rows of hours without a partition, are covered too. `onChunk` is
     * told after each.
     */
    const rebuildRollups = <R = never>(
      since: Date | null,
      onChunk: (done: RebuildChunk, of: number) => Effect.Effect<void, never, R> = () => Effect.void
    ) =>
      Effect.gen(function*() {
        const start = since === null ? null : new Date(Math.floor(since.getTime() / 3_600_000) * 3_600_000)
        const cuts = (yield* partitionBounds)
          .flatMap((p) => p.to === null ? [] : [p.to.getTime()])
          .filter((t) => start === null || t > start.getTime())
        const bounds = [start?.getTime() ?? null, ...[...new Set(cuts)].sort((a, b) => a - b), null]
        const chunks: Array<RebuildChunk> = []
        for (let i = 0; i + 1 < bounds.length; i++) {
          const from = bounds[i] === null ? null : new Date(bounds[i]!)
          const to = bounds[i + 1] === null ? null : new Date(bounds[i + 1]!)
          const done = { from, to, ...(yield* rebuildRollupsBetween(from, to)) }
          chunks.push(done)
          yield* onChunk(done, bounds.length - 1)
        }
        return { since: start, chunks }
      })

    return {
      rebuildRollups,
      passStart,
      materializeBatch,
      remaining,
      advance,
      asOf,
      prune,
      ensurePartitions,
      ensureAhead,
      heldFrom,
      partitions,
      dropOlderThan,
      dropRollupsBefore
    } as const
  })
}) {}
