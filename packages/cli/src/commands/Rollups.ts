import { Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"
import { jsonOption } from "./Outbox.js"

const run = lazy(() => import("../run/Rollups.js"))

const since = Options.text("since").pipe(
  Options.optional,
  Options.withDescription(
    "only the hours from this one on: an ISO-8601 time with a zone (2026-12-01T13:00Z), a bare date (UTC midnight) " +
      "or a duration back from now (24h, 7d); rounded down to its hour. Default: every hour"
  )
)

/** Re-derives the analytics rollups from event_log, safely while servers run (one month per transaction). */
const rebuild = Command.make("rebuild", { json: jsonOption, since }, (o) => run((m) => m.rebuild(o))).pipe(
  Command.withDescription(
    "re-derive the hourly analytics rollups from event_log (all, or from --since on), while servers run and materialize"
  )
)

export const rollups = Command.make("rollups").pipe(
  Command.withDescription("event_log's hourly rollups behind analytics"),
  Command.withSubcommands([rebuild])
)
