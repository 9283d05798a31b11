import type { SqlClient } from "@effect/sql"
import type { PgClient } from "@effect/sql-pg"
import type { Events } from "@herald/domain"
import { type AppConfig, BackgroundPublisherLive, BrokerPublisher, SharedLive } from "@herald/server"
import { type Context, Effect, Exit, Layer, Redacted, Runtime, Scope } from "effect"
import type * as GraphileWorkerModule from "graphile-worker"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { attempt, sleep } from "../support.js"

/**
 * Part 2: how fast a backlog of committed events leaves the outbox. The backlog is written in
 * bulk with SQL while nothing publishes; then one of three drainers starts and the clock runs
 * until no row (job) is left to deliver:
 *   - Herald: the real publisher as the server runs it (claim, publish, mark, on its background pool)
 *     with a broker that counts;
 *   - raw SQL: the same claim and mark statements in a plain loop over one `pg` client;
 *   - Graphile Worker as the outbox: one job per event, a task that counts.
 */

export const STREAMS = 100
/** A drain still running after this long is stopped; its rate is taken over what it delivered. */
export const DRAIN_CAP_MS = 15_000
const POLL_MS = 20
/** Jobs per `add_jobs` transaction when filling Graphile Worker's queue. */
const ENQUEUE_CHUNK = 5_000

export interface DrainRun {
  readonly who: string
  readonly events: number
  readonly delivered: number
  readonly seconds: number
  /** CPU time of this process (the drainer, and the poller that watches it) during the drain. */
  readonly cpuMs: number
  /** Stopped at DRAIN_CAP_MS before the backlog was gone: `delivered` events in `seconds`. */
  readonly partial: boolean
  /** The raw loop's own account of where its time went. */
  readonly split?: RawSplit | undefined
}

export interface RawSplit {
  readonly batches: number
  readonly claimMs: number
  readonly markMs: number
}

/** Events per second over runs: all of a complete run's backlog, what a stopped one delivered. */
const done = (r: DrainRun) => (r.partial ? r.delivered : r.events)

export const perSecond = (runs: ReadonlyArray<DrainRun>) =>
  runs.reduce((n, r) => n + done(r), 0) / runs.reduce((n, r) => n + r.seconds, 0)

export const cpuPerThousand = (runs: ReadonlyArray<DrainRun>) =>
  (1000 * runs.reduce((n, r) => n + r.cpuMs, 0)) / runs.reduce((n, r) => n + done(r), 0)

/** The backlog's shape: `STREAMS` project streams, seqs 1, 2, 3 … interleaved as live traffic is. */
export interface Backlog {
  readonly events: number
  readonly projects: ReadonlyArray<string>
  readonly actor: string
}

export const makeBacklog = (events: number): Backlog => ({
  events,
  projects: Array.from({ length: STREAMS }, () => randomUUID()),
  actor: randomUUID()
})

// Event i (0-based) goes to stream i % STREAMS with seq i / STREAMS + 1: contiguous seqs per stream.
const BACKLOG_ROWS = `
  SELECT ('project:' || ($3::uuid[])[g.i % ${STREAMS} + 1]) AS stream_id,
         (g.i / ${STREAMS} + 1)::bigint AS seq,
         ($3::uuid[])[g.i % ${STREAMS} + 1] AS project_id,
         g.i
  FROM generate_series($1::int, $2::int) AS g(i)`

const messageData = (actor: string) => `
  jsonb_build_object('messageId', gen_random_uuid(), 'authorId', ${actor}::uuid, 'role', 'user',
                     'body', 'deliver bench backlog message number ' || b.i || ', about a sentence long.')`

/** Empties the outbox (and the seq counters of the backlog's streams). */
export const resetOutbox = (client: pg.Client) =>
  attempt("resetting the outbox", async () => {
    await client.query("TRUNCATE event_outbox")
    await client.query(
      "DELETE FROM event_streams WHERE stream_id LIKE 'project:%' AND stream_id NOT IN (SELECT 'project:' || id FROM projects)"
    )
  })

/** Inserts the backlog as `pending` outbox rows, in one statement, as if committed just now. */
export const fillOutbox = (client: pg.Client, backlog: Backlog) =>
  attempt("writing the outbox backlog", async () => {
    await client.query("TRUNCATE event_outbox")
    await client.query(
      `INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
       SELECT gen_random_uuid(), b.stream_id, b.seq, 'message.created', b.project_id, $4::uuid, now(),
              ${messageData("$4")}
       FROM (${BACKLOG_ROWS}) AS b
       ORDER BY b.i`,
      [0, backlog.events - 1, backlog.projects, backlog.actor]
    )
    await client.query(
      `INSERT INTO event_streams (stream_id, last_seq)
       SELECT 'project:' || p, $2::bigint FROM unnest($1::uuid[]) AS p
       ON CONFLICT (stream_id) DO UPDATE SET last_seq = excluded.last_seq`,
      [backlog.projects, Math.ceil(backlog.events / STREAMS)]
    )
    await settle(client, "event_outbox")
  })

