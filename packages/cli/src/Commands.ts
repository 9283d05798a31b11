import { Args, Command, Options } from "@effect/cli"
import { cursors } from "./commands/Cursors.js"
import { eventlog } from "./commands/EventLog.js"
import { eventCommands } from "./commands/Events.js"
import { lazy } from "./commands/Lazy.js"
import { outbox } from "./commands/Outbox.js"
import { rollups } from "./commands/Rollups.js"
import { tokens } from "./commands/Tokens.js"
import { worker } from "./commands/Worker.js"

/**
 * Every `herald` command: names, arguments and help here and in `commands/`; what each does lives
 * in `run/`, loaded only when the command runs.
 */

const run = lazy(() => import("./run/Users.js"))

const json = Options.boolean("json").pipe(Options.withDescription("print JSON for scripts instead of text"))

const migrate = Command.make("migrate", { json }, (o) => run((m) => m.migrate(o))).pipe(
  Command.withDescription("apply pending migrations")
)

const name = Args.text({ name: "name" }).pipe(Args.withDescription("the user's display name"))

const createUser = Command.make("create", { name, json }, (o) => run((m) => m.createUser(o))).pipe(
  Command.withDescription("create a user and print its id and token")
)

const users = Command.make("users").pipe(
  Command.withDescription("manage users"),
  Command.withSubcommands([createUser])
)

export const herald = Command.make("herald").pipe(
  Command.withDescription(
    "Herald operator CLI: works directly against the database (worker: against a running server)"
  ),
  Command.withSubcommands([migrate, users, tokens, outbox, ...eventCommands, eventlog, rollups, cursors, worker])
)
