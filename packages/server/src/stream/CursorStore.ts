import { SqlClient } from "@effect/sql"
import { Cache, Duration, Effect, Option } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { type Base, makeBase } from "./Cursor.js"
import type { Position } from "./Position.js"

interface BaseRow {
  readonly id: string
  readonly userId: string
  readonly key: string
  /** `[stream, seq, tag]`; rows written before tags (G9) have `[stream, seq]`. */
  readonly positions: ReadonlyArray<readonly [string, number, (string | null)?]>
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
 * The bases of multiplexed-stream cursors (`stream_cursors`, see stream/Cursor.ts): written when a
 * connection starts without a cursor or outgrows its cursor's budget, read when a client resumes.
 * Bases never change, so resumes read them through a cache.
 */
export class CursorStore extends Effect.Service<CursorStore>()("Herald/CursorStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const cache = yield* Cache.make({
      capacity: 10_000,
      timeToLive: Duration.hours(1),
      lookup: (id: string) =>
        Effect.map(
          sql<BaseRow>`SELECT id, user_id, key, positions FROM stream_cursors WHERE id = ${id}`,
          (rows) => Option.map(Option.fromNullable(rows[0]), toBase)
        ).pipe(Effect.orDie)
    })

    /** A new base for `userId` at these positions. */
    const create = (userId: string, at: Iterable<readonly [string, Position]>) =>
      Effect.gen(function*() {
        const positions = Array.from(at, ([stream, { seq, tag }]) => [stream, seq, tag ?? null] as const)
        const row: BaseRow = { id: randomUUID(), userId, key: randomBytes(32).toString("hex"), positions }
        yield* sql`
          INSERT INTO stream_cursors (id, user_id, key, positions)
          VALUES (${row.id}, ${userId}, ${row.key}, ${JSON.stringify(positions)}::jsonb)`
        // Not cached: the connection holds its base; the cache is for resumes, which read it back.
        return toBase(row)
      }).pipe(Effect.orDie)

    /** The base a cursor names, if it exists. */
    const find = (id: string) => cache.get(id)

    return { create, find } as const
  })
}) {}
