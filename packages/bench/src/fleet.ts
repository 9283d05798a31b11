import { Config, Console, Duration, Effect, Logger, LogLevel } from "effect"
import { SERVER } from "../../../test-support/Process.js"
import { type RedisServer, startRedis } from "../../../test-support/Redis.js"
import { buildServer, type HeraldProcess, heraldProcess, userWithProjects } from "./serverProcess.js"
import {
  attempt,
  BenchError,
  connect,
  count,
  embeddedCluster,
  fixed,
  loadAverage,
  migrate,
  query,
  ranged,
  ratio,
  secondsSetting,
  sleep,
  table,
  tempDir,
  withinBudget
} from "./support.js"
import { ensureTool } from "./tools.js"
import { type Subscriber, subscriber } from "./write/subscriber.js"
import { startWrk, writeWrkScript, type WrkResult } from "./wrk.js"

/**
 * Events delivered end to end by a fleet of 1, 2 and 3 server processes on one PostgreSQL, with
 * the redis broker and with the postgres broker, side by side in one run. Each node is the
 * compiled server (`node packages/server/dist/main.js`) as its own process; every node has
 * BENCH_FLEET_CLIENTS SSE clients on `GET /api/stream` (every stream of the user's projects), so
 * each committed post must reach every node — through the broker, whichever node took it. The
 * write load is wrk, one instance per node, BENCH_FLEET_CONNECTIONS connections split over them,
 * posting round-robin to the user's projects for BENCH_SECONDS.
 *
 * delivered/s = the run's posts (201s) × the clients, each of which must receive every one, over
 * the time from the load's start until the last client had them all.
 *
 * Environment: BENCH_SECONDS (default 5), BENCH_FLEET_NODES (default 1,2,3), BENCH_FLEET_BROKERS
 * (default postgres,redis), BENCH_FLEET_CLIENTS (per node, default 2), BENCH_FLEET_CONNECTIONS
 * (wrk connections in all, default 6), BENCH_FLEET_PROJECTS (default 12).
 */

const list = <A extends string | number>(
  name: string,
  fallback: string,
  parse: (s: string) => A | undefined,
  message: string
) =>
  Config.string(name).pipe(
    Config.withDefault(fallback),
    Config.map((s) => s.split(",").map((p) => p.trim()).filter((p) => p.length > 0).map(parse)),
    Config.validate({ message, validation: (xs) => xs.length > 0 && xs.every((x) => x !== undefined) }),
    Config.map((xs) => [...new Set(xs as ReadonlyArray<A>)])
  )

const BROKERS = ["postgres", "redis"] as const
type Broker = typeof BROKERS[number]

const Settings = Config.all({
  seconds: secondsSetting,
  nodes: list(
    "BENCH_FLEET_NODES",
    "1,2,3",
    (s) => (/^[1-4]$/.test(s) ? Number(s) : undefined),
    "Expected a comma-separated list of node counts from 1 to 4"
  ),
  brokers: list(
    "BENCH_FLEET_BROKERS",
    "postgres,redis",
    (s) => BROKERS.find((b) => b === s),
    "Expected a comma-separated subset of postgres,redis"
  ),
  clients: ranged(Config.integer("BENCH_FLEET_CLIENTS"), 2, [1, 20], "Expected 1 to 20 SSE clients per node"),
  connections: ranged(Config.integer("BENCH_FLEET_CONNECTIONS"), 6, [1, 64], "Expected 1 to 64 wrk connections"),
  projects: ranged(Config.integer("BENCH_FLEET_PROJECTS"), 12, [1, 200], "Expected 1 to 200 projects")
})
type Settings = Config.Config.Success<typeof Settings>

const progress = (line: string) => Console.error(`  ${line}`)

/** A warm-up of the fleet before each measured run (JIT, pools, broker connections), not counted. */
const WARMUP_SECONDS = 1
/** How long the clients may take after the load to receive everything before the run fails. */
const DRAIN_TIMEOUT_MS = 60_000

/** `total` wrk connections split as evenly as possible over `n` nodes (each at least one). */
const split = (total: number, n: number) =>
  Array.from({ length: n }, (_, i) => Math.max(1, Math.floor(total / n) + (i < total % n ? 1 : 0)))

interface Run {
  readonly broker: Broker
  readonly nodes: number
  readonly connections: ReadonlyArray<number>
  readonly clients: number
  /** 201s during the measured load, and wrk's seconds. */
  readonly posts: number
  readonly loadSeconds: number
  /** Frames the clients needed for the run's posts (posts × clients), and the seconds until the last one had them all. */
  readonly delivered: number
  readonly seconds: number
  /** From the load's end until the last client had every post. */
  readonly drainSeconds: number
  readonly non201: number
}

