import { SqlClient } from "@effect/sql"
import type { Events, Ids } from "@herald/domain"
import { DateTime, Effect } from "effect"

/**
 * Appends an event to the outbox inside the caller's transaction: bumps the stream's seq, then
 * inserts the envelope as a `pending` row. The seq bump takes the stream's row lock, which is
 * held until commit, so commits within a stream happen in seq order and seqs have no gaps (G4).
 * Callers do the seq bump first (`reserve`), then their domain row, then `insert`; the domain
 * write thus sees every change committed before it on that stream.
 */
export class OutboxWriter extends Effect.Service<OutboxWriter>()("Herald/OutboxWriter", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    /** Next seq of `stream`, and the database clock read after the stream lock was taken. */
    const reserve = (stream: Events.StreamId) =>
      Effect.map(
        sql<{ lastSeq: number; at: Date }>`
          INSERT INTO event_streams (stream_id, last_seq) VALUES (${stream}, 1)
          ON CONFLICT (stream_id) DO UPDATE SET last_seq = event_streams.last_seq + 1
          RETURNING last_seq, clock_timestamp() AS at`,
        ([row]) => ({ seq: row!.lastSeq, at: DateTime.unsafeFromDate(row!.at) })
      )

    /** The event as a `pending` outbox row, with the id, stream and seq the caller reserved. */
    const insert = (event: {
      readonly ref: Events.EventRef
      readonly at: DateTime.Utc
      readonly projectId: Ids.ProjectId
      readonly actorId: Ids.UserId
      readonly payload: Events.EventPayload
      /** How long the row is not due for claims (its event is handed to the publisher, Wakeup). */
      readonly dueInMs: number
      /** The writing request's `traceparent` (tracing on only). */
      readonly traceContext?: string | undefined
    }) =>
      Effect.asVoid(sql`
        INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data, next_attempt_at${
        event.traceContext === undefined ? sql`` : sql`, trace_context`
      })
        VALUES (${event.ref.id}, ${event.ref.stream}, ${event.ref.seq}, ${event.payload.type}, ${event.projectId},
                ${event.actorId}, ${DateTime.toDateUtc(event.at)}, ${JSON.stringify(event.payload.data)}::jsonb,
                ${DateTime.toDateUtc(event.at)}::timestamptz + ${event.dueInMs}::int * interval '1 millisecond'${
        event.traceContext === undefined ? sql`` : sql`, ${event.traceContext}`
      })`)

    return { reserve, insert } as const
  })
}) {}
