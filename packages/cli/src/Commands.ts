import { Args, Command, Options } from "@effect/cli"
import { UsersRepo } from "@herald/server/chat/UsersRepo"
import { runMigrations } from "@herald/server/db/Migrations"
import { Console, Effect, Redacted } from "effect"
import { eventCommands } from "./commands/Events.js"
import { storableText } from "./commands/Input.js"
import { outbox } from "./commands/Outbox.js"
import { CliDatabaseLive } from "./Database.js"
import { CliError } from "./Render.js"

const json = Options.boolean("json").pipe(Options.withDescription("print JSON for scripts instead of text"))

const migrate = Command.make("migrate", { json }, ({ json }) =>
  Effect.gen(function*() {
    const applied = yield* runMigrations
    const names = applied.map(([id, name]) => `${String(id).padStart(4, "0")}_${name}`)
    yield* json
      ? Console.log(JSON.stringify({ applied: names }))
      : Console.log(names.length === 0 ? "database is up to date" : `applied: ${names.join(", ")}`)
  })).pipe(Command.withDescription("apply pending migrations"), Command.provide(CliDatabaseLive))

const name = Args.text({ name: "name" }).pipe(Args.withDescription("the user's display name"))

const createUser = Command.make("create", { name, json }, ({ json, name }) =>
  Effect.gen(function*() {
    const trimmed = (yield* storableText("name", name)).trim()
    if (trimmed.length === 0 || trimmed.length > 200) {
      return yield* new CliError({ message: "name must be 1 to 200 characters" })
    }
    yield* runMigrations
    const users = yield* UsersRepo
    const { token, user } = yield* users.create(trimmed)
    yield* json
      ? Console.log(JSON.stringify({ id: user.id, name: user.name, token: Redacted.value(token) }))
      : Console.log(`id:    ${user.id}\nname:  ${user.name}\ntoken: ${Redacted.value(token)}  (shown once; only its hash is stored)`)
  })).pipe(
    Command.withDescription("create a user and print its id and token"),
    Command.provide(UsersRepo.Default),
    Command.provide(CliDatabaseLive)
  )

const users = Command.make("users").pipe(
  Command.withDescription("manage users"),
  Command.withSubcommands([createUser])
)

export const herald = Command.make("herald").pipe(
  Command.withDescription("Herald operator CLI: works directly against the database"),
  Command.withSubcommands([migrate, users, outbox, ...eventCommands])
)
