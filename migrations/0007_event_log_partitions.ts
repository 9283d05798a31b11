import { SqlClient } from "@effect/sql"
import { Effect, Schedule } from "effect"

/** The name the new table has until the swap. */
const NEW = "event_log_partitioned"

/** Pages of the old table copied per transaction (~8 000 rows of 1 KB: a fraction of a second). */
const PAGES_PER_BATCH = 1_000

/** Creates `event_log_partitioned`'s monthly partition for every month of [from, to], as the server's function names them. */
const createPartitions = `
  DO $$
  DECLARE
    v_month timestamp := date_trunc('month', coalesce((SELECT min(occurred_at) FROM event_log), now()) AT TIME ZONE 'UTC');
    v_last timestamp := date_trunc('month',
      greatest((SELECT max(occurred_at) FROM event_log), now() + interval '1 month') AT TIME ZONE 'UTC');
  BEGIN
    WHILE v_month <= v_last LOOP
      EXECUTE format(
        'CREATE TABLE %I PARTITION OF event_log_partitioned FOR VALUES FROM (%L) TO (%L)',
        'event_log_' || to_char(v_month, '"y"YYYY"m"MM'),
        to_char(v_month, 'YYYY-MM-DD') || ' 00:00:00+00',
        to_char(v_month + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00'
      );
      v_month := v_month + interval '1 month';
    END LOOP;
  END $$`

/** Bounded lock waits for the statements that lock the old table (tried again by `whileLocked`). */
const shortLocks = (sql: SqlClient.SqlClient) => sql`SELECT set_config('lock_timeout', '300ms', true)`

const whileLocked = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.retry(effect, {
    while: (e) => ["55P03", "40P01"].includes(String((e as { cause?: { code?: unknown } }).cause?.code)),
    schedule: Schedule.exponential("50 millis").pipe(Schedule.union(Schedule.spaced("1 second"))),
    times: 600
  })

/**
 * Before the migration's transaction, outside any: builds `event_log_partitioned` and fills it
 * while the old table takes inserts (above). Starts over from nothing if an earlier attempt was
 * interrupted.
 */
