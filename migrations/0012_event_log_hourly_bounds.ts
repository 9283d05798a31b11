import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Each `event_log_hourly` row also keeps the first and last `occurred_at` of the events it counts,
 * and how many of them those bounds cover (`span_n`). A range's partial edge hour whose rollup
 * rows all lie inside the range (and cover every event they count: `span_n = n`) is answered from
 * the rollups instead of event_log — a range ending after now never cuts the current hour, however
 * busy (docs/history-analytics.md, "Edges").
 *
 * Nullable and without a default, so adding them rewrites nothing and takes its lock for an
 * instant. Rows from before (and rows a build without this migration upserts: it grows `n`, not
 * `span_n`) have no usable bounds and their hours are read from event_log, exactly, as before;
 * `herald rollups rebuild` fills them.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE event_log_hourly
      ADD COLUMN first_at timestamptz,
      ADD COLUMN last_at timestamptz,
      ADD COLUMN span_n bigint`
  // Named in an analytics statement, it keeps the planner from a parallel plan: the edge's
  // event_log branch can be estimated at many rows (a busy hour), and launching the workers of a
  // Gather costs tens of ms even when its one-time filter then skips the scan. Checked before
  // inlining, so `SELECT true` costs nothing at run time.
  yield* sql`
    CREATE FUNCTION herald_serial_plan() RETURNS boolean
    LANGUAGE sql IMMUTABLE PARALLEL UNSAFE AS 'SELECT true'`
})
