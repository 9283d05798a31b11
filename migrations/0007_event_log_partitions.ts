import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * `event_log` range-partitioned by `occurred_at`, one partition per UTC month
 * (`event_log_y2026m12` holds [2026-12-01, 2027-01-01) UTC), so retention drops whole partitions
 * instead of deleting rows.
 *
 * PostgreSQL wants the partition key in every unique constraint: the keys are `(id, occurred_at)`
 * and `(stream_id, seq, occurred_at)`. An event's `occurred_at` never changes, so a copy of the
 * same event always lands on the same key (the materializer's `ON CONFLICT DO NOTHING` stays
 * exact), and `event_outbox`, where events are born, holds `id` and `(stream_id, seq)` unique.
 *
 * The existing rows move in this migration's transaction: the old table is renamed, the new one
 * gets a partition for every month from the oldest event's through next month, the rows are
 * copied, then the keys and indexes are built (once, over the loaded partitions) and the old table
 * is dropped.
 *
 * `herald_event_log_ensure_partitions(from, to)` creates whatever monthly partition covering
 * [from, to] is missing, never one wholly below the retention floor. Servers call it at start-up and
 * hourly for this month and the next, and the materializer when a row finds no partition. It takes
 * a transaction-level advisory lock (the one retention's drop takes), so two servers at once, or a
 * drop at the same time, cannot trip over each other; it is idempotent.
 *
 * `event_log_retention` is the floor: `held_from` is where what event_log still holds starts, moved
 * (forward only) in the transaction that drops partitions. No row: nothing was ever dropped.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  yield* sql`
    CREATE TABLE event_log_retention (
      id boolean PRIMARY KEY DEFAULT true CHECK (id),
      held_from timestamptz NOT NULL
    )`

  // The advisory lock key: the same in every statement that creates or drops partitions.
  yield* sql`
    CREATE FUNCTION herald_event_log_partition_lock() RETURNS bigint
    LANGUAGE sql IMMUTABLE AS $$ SELECT 7274697001::bigint $$`

  yield* sql`
    CREATE FUNCTION herald_event_log_ensure_partitions(p_from timestamptz, p_to timestamptz)
    RETURNS integer LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_floor timestamptz;
      v_month timestamp;
      v_last timestamp;
      v_name text;
      v_created integer := 0;
    BEGIN
      IF p_from IS NULL OR p_to IS NULL OR p_from > p_to THEN
        RAISE EXCEPTION 'herald_event_log_ensure_partitions: bad range [%, %]', p_from, p_to
          USING ERRCODE = '22023';
      END IF;
      PERFORM pg_advisory_xact_lock(herald_event_log_partition_lock());
      -- Read after the lock (a fresh snapshot per statement): a drop that committed meanwhile counts.
      SELECT held_from INTO v_floor FROM event_log_retention;
      v_month := date_trunc('month', greatest(p_from, coalesce(v_floor, p_from)) AT TIME ZONE 'UTC');
      v_last := date_trunc('month', p_to AT TIME ZONE 'UTC');
      WHILE v_month <= v_last LOOP
        v_name := 'event_log_' || to_char(v_month, '"y"YYYY"m"MM');
        IF to_regclass(quote_ident(v_name)) IS NULL THEN
          BEGIN
            EXECUTE format(
              'CREATE TABLE %I PARTITION OF event_log FOR VALUES FROM (%L) TO (%L)',
              v_name,
              to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00',
              to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00'
            );
            v_created := v_created + 1;
          EXCEPTION WHEN duplicate_table THEN
            -- Created by another session after this one last looked (a stale name cache): it is there.
            NULL;
          END;
        END IF;
        v_month := v_month + interval '1 month';
      END LOOP;
      RETURN v_created;
    END $$`

  yield* sql`ALTER TABLE event_log RENAME TO event_log_unpartitioned`
  // Free the names for the new table's keys and indexes (the old table goes at the end).
  yield* sql`ALTER TABLE event_log_unpartitioned RENAME CONSTRAINT event_log_pkey TO event_log_unpartitioned_pkey`
  yield* sql`
    ALTER TABLE event_log_unpartitioned
      RENAME CONSTRAINT event_log_stream_id_seq_key TO event_log_unpartitioned_stream_id_seq_key`
  yield* sql`ALTER INDEX event_log_project_time_idx RENAME TO event_log_unpartitioned_project_time_idx`
  yield* sql`ALTER INDEX event_log_project_type_time_idx RENAME TO event_log_unpartitioned_project_type_time_idx`
  yield* sql`ALTER INDEX event_log_stream_time_cover RENAME TO event_log_unpartitioned_stream_time_cover`

  // Append-only history, as in 0002: every column is the envelope's; nothing here is ever updated.
  yield* sql`
    CREATE TABLE event_log (
      id uuid NOT NULL,
      stream_id text NOT NULL,
      seq bigint NOT NULL,
      type text NOT NULL,
      project_id uuid NOT NULL,
      actor_id uuid NOT NULL,
      occurred_at timestamptz NOT NULL,
      data jsonb NOT NULL
    ) PARTITION BY RANGE (occurred_at)`

  yield* sql`
    SELECT herald_event_log_ensure_partitions(
      coalesce((SELECT min(occurred_at) FROM event_log_unpartitioned), now()),
      greatest((SELECT max(occurred_at) FROM event_log_unpartitioned), now() + interval '1 month')
    )`
  yield* sql`
    INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
    SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_log_unpartitioned
    ORDER BY occurred_at`

  yield* sql`ALTER TABLE event_log ADD CONSTRAINT event_log_pkey PRIMARY KEY (id, occurred_at)`
  yield* sql`
    ALTER TABLE event_log ADD CONSTRAINT event_log_stream_id_seq_key UNIQUE (stream_id, seq, occurred_at)`
  yield* sql`CREATE INDEX event_log_project_time_idx ON event_log (project_id, occurred_at)`
  yield* sql`CREATE INDEX event_log_project_type_time_idx ON event_log (project_id, type, occurred_at)`
  // 0004's covering index: analytics statements stay index-only scans, now per partition.
  yield* sql`
    CREATE INDEX event_log_stream_time_cover ON event_log (stream_id, occurred_at)
      INCLUDE (project_id, type, actor_id)`

  yield* sql`DROP TABLE event_log_unpartitioned`
})