export const online = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* whileLocked(sql.withTransaction(Effect.gen(function*() {
    yield* shortLocks(sql)
    yield* sql`DROP TRIGGER IF EXISTS event_log_copy_to_partitioned ON event_log`
    yield* sql`DROP FUNCTION IF EXISTS herald_event_log_copy_to_partitioned()`
    yield* sql`DROP TABLE IF EXISTS ${sql(NEW)}`
  })))

  // Append-only history, as in 0002: every column is the envelope's; nothing here is ever updated.
  yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`
      CREATE TABLE ${sql(NEW)} (
        id uuid NOT NULL,
        stream_id text NOT NULL,
        seq bigint NOT NULL,
        type text NOT NULL,
        project_id uuid NOT NULL,
        actor_id uuid NOT NULL,
        occurred_at timestamptz NOT NULL,
        data jsonb NOT NULL
      ) PARTITION BY RANGE (occurred_at)`
    yield* sql.unsafe(createPartitions)
    yield* sql`ALTER TABLE ${sql(NEW)} ADD CONSTRAINT event_log_partitioned_pkey PRIMARY KEY (id, occurred_at)`
    yield* sql`
      ALTER TABLE ${sql(NEW)}
        ADD CONSTRAINT event_log_partitioned_stream_id_seq_key UNIQUE (stream_id, seq, occurred_at)`
    yield* sql`CREATE INDEX event_log_partitioned_project_time_idx ON ${sql(NEW)} (project_id, occurred_at)`
    yield* sql`
      CREATE INDEX event_log_partitioned_project_type_time_idx ON ${sql(NEW)} (project_id, type, occurred_at)`
    // 0004's covering index: analytics statements stay index-only scans, now per partition.
    yield* sql`
      CREATE INDEX event_log_partitioned_stream_time_cover ON ${sql(NEW)} (stream_id, occurred_at)
        INCLUDE (project_id, type, actor_id)`
    yield* sql`
      CREATE FUNCTION herald_event_log_copy_to_partitioned() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO event_log_partitioned (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
        VALUES (NEW.id, NEW.stream_id, NEW.seq, NEW.type, NEW.project_id, NEW.actor_id, NEW.occurred_at, NEW.data)
        ON CONFLICT DO NOTHING;
        RETURN NULL;
      END $$`
  }))

  // Creating the trigger waits for the inserts in flight (and holds new ones until it commits).
  yield* whileLocked(sql.withTransaction(Effect.gen(function*() {
    yield* shortLocks(sql)
    yield* sql`
      CREATE TRIGGER event_log_copy_to_partitioned AFTER INSERT ON event_log
      FOR EACH ROW EXECUTE FUNCTION herald_event_log_copy_to_partitioned()`
  })))

  // Every row committed before the trigger is in these pages (read after it committed).
  const [{ pages }] = yield* sql<{ pages: number }>`
    SELECT (pg_relation_size('event_log') / current_setting('block_size')::bigint)::int AS pages`
  for (let from = 0; from < pages; from += PAGES_PER_BATCH) {
    yield* sql`
      INSERT INTO ${sql(NEW)} (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
      SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_log
      WHERE ctid >= ${`(${from},0)`}::tid AND ctid < ${`(${from + PAGES_PER_BATCH},0)`}::tid
      ON CONFLICT DO NOTHING`
  }
  yield* sql`ANALYZE ${sql(NEW)}`
})

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
 * The existing rows move while writers go on (`online`, run before the migration's transaction:
 * issue 23, no migration blocks writers for more than a second). The new table is built beside the
 * old one as `event_log_partitioned`, with a partition for every month from the oldest event's
 * through next month, and its keys and indexes (built on the empty table: building them later would
 * lock the table against the copy's inserts for the whole build); a trigger on the old table copies
 * every row inserted from then on; then the old table's rows are copied in batches of pages, each
 * its own short transaction. The migration's transaction only swaps the tables: a short exclusive
 * lock on the old table, dropped, the new one renamed into its place. The schema is the one this
 * migration made when it copied in one transaction (MigrationsOnline.test compares the two).
 *
 * Why no row is missed: a row of the old table was either committed before the trigger (creating
 * it waits for every insert in flight), so it lies in one of the pages the batches read (counted
 * after the trigger committed; an append-only table's rows never move), or inserted after, so the
 * trigger copied it in its own transaction. The swap takes the old table's exclusive lock, so no
 * insert is in flight then. `ON CONFLICT DO NOTHING` makes a row met both ways harmless. A row of a
 * month before the oldest event's, inserted during the copy (only `herald materialize --rebuild`
 * of an old outbox would), finds no partition: that insert fails, and is retried by its caller
 * after the swap, when the server's partition function exists.
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

  // The swap: the old table (and its trigger) goes, the new one takes its name and its keys' names.
  yield* sql`LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE`
  yield* sql`DROP TABLE event_log`
  yield* sql`DROP FUNCTION herald_event_log_copy_to_partitioned()`
  yield* sql`ALTER TABLE ${sql(NEW)} RENAME TO event_log`
  yield* sql`ALTER TABLE event_log RENAME CONSTRAINT event_log_partitioned_pkey TO event_log_pkey`
  yield* sql`
    ALTER TABLE event_log RENAME CONSTRAINT event_log_partitioned_stream_id_seq_key TO event_log_stream_id_seq_key`
  yield* sql`ALTER INDEX event_log_partitioned_project_time_idx RENAME TO event_log_project_time_idx`
  yield* sql`ALTER INDEX event_log_partitioned_project_type_time_idx RENAME TO event_log_project_type_time_idx`
  yield* sql`ALTER INDEX event_log_partitioned_stream_time_cover RENAME TO event_log_stream_time_cover`
  // A month that began during the copy.
  yield* sql`SELECT herald_event_log_ensure_partitions(now(), now() + interval '1 month')`
})
