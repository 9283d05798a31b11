import { HttpServer } from "@effect/platform"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { ConfigError, Console, Effect, Layer, Logger } from "effect"
import { AppConfig, formatConfigError } from "./config/AppConfig.js"
import { DatabaseLive } from "./db/Database.js"
import { seedDemo } from "./DemoSeed.js"
import { NodeServerLive } from "./http/Server.js"
import { serverLayer } from "./Server.js"

const announce = Effect.gen(function*() {
  const config = yield* AppConfig
  yield* seedDemo
  const base = `http://${config.host}:${config.port}`
  yield* Console.log(`Herald is up: web client at ${base}/ · API docs at ${base}/docs`)
})

/** The layer graph: config → database → request path → HTTP. */
export const ServerLive = Layer.effectDiscard(announce).pipe(
  Layer.provideMerge(serverLayer(NodeServerLive.pipe(HttpServer.withLogAddress))),
  Layer.provide(DatabaseLive),
  Layer.provide(NodeContext.layer)
)

const LoggingLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (c) =>
    Layer.merge(
      c.logFormat === "json" ? Logger.json : Logger.pretty,
      Logger.minimumLogLevel(c.logLevel)
    ))
)

/** Start-up failures a person can act on: one line on stderr, exit 1, no stack trace. */
const fatal = (line: string) => Effect.zipRight(Console.error(line), Effect.sync(() => process.exit(1)))

const program = Layer.launch(ServerLive.pipe(Layer.provide(LoggingLive), Layer.provideMerge(AppConfig.layer))).pipe(
  Effect.catchIf(ConfigError.isConfigError, (error) => fatal(formatConfigError(error))),
  Effect.catchTags({
    DatabaseStartError: (error) => fatal(`Cannot start the embedded PostgreSQL: ${error.message}`),
    SqlError: (error) => fatal(`Cannot use the database: ${error.message}${error.cause instanceof Error ? `: ${error.cause.message}` : ""}`),
    ServeError: (error) => fatal(`Cannot serve HTTP: ${error.cause instanceof Error ? error.cause.message : String(error.cause)}`)
  })
)

NodeRuntime.runMain(program)
