import { SqlClient } from "@effect/sql"
import { Events } from "@herald/domain"
import { Effect, Option } from "effect"
import { eventColumns, type EventRow, toWire } from "../events/EventRow.js"
import { EventLogStore } from "./EventLogStore.js"

/**
 * Stream history pages, ascending seq, cursor = the last seq returned, and `heldFrom`: where the
 * log starts when retention has dropped older months.
 *
 * A page reads `event_outbox ∪ event_log` in one statement, not event_log alone: concurrent
 * materializers (`SKIP LOCKED`) copy a stream's seqs out of order, so event_log may hold seq n + 1
 * before n, and a reader following the head with `after=<nextAfter>` would never come back for n
 * (G6). Commit order is seq order within a stream, so in one snapshot every seq below a visible one
 * is committed, and a committed event is in the outbox until prune, which deletes only rows already
 * in event_log: the union holds every committed seq, with no holes below the newest. Outbox rows
 * older than the retention floor are left out: the materializer never copies them (they are what
 * retention dropped), so a page holds exactly what event_log holds or will hold.
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
        const ofType = request.type === undefined ? sql`` : sql`AND type = ${request.type}`
        // Each side is its `(stream_id, seq)` index read in order up to the page's end; an event in
        // both (materialized, not yet pruned) is the same envelope, served once.
        const rows = yield* sql<EventRow>`
          SELECT DISTINCT ON (seq) ${cols} FROM (
            (SELECT ${cols} FROM event_outbox
             WHERE stream_id = ${request.stream} AND seq > ${request.after} ${ofType}
               AND occurred_at >= coalesce((SELECT held_from FROM event_log_retention), '-infinity')
             ORDER BY seq LIMIT ${request.limit + 1})
            UNION ALL
            (SELECT ${cols} FROM event_log
             WHERE stream_id = ${request.stream} AND seq > ${request.after} ${ofType}
             ORDER BY seq LIMIT ${request.limit + 1})
          ) e
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
