import { Effect } from "effect"
import pg from "pg"
import { canonical } from "./Envelope.js"

/**
 * The campaign's own view of the database: a small pool for what the harness needs while it runs
 * (a stream's head before a client starts at it, the outbox while it waits for quiescence, the
 * LISTEN connections the nemesis terminates) and, after the run, the final state the checker
 * trusts: every event `event_outbox ∪ event_log` holds, the messages, the memberships.
 */

export interface DbEvent {
  readonly id: string
  readonly stream: string
  readonly seq: number
  readonly type: string
  readonly projectId: string
  readonly actorId: string
  /** Epoch milliseconds. */
  readonly occurredAt: number
  readonly data: unknown
}

export interface DbMessage {
  readonly id: string
  readonly projectId: string
  readonly authorId: string
  readonly scope: "project" | "workspace"
  readonly body: string
  readonly clientMessageId: string | null
  readonly createdEventId: string
  readonly createdEventSeq: number
  readonly edited: boolean
  readonly deleted: boolean
}

export interface OutboxState {
  readonly pending: number
  readonly dead: number
  readonly unmaterialized: number
}

export interface Truth {
  /** Every stream's events, ascending by seq (outbox and log merged). */
  readonly streams: ReadonlyMap<string, ReadonlyArray<DbEvent>>
  readonly byKey: ReadonlyMap<string, DbEvent>
  /** `event_streams.last_seq`. */
  readonly counters: ReadonlyMap<string, number>
  readonly messages: ReadonlyArray<DbMessage>
  /** project → user → role. */
  readonly members: ReadonlyMap<string, ReadonlyMap<string, string>>
  /** (stream, seq) whose outbox and log rows differ, or two rows with one id. */
  readonly divergent: ReadonlyArray<string>
  readonly outbox: OutboxState
}

export const eventKey = (stream: string, seq: number) => `${stream}#${seq}`

export const head = (truth: Truth, stream: string) => {
  const events = truth.streams.get(stream)
  return events === undefined || events.length === 0 ? 0 : events[events.length - 1]!.seq
}

export interface Db {
  readonly query: <R extends pg.QueryResultRow>(text: string, values?: ReadonlyArray<unknown>) => Promise<Array<R>>
  /** The stream's head, or undefined when the database does not answer. */
  readonly head: (stream: string) => Promise<number | undefined>
  readonly outbox: () => Promise<OutboxState>
  /** Terminates the LISTEN connections of this database; how many. */
  readonly terminateListeners: () => Promise<number>
  readonly truth: () => Promise<Truth>
}

/** A pool of a few connections to the run's database, closed with the scope. */
export const openDb = (url: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new pg.Pool({
        connectionString: url,
        max: 4,
        connectionTimeoutMillis: 3_000,
        statement_timeout: 20_000,
        application_name: "herald-chaos"
      })
      // A connection that breaks while PostgreSQL restarts must not crash the campaign.
      pool.on("error", () => undefined)
      return pool
    }),
    (pool) => Effect.promise(() => pool.end().catch(() => undefined))
  ).pipe(Effect.map(makeDb))

const makeDb = (pool: pg.Pool): Db => {
  const query = async <R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown> = []) =>
    (await pool.query<R>(text, values as Array<unknown>)).rows
  return {
    query,
    head: async (stream) => {
      try {
        const rows = await query<{ last_seq: string }>("SELECT last_seq FROM event_streams WHERE stream_id = $1", [
          stream
        ])
        return rows.length === 0 ? 0 : Number(rows[0]!.last_seq)
      } catch {
        return undefined
      }
    },
    outbox: async () => {
      const [row] = await query<{ pending: string; dead: string; unmaterialized: string }>(
        `SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                count(*) FILTER (WHERE status = 'dead') AS dead,
                count(*) FILTER (WHERE materialized_at IS NULL) AS unmaterialized
           FROM event_outbox`
      )
      return { pending: Number(row!.pending), dead: Number(row!.dead), unmaterialized: Number(row!.unmaterialized) }
    },
    terminateListeners: async () => {
      const rows = await query<{ terminated: boolean }>(
        `SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
          WHERE query ILIKE 'LISTEN%' AND datname = current_database() AND pid <> pg_backend_pid()`
      )
      return rows.filter((r) => r.terminated).length
    },
    truth: () => readTruth(query)
  }
}

