import { Args, Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"

const run = lazy(() => import("../run/Outbox.js"))

export const jsonOption = Options.boolean("json").pipe(
  Options.withDescription("print JSON for scripts instead of a table")
)

const watch = Options.boolean("watch").pipe(Options.withDescription("refresh every 2 seconds until interrupted"))

const stats = Command.make("stats", { json: jsonOption, watch }, (o) => run((m) => m.stats(o))).pipe(
  Command.withDescription("counts by status, oldest pending age, materializer lag, dead count")
)

const status = Options.choice("status", ["pending", "published", "dead"]).pipe(Options.optional)
const stream = Options.text("stream").pipe(Options.optional, Options.withDescription("e.g. project:<projectId>"))
const type = Options.text("type").pipe(Options.optional, Options.withDescription("e.g. message.created"))
const limit = Options.integer("limit").pipe(Options.withDefault(50))

const list = Command.make("list", { json: jsonOption, status, stream, type, limit }, (o) => run((m) => m.list(o))).pipe(
  Command.withDescription("outbox rows, newest first")
)

const eventId = Args.text({ name: "eventId" })

const show = Command.make("show", { json: jsonOption, eventId }, (o) => run((m) => m.show(o))).pipe(
  Command.withDescription("one event with its delivery history fields")
)

const ids = Args.text({ name: "eventId" }).pipe(Args.repeated)
const allDead = Options.boolean("all-dead").pipe(Options.withDescription("retry every dead event"))

const retry = Command.make("retry", { json: jsonOption, ids, allDead }, (o) => run((m) => m.retry(o))).pipe(
  Command.withDescription("put dead events back to pending (a fresh attempt budget, due now)")
)

const olderThan = Options.text("older-than").pipe(Options.withDescription("e.g. 7d, 12h, 30m"))

const prune = Command.make("prune", { json: jsonOption, olderThan }, (o) => run((m) => m.prune(o))).pipe(
  Command.withDescription("delete outbox rows that are published, materialized and older than a duration")
)

export const outbox = Command.make("outbox").pipe(
  Command.withDescription("inspect and repair the delivery queue"),
  Command.withSubcommands([stats, list, show, retry, prune])
)
