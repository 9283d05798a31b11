import { Events, type Ids } from "@herald/domain"
import { ChatService } from "@herald/server/chat/ChatService"
import { asUser } from "@herald/server/chat/Policy"
import { UsersRepo } from "@herald/server/chat/UsersRepo"
import { Config, Console, Context, Duration, Effect, Logger, LogLevel, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import * as http from "node:http"
import pg from "pg"
import { attempt, embeddedDatabase, inProcessServer, request, secondsSetting, table, withinBudget } from "./support.js"

/**
 * Write throughput: `POST /api/projects/:projectId/messages` through the real server, next to
 * the same transaction sent as raw SQL over a plain `pg` pool — both on one embedded PostgreSQL
 * with its durable (default) settings, measured in the same run, so the ratio is what counts.
 */

const LEVELS = [1, 8, 32] as const
const TARGET = { concurrency: 32, ratio: 0.7 } as const
const WARMUP = Duration.seconds(1)
const REQUEST_TIMEOUT_MS = 10_000
/** Posts per kind in the round-trip probe (sequential). */
const PROBE_POSTS = 50

const Settings = Config.all({ seconds: secondsSetting })

// ---------------------------------------------------------------------------------------------
// The load driver: one, for both kinds of post

/** One message post; resolves once it is committed, rejects on anything else. */
type Post = () => Promise<void>

interface Sample {
  readonly posts: number
  readonly seconds: number
  /** CPU time of this whole process (server, drivers and load generator) during the run. */
  readonly cpuMs: number
}

/**
 * Runs `post` from `concurrency` workers, each posting back to back, until `duration` has passed;
 * posts in flight at the deadline finish and count. The first failure stops every worker and
 * fails the run: a bench that silently counts errors measures nothing.
 */
const drive = (post: Post, concurrency: number, duration: Duration.Duration) =>
  attempt("a post failed", async (): Promise<Sample> => {
    const started = performance.now()
    const cpu = process.cpuUsage()
    const deadline = started + Duration.toMillis(duration)
    let posts = 0
    let failed = false
    const worker = async () => {
      while (!failed && performance.now() < deadline) {
        try {
          await post()
          posts++
        } catch (error) {
          failed = true
          throw error
        }
      }
    }
    const results = await Promise.allSettled(Array.from({ length: concurrency }, worker))
    const failure = results.find((r) => r.status === "rejected")
    if (failure !== undefined) throw failure.reason
    const { system, user } = process.cpuUsage(cpu)
    return { posts, seconds: (performance.now() - started) / 1000, cpuMs: (system + user) / 1000 }
  })

// ---------------------------------------------------------------------------------------------
// The two kinds of post

/** Over HTTP with keep-alive: one socket per worker, reused for every post. */
const httpPost = (options: { port: number; token: string; projectId: Ids.ProjectId; concurrency: number }) =>
  Effect.acquireRelease(
    Effect.sync(() => new http.Agent({ keepAlive: true, maxSockets: options.concurrency })),
    (agent) => Effect.sync(() => agent.destroy())
  ).pipe(Effect.map((agent): Post => {
    let n = 0
    return () =>
      request({
        port: options.port,
        method: "POST",
        path: `/api/projects/${options.projectId}/messages`,
        token: options.token,
        body: { body: `bench message ${++n}` },
        agent,
        timeoutMs: REQUEST_TIMEOUT_MS,
        expected: 201
      }).then(() => undefined)
  }))

// The statements ChatService.post issues inside its transaction, in its order
// (OutboxWriter.reserve, OutboxWriter.insert, MessagesRepo.insertAsMember).
const BUMP_SEQ = `
  INSERT INTO event_streams (stream_id, last_seq) VALUES ($1, 1)
  ON CONFLICT (stream_id) DO UPDATE SET last_seq = event_streams.last_seq + 1
  RETURNING last_seq, clock_timestamp() AS at`
const INSERT_OUTBOX = `
  INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)`
const INSERT_MESSAGE_AS_MEMBER = `
  INSERT INTO messages (id, project_id, author_id, scope, role, body, client_message_id,
                        created_event_id, created_event_seq, created_at)
  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
  WHERE EXISTS (SELECT 1 FROM project_members WHERE project_id = $2 AND user_id = $3)
  RETURNING id, position, project_id, author_id, scope, role, body, client_message_id,
    created_event_id, created_event_seq, created_at, edited_at, deleted_at`

/** The baseline: the same transaction over a plain `pg` pool with one connection per worker. */
const rawPost = (
  options: { url: Redacted.Redacted; userId: Ids.UserId; projectId: Ids.ProjectId; concurrency: number }
) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new pg.Pool({
        connectionString: Redacted.value(options.url),
        max: options.concurrency,
        application_name: "herald-bench-raw",
        query_timeout: REQUEST_TIMEOUT_MS
      })
      // An idle connection that errors (the cluster stopping while the pool closes) is already
      // dropped by the pool; without a listener the 'error' event would crash the process.
      pool.on("error", () => undefined)
      return pool
    }),
    (pool) => Effect.promise(() => pool.end())
  ).pipe(Effect.map((pool): Post => {
    const stream = Events.projectStream(options.projectId)
    let n = 0
    return async () => {
      const body = `bench message ${++n}`
      const client = await pool.connect()
      let failure: Error | undefined
      try {
        await client.query("BEGIN")
        const { rows: [bumped] } = await client.query<{ last_seq: string; at: Date }>(BUMP_SEQ, [stream])
        const eventId = randomUUID()
        const messageId = randomUUID()
        const data = { messageId, authorId: options.userId, role: "user", body }
        await client.query(INSERT_OUTBOX, [
          eventId,
          stream,
          bumped!.last_seq,
          "message.created",
          options.projectId,
          options.userId,
          bumped!.at,
          JSON.stringify(data)
        ])
        const inserted = await client.query(INSERT_MESSAGE_AS_MEMBER, [
          messageId,
          options.projectId,
          options.userId,
          "project",
          "user",
          body,
          null,
          eventId,
          bumped!.last_seq,
          bumped!.at
        ])
        if (inserted.rowCount !== 1) throw new Error("raw post: the author is not a member of the project")
        await client.query("COMMIT")
      } catch (error) {
        failure = error instanceof Error ? error : new Error(String(error))
        await client.query("ROLLBACK").catch(() => undefined)
        throw failure
      } finally {
        // A connection that failed mid-transaction is discarded, not reused.
        client.release(failure)
      }
    }
  }))

