import { Command, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { SqlError } from "@effect/sql/SqlError"
import { ConfigError, Console, Effect, Layer, Logger, LogLevel, Option } from "effect"
// The one deep import: the package entry would bring the database client into `herald --help`.
import { formatConfigError } from "@herald/server"
import { herald } from "./Commands.js"
import { helpPage, PlainOffTerminalLive } from "./Help.js"

const NAME = "herald"
const VERSION = "0.1.0"

const cli = Command.run(herald, { name: NAME, version: VERSION })

const causeMessage = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "message" in cause && typeof cause.message === "string" &&
    cause.message !== ""
    ? cause.message
    : typeof cause === "object" && cause !== null && "code" in cause
    ? String(cause.code)
    : undefined

/** One clear line on stderr and a non-zero exit; never a stack trace. */
const describe = (error: unknown): string => {
  if (ConfigError.isConfigError(error)) return formatConfigError(error)
  if (error instanceof SqlError) {
    // The database's own reason, and the likely fix when the schema is missing.
    const reason = causeMessage(error.cause)
    const hint = /relation .* does not exist/.test(reason ?? "")
      ? " (is the database migrated? run: herald migrate)"
      : ""
    return `herald: ${error.message}${reason ? `: ${reason}` : ""}${hint}`
  }
  if (typeof error === "object" && error !== null && "message" in error) {
    const e = error as { _tag?: string; message: string }
    return `herald: ${e.message}`
  }
  return `herald: ${String(error)}`
}

helpPage(herald.descriptor, NAME, VERSION, process.argv.slice(2)).pipe(
  Effect.flatMap(Option.match({ onNone: () => cli(process.argv), onSome: (page) => Console.log(page) })),
  Effect.catchAll((error) =>
    ValidationError.isValidationError(error)
      ? Effect.sync(() => process.exit(2)) // @effect/cli already printed the usage problem
      : Effect.zipRight(Console.error(describe(error)), Effect.sync(() => process.exit(1)))
  ),
  Effect.provide(Layer.mergeAll(NodeContext.layer, Logger.minimumLogLevel(LogLevel.Warning), PlainOffTerminalLive)),
  NodeRuntime.runMain({ disableErrorReporting: false })
)
