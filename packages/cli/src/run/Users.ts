import { Chat } from "@herald/domain"
import { runMigrations, UsersRepo } from "@herald/server"
import { Console, Effect, Layer, Redacted } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { decodeArgument } from "./Input.js"

/** What `herald migrate` and `herald users create` do; `Commands.ts` declares them. */

export const migrate = (o: { readonly json: boolean }) =>
  Effect.gen(function*() {
    const applied = yield* runMigrations
    const names = applied.map(([id, name]) => `${String(id).padStart(4, "0")}_${name}`)
    yield* o.json
      ? Console.log(JSON.stringify({ applied: names }))
      : Console.log(names.length === 0 ? "database is up to date" : `applied: ${names.join(", ")}`)
  }).pipe(Effect.provide(CliDatabaseLive))

export const createUser = (o: { readonly json: boolean; readonly name: string }) =>
  Effect.gen(function*() {
    // The rule of POST /api/admin/users: trimmed, 1 to 200 characters, storable text.
    const name = yield* decodeArgument(Chat.Name, o.name)
    yield* runMigrations
    const users = yield* UsersRepo
    const { token, user } = yield* users.create(name)
    yield* o.json
      ? Console.log(JSON.stringify({ id: user.id, name: user.name, token: Redacted.value(token) }))
      : Console.log(
        `id:    ${user.id}\nname:  ${user.name}\ntoken: ${Redacted.value(token)}  (shown once; only its hash is stored)`
      )
  }).pipe(Effect.provide(UsersRepo.Default.pipe(Layer.provideMerge(CliDatabaseLive))))
