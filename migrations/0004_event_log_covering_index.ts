import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Analytics read a stream's events in a time range and need only project, type and actor: with
 * those columns included, every analytics statement is an index-only scan (no heap visits), which
 * keeps large projects well inside the latency target (see docs/benchmarks.md, "analytics").
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE INDEX event_log_stream_time_cover ON event_log (stream_id, occurred_at)
      INCLUDE (project_id, type, actor_id)`
})
