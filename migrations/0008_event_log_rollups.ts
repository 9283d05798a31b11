import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Hourly rollups of event_log: per stream, UTC hour, type and actor, how many events. Analytics
 * answer whole hours from here and only the partial edges of a range from event_log, so a summary
 * or timeseries costs the hours it spans, not the events in them (docs/history-analytics.md).
 * Kept by the materializer in the statement that copies the rows, so exactly as fresh as `asOf`.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  // The key leads with the stream and the hour: every read is one stream over an hour range.
  // project_id follows from the stream; it is in the key so that the reads filter on it exactly
  // as the event_log statements do.
  yield* sql`
    CREATE TABLE event_log_hourly (
      stream_id text NOT NULL,
      hour timestamptz NOT NULL,
      project_id uuid NOT NULL,
      type text NOT NULL,
      actor_id uuid NOT NULL,
      n bigint NOT NULL CHECK (n > 0),
      PRIMARY KEY (stream_id, hour, project_id, type, actor_id)
    )`
  // The backfill must see every row a materializer commits meanwhile (or that row would be copied
  // without its rollup): SHARE mode lets reads go on and holds inserts until this commits.
  yield* sql`LOCK TABLE event_log IN SHARE MODE`
  yield* sql`
    INSERT INTO event_log_hourly (stream_id, hour, project_id, type, actor_id, n)
    SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, actor_id, count(*)
    FROM event_log
    GROUP BY 1, 2, 3, 4, 5`
})
