import { Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"
import { jsonOption } from "./Outbox.js"

const run = lazy(() => import("../run/Events.js"))

const stream = Options.text("stream").pipe(
  Options.withDescription("project:<projectId> or workspace:<projectId>:<userId>")
)
const fromSeq = Options.integer("from-seq").pipe(Options.optional)
const toSeq = Options.integer("to-seq").pipe(Options.optional)
const dryRun = Options.boolean("dry-run").pipe(Options.withDescription("show what would be published, publish nothing"))

/**
 * Re-publishes a stream's range to the broker, page by page, from the database (outbox ∪
 * event_log). SSE clients drop what they already have by seq. Only the `postgres` broker reaches
 * running servers; with `memory` the publishes stay inside this process.
 */
const replay = Command.make(
  "replay",
  { json: jsonOption, stream, fromSeq, toSeq, dryRun },
  (o) => run((m) => m.replay(o))
).pipe(
  Command.withDescription("re-publish a range of a stream to the broker (clients de-duplicate by seq)")
)

const batchSize = Options.integer("batch-size").pipe(Options.withDefault(1_000))
const rebuild = Options.boolean("rebuild").pipe(
  Options.withDescription("copy everything the outbox still holds again (rows already in event_log are kept)")
)

/** Copies outbox → event_log now, idempotently; `--rebuild` re-derives the log from the outbox. */
const materialize = Command.make(
  "materialize",
  { json: jsonOption, batchSize, rebuild },
  (o) => run((m) => m.materialize(o))
).pipe(
  Command.withDescription("copy outbox rows into event_log now (idempotent)")
)

export const eventCommands = [replay, materialize] as const
