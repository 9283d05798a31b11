import { SqlClient } from "@effect/sql"
import type { Events } from "@herald/domain"
import { Effect } from "effect"
import { eventColumns, type EventRow, toWire } from "../events/EventRow.js"

/** An outbox row as the publisher handles it: the wire envelope plus its delivery state. */
export interface ClaimedEvent {
  readonly envelope: Events.EventWire
  readonly attempts: number
  /** The `traceparent` of the request that wrote the event (only read with tracing on). */
  readonly traceContext?: string | null | undefined
}

/** An outbox row with its delivery history, as operators inspect it. */
export interface OutboxRow extends EventRow {
  readonly status: "pending" | "published" | "dead"
  readonly attempts: number
  readonly nextAttemptAt: Date
  readonly claimedBy: string | null
  readonly claimedUntil: Date | null
  readonly lastError: string | null
  readonly publishedAt: Date | null
  readonly materializedAt: Date | null
}

const deliveryColumns = `${eventColumns}, status, attempts, next_attempt_at, claimed_by, claimed_until,
  last_error, published_at, materialized_at`

export interface RetryDecision {
  readonly id: string
  /** null → the row becomes `dead`. */
  readonly delayMs: number | null
}

/**
 * The outbox as the publisher and operators see it: claim, confirm, retry, release.
 *
 * A claim pushes `next_attempt_at` to the end of the lease, so an expired lease makes the row due
 * again by the very condition (and index) that finds due rows; `claimed_by`/`claimed_until` say who.
 */
