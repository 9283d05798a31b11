import { SqlClient, SqlSchema } from "@effect/sql"
import { Api, Chat, Ids } from "@herald/domain"
import { DateTime, Duration, Effect, Either, Option, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { parseDurationText } from "../config/DurationText.js"
import { hashToken } from "./UsersRepo.js"

/** Live tokens a user may hold at once (G11: every table a client makes grow is bounded). */
export const MAX_LIVE_TOKENS = 100
/**
 * Rows a user may have at all, live or revoked/expired and not yet pruned: what bounds a loop of
 * create-and-revoke. Dead rows go after DEAD_TOKEN_RETENTION_MS (http/Revocations.ts prunes them).
 */
export const MAX_TOKEN_ROWS = 1_000
/** How long a revoked or expired token's row is kept: a node cut off from the database that long still learns of it. */
export const DEAD_TOKEN_RETENTION_MS = 24 * 3_600_000

/** A live token and its user: what authentication finds. */
export interface LiveToken {
  readonly tokenId: Ids.TokenId
  readonly user: Chat.User
  /** Epoch ms, or null: never. */
  readonly expiresAt: number | null
}

const LiveRow = Schema.Struct({
  tokenId: Ids.TokenId,
  expiresAt: Schema.NullOr(Schema.DateFromSelf),
  id: Ids.UserId,
  name: Schema.String,
  createdAt: Schema.DateTimeUtcFromDate
})
const toLive = (row: typeof LiveRow.Type): LiveToken => ({
  tokenId: row.tokenId,
  expiresAt: row.expiresAt === null ? null : row.expiresAt.getTime(),
  user: new Chat.User({ id: row.id, name: row.name, createdAt: row.createdAt }, true)
})

const TokenRow = Schema.Struct({
  id: Ids.TokenId,
  label: Schema.NullOr(Schema.String),
  createdAt: Schema.DateTimeUtcFromDate,
  lastUsedAt: Schema.NullOr(Schema.DateTimeUtcFromDate),
  expiresAt: Schema.NullOr(Schema.DateTimeUtcFromDate)
})

export type CreateRefusal = "unknown user" | "too many live" | "too many rows"

const MIN_EXPIRES_IN = Duration.minutes(1)
const MAX_EXPIRES_IN = Duration.days(3650)

/**
 * A token's lifetime, `expiresIn` over HTTP and `--expires-in` in the CLI (`name`): a duration
 * from 1 minute to 3650 days, as `parseDurationText` reads it (`30d`, `12h`, `90m`).
 */
export const parseExpiresIn = (text: string, name = "expiresIn"): Either.Either<Duration.Duration, string> =>
  Either.flatMap(
    Either.mapLeft(parseDurationText(text), () => `${name} must be a duration such as 30d, 12h or 90m, not "${text}"`),
    (d) =>
      Duration.lessThan(d, MIN_EXPIRES_IN) || Duration.greaterThan(d, MAX_EXPIRES_IN)
        ? Either.left(`${name} must be between 1 minute and 3650 days`)
        : Either.right(d)
  )

export const refusalMessage = (reason: CreateRefusal) =>
  reason === "too many live"
    ? `at most ${MAX_LIVE_TOKENS} live tokens per user: revoke one first`
    : reason === "too many rows"
    ? `at most ${MAX_TOKEN_ROWS} tokens per user, counting those revoked or expired in the last day: try again later`
    : "user not found"

/**
 * `api_tokens`: a user's tokens by id (never the secret: only its SHA-256 is stored), their
 * revocation and expiry, and the coarse last use. A database failure is a defect.
 */
export class TokensRepo extends Effect.Service<TokensRepo>()("Herald/TokensRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const live = sql`t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())`

    const byHash = SqlSchema.findOne({
      Request: Schema.Uint8ArrayFromSelf,
      Result: LiveRow,
      execute: (hash) =>
        sql`
        SELECT t.id AS token_id, t.expires_at, u.id, u.name, u.created_at
        FROM api_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = ${hash} AND ${live}`
    })

    const byId = SqlSchema.findOne({
      Request: Ids.TokenId,
      Result: LiveRow,
      execute: (id) =>
        sql`
        SELECT t.id AS token_id, t.expires_at, u.id, u.name, u.created_at
        FROM api_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.id = ${id} AND ${live}`
    })

    /** The live token with this secret, and its user. */
    const findLive = (token: string) => Effect.orDie(Effect.map(byHash(hashToken(token)), Option.map(toLive)))

    /** The live token with this id, and its user (a stream ticket names its token by id). */
    const findLiveById = (id: Ids.TokenId) => Effect.orDie(Effect.map(byId(id), Option.map(toLive)))

    const listRows = SqlSchema.findAll({
      Request: Ids.UserId,
      Result: TokenRow,
      execute: (userId) =>
        sql`
        SELECT t.id, t.label, t.created_at, t.last_used_at, t.expires_at FROM api_tokens t
        WHERE t.user_id = ${userId} AND ${live}
        ORDER BY t.created_at DESC, t.id`
    })

    /** A user's live tokens, newest first. */
    const list = (userId: Ids.UserId) =>
      Effect.orDie(Effect.map(listRows(userId), (rows) => rows.map((row) => new Api.TokenView(row, true))))

    /**
     * A new token for `userId` (expiring `expiresInMs` from now, or never); the secret is returned
     * once. The user's row is locked, so concurrent creations count each other.
     */
    const create = (
      userId: Ids.UserId,
      options: { readonly label: string | null; readonly expiresInMs: number | null }
    ) =>
      Effect.gen(function*() {
        const locked = yield* sql`SELECT 1 FROM users WHERE id = ${userId} FOR UPDATE`
        if (locked.length === 0) return { _tag: "Refused", reason: "unknown user" as CreateRefusal } as const
        const [counts] = yield* sql<{ live: number; all: number }>`
          SELECT count(*) FILTER (WHERE ${live})::int AS live, count(*)::int AS all
          FROM api_tokens t WHERE t.user_id = ${userId}`
        if (counts!.live >= MAX_LIVE_TOKENS) {
          return { _tag: "Refused", reason: "too many live" as CreateRefusal } as const
        }
        if (counts!.all >= MAX_TOKEN_ROWS) return { _tag: "Refused", reason: "too many rows" as CreateRefusal } as const
        const token = `hrld_${randomBytes(32).toString("base64url")}`
        const [row] = yield* sql<{ id: Ids.TokenId; expiresAt: Date | null }>`
          INSERT INTO api_tokens (token_hash, user_id, label, expires_at)
          VALUES (
            ${hashToken(token)}, ${userId}, ${options.label},
            CASE WHEN ${options.expiresInMs}::bigint IS NULL THEN NULL
                 ELSE now() + ${options.expiresInMs}::bigint * interval '1 millisecond' END)
          RETURNING id, expires_at`
        return {
          _tag: "Created",
          id: row!.id,
          token,
          expiresAt: row!.expiresAt === null ? null : DateTime.unsafeFromDate(row!.expiresAt)
        } as const
      }).pipe(sql.withTransaction, Effect.orDie)

    /**
     * Revokes a live token — one of `userId`'s, when given — now (clock_timestamp: the watchers
     * poll by this time). Whether there was such a token.
     */
    const revoke = (id: Ids.TokenId, userId?: Ids.UserId) =>
      Effect.orDie(Effect.map(
        sql`
          UPDATE api_tokens t SET revoked_at = clock_timestamp()
          WHERE t.id = ${id} ${userId === undefined ? sql`` : sql`AND t.user_id = ${userId}`} AND ${live}
          RETURNING t.id`,
        (rows) => rows.length > 0
      ))

    /** Stamps `last_used_at`, at most once a minute per token whatever the number of nodes. */
    const touch = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.void : Effect.orDie(Effect.asVoid(sql`
        UPDATE api_tokens SET last_used_at = now()
        WHERE id IN ${sql.in(ids)} AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`))

    /**
     * Tokens revoked after `since`, or expired between `since` and now (both by the database's
     * clock, which every node shares), with the database's time now. `since` absent: the last
     * `marginMs` only.
     */
    const endedSince = (since: Date | undefined, marginMs: number) =>
      Effect.orDie(Effect.map(
        sql<{ id: string; now: Date }>`
          WITH s AS (
            SELECT clock_timestamp() AS now,
                   coalesce(${
          since ?? null
        }::timestamptz, clock_timestamp()) - ${marginMs}::bigint * interval '1 millisecond' AS since)
          SELECT t.id, s.now FROM s LEFT JOIN LATERAL (
            SELECT id FROM api_tokens WHERE revoked_at > s.since
            UNION
            SELECT id FROM api_tokens WHERE expires_at > s.since AND expires_at <= s.now
          ) t ON true`,
        (rows) => ({ now: rows[0]!.now, ids: rows.flatMap((r) => r.id === null ? [] : [r.id]) })
      ))

    /** Deletes the rows of tokens revoked or expired more than `olderThanMs` ago; how many. */
    const pruneDead = (olderThanMs: number) =>
      Effect.orDie(Effect.map(
        sql`
          DELETE FROM api_tokens
          WHERE revoked_at < now() - ${olderThanMs}::bigint * interval '1 millisecond'
             OR expires_at < now() - ${olderThanMs}::bigint * interval '1 millisecond'
          RETURNING 1`,
        (rows) => rows.length
      ))

    return { findLive, findLiveById, list, create, revoke, touch, endedSince, pruneDead } as const
  })
}) {}