const received = (clients: ReadonlyArray<Subscriber>) => clients.map((c) => c.received("message.created"))

/** Waits until every client has at least `expected[i]` message.created frames; the moment it was so. */
const allReceived = (clients: ReadonlyArray<Subscriber>, expected: ReadonlyArray<number>) =>
  attempt("waiting for every client to receive every post", async () => {
    const deadline = Date.now() + DRAIN_TIMEOUT_MS
    while (true) {
      const now = received(clients)
      if (now.every((n, i) => n >= expected[i]!)) return performance.now()
      const ended = clients.find((c) => c.endedEarly() !== undefined)
      if (ended !== undefined) throw new Error(`an SSE client's response ended: ${ended.endedEarly()}`)
      if (Date.now() > deadline) {
        throw new Error(
          `after ${DRAIN_TIMEOUT_MS / 1000} s, clients have ${now.join(", ")} of ${expected.join(", ")} posts`
        )
      }
      await sleep(5)
    }
  })

/** One wrk per node for `seconds`, all started together; their results once all are stopped. */
const load = (script: string, servers: ReadonlyArray<HeraldProcess>, connections: ReadonlyArray<number>, s: number) =>
  Effect.scoped(Effect.gen(function*() {
    const wrks = yield* Effect.forEach(
      servers,
      (server, i) => startWrk({ script, port: server.port, connections: connections[i]!, threads: 1, seconds: s + 30 })
    )
    yield* Effect.sleep(Duration.seconds(s))
    return yield* Effect.forEach(wrks, (w) => w.stop)
  }))

const created = (results: ReadonlyArray<WrkResult>) => results.reduce((n, r) => n + r.created, 0)

const fleetRun = (
  db: Effect.Effect.Success<typeof embeddedCluster>,
  redis: RedisServer | undefined,
  redisDb: number,
  broker: Broker,
  n: number,
  settings: Settings
) =>
  Effect.scoped(Effect.gen(function*() {
    yield* progress(`${broker} broker, ${n} node${n === 1 ? "" : "s"}: starting…`)
    // A clean outbox and no users: every run starts from the same empty database.
    const pg = yield* connect(db.url, "herald-bench-fleet")
    yield* query(
      pg,
      "emptying the tables",
      "TRUNCATE users, api_tokens, projects, project_members, messages, event_streams, event_outbox, event_log CASCADE"
    )
    const env = {
      HERALD_BROKER: broker,
      REDIS_URL: broker === "redis" && redis !== undefined ? `${redis.url}/${redisDb}` : undefined
    }
    const servers: Array<HeraldProcess> = []
    for (let i = 0; i < n; i++) servers.push(yield* heraldProcess(db.url, { args: SERVER, env }))
    const { projectIds, token } = yield* userWithProjects(servers[0]!, "fleet", settings.projects)
    const clients = yield* Effect.forEach(
      servers.flatMap((s) => Array.from({ length: settings.clients }, () => s)),
      (s) => subscriber(s.port, token)
    )
    yield* attempt("waiting for every client's heads frame", async () => {
      for (const c of clients) if (!(await c.waitFor("heads", 1, 10_000))) throw new Error("no heads frame")
    })
    const script = yield* writeWrkScript(yield* tempDir, projectIds, token)
    const connections = split(settings.connections, n)

    // Warm-up, then the clients catch up with it before the measured load.
    const warm = yield* load(script, servers, connections, WARMUP_SECONDS)
    yield* allReceived(clients, clients.map(() => created(warm)))
    const before = received(clients)

    const started = performance.now()
    const results = yield* load(script, servers, connections, settings.seconds)
    const loadEnded = performance.now()
    const posts = created(results)
    const done = yield* allReceived(clients, before.map((b) => b + posts))
    const run: Run = {
      broker,
      nodes: n,
      connections,
      clients: clients.length,
      posts,
      loadSeconds: results.reduce((m, r) => Math.max(m, r.seconds), 0),
      delivered: posts * clients.length,
      seconds: (done - started) / 1000,
      drainSeconds: (done - loadEnded) / 1000,
      non201: results.reduce((k, r) => k + r.non201 + r.errors.connect + r.errors.read + r.errors.write, 0)
    }
    yield* progress(
      `${broker} × ${n}: ${count(run.posts / run.loadSeconds)} posts/s, ${count(run.delivered / run.seconds)} ` +
        `delivered/s to ${run.clients} clients (last frame ${fixed(run.drainSeconds)} s after the load)`
    )
    return run
  }))

