import { SqlClient } from "@effect/sql"
import { Chat, type Ids } from "@herald/domain"
import { DateTime, Effect, Option, Redacted } from "effect"
import { createHash, randomBytes, randomUUID } from "node:crypto"

export const hashToken = (token: string) => createHash("sha256").update(token).digest()

/** Users and their bearer tokens; only a SHA-256 of a token is ever stored. */
export class UsersRepo extends Effect.Service<UsersRepo>()("Herald/UsersRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const toUser = (row: { id: string; name: string; createdAt: Date }) =>
      new Chat.User({ id: row.id as Ids.UserId, name: row.name, createdAt: DateTime.unsafeFromDate(row.createdAt) })

    /** A new user with a fresh token; the token is returned once and never stored in clear. */
    const create = (name: string) =>
      Effect.gen(function*() {
        const id = randomUUID()
        const token = `hrld_${randomBytes(32).toString("base64url")}`
        const [row] = yield* sql<{ id: string; name: string; createdAt: Date }>`
          WITH u AS (INSERT INTO users (id, name) VALUES (${id}, ${name}) RETURNING *),
               t AS (INSERT INTO api_tokens (token_hash, user_id) SELECT ${hashToken(token)}, id FROM u)
          SELECT id, name, created_at FROM u`
        return { user: toUser(row!), token: Redacted.make(token) }
      })

    const findByToken = (token: Redacted.Redacted) =>
      Effect.map(
        sql<{ id: string; name: string; createdAt: Date }>`
          SELECT u.id, u.name, u.created_at FROM api_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = ${hashToken(Redacted.value(token))}`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toUser)
      )

    const exists = (id: Ids.UserId) =>
      Effect.map(sql`SELECT 1 FROM users WHERE id = ${id}`, (rows) => rows.length > 0)

    const count = Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM users`, ([row]) => row!.n)

    return { create, findByToken, exists, count } as const
  })
}) {}
