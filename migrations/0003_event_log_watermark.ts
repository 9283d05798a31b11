import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The analytics `asOf` watermark: every event committed before `as_of` is in event_log. One row,
 * only ever moved forward (GREATEST), shared by every materializer of every process.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE event_log_watermark (
      id boolean PRIMARY KEY DEFAULT true CHECK (id),
      as_of timestamptz NOT NULL
    )`
})
