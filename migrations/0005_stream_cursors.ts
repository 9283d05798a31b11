import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * The bases of `GET /api/stream` cursors. A cursor names a base (every stream of the connection
 * and its position when the base was written, as `[[stream, seq], …]`) and carries only the streams that moved since, so it
 * stays small however many streams a connection carries; the base's random key signs the cursor,
 * so a changed one is refused. A base is written when a connection starts without a cursor and when
 * its cursor outgrows its budget — never per frame.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE TABLE stream_cursors (
      id uuid PRIMARY KEY,
      user_id uuid NOT NULL REFERENCES users (id),
      key text NOT NULL,
      positions jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX stream_cursors_created ON stream_cursors (created_at)`
})
