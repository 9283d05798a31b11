import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { eventColumns, type EventRow, toWire } from "../events/EventRow.js"
import { type Position, tagOf, untagged } from "./Position.js"

/** A stream's head, the oldest seq a table still holds of it (none: undefined), and the id at a position. */
export interface Held {
  readonly head: number
  readonly oldest: number | undefined
  /** The id of the event the outbox holds at the asked position (asked only for a tagged one within the head). */
  readonly idAt: string | undefined
}

/**
 * Reads committed events of a stream from the database, for SSE replay and gap filling: the
 * outbox holds everything not yet pruned, `event_log` everything materialized, so the union
 * covers every committed event whatever its delivery or retention state.
 */
export class EventReader extends Effect.Service<EventReader>()("Herald/EventReader", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const cols = sql.literal(eventColumns)

    /** Events with `after < seq <= until`, ascending, at most `limit`. */
    const range = (stream: string, after: number, until: number | undefined, limit: number) =>
      Effect.map(
        sql<EventRow>`
          SELECT DISTINCT ON (seq) ${cols} FROM (
            (SELECT ${cols} FROM event_outbox
             WHERE stream_id = ${stream} AND seq > ${after} ${until === undefined ? sql`` : sql`AND seq <= ${until}`}
             ORDER BY seq LIMIT ${limit})
            UNION ALL
            (SELECT ${cols} FROM event_log
             WHERE stream_id = ${stream} AND seq > ${after} ${until === undefined ? sql`` : sql`AND seq <= ${until}`}
             ORDER BY seq LIMIT ${limit})
          ) e
          ORDER BY seq LIMIT ${limit}`,
        (rows) => rows.map(toWire)
      )

    /** The last committed seq of a stream (0 when it has none). */
    const head = (stream: string) =>
      Effect.map(
        sql<{ lastSeq: number }>`SELECT last_seq FROM event_streams WHERE stream_id = ${stream}`,
        (rows) => rows[0]?.lastSeq ?? 0
      )

    /** The last committed seq of each stream (0 for one with no events yet). */
    const heads = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.succeed(new Map<string, number>()) : Effect.map(
        sql<{ streamId: string; lastSeq: number }>`
          SELECT stream_id, last_seq FROM event_streams WHERE stream_id IN ${sql.in(ids)}`,
        (rows) => {
          const at = new Map(ids.map((id) => [id, 0]))
          for (const row of rows) at.set(row.streamId, Number(row.lastSeq))
          return at
        }
      )

    /** The id of the event at `seq` in the outbox, else in the log (COALESCE stops at the first found). */
    const idAtSql = (stream: unknown, seq: unknown) =>
      sql`COALESCE(
        (SELECT id::text FROM event_outbox o WHERE o.stream_id = ${stream} AND o.seq = ${seq}),
        (SELECT id::text FROM event_log l WHERE l.stream_id = ${stream} AND l.seq = ${seq}))`

    /**
     * For resume positions: each stream's head (0 when it has none); for a position behind the
     * head, the oldest seq the outbox still holds of it (undefined: none, or not asked); and for a
     * tagged position within the head, the id of the event the outbox holds at it (G9) — one
     * statement, one snapshot, on the outbox alone (an ordinary resume is near the head, whose
     * events the outbox still has; `logIdsAt` asks `event_log` for the others). Each look-up is an
     * index probe on `(stream_id, seq)`, made only where its CASE reaches it.
     */
    const outboxHeld = (positions: ReadonlyArray<readonly [string, Position]>) =>
      positions.length === 0 ? Effect.succeed(new Map<string, Held>()) : Effect.map(
        sql<{ streamId: string; head: number | null; oldest: number | null; idAt: string | null }>`
          SELECT c.stream_id, s.last_seq AS head,
            CASE WHEN c.pos < s.last_seq
              THEN (SELECT min(seq) FROM event_outbox o WHERE o.stream_id = c.stream_id) END AS oldest,
            CASE WHEN c.tagged AND c.pos > 0 AND c.pos <= s.last_seq
              THEN (SELECT id::text FROM event_outbox o WHERE o.stream_id = c.stream_id AND o.seq = c.pos) END AS id_at
          FROM unnest(
            ${positions.map(([stream]) => stream)}::text[],
            ${positions.map(([, p]) => p.seq)}::bigint[],
            ${positions.map(([, p]) => p.tag !== undefined)}::bool[]
          ) AS c(stream_id, pos, tagged)
          LEFT JOIN event_streams s ON s.stream_id = c.stream_id`,
        (rows) =>
          new Map(rows.map((r) => [r.streamId, {
            head: r.head === null ? 0 : Number(r.head),
            oldest: r.oldest === null ? undefined : Number(r.oldest),
            idAt: r.idAt ?? undefined
          }]))
      )

    /** Per position, the id of the event `event_log` holds there (absent: none). */
    const logIdsAt = (positions: ReadonlyArray<readonly [string, number]>) =>
      positions.length === 0 ? Effect.succeed(new Map<string, string>()) : Effect.map(
        sql<{ streamId: string; id: string }>`
          SELECT l.stream_id, l.id::text AS id
          FROM unnest(${positions.map(([stream]) => stream)}::text[], ${positions.map(([, seq]) => seq)}::bigint[])
            AS c(stream_id, pos)
          JOIN event_log l ON l.stream_id = c.stream_id AND l.seq = c.pos`,
        (rows) => new Map(rows.map((r) => [r.streamId, r.id]))
      )

    /** The id of the event `event_outbox ∪ event_log` holds at `seq` (undefined: none). */
    const idAt = (stream: string, seq: number) =>
      Effect.map(sql<{ id: string | null }>`SELECT ${idAtSql(stream, seq)} AS id`, (rows) => rows[0]?.id ?? undefined)

    /**
     * Each stream's head as a position: its last seq (0 for one with no events yet) and the tag of
     * the event there (none when no table holds it any more) — where a new connection starts. The
     * outbox has the head event of any stream written to lately; `event_log` is asked for the rest.
     */
    const headPositions = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.succeed(new Map<string, Position>()) : Effect.gen(function*() {
        const rows = yield* sql<{ streamId: string; lastSeq: number | null; id: string | null }>`
          SELECT c.stream_id, s.last_seq,
            (SELECT id::text FROM event_outbox o WHERE o.stream_id = c.stream_id AND o.seq = s.last_seq) AS id
          FROM unnest(${ids}::text[]) AS c(stream_id)
          LEFT JOIN event_streams s ON s.stream_id = c.stream_id`
        const at = new Map(ids.map((id) => [id, untagged(0)]))
        const unknown: Array<readonly [string, number]> = []
        for (const row of rows) {
          const seq = row.lastSeq === null ? 0 : Number(row.lastSeq)
          at.set(row.streamId, { seq, tag: row.id === null ? undefined : tagOf(row.id) })
          if (row.id === null && seq > 0) unknown.push([row.streamId, seq])
        }
        for (const [stream, id] of yield* logIdsAt(unknown)) {
          at.set(stream, { seq: at.get(stream)!.seq, tag: tagOf(id) })
        }
        return at
      })

    /** Per stream, the oldest seq `event_outbox ∪ event_log` still holds of it (absent: none). */
    const oldestHeld = (ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.succeed(new Map<string, number>()) : Effect.map(
        sql<{ streamId: string; oldest: number | null }>`
          SELECT c.stream_id, LEAST(
            (SELECT min(seq) FROM event_outbox o WHERE o.stream_id = c.stream_id),
            (SELECT min(seq) FROM event_log l WHERE l.stream_id = c.stream_id)
          ) AS oldest
          FROM unnest(${ids}::text[]) AS c(stream_id)`,
        (rows) => new Map(rows.flatMap((r) => r.oldest === null ? [] : [[r.streamId, Number(r.oldest)] as const]))
      )

    /**
     * The stream's head once the writes in flight on it are over: `FOR SHARE` waits for the row
     * lock a writer's seq bump (`INSERT … ON CONFLICT DO UPDATE`, FOR NO KEY UPDATE — which FOR KEY
     * SHARE would not wait for) holds until its commit, then reads the row as committed. The lock is
     * the statement's own and is released with it.
     */
    const settledHead = (stream: string) =>
      Effect.map(
        sql<{ lastSeq: number }>`SELECT last_seq FROM event_streams WHERE stream_id = ${stream} FOR SHARE`,
        (rows) => rows[0] === undefined ? 0 : Number(rows[0].lastSeq)
      )

    /** Membership events of `userId` in project streams, as `SELECT seq FROM …` over outbox and log alike. */
    const memberEvents = (type: "joined" | "removed", userId: string) =>
      type === "joined"
        ? sql`((type = 'member.added' AND data->>'userId' = ${userId})
            OR (type = 'project.created' AND data->>'ownerId' = ${userId}))`
        : sql`type = 'member.removed' AND data->>'userId' = ${userId}`

    /**
     * Per project stream, the seq of the latest event of `type` for `userId` after the given
     * position: "joined" = its `member.added` (or its owner's `project.created`), where that
     * stream joins a multiplexed connection; "removed" = its `member.removed`. Streams with none
     * are absent. One statement however many streams.
     */
    const latestMemberEvent = (
      type: "joined" | "removed",
      userId: string,
      after: ReadonlyArray<readonly [string, number]>
    ) =>
      after.length === 0 ? Effect.succeed(new Map<string, number>()) : Effect.map(
        sql<{ streamId: string; seq: number }>`
          SELECT c.stream_id, max(e.seq) AS seq
          FROM unnest(${after.map(([s]) => s)}::text[], ${after.map(([, p]) => p)}::bigint[]) AS c(stream_id, pos)
          CROSS JOIN LATERAL (
            SELECT seq FROM event_outbox o
            WHERE o.stream_id = c.stream_id AND o.seq > c.pos AND ${memberEvents(type, userId)}
            UNION ALL
            SELECT seq FROM event_log l
            WHERE l.stream_id = c.stream_id AND l.seq > c.pos AND ${memberEvents(type, userId)}
          ) e
          GROUP BY c.stream_id`,
        (rows) => new Map(rows.map((r) => [r.streamId, Number(r.seq)]))
      )

    /**
     * The seq of the first event after `after` that (re)admitted `userId` to the project stream
     * `stream` — its `member.added` (or its owner's `project.created`) — if one is committed. After
     * a removal, the next event the user may read (G5).
     */
    const firstJoinAfter = (userId: string, stream: string, after: number) =>
      Effect.map(
        sql<{ seq: number | null }>`
          SELECT LEAST(
            (SELECT min(seq) FROM event_outbox o
             WHERE o.stream_id = ${stream} AND o.seq > ${after} AND ${memberEvents("joined", userId)}),
            (SELECT min(seq) FROM event_log l
             WHERE l.stream_id = ${stream} AND l.seq > ${after} AND ${memberEvents("joined", userId)})
          ) AS seq`,
        (rows) => rows[0]?.seq === null || rows[0] === undefined ? undefined : Number(rows[0].seq)
      )

    /**
     * Of these positions in project streams, those at which the event is the removal of `userId`:
     * a client whose last frame was its own removal is not a member from there on (G5). The outbox
     * is asked first (a resume is near the head); `event_log` only for positions it no longer holds.
     */
    const removedAt = (userId: string, positions: ReadonlyArray<readonly [string, number]>) =>
      Effect.gen(function*() {
        const removed = new Set<string>()
        const at = (table: "event_outbox" | "event_log", of: ReadonlyArray<readonly [string, number]>) =>
          of.length === 0 ? Effect.succeed([]) : sql<{ streamId: string; removal: boolean }>`
            SELECT c.stream_id, ${memberEvents("removed", userId)} AS removal
            FROM unnest(${of.map(([s]) => s)}::text[], ${of.map(([, p]) => p)}::bigint[]) AS c(stream_id, pos)
            JOIN ${sql(table)} e ON e.stream_id = c.stream_id AND e.seq = c.pos`
        const outbox = yield* at("event_outbox", positions.filter(([, p]) => p > 0))
        for (const row of outbox) if (row.removal) removed.add(row.streamId)
        const found = new Set(outbox.map((r) => r.streamId))
        for (const row of yield* at("event_log", positions.filter(([s, p]) => p > 0 && !found.has(s)))) {
          if (row.removal) removed.add(row.streamId)
        }
        return removed
      })

    return {
      firstJoinAfter,
      removedAt,
      range,
      head,
      heads,
      headPositions,
      outboxHeld,
      logIdsAt,
      idAt,
      oldestHeld,
      settledHead,
      latestMemberEvent
    } as const
  })
}) {}
