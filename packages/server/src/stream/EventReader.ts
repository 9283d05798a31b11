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

    return { range, head } as const
  })
}) {}