const rate = (r: Run | undefined) => (r === undefined ? NaN : r.delivered / r.seconds)

const fleetTable = (runs: ReadonlyArray<Run>, settings: Settings, redisVersion: string, wrkVersion: string) => {
  const find = (broker: Broker, n: number) => runs.find((r) => r.broker === broker && r.nodes === n)
  const first = settings.nodes[0]!
  const rows = runs.map((r) => [
    r.broker,
    String(r.nodes),
    r.connections.join("+"),
    String(r.clients),
    count(r.posts / r.loadSeconds),
    count(rate(r)),
    fixed(r.drainSeconds),
    ratio(rate(r), rate(find(r.broker, first))),
    r.broker === "redis" ? ratio(rate(r), rate(find("postgres", r.nodes))) : "",
    String(r.non201)
  ])
  return table(
    [
      `fleet: events delivered end to end by ${settings.nodes.join(", ")} server processes on one PostgreSQL, ` +
      `${settings.brokers.join(" and ")} broker, ${settings.seconds} s of load per run`,
      `compiled servers (node packages/server/dist/main.js) as their own processes; load average ${loadAverage()}`
    ],
    [
      "broker",
      "nodes",
      "wrk -c",
      "clients",
      "posts/s",
      "delivered/s",
      "drain s",
      `vs ${first} node${first === 1 ? "" : "s"}`,
      "redis/postgres",
      "errors"
    ],
    rows,
    [
      `Load: one wrk -t1 per node (${wrkVersion}), ${settings.connections} connections in all split over the ` +
      `nodes (wrk -c), POST round-robin`,
      `  over ${settings.projects} projects of one user for ${settings.seconds} s, after a ${WARMUP_SECONDS} s ` +
      `warm-up that is not counted. posts/s = 201s / wrk's seconds.`,
      `Clients: ${settings.clients} per node, GET /api/stream (every project of the user) read by this process; ` +
      `each must receive every post, whichever node took it.`,
      `delivered/s = the run's posts × clients (message.created frames needed) / seconds from the ` +
      `load's start to the last client`,
      `  having them all; drain s = that last moment less the load's end. vs N node = delivered/s against the ` +
      `same broker's first fleet size;`,
      `  redis/postgres = redis delivered/s against postgres's at the same fleet size. errors = non-201 answers ` +
      `and socket errors.`,
      `Redis: ${redisVersion}, no persistence, on 127.0.0.1; postgres broker: NOTIFY/LISTEN on the same ` +
      `PostgreSQL. Every process shares the`,
      `  machine's cores (PostgreSQL, Redis, the servers, wrk, the clients): compare the ratios, not the rates.`
    ]
  )
}

const bench = Effect.gen(function*() {
  const settings = yield* Settings
  const started = performance.now()
  const wrkVersion = (yield* ensureTool("wrk", "wrk", ["-v"], [0, 1])).split(" [")[0]!
  const redisVersion = settings.brokers.includes("redis")
    ? (yield* ensureTool("redis-server", "redis-server", ["--version"])).split(" sha=")[0]!
    : "-"
  yield* Console.error("fleet: building the server (node scripts/build.mjs)…")
  yield* buildServer
  yield* Console.error("fleet: starting an embedded PostgreSQL (durable settings)…")
  const db = yield* embeddedCluster
  yield* migrate(db.url)
  const redis = settings.brokers.includes("redis")
    ? yield* Effect.acquireRelease(
      attempt("starting redis-server", () => startRedis()),
      (r) => Effect.promise(() => r.stop())
    )
    : undefined
  const runs: Array<Run> = []
  for (const n of settings.nodes) {
    for (const broker of settings.brokers) {
      runs.push(yield* fleetRun(db, redis, runs.length + 1, broker, n, settings))
    }
  }
  yield* Console.log(fleetTable(runs, settings, redisVersion, wrkVersion))
  yield* Console.log(`\nfleet: ${((performance.now() - started) / 1000).toFixed(0)} s in all`)
  const errors = runs.reduce((k, r) => k + r.non201, 0)
  if (errors > 0) {
    return yield* new BenchError({ message: `${errors} posts got no 201: the figures are not to be trusted` })
  }
}).pipe(
  withinBudget(Duration.minutes(15)),
  Effect.scoped,
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

export default bench