// ---------------------------------------------------------------------------------------------
// SQL round-trips per post, counted at the `pg` driver both paths share

/**
 * Counts the statements this process sends per post of each kind, over a few sequential posts —
 * the request path's and the publisher's reaction to each commit alike. The gap between the two
 * kinds is the first place to look when HTTP falls behind. The counter wraps `pg.Client`'s
 * `query` only for the duration of the probe.
 */
const countStatements = (kinds: ReadonlyArray<readonly [string, Post]>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const proto = pg.Client.prototype as unknown as { query: (...args: Array<unknown>) => unknown }
      const original = proto.query
      const counter = { statements: 0 }
      proto.query = function(this: unknown, ...args: Array<unknown>) {
        counter.statements++
        return original.apply(this, args)
      }
      return { counter, restore: () => (proto.query = original) }
    }),
    ({ restore }) => Effect.sync(restore)
  ).pipe(
    Effect.flatMap(({ counter }) =>
      Effect.forEach(kinds, ([kind, post]) =>
        Effect.gen(function*() {
          const before = counter.statements
          yield* attempt(`${kind} probe post failed`, async () => {
            for (let i = 0; i < PROBE_POSTS; i++) await post()
          })
          return `${kind} ${((counter.statements - before) / PROBE_POSTS).toFixed(1)}`
        }))
    ),
    Effect.scoped
  )

// ---------------------------------------------------------------------------------------------
// The runs

interface Rate {
  readonly perSecond: number
  readonly cpuMsPerPost: number
}

interface Row {
  readonly concurrency: number
  readonly http: Rate
  readonly raw: Rate
}

const sum = (samples: ReadonlyArray<Sample>, f: (s: Sample) => number) => samples.reduce((n, s) => n + f(s), 0)
const rate = (samples: ReadonlyArray<Sample>): Rate => ({
  perSecond: sum(samples, (s) => s.posts) / sum(samples, (s) => s.seconds),
  cpuMsPerPost: sum(samples, (s) => s.cpuMs) / sum(samples, (s) => s.posts)
})

interface BenchEnv {
  readonly seconds: number
  readonly port: number
  readonly url: Redacted.Redacted
  readonly newProject: (name: string) => Effect.Effect<Ids.ProjectId>
  readonly user: { readonly id: Ids.UserId; readonly token: string }
}

