import { NodeRuntime } from "@effect/platform-node"
import type { Effect } from "effect"

/**
 * `npm run bench -- <name>`: one benchmark per run. Each bench module's default export is a
 * self-contained Effect (it starts and stops whatever it needs); modules load lazily so one
 * bench's dependencies never slow another down.
 */
interface Bench {
  readonly about: string
  readonly load: () => Promise<{ readonly default: Effect.Effect<void, unknown> }>
}

const benches: Record<string, Bench> = {
  write: {
    about: "posts/s of the compiled server as its own process under wrk at 1, 8, 32 connections (one SSE " +
      "subscriber on), each next to pgbench's bare post transaction on the same PostgreSQL; CPU/post of the " +
      "server and of PostgreSQL from /proc (also BENCH_STREAMS=1 for one hot stream, BENCH_PROFILE=1: the server under --cpu-prof, top functions)",
    load: () => import("./write.js")
  },
  deliver: {
    about: "post → SSE receipt against the post's own 201 (compiled server as its own process, quiet and under " +
      "wrk -c8 on other projects), publisher drain rate vs raw SQL and Graphile Worker (also BENCH_DELIVER_POSTS, " +
      "BENCH_BACKLOG, BENCH_GRAPHILE_CONCURRENCY, BENCH_PARTS=latency,drain)",
    load: () => import("./deliver.js")
  },
  analytics: {
    about:
      "analytics p50/p99 over HTTP on 10M events (hourly rollups) (floor: /health/live); a busy project (100k events " +
      "this hour) against a quiet one, range ending now; materializer rows/s vs raw SQL " +
      "(also BENCH_EVENTS, BENCH_REQUESTS, BENCH_OUTBOX_ROWS, BENCH_PARTS=analytics,busy,materializer)",
    load: () => import("./analytics.js")
  },
  startup: {
    about:
      "idle server RSS, `herald --help` and `herald outbox stats --json` wall time, next to `node -e 0` (also BENCH_RUNS)",
    load: () => import("./startup.js")
  },
  sse: {
    about: "server RSS per idle SSE connection at 1k/5k/10k (per-stream and /api/stream) and fan-out p50/p99 to all, " +
      "each next to a plain node:http floor (also BENCH_SSE_COUNTS, BENCH_SSE_ENDPOINTS, BENCH_SSE_CLIENTS, " +
      "BENCH_SSE_QUICK; see sse.ts)",
    load: () => import("./sse.js")
  },
  signals: {
    about: "live drafts next to the event path: one user's 1 000 idle GET /api/stream connections, a worker " +
      "streaming a 2 000-character reply as 200 draft updates; post → SSE p99 with drafts over without (same run, " +
      "alternating rounds), server CPU per update, draft frames per connection (also BENCH_SIGNALS_CONNECTIONS, " +
      "BENCH_SIGNALS_CLIENTS, BENCH_SIGNALS_ROUNDS, BENCH_SIGNALS_POST_RATE)",
    load: () => import("./signals.js")
  },
  fleet: {
    about:
      "events/s delivered end to end to SSE clients on every node by 1, 2, 3 compiled servers on one PostgreSQL, " +
      "redis broker next to postgres broker, under wrk (also BENCH_FLEET_NODES, BENCH_FLEET_BROKERS, " +
      "BENCH_FLEET_CLIENTS, BENCH_FLEET_CONNECTIONS, BENCH_FLEET_PROJECTS)",
    load: () => import("./fleet.js")
  },
  migrate: {
    about: "`herald migrate` from 0006 to the newest on 1M events while posts, an old materializer, publisher and " +
      "reader keep going: the longest wait of each against 1 s (also BENCH_EVENTS)",
    load: () => import("./migrate.js")
  },
  cli: {
    about: "herald materialize / replay events/s on 100k events, each next to raw SQL (also BENCH_EVENTS)",
    load: () => import("./cli.js")
  }
}

const usage = () =>
  [
    "usage: npm run bench -- <name>",
    "",
    ...Object.entries(benches).map(([name, bench]) => `  ${name.padEnd(10)} ${bench.about}`),
    "",
    "environment: BENCH_SECONDS  measured seconds per run (default 5)"
  ].join("\n")

const name = process.argv[2]
const bench = name === undefined ? undefined : benches[name]
if (bench === undefined) {
  if (name !== undefined && name !== "--help" && name !== "-h") console.error(`unknown bench: ${name}\n`)
  console.error(usage())
  process.exitCode = name === "--help" || name === "-h" ? 0 : 2
} else {
  NodeRuntime.runMain((await bench.load()).default)
}