export class OutboxStore extends Effect.Service<OutboxStore>()("Herald/OutboxStore", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const claim = (options: {
      readonly publisherId: string
      readonly batchSize: number
      readonly leaseMs: number
      /** Read each row's trace context too (tracing on). */
      readonly traceContext?: boolean | undefined
    }) =>
      Effect.map(
        sql<EventRow & { attempts: number; position: number; traceContext?: string | null }>`
          WITH due AS (
            SELECT id FROM event_outbox
            WHERE status = 'pending' AND next_attempt_at <= now()
            ORDER BY next_attempt_at, position
            LIMIT ${options.batchSize}
            FOR UPDATE SKIP LOCKED
          )
          UPDATE event_outbox o
          SET claimed_by = ${options.publisherId},
              claimed_until = now() + ${options.leaseMs} * interval '1 millisecond',
              next_attempt_at = now() + ${options.leaseMs} * interval '1 millisecond'
          FROM due WHERE o.id = due.id
          RETURNING o.id, o.stream_id, o.seq, o.type, o.project_id, o.actor_id, o.occurred_at, o.data,
                    o.attempts, o.position${options.traceContext === true ? sql`, o.trace_context` : sql``}`,
        (rows): Array<ClaimedEvent> =>
          [...rows]
            .sort((a, b) => a.position - b.position)
            .map((row) => ({ envelope: toWire(row), attempts: row.attempts, traceContext: row.traceContext }))
      )

    /** Only rows this publisher still holds: a row whose lease expired and was re-claimed is left alone. */
    const markPublished = (publisherId: string, ids: ReadonlyArray<string>) =>
      Effect.map(
        sql<{ occurredAt: Date; publishedAt: Date }>`
          UPDATE event_outbox
          SET status = 'published', published_at = now(), attempts = attempts + 1,
              claimed_by = NULL, claimed_until = NULL, last_error = NULL
          WHERE id = ANY(${ids}::uuid[]) AND status = 'pending' AND claimed_by = ${publisherId}
          RETURNING occurred_at, published_at`,
        (rows) => rows.map((r) => r.publishedAt.getTime() - r.occurredAt.getTime())
      )

    /**
     * Confirms events published from the hand-off (never claimed): rows still pending and not
     * claimed by anyone — a row some publisher claimed meanwhile is that publisher's to confirm.
     */
    const markHandedOff = (ids: ReadonlyArray<string>) =>
      Effect.map(
        sql<{ occurredAt: Date; publishedAt: Date }>`
          UPDATE event_outbox
          SET status = 'published', published_at = now(), attempts = attempts + 1, last_error = NULL
          WHERE id = ANY(${ids}::uuid[]) AND status = 'pending' AND claimed_by IS NULL
          RETURNING occurred_at, published_at`,
        (rows) => rows.map((r) => r.publishedAt.getTime() - r.occurredAt.getTime())
      )

    /** Events the hand-off failed to publish: due now, for the claims (and their retry policy). */
    const releaseHandedOff = (ids: ReadonlyArray<string>) =>
      Effect.asVoid(sql`
        UPDATE event_outbox SET next_attempt_at = now()
        WHERE id = ANY(${ids}::uuid[]) AND status = 'pending' AND claimed_by IS NULL`)

    const markFailed = (publisherId: string, decisions: ReadonlyArray<RetryDecision>, error: string) =>
      decisions.length === 0 ? Effect.succeed(0) : Effect.map(
        sql`
          UPDATE event_outbox o
          SET attempts = o.attempts + 1,
              last_error = ${error},
              claimed_by = NULL, claimed_until = NULL,
              status = CASE WHEN d.delay_ms IS NULL THEN 'dead' ELSE 'pending' END,
              next_attempt_at = CASE WHEN d.delay_ms IS NULL THEN o.next_attempt_at
                                     ELSE now() + d.delay_ms * interval '1 millisecond' END
          FROM unnest(${decisions.map((d) => d.id)}::uuid[], ${
          decisions.map((d) => d.delayMs)
        }::float8[]) AS d(id, delay_ms)
          WHERE o.id = d.id AND o.status = 'pending' AND o.claimed_by = ${publisherId}
          RETURNING o.status`,
        (rows) => rows.length
      )

    /** Gives claimed rows back, due now (graceful shutdown). */
    const release = (publisherId: string, ids: ReadonlyArray<string>) =>
      ids.length === 0 ? Effect.void : Effect.asVoid(sql`
        UPDATE event_outbox SET claimed_by = NULL, claimed_until = NULL, next_attempt_at = now()
        WHERE id = ANY(${ids}::uuid[]) AND status = 'pending' AND claimed_by = ${publisherId}`)

    /** Dead rows back to pending, due now, with a fresh attempt budget. Returns the ids retried. */
    const retryDead = (ids: ReadonlyArray<string> | "all") =>
      Effect.map(
        sql<{ id: string }>`
          UPDATE event_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
                 claimed_by = NULL, claimed_until = NULL
          WHERE status = 'dead' ${ids === "all" ? sql`` : sql`AND id = ANY(${ids}::uuid[])`}
          RETURNING id`,
        (rows) => rows.map((r) => r.id)
      )

    /** Counts by status, the oldest pending age and the materializer's lag, for operators. */
    const stats = Effect.map(
      sql<{
        pending: number
        published: number
        dead: number
        claimed: number
        oldestPendingSeconds: number | null
        unmaterialized: number
        materializerLagSeconds: number | null
      }>`
        SELECT
          count(*) FILTER (WHERE status = 'pending')::int AS pending,
          count(*) FILTER (WHERE status = 'published')::int AS published,
          count(*) FILTER (WHERE status = 'dead')::int AS dead,
          count(*) FILTER (WHERE status = 'pending' AND claimed_until > now())::int AS claimed,
          extract(epoch FROM now() - min(occurred_at) FILTER (WHERE status = 'pending'))::float8 AS oldest_pending_seconds,
          count(*) FILTER (WHERE materialized_at IS NULL)::int AS unmaterialized,
          extract(epoch FROM now() - min(occurred_at) FILTER (WHERE materialized_at IS NULL))::float8 AS materializer_lag_seconds
        FROM event_outbox`,
      ([row]) => row!
    )

    /** Rows with their delivery state, newest first. */
    const list = (filter: {
      readonly status?: "pending" | "published" | "dead" | undefined
      readonly stream?: string | undefined
      readonly type?: string | undefined
      readonly limit: number
    }) =>
      sql<OutboxRow>`
        SELECT ${sql.literal(deliveryColumns)} FROM event_outbox
        WHERE true
          ${filter.status === undefined ? sql`` : sql`AND status = ${filter.status}`}
          ${filter.stream === undefined ? sql`` : sql`AND stream_id = ${filter.stream}`}
          ${filter.type === undefined ? sql`` : sql`AND type = ${filter.type}`}
        ORDER BY position DESC
        LIMIT ${filter.limit}`

    const show = (id: string) =>
      Effect.map(
        sql<OutboxRow>`SELECT ${sql.literal(deliveryColumns)} FROM event_outbox WHERE id = ${id}`,
        (rows) => rows[0]
      )

    /** Stamps every row unmaterialized again, so the next passes re-copy what the outbox holds. */
    const resetMaterialized = Effect.map(
      sql<{ n: number }>`
        WITH reset AS (UPDATE event_outbox SET materialized_at = NULL WHERE materialized_at IS NOT NULL RETURNING 1)
        SELECT count(*)::int AS n FROM reset`,
      ([row]) => row!.n
    )

    return {
      claim,
      markPublished,
      markHandedOff,
      releaseHandedOff,
      markFailed,
      release,
      retryDead,
      stats,
      list,
      show,
      resetMaterialized
    } as const
  })
}) {}
