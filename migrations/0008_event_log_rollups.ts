import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Hourly rollups of event_log, so analytics answer whole hours from here and only the partial
 * edges of a range from event_log: a summary or timeseries costs the hours it spans, not the events
 * in them (docs/history-analytics.md). Kept by the materializer in the statement that copies the
 * rows, so exactly as fresh as `asOf`. Two grains, because distinct actors do not add up:
 * - `event_log_hourly`: events per stream, UTC hour and type (totals, byType, timeseries);
 * - `event_log_hourly_actors`: who acted per stream and hour, with their `message.created` count
 *   (activeUsers, topAuthors) — not for workspace streams: one actor, and no analytics asks.
 * Both keys lead with the stream and the hour: every read is one stream over an hour range.
 * project_id follows from the stream; it is in the keys so that the reads filter on it exactly as
 * the event_log statements do.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE event_log_hourly (
      stream_id text NOT NULL,
      hour timestamptz NOT NULL,
      project_id uuid NOT NULL,
      type text NOT NULL,
      n bigint NOT NULL CHECK (n > 0),
      PRIMARY KEY (stream_id, hour, project_id, type) INCLUDE (n)
    )`
  // INCLUDE (n), INCLUDE (messages): every read is of the index alone (a stream's rows of
  // successive hours are written hours apart, so on the heap they would be a page each).
  yield* sql`
    CREATE TABLE event_log_hourly_actors (
      stream_id text NOT NULL,
      hour timestamptz NOT NULL,
      project_id uuid NOT NULL,
      actor_id uuid NOT NULL,
      messages bigint NOT NULL CHECK (messages >= 0),
      PRIMARY KEY (stream_id, hour, project_id, actor_id) INCLUDE (messages)
    )`
  // The backfill, one statement (a data-modifying WITH runs to completion, read or not): both
  // tables from one snapshot of event_log, without a table lock (as first released, this migration
  // held event_log in SHARE mode until it committed, which stopped every materializer for as long
  // as the backfill took: issue 23). Why every row is counted
  // exactly once: a row of event_log was either committed before this statement's snapshot, and
  // is counted here, or after. A materializer that keeps the rollups writes them in the statement
  // that copies its rows, which names these two tables; they exist for nobody but this transaction
  // until it commits, so such a statement can only have started after this commit, and it counts
  // its own rows. A materializer of a build from before this migration does not keep the rollups:
  // what it copies after the snapshot is not counted by anyone (with the lock: what it copied
  // after this commit) — docs/deploy.md, "Rolling upgrades": `herald rollups rebuild --since`.
  yield* sql`
    WITH by_type AS (
      INSERT INTO event_log_hourly (stream_id, hour, project_id, type, n)
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*)
      FROM event_log
      GROUP BY 1, 2, 3, 4
    )
    INSERT INTO event_log_hourly_actors (stream_id, hour, project_id, actor_id, messages)
    SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id,
      count(*) FILTER (WHERE type = 'message.created')
    FROM event_log
    WHERE stream_id NOT LIKE 'workspace:%'
    GROUP BY 1, 2, 3, 4`
})
