import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"

/**
 * Cursor bases become shared and bounded (G11, SPEC §5 "Multiplexed stream"):
 * - `digest` (sha-256 of the base's positions, tags included) with a unique index per user: a
 *   user's connections at the same positions — a page loaded in many tabs, or reloaded at an
 *   unchanged head — find one row instead of writing one each. Bases written before this
 *   migration have none (NULL is never equal: they stay as they are).
 * - `last_used_at`, touched coarsely when a base is resumed from or shared (stream/CursorStore.ts),
 *   indexed for the prune that deletes bases unused for `HERALD_CURSOR_RETENTION`. Existing rows
 *   start from now: their cursors get a whole retention before they can expire.
 * - `stream_cursor_secret`: one random secret per database, shared by every server, from which a
 *   base's key is derived (HMAC of its id and its user). A cursor whose base is gone can still be
 *   verified with it, which tells "expired" (ours, this user's) from "forged" or "another user's".
 * Nothing reads created_at any more: its index goes.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE stream_cursors ADD COLUMN digest text`
  yield* sql`ALTER TABLE stream_cursors ADD COLUMN last_used_at timestamptz NOT NULL DEFAULT now()`
  yield* sql`CREATE UNIQUE INDEX stream_cursors_shared ON stream_cursors (user_id, digest)`
  yield* sql`CREATE INDEX stream_cursors_last_used ON stream_cursors (last_used_at)`
  yield* sql`DROP INDEX stream_cursors_created`
  yield* sql`
    CREATE TABLE stream_cursor_secret (
      only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
      secret text NOT NULL
    )`
  yield* sql`INSERT INTO stream_cursor_secret (secret) VALUES (${randomBytes(32).toString("hex")})`
})