/** Both kinds of post for `concurrency` workers, each into a fresh project stream of its own. */
const makePosts = (env: BenchEnv, concurrency: number, label: string) =>
  Effect.gen(function*() {
    return {
      http: yield* httpPost({
        port: env.port,
        token: env.user.token,
        projectId: yield* env.newProject(`${label} http`),
        concurrency
      }),
      raw: yield* rawPost({
        url: env.url,
        userId: env.user.id,
        projectId: yield* env.newProject(`${label} raw`),
        concurrency
      })
    }
  })

/**
 * One concurrency level: a warm-up of each kind, then the measured time split into raw, HTTP,
 * HTTP, raw, so drift on the machine weighs on both alike.
 */
const measureLevel = (env: BenchEnv, concurrency: number) =>
  Effect.gen(function*() {
    const posts = yield* makePosts(env, concurrency, `bench c${concurrency}`)
    yield* drive(posts.raw, concurrency, WARMUP)
    yield* drive(posts.http, concurrency, WARMUP)
    const half = Duration.seconds(env.seconds / 2)
    const samples = { http: [] as Array<Sample>, raw: [] as Array<Sample> }
    for (const kind of ["raw", "http", "http", "raw"] as const) {
      samples[kind].push(yield* drive(posts[kind], concurrency, half))
    }
    const row: Row = { concurrency, http: rate(samples.http), raw: rate(samples.raw) }
    yield* Console.error(
      `  concurrency ${concurrency}: HTTP ${row.http.perSecond.toFixed(0)}/s, raw SQL ${row.raw.perSecond.toFixed(0)}/s`
    )
    return row
  }).pipe(Effect.scoped)

const writeTable = (rows: ReadonlyArray<Row>, seconds: number) => {
  const lines = rows.map((r) => [
    String(r.concurrency),
    r.http.perSecond.toFixed(0),
    r.raw.perSecond.toFixed(0),
    `${(r.http.perSecond / r.raw.perSecond).toFixed(2)}x`,
    r.http.cpuMsPerPost.toFixed(2),
    r.raw.cpuMsPerPost.toFixed(2)
  ])
  const target = rows.find((r) => r.concurrency === TARGET.concurrency)
  const ratio = target === undefined ? undefined : target.http.perSecond / target.raw.perSecond
  return table(
    `write: message posts/s, durable commits, one project stream per run, ${seconds} s measured per cell`,
    ["concurrency", "HTTP posts/s", "raw SQL posts/s", "HTTP/raw", "HTTP CPU ms/post", "raw CPU ms/post"],
    lines,
    [
      "CPU ms/post: this process's CPU time (server and load generator alike) per committed post.",
      ratio === undefined
        ? `target: HTTP >= ${TARGET.ratio}x raw at concurrency ${TARGET.concurrency} (not measured)`
        : `target: HTTP >= ${TARGET.ratio}x raw at concurrency ${TARGET.concurrency}: ` +
          `${ratio >= TARGET.ratio ? "met" : "NOT met"} (${ratio.toFixed(2)}x)`
    ],
    "right"
  )
}

const bench = Effect.gen(function*() {
  const { seconds } = yield* Settings
  yield* Console.error("write: starting an embedded PostgreSQL (durable settings) and the server…")
  const url = yield* embeddedDatabase
  const { app, port } = yield* inProcessServer(url)
  const chat = Context.get(app, ChatService)
  const created = yield* Effect.orDie(Context.get(app, UsersRepo).create("bench"))
  const user = { id: created.user.id, token: Redacted.value(created.token) }
  const newProject = (name: string) => Effect.map(chat.createProject(name).pipe(asUser(created.user)), (p) => p.id)
  const env: BenchEnv = { seconds, port, url, newProject, user }

  const perPost = yield* makePosts(env, 1, "probe").pipe(
    Effect.flatMap((posts) => countStatements([["HTTP", posts.http], ["raw SQL", posts.raw]])),
    Effect.scoped
  )
  yield* Console.error(`  SQL statements per post: ${perPost.join(", ")}`)

  // Every run is bounded by its duration and every request by a timeout; this is the backstop.
  const budget = Duration.seconds(LEVELS.length * 2 * (Duration.toSeconds(WARMUP) + seconds) + 60)
  const rows = yield* Effect.forEach(LEVELS, (c) => measureLevel(env, c)).pipe(withinBudget(budget, "the runs"))
  yield* Console.log(writeTable(rows, seconds))
  yield* Console.log(
    `SQL statements per sequential post (BEGIN/COMMIT and the publisher's work included): ${perPost.join(", ")}`
  )
}).pipe(
  Effect.scoped,
  // Per-request access logs would measure the terminal; warnings and errors still show.
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

export default bench