/** Statistics for the planner and a checkpoint, so every drain starts from the same state. */
const settle = async (client: pg.Client, table: string) => {
  await client.query(`ANALYZE ${table}`)
  await client.query("CHECKPOINT").catch(() => undefined)
}

/** Waits until `query` (one boolean column `done`) says so, polling every POLL_MS; false at the cap. */
const waitUntil = async (client: pg.Client, query: string, deadline: number) => {
  while (performance.now() < deadline) {
    const { rows } = await client.query<{ done: boolean }>(query)
    if (rows[0]!.done) return true
    await sleep(POLL_MS)
  }
  return false
}

const OUTBOX_DRAINED = "SELECT NOT EXISTS (SELECT 1 FROM event_outbox WHERE status = 'pending') AS done"

/** Times `drain` (started at t0) until `doneQuery` holds; returns the run's figures. */
const timed = async (
  who: string,
  events: number,
  poller: pg.Client,
  doneQuery: string,
  drain: () => Promise<{ stop: () => Promise<void>; delivered: () => number; split?: () => RawSplit }>
): Promise<DrainRun> => {
  const cpu = process.cpuUsage()
  const started = performance.now()
  const running = await drain()
  const drained = await waitUntil(poller, doneQuery, started + DRAIN_CAP_MS).then(
    (complete) => ({ complete, delivered: running.delivered() }),
    (error: unknown) => ({ error })
  )
  const seconds = (performance.now() - started) / 1000
  const { system, user } = process.cpuUsage(cpu)
  await running.stop()
  if ("error" in drained) throw drained.error
  return {
    who,
    events,
    delivered: drained.complete ? running.delivered() : drained.delivered,
    seconds,
    cpuMs: (system + user) / 1000,
    partial: !drained.complete,
    ...(running.split === undefined ? {} : { split: running.split() })
  }
}

// ---------------------------------------------------------------------------------------------
// Herald's publisher

/**
 * The real publisher over the shared services, with a broker that only counts. It starts when
 * its layer is built and stops when the scope closes.
 */
export const heraldDrain = (
  base: Context.Context<SqlClient.SqlClient | PgClient.PgClient | AppConfig>,
  poller: pg.Client,
  events: number
) =>
  Effect.gen(function*() {
    const run = Runtime.runPromise(yield* Effect.runtime<never>())
    return yield* attempt("Herald's publisher", () =>
      timed("Herald publisher", events, poller, OUTBOX_DRAINED, async () => {
        const counter = { n: 0 }
        const broker = Layer.succeed(BrokerPublisher, {
          publish: (batch: ReadonlyArray<Events.EventWire>) =>
            Effect.sync(() => void (counter.n += batch.length))
        })
        // As the server composes it: its own store on the background pool (synchronous_commit=off).
        const publisher = BackgroundPublisherLive.pipe(
          Layer.provide(broker),
          Layer.provide(SharedLive),
          Layer.provide(Layer.succeedContext(base))
        )
        const scope = await run(Scope.make())
        await run(Layer.buildWithScope(publisher, scope))
        return { delivered: () => counter.n, stop: () => run(Scope.close(scope, Exit.void)) }
      }))
  })

// ---------------------------------------------------------------------------------------------
// The raw-SQL baseline: OutboxStore's claim and markPublished, verbatim, in a plain loop

const CLAIM = `
  WITH due AS (
    SELECT id FROM event_outbox
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, position
    LIMIT $2
    FOR UPDATE SKIP LOCKED
  )
  UPDATE event_outbox o
  SET claimed_by = $1,
      claimed_until = now() + $3 * interval '1 millisecond',
      next_attempt_at = now() + $3 * interval '1 millisecond'
  FROM due WHERE o.id = due.id
  RETURNING o.id, o.stream_id, o.seq, o.type, o.project_id, o.actor_id, o.occurred_at, o.data,
            o.attempts, o.position`

const MARK_PUBLISHED = `
  UPDATE event_outbox
  SET status = 'published', published_at = now(), attempts = attempts + 1,
      claimed_by = NULL, claimed_until = NULL, last_error = NULL
  WHERE id = ANY($1::uuid[]) AND status = 'pending' AND claimed_by = $2
  RETURNING occurred_at, published_at`

