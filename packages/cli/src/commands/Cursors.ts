import { Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"
import { jsonOption } from "./Outbox.js"

const run = lazy(() => import("../run/Cursors.js"))

const olderThan = Options.text("older-than").pipe(
  Options.optional,
  Options.withDescription(
    "e.g. 30d, 12h: delete the bases unused for this long (default: HERALD_CURSOR_RETENTION, 30d)"
  )
)

/** What `HERALD_CURSOR_RETENTION` does by itself, by hand. */
const prune = Command.make("prune", { json: jsonOption, olderThan }, (o) => run((m) => m.prune(o))).pipe(
  Command.withDescription(
    "delete the cursor bases of GET /api/stream unused for a duration (a client resuming from one gets CursorExpired and starts over)"
  )
)

export const cursors = Command.make("cursors").pipe(
  Command.withDescription("the multiplexed stream's cursor bases"),
  Command.withSubcommands([prune])
)
