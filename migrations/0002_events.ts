import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** The per-stream seq counters, the delivery queue and the append-only history. */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  // Bumped with INSERT … ON CONFLICT DO UPDATE … RETURNING inside the writing transaction:
  // the row lock orders commits within a stream, so commit order equals seq order.
  yield* sql`
    CREATE TABLE event_streams (
      stream_id text PRIMARY KEY,
      last_seq bigint NOT NULL CHECK (last_seq > 0)
    )`

  yield* sql`
    CREATE TABLE event_outbox (
      id uuid PRIMARY KEY,
      position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
      stream_id text NOT NULL,
      seq bigint NOT NULL CHECK (seq > 0),
      type text NOT NULL,
      project_id uuid NOT NULL,
      actor_id uuid NOT NULL,
      occurred_at timestamptz NOT NULL,
      data jsonb NOT NULL,
      status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'published', 'dead')),
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      claimed_by text,
      claimed_until timestamptz,
      last_error text,
      published_at timestamptz,
      materialized_at timestamptz,
      UNIQUE (stream_id, seq)
    )`
  // The publisher's scan: due pending rows in order. The ORDER BY of the claim query matches it,
  // so a claim never sorts the table.
  yield* sql`
    CREATE INDEX event_outbox_pending_idx ON event_outbox (next_attempt_at, position)
      WHERE status = 'pending'`
  // The materializer's scan: committed rows not yet copied into event_log.
  yield* sql`
    CREATE INDEX event_outbox_unmaterialized_idx ON event_outbox (position)
      WHERE materialized_at IS NULL`
  yield* sql`CREATE INDEX event_outbox_dead_idx ON event_outbox (position) WHERE status = 'dead'`
  // Prune scans published rows by age.
  yield* sql`
    CREATE INDEX event_outbox_published_idx ON event_outbox (published_at)
      WHERE status = 'published'`

  // Append-only history. Every column is the envelope's; nothing here is ever updated.
  yield* sql`
    CREATE TABLE event_log (
      id uuid PRIMARY KEY,
      stream_id text NOT NULL,
      seq bigint NOT NULL,
      type text NOT NULL,
      project_id uuid NOT NULL,
      actor_id uuid NOT NULL,
      occurred_at timestamptz NOT NULL,
      data jsonb NOT NULL,
      UNIQUE (stream_id, seq)
    )`
  yield* sql`CREATE INDEX event_log_project_time_idx ON event_log (project_id, occurred_at)`
  yield* sql`CREATE INDEX event_log_project_type_time_idx ON event_log (project_id, type, occurred_at)`
})