export const rawDrain = (
  url: Redacted.Redacted,
  poller: pg.Client,
  events: number,
  batchSize: number,
  leaseMs: number
) =>
  attempt("the raw-SQL drain", async () => {
    const client = new pg.Client({ connectionString: Redacted.value(url), application_name: "herald-bench-raw" })
    await client.connect()
    try {
      return await timed("raw SQL loop", events, poller, OUTBOX_DRAINED, async () => {
        const publisherId = `bench-raw:${process.pid}`
        let delivered = 0
        let stopped = false
        const split = { batches: 0, claimMs: 0, markMs: 0 }
        const loop = (async () => {
          while (!stopped) {
            const claiming = performance.now()
            const { rows } = await client.query<{ id: string }>(CLAIM, [publisherId, batchSize, leaseMs])
            const marking = performance.now()
            split.claimMs += marking - claiming
            if (rows.length === 0) return
            delivered += rows.length
            await client.query(MARK_PUBLISHED, [rows.map((r) => r.id), publisherId])
            split.markMs += performance.now() - marking
            split.batches++
          }
        })()
        loop.catch(() => undefined)
        return {
          delivered: () => delivered,
          split: () => ({ ...split }),
          stop: async () => {
            stopped = true
            await loop
          }
        }
      })
    } finally {
      await client.end().catch(() => undefined)
    }
  })

// ---------------------------------------------------------------------------------------------
// Graphile Worker as the outbox

// A type-only import: the module itself loads lazily, only for this part of the bench.
type GraphileWorker = typeof GraphileWorkerModule

export interface GraphileSetup {
  readonly worker: GraphileWorker
  readonly pool: pg.Pool
  readonly logger: InstanceType<GraphileWorker["Logger"]>
}

/** Loads graphile-worker and installs its schema; a failure says why it could not run. */
export const graphileSetup = (url: Redacted.Redacted, concurrency: number) =>
  Effect.acquireRelease(
    attempt("setting up Graphile Worker", async (): Promise<GraphileSetup> => {
      const loaded = (await import("graphile-worker")) as GraphileWorker & { default?: GraphileWorker }
      const worker = typeof loaded.run === "function" ? loaded : loaded.default!
      const pool = new pg.Pool({
        connectionString: Redacted.value(url),
        max: concurrency + 2,
        application_name: "herald-bench-graphile"
      })
      // Graphile Worker checks that the pool and its clients have error handlers.
      pool.on("error", () => undefined)
      pool.on("connect", (client) => client.on("error", () => undefined))
      // Its own logging, errors excepted, would measure the terminal.
      const logger = new worker.Logger(() => (level, message) => {
        if (level === "error") console.error(`graphile-worker: ${message}`)
      })
      try {
        await worker.runMigrations({ pgPool: pool, logger })
      } catch (error) {
        await pool.end().catch(() => undefined)
        throw error
      }
      return { worker, pool, logger }
    }),
    (setup) => Effect.promise(() => setup.pool.end().catch(() => undefined))
  )

/** Enqueues the backlog as jobs with `graphile_worker.add_jobs`, ENQUEUE_CHUNK per transaction. */
export const fillGraphile = (client: pg.Client, backlog: Backlog) =>
  attempt("enqueueing Graphile Worker jobs", async () => {
    await client.query("TRUNCATE graphile_worker._private_jobs")
    for (let from = 0; from < backlog.events; from += ENQUEUE_CHUNK) {
      const to = Math.min(backlog.events, from + ENQUEUE_CHUNK) - 1
      await client.query("BEGIN")
      try {
        await client.query(
          `SELECT count(*) FROM graphile_worker.add_jobs(ARRAY(
             SELECT ROW('publish',
                        json_build_object('id', gen_random_uuid(), 'stream', b.stream_id, 'seq', b.seq,
                                          'type', 'message.created', 'projectId', b.project_id,
                                          'actorId', $4::uuid, 'occurredAt', now(), 'data', ${messageData("$4")}),
                        NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec
             FROM (${BACKLOG_ROWS}) AS b
             ORDER BY b.i))`,
          [from, to, backlog.projects, backlog.actor]
        )
        await client.query("COMMIT")
      } catch (error) {
        await client.query("ROLLBACK").catch(() => undefined)
        throw error
      }
    }
    await settle(client, "graphile_worker._private_jobs")
  })

export interface GraphileMode {
  readonly label: string
  readonly concurrency: number
  /** Graphile Worker's own batching (local queue, batched completion): off by default. */
  readonly batched: boolean
}

export const graphileDrain = (setup: GraphileSetup, poller: pg.Client, events: number, mode: GraphileMode) =>
  attempt(
    `Graphile Worker (${mode.label})`,
    () =>
      timed(
        `Graphile Worker, ${mode.label}`,
        events,
        poller,
        "SELECT NOT EXISTS (SELECT 1 FROM graphile_worker._private_jobs) AS done",
        async () => {
          let delivered = 0
          const runner = await setup.worker.run({
            pgPool: setup.pool,
            logger: setup.logger,
            concurrency: mode.concurrency,
            noHandleSignals: true,
            pollInterval: 1_000,
            taskList: {
              publish: async () => {
                delivered++
              }
            },
            ...(mode.batched
              ? { preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0 } } }
              : {})
          })
          return {
            delivered: () => delivered,
            stop: () => runner.stop()
          }
        }
      )
  )
