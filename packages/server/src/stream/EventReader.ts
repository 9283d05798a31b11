import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { eventColumns, type EventRow, toWire } from "../events/EventRow.js"

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
      Effect.map(
        sql<{ streamId: string; lastSeq: number }>`
          SELECT stream_id, last_seq FROM event_streams WHERE stream_id IN ${sql.in(ids)}`,
        (rows) => {
          const at = new Map(ids.map((id) => [id, 0]))
          for (const row of rows) at.set(row.streamId, Number(row.lastSeq))
          return at
        }
      )

    /**
     * The seq of the latest event in a project stream that made `userId` a member (its
     * `member.added`, or the `project.created` of its owner), if any: where that project's
     * stream joins a multiplexed connection.
     */
    const joinedAt = (stream: string, userId: string) =>
      Effect.map(
        sql<{ seq: number | null }>`
          SELECT max(seq) AS seq FROM (
            SELECT seq FROM event_outbox WHERE stream_id = ${stream}
              AND ((type = 'member.added' AND data->>'userId' = ${userId})
                OR (type = 'project.created' AND data->>'ownerId' = ${userId}))
            UNION ALL
            SELECT seq FROM event_log WHERE stream_id = ${stream}
              AND ((type = 'member.added' AND data->>'userId' = ${userId})
                OR (type = 'project.created' AND data->>'ownerId' = ${userId}))
          ) e`,
        (rows) => rows[0]?.seq === null || rows[0]?.seq === undefined ? undefined : Number(rows[0].seq)
      )

    /** The seq of the latest `member.removed` of `userId` in a project stream after `after`, if any. */
    const removedAfter = (stream: string, userId: string, after: number) =>
      Effect.map(
        sql<{ seq: number | null }>`
          SELECT max(seq) AS seq FROM (
            SELECT seq FROM event_outbox WHERE stream_id = ${stream} AND seq > ${after}
              AND type = 'member.removed' AND data->>'userId' = ${userId}
            UNION ALL
            SELECT seq FROM event_log WHERE stream_id = ${stream} AND seq > ${after}
              AND type = 'member.removed' AND data->>'userId' = ${userId}
          ) e`,
        (rows) => rows[0]?.seq === null || rows[0]?.seq === undefined ? undefined : Number(rows[0].seq)
      )

    return { range, head, heads, joinedAt, removedAfter } as const
  })
}) {}
