import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"

/**
 * Revocable tokens and stream tickets. A token gets an id (what a user lists and revokes; never
 * the secret), a label, an optional expiry, a coarse last use, and `revoked_at`; every node polls
 * the recent revocations and expiries (http/Revocations.ts), through the two partial indexes.
 * `server_secrets` holds one random key, made here once and read by every node, that signs stream
 * tickets: a ticket issued by one node opens a stream on another with no row per ticket.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    ALTER TABLE api_tokens
      ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid(),
      ADD COLUMN label text,
      ADD COLUMN last_used_at timestamptz,
      ADD COLUMN expires_at timestamptz,
      ADD COLUMN revoked_at timestamptz`
  yield* sql`ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_id_key UNIQUE (id)`
  yield* sql`CREATE INDEX api_tokens_revoked_idx ON api_tokens (revoked_at) WHERE revoked_at IS NOT NULL`
  yield* sql`CREATE INDEX api_tokens_expires_idx ON api_tokens (expires_at) WHERE expires_at IS NOT NULL`
  yield* sql`
    CREATE TABLE server_secrets (
      name text PRIMARY KEY,
      secret bytea NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`INSERT INTO server_secrets (name, secret) VALUES ('stream_tickets', ${randomBytes(32)})`
})