interface EventRow {
  readonly id: string
  readonly stream_id: string
  readonly seq: string
  readonly type: string
  readonly project_id: string
  readonly actor_id: string
  readonly occurred_at: Date
  readonly data: unknown
}

const toEvent = (r: EventRow): DbEvent => ({
  id: r.id,
  stream: r.stream_id,
  seq: Number(r.seq),
  type: r.type,
  projectId: r.project_id,
  actorId: r.actor_id,
  occurredAt: r.occurred_at.getTime(),
  data: r.data
})

const sameEvent = (a: DbEvent, b: DbEvent) =>
  a.id === b.id && a.type === b.type && a.projectId === b.projectId && a.actorId === b.actorId &&
  a.occurredAt === b.occurredAt && canonical(a.data) === canonical(b.data)

const readTruth = async (
  query: <R extends pg.QueryResultRow>(text: string, values?: ReadonlyArray<unknown>) => Promise<Array<R>>
): Promise<Truth> => {
  const columns = "id::text, stream_id, seq, type, project_id::text, actor_id::text, occurred_at, data"
  const outboxRows = await query<EventRow>(`SELECT ${columns} FROM event_outbox`)
  const logRows = await query<EventRow>(`SELECT ${columns} FROM event_log`)
  const byKey = new Map<string, DbEvent>()
  const ids = new Map<string, string>()
  const divergent: Array<string> = []
  for (const [table, rows] of [["event_outbox", outboxRows], ["event_log", logRows]] as const) {
    for (const row of rows) {
      const event = toEvent(row)
      const key = eventKey(event.stream, event.seq)
      const known = byKey.get(key)
      if (known === undefined) byKey.set(key, event)
      else if (!sameEvent(known, event)) {
        divergent.push(
          `${key}: ${table} holds event ${event.id} (${event.type}), the other table ${known.id} (${known.type})`
        )
      }
      const idAt = ids.get(event.id)
      if (idAt === undefined) ids.set(event.id, key)
      else if (idAt !== key) divergent.push(`event id ${event.id} at ${idAt} and at ${key}`)
    }
  }
  const streams = new Map<string, Array<DbEvent>>()
  for (const event of byKey.values()) {
    const list = streams.get(event.stream) ?? []
    list.push(event)
    streams.set(event.stream, list)
  }
  for (const list of streams.values()) list.sort((a, b) => a.seq - b.seq)
  const counters = new Map(
    (await query<{ stream_id: string; last_seq: string }>("SELECT stream_id, last_seq FROM event_streams")).map((
      r
    ) => [r.stream_id, Number(r.last_seq)] as const)
  )
  const messages = (await query<{
    id: string
    project_id: string
    author_id: string
    scope: "project" | "workspace"
    body: string
    client_message_id: string | null
    created_event_id: string
    created_event_seq: string
    edited: boolean
    deleted: boolean
  }>(
    `SELECT id::text, project_id::text, author_id::text, scope, body, client_message_id, created_event_id::text,
            created_event_seq, edited_at IS NOT NULL AS edited, deleted_at IS NOT NULL AS deleted
       FROM messages`
  )).map((r): DbMessage => ({
    id: r.id,
    projectId: r.project_id,
    authorId: r.author_id,
    scope: r.scope,
    body: r.body,
    clientMessageId: r.client_message_id,
    createdEventId: r.created_event_id,
    createdEventSeq: Number(r.created_event_seq),
    edited: r.edited,
    deleted: r.deleted
  }))
  const members = new Map<string, Map<string, string>>()
  for (
    const r of await query<{ project_id: string; user_id: string; role: string }>(
      "SELECT project_id::text, user_id::text, role FROM project_members"
    )
  ) {
    const m = members.get(r.project_id) ?? new Map<string, string>()
    m.set(r.user_id, r.role)
    members.set(r.project_id, m)
  }
  const [o] = await query<{ pending: string; dead: string; unmaterialized: string }>(
    `SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'dead') AS dead,
            count(*) FILTER (WHERE materialized_at IS NULL) AS unmaterialized FROM event_outbox`
  )
  return {
    streams,
    byKey,
    counters,
    messages,
    members,
    divergent,
    outbox: { pending: Number(o!.pending), dead: Number(o!.dead), unmaterialized: Number(o!.unmaterialized) }
  }
}
