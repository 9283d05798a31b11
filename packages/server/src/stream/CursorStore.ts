import { SqlClient } from "@effect/sql"
import { Cache, Duration, Effect, Option } from "effect"
import { createHash, createHmac, randomUUID } from "node:crypto"
import { AppConfig } from "../config/AppConfig.js"
import { type Base, makeBase, type Parsed, verify } from "./Cursor.js"
import type { Position } from "./Position.js"

type Positions = ReadonlyArray<readonly [string, number, (string | null)?]>

interface BaseRow {
  readonly id: string
  readonly userId: string
  readonly key: string
  /** `[stream, seq, tag]`; rows written before tags (G9) have `[stream, seq]`. */
  readonly positions: Positions
}

const toBase = (row: BaseRow): Base =>
  makeBase({
    id: row.id,
    userId: row.userId,
    key: row.key,
    streams: row.positions.map(([stream]) => stream),
    seqs: row.positions.map(([, seq]) => seq),
    tags: row.positions.map(([, , tag]) => tag ?? undefined)
  })

/**
 * How stale a base's `last_used_at` may be before a use writes it again (and how often the server
 * prunes): a tenth of the retention, at most an hour — so a base used within the last 90% of the
 * retention is never deleted, and a base resumed all day long costs one write an hour.
 */
export const touchInterval = (retention: Duration.Duration): Duration.Duration =>
  Duration.millis(Math.max(100, Math.min(Duration.toMillis(Duration.hours(1)), Duration.toMillis(retention) / 10)))

/**
 * The most cursor bases one user keeps (G11: every table a client makes grow is bounded): writing
 * one more deletes that user's least recently used beyond it. Page loads at an unchanged head share
 * one base, so only a user whose positions keep changing reaches it; a cursor of a base deleted so
 * is `CursorExpired`, on which the client starts over.
 */
export const MAX_BASES_PER_USER = 1_000

const byStream = (a: readonly [string, ...Array<unknown>], b: readonly [string, ...Array<unknown>]) =>
  a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0

/**
 * The bases of multiplexed-stream cursors (`stream_cursors`, see stream/Cursor.ts): written when a
 * connection starts without a cursor or outgrows its cursor's budget, read when a client resumes.
 *
 * A base is shared by a user's connections at the same positions: it is found by the digest of
 * its positions (one indexed read) before one is written, so page loads at an unchanged head —
 * however many tabs, however many reloads — write one row. `last_used_at` is touched when a base
 * is resumed from or shared, at most once per `touchInterval`; bases unused for
 * `HERALD_CURSOR_RETENTION` are deleted (`prune`: by the server, CursorPruner.ts, and by
 * `herald cursors prune`), and a user's beyond `MAX_BASES_PER_USER` go, least recently used
 * first. A base's key is an HMAC of its id and user under the database's secret,
 * so the cursor of a deleted base still verifies: expired, not forged (`expired`).
 *
 * Bases never change, so resumes read them through a cache; whether one still exists is asked at
 * every resume (the same statement touches it when due).
 */
