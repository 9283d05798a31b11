import type { Events } from "@herald/domain"

/**
 * An event as `event_outbox` and `event_log` store it (the same columns in both), and its wire
 * form: the one JSON envelope of the README's domain section, sent over the broker, SSE, history
 * and the CLI.
 */
export interface EventRow {
  readonly id: string
  readonly streamId: string
  readonly seq: number
  readonly type: string
  readonly projectId: string
  readonly actorId: string
  readonly occurredAt: Date
  readonly data: unknown
}

/** The columns of an EventRow, for `SELECT ${sql.literal(eventColumns)}`. */
export const eventColumns = "id, stream_id, seq, type, project_id, actor_id, occurred_at, data"

/**
 * Row → wire envelope, undecoded: it sits on the SSE and publish hot paths, and rows are written
 * only by OutboxWriter from decoded domain values (readers that hand events to clients as domain
 * types decode them: EventHistory).
 */
export const toWire = (row: EventRow): Events.EventWire =>
  ({
    id: row.id,
    stream: row.streamId,
    seq: row.seq,
    type: row.type,
    projectId: row.projectId,
    actorId: row.actorId,
    occurredAt: row.occurredAt.toISOString(),
    data: row.data
  }) as Events.EventWire
