import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as HttpServer from "@effect/platform/HttpServer"
import { ConfigError, Console, Effect, Layer, Logger, Option, Schedule } from "effect"
import * as v8 from "node:v8"
import { AppConfig, formatConfigError } from "./config/AppConfig.js"
import { DatabaseLive } from "./db/Database.js"
import { EmbeddedCluster } from "./db/EmbeddedPostgres.js"
import { seedDemo } from "./DemoSeed.js"
import { NodeServerLive } from "./http/HttpApp.js"
import { jsonLine, prettyLine, printLine } from "./observability/LogOutput.js"
import { TracingLive } from "./observability/Tracing.js"
import { serverLayer } from "./Server.js"

/**
 * Up: the demo seed and the start-up line. Built last, so its finalizer is the first to run on
 * shutdown: from then on a server starting on the same embedded data dir waits for this one to
 * stop its cluster, instead of attaching to a cluster about to go away.
 */
const announce = Effect.gen(function*() {
  const config = yield* AppConfig
  const embedded = yield* EmbeddedCluster
  yield* Effect.addFinalizer(() =>
    Option.match(embedded, { onNone: () => Effect.void, onSome: (c) => c.beginShutdown })
  )
  yield* seedDemo
  const base = `http://${config.host}:${config.port}`
  yield* printLine(`Herald is up: web client at ${base}/ · API docs at ${base}/docs`)
})

/**
 * `npm start` is not a supervisor: npm can go away without passing a signal on (killed, its
 * terminal closed), which would leave the server and its cluster running. Launched by npm, the
 * server follows its launcher: once its parent is gone it shuts down as on SIGTERM.
 */
const FollowLauncherLive = Layer.scopedDiscard(Effect.gen(function*() {
  if (process.env.npm_lifecycle_event === undefined) return
  const launcher = process.ppid
  yield* Effect.sync(() => process.ppid !== launcher).pipe(
    Effect.repeat({ schedule: Schedule.spaced("500 millis"), until: (gone) => gone }),
    Effect.andThen(() => process.kill(process.pid, "SIGTERM")),
    Effect.forkScoped
  )
}))

/**
 * V8's heap policy for a server that holds many connections: the old generation may grow only
 * HERALD_HEAP_GROWTH_PERCENT past what the last full collection kept. V8's own factor (up to 4×
 * while allocation is fast) let the garbage of a reconnect storm's openings — promoted because each
 * opening waits on the database while hundreds of others run — sit in the heap, and in RSS, for
 * minutes after the storm: ~21 KB per idle `/api/stream` connection instead of ~11
 * (docs/benchmarks.md, "sse"). Read by V8 at each full collection, so setting it at start-up holds.
 */
const HeapPolicyLive = Layer.effectDiscard(Effect.map(AppConfig, ({ heapGrowthPercent }) => {
  if (heapGrowthPercent > 0) v8.setFlagsFromString(`--heap-growing-percent=${heapGrowthPercent}`)
}))

/** The layer graph: config → database → request path → HTTP. */
export const ServerLive = Layer.scopedDiscard(announce).pipe(
  Layer.merge(FollowLauncherLive),
  Layer.merge(HeapPolicyLive),
  Layer.provideMerge(serverLayer(NodeServerLive.pipe(HttpServer.withLogAddress))),
  Layer.provide(DatabaseLive),
  Layer.provide(NodeContext.layer)
)

const LoggingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (c) =>
    Layer.merge(
      Logger.replace(Logger.defaultLogger, c.logFormat === "json" ? jsonLine : prettyLine),
      Logger.minimumLogLevel(c.logLevel)
    ))
)

/** Start-up failures a person can act on: one line on stderr, exit 1, no stack trace. */
const fatal = (line: string) => Effect.zipRight(Console.error(line), Effect.sync(() => process.exit(1)))

const program = Layer.launch(
  ServerLive.pipe(Layer.provide(LoggingLive), Layer.provide(TracingLive), Layer.provideMerge(AppConfig.layer))
).pipe(
  Effect.catchIf(ConfigError.isConfigError, (error) => fatal(formatConfigError(error))),
  Effect.catchTags({
    DatabaseStartError: (error) => fatal(`Cannot start the embedded PostgreSQL: ${error.message}`),
    SqlError: (error) =>
      fatal(
        `Cannot use the database: ${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ""}`
      ),
    RedisUnavailable: (error) => fatal(error.message),
    SchemaTooNew: (error) => fatal(`Cannot use the database: ${error.message}`),
    MigrationFailed: (error) => fatal(`Cannot migrate the database: ${error.message}`),
    ServeError: (error) =>
      fatal(`Cannot serve HTTP: ${error.cause instanceof Error ? error.cause.message : String(error.cause)}`)
  })
)

NodeRuntime.runMain(program, { disablePrettyLogger: true })