export class CursorStore extends Effect.Service<CursorStore>()("Herald/CursorStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { cursorRetention } = yield* AppConfig
    const touchSecs = Duration.toMillis(touchInterval(cursorRetention)) / 1000

    const cache = yield* Cache.make({
      capacity: 10_000,
      timeToLive: Duration.hours(1),
      lookup: (id: string) =>
        Effect.map(
          sql<BaseRow>`SELECT id, user_id, key, positions FROM stream_cursors WHERE id = ${id}`,
          (rows) => Option.map(Option.fromNullable(rows[0]), toBase)
        ).pipe(Effect.orDie)
    })

    /** The database's secret (migration 0010), read once. */
    let secretText: string | undefined
    const secret = Effect.suspend(() =>
      secretText !== undefined ? Effect.succeed(secretText) : Effect.flatMap(
        sql<{ secret: string }>`SELECT secret FROM stream_cursor_secret`,
        (rows) =>
          rows[0] === undefined
            ? Effect.dieMessage("stream_cursor_secret is empty: run the migrations")
            : Effect.succeed(secretText = rows[0].secret)
      )
    )

    /** The key of base `id` of `userId` (hex text, as Cursor.ts signs with it). */
    const keyFor = (id: string, userId: string) =>
      Effect.map(secret, (s) => createHmac("sha256", s).update(`stream-cursor-base:${id}:${userId}`).digest("hex"))

    /**
     * The bases connections hold, by id: a user's connections at the same positions (tabs, a burst
     * of reconnects) hold one object, not one each (with twenty streams, a few KB apiece). Weak:
     * a base no connection holds any more is collected, and its entry with it.
     */
    const held = new Map<string, WeakRef<Base>>()
    const forget = new FinalizationRegistry<string>((id) => {
      if (held.get(id)?.deref() === undefined) held.delete(id)
    })
    const shared = (row: BaseRow): Base => {
      const kept = held.get(row.id)?.deref()
      if (kept !== undefined) return kept
      const base = toBase(row)
      held.set(row.id, new WeakRef(base))
      forget.register(base, row.id)
      return base
    }

    /** The base for `userId` at these positions: the one they already have, or a new one. */
    const create = (userId: string, at: Iterable<readonly [string, Position]>) =>
      Effect.gen(function*() {
        const positions = Array.from(at, ([stream, { seq, tag }]) => [stream, seq, tag ?? null] as const).sort(byStream)
        const json = JSON.stringify(positions)
        const digest = createHash("sha256").update(json).digest("hex")
        // A race with another connection writing the same base, or with a prune deleting it: look again.
        for (let attempt = 0; attempt < 5; attempt++) {
          const found = yield* sql<{ id: string; key: string; stale: boolean }>`
            SELECT id, key, last_used_at < now() - make_interval(secs => ${touchSecs}) AS stale
            FROM stream_cursors WHERE user_id = ${userId} AND digest = ${digest}`
          if (found[0] !== undefined) {
            if (found[0].stale) yield* sql`UPDATE stream_cursors SET last_used_at = now() WHERE id = ${found[0].id}`
            return shared({ id: found[0].id, userId, key: found[0].key, positions })
          }
          const id = randomUUID()
          const key = yield* keyFor(id, userId)
          const inserted = yield* sql`
            INSERT INTO stream_cursors (id, user_id, key, positions, digest)
            VALUES (${id}, ${userId}, ${key}, ${json}::jsonb, ${digest})
            ON CONFLICT (user_id, digest) DO NOTHING
            RETURNING id`
          // Not cached: the connection holds its base; the cache is for resumes, which read it back.
          if (inserted.length > 0) {
            yield* sql`
              DELETE FROM stream_cursors WHERE id IN (
                SELECT id FROM stream_cursors WHERE user_id = ${userId}
                ORDER BY last_used_at DESC, id OFFSET ${MAX_BASES_PER_USER})`
            return shared({ id, userId, key, positions })
          }
        }
        return yield* Effect.dieMessage("a cursor base could not be written (five races in a row)")
      }).pipe(Effect.orDie)

    /**
     * The base a cursor names, if it still exists; with `touch` (a resume, not a HEAD) its
     * `last_used_at` is written when older than the touch interval — in the same statement.
     */
    const find = (id: string, options: { readonly touch: boolean }) =>
      Effect.gen(function*() {
        const rows = options.touch
          ? yield* sql`
            WITH touched AS (
              UPDATE stream_cursors SET last_used_at = now()
              WHERE id = ${id} AND last_used_at < now() - make_interval(secs => ${touchSecs})
              RETURNING id)
            SELECT id FROM stream_cursors WHERE id = ${id}`
          : yield* sql`SELECT id FROM stream_cursors WHERE id = ${id}`
        if (rows.length === 0) {
          yield* cache.invalidate(id)
          return Option.none<Base>()
        }
        return yield* cache.get(id)
      }).pipe(Effect.orDie)

    /** Whether a cursor whose base is gone was issued to `userId` by a server of this database, unchanged. */
    const expired = (parsed: Parsed, userId: string) =>
      Effect.map(Effect.orDie(keyFor(parsed.baseId, userId)), (key) => verify(key, parsed))

    /** Deletes the bases unused for `olderThan` (in batches, so no statement holds many locks long); how many. */
    const prune = (olderThan: Duration.Duration) =>
      Effect.gen(function*() {
        const secs = Duration.toMillis(olderThan) / 1000
        let deleted = 0
        for (;;) {
          const [row] = yield* sql<{ n: number }>`
            WITH gone AS (
              DELETE FROM stream_cursors WHERE id IN (
                SELECT id FROM stream_cursors WHERE last_used_at < now() - make_interval(secs => ${secs}) LIMIT 5000)
              RETURNING 1)
            SELECT count(*)::int AS n FROM gone`
          deleted += row!.n
          if (row!.n < 5000) return deleted
        }
      })

    return { create, find, expired, prune } as const
  })
}) {}
