import { Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"
import { jsonOption } from "./Outbox.js"

const run = lazy(() => import("../run/EventLog.js"))

const partitions = Command.make("partitions", { json: jsonOption }, (o) => run((m) => m.partitions(o))).pipe(
  Command.withDescription("event_log's monthly partitions: range, rows, size; and where the log is held from")
)

const olderThan = Options.text("older-than").pipe(
  Options.withDescription("e.g. 90d, 12w: drop the partitions whose whole month is older than this")
)
const dryRun = Options.boolean("dry-run").pipe(Options.withDescription("show what would be dropped, drop nothing"))

/** What `HERALD_EVENT_LOG_RETENTION` does by itself, by hand. */
const drop = Command.make("drop", { json: jsonOption, olderThan, dryRun }, (o) => run((m) => m.drop(o))).pipe(
  Command.withDescription(
    "drop event_log partitions wholly older than a duration (the outbox keeps pending, dead and unmaterialized events)"
  )
)

export const eventlog = Command.make("eventlog").pipe(
  Command.withDescription("event_log's partitions and retention"),
  Command.withSubcommands([partitions, drop])
)
