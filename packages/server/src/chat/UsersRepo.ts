import { SqlClient, SqlSchema } from "@effect/sql"
import { Chat, Ids } from "@herald/domain"
import { Effect, Redacted, Schema } from "effect"
import { createHash, randomBytes, randomUUID } from "node:crypto"

export const hashToken = (token: string) => createHash("sha256").update(token).digest()

/** A `users` row, decoded into the domain's User. */
const UserRow = Schema.Struct({ id: Ids.UserId, name: Schema.String, createdAt: Schema.DateTimeUtcFromDate })
const toUser = (row: typeof UserRow.Type) => new Chat.User(row, true)

/**
 * Users, each created with a first bearer token (TokensRepo has the rest); only a SHA-256 of a
 * token is ever stored. A database failure, or
 * a row that does not decode, is a defect: callers see only outcomes a user can cause.
 */
export class UsersRepo extends Effect.Service<UsersRepo>()("Herald/UsersRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insert = SqlSchema.single({
      Request: Schema.Struct({ id: Ids.UserId, name: Schema.String, tokenHash: Schema.Uint8ArrayFromSelf }),
      Result: UserRow,
      execute: (user) =>
        sql`
        WITH u AS (INSERT INTO users (id, name) VALUES (${user.id}, ${user.name}) RETURNING *),
             t AS (INSERT INTO api_tokens (token_hash, user_id) SELECT ${user.tokenHash}, id FROM u)
        SELECT id, name, created_at FROM u`
    })

    /** A new user with a fresh token; the token is returned once and never stored in clear. */
    const create = (name: string) =>
      Effect.suspend(() => {
        const token = `hrld_${randomBytes(32).toString("base64url")}`
        return insert({ id: Ids.UserId.make(randomUUID()), name, tokenHash: hashToken(token) }).pipe(
          Effect.map((row) => ({ user: toUser(row), token: Redacted.make(token) })),
          Effect.orDie
        )
      })

    const exists = (id: Ids.UserId) =>
      sql`SELECT 1 FROM users WHERE id = ${id}`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie)

    const count = sql<{ n: number }>`SELECT count(*)::int AS n FROM users`.pipe(
      Effect.map(([row]) => row!.n),
      Effect.orDie
    )

    return { create, exists, count } as const
  })
}) {}
