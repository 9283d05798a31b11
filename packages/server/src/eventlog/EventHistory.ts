import { SqlClient } from "@effect/sql"
import { Events } from "@herald/domain"
import { Effect, Option } from "effect"
import { eventColumns, type EventRow, toWire } from "../events/EventRow.js"
import { EventLogStore } from "./EventLogStore.js"

/**
 * Stream history pages from event_log, ascending seq, cursor = the last seq returned, and
 * `heldFrom`: where the log starts when retention has dropped older months.
 */
export class EventHistory extends Effect.Service<EventHistory>()("Herald/EventHistory", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const log = yield* EventLogStore
    const cols = sql.literal(eventColumns)

    const page = (request: {
      readonly stream: Events.StreamId
      readonly after: number
      readonly limit: number
      readonly type: Events.EventType | undefined
    }) =>
      Effect.gen(function*() {
        // The floor is read first: a drop committed between the two reads only makes it older than the page.
        const heldFrom = Option.getOrNull(yield* log.heldFrom)
        const rows = yield* sql<EventRow>`
          SELECT ${cols} FROM event_log
          WHERE stream_id = ${request.stream} AND seq > ${request.after}
            ${request.type === undefined ? sql`` : sql`AND type = ${request.type}`}
          ORDER BY seq
          LIMIT ${request.limit + 1}`
        const items = yield* Effect.forEach(rows.slice(0, request.limit), (row) => Events.decodeEvent(toWire(row)))
        return {
          items,
          // One row more than asked for tells whether another page exists.
          nextAfter: rows.length > request.limit ? items[items.length - 1]!.seq : null,
          heldFrom
        }
      }).pipe(Effect.orDie)

    return { page } as const
  }),
  dependencies: [EventLogStore.Default]
}) {}
