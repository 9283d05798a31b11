import { Api, Ids } from "@herald/domain"
import { parseExpiresIn, refusalMessage, runMigrations, TokensRepo, UsersRepo } from "@herald/server"
import { Console, DateTime, Duration, Effect, Either, Layer, Option } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { CliError, json, table } from "../Render.js"
import { decodeArgument } from "./Input.js"

/** What `herald tokens …` does; `commands/Tokens.ts` declares the commands. */

const TokensLive = Layer.mergeAll(TokensRepo.Default, UsersRepo.Default).pipe(Layer.provideMerge(CliDatabaseLive))

const iso = (d: DateTime.Utc | null) => d === null ? null : DateTime.formatIso(d)

const userId = (text: string) =>
  Effect.mapError(decodeArgument(Ids.UserId, text), () => new CliError({ message: `not a user id: "${text}"` }))

const existing = (id: Ids.UserId) =>
  Effect.flatMap(UsersRepo, (users) =>
    Effect.flatMap(
      users.exists(id),
      (found) => found ? Effect.void : Effect.fail(new CliError({ message: `no user has the id ${id}` }))
    ))

export const list = (o: { readonly json: boolean; readonly user: string }) =>
  Effect.gen(function*() {
    const id = yield* userId(o.user)
    yield* runMigrations
    yield* existing(id)
    const items = yield* Effect.flatMap(TokensRepo, (repo) => repo.list(id))
    if (o.json) {
      return yield* json({
        items: items.map((t) => ({
          id: t.id,
          label: t.label,
          createdAt: iso(t.createdAt),
          lastUsedAt: iso(t.lastUsedAt),
          expiresAt: iso(t.expiresAt)
        }))
      })
    }
    if (items.length === 0) return yield* Console.log("no live tokens")
    yield* table(
      ["id", "label", "created", "last used", "expires"],
      items.map((t) => [t.id, t.label ?? "-", iso(t.createdAt)!, iso(t.lastUsedAt) ?? "-", iso(t.expiresAt) ?? "never"])
    )
  }).pipe(Effect.provide(TokensLive))

export const create = (o: {
  readonly json: boolean
  readonly user: string
  readonly label: Option.Option<string>
  readonly expiresIn: Option.Option<string>
}) =>
  Effect.gen(function*() {
    const id = yield* userId(o.user)
    // The rules of POST /api/me/tokens.
    const label = Option.isSome(o.label) ? yield* decodeArgument(Api.TokenLabel, o.label.value) : ""
    const expiresIn = Option.isNone(o.expiresIn) ? null : yield* Either.match(
      parseExpiresIn(o.expiresIn.value, "--expires-in"),
      {
        onLeft: (message) => Effect.fail(new CliError({ message })),
        onRight: (d) => Effect.succeed(Duration.toMillis(d))
      }
    )
    yield* runMigrations
    const created = yield* Effect.flatMap(TokensRepo, (repo) =>
      repo.create(id, { label: label === "" ? null : label, expiresInMs: expiresIn }))
    if (created._tag === "Refused") {
      return yield* new CliError({
        message: created.reason === "unknown user" ? `no user has the id ${id}` : refusalMessage(created.reason)
      })
    }
    yield* o.json
      ? json({ id: created.id, token: created.token, expiresAt: iso(created.expiresAt) })
      : Console.log(
        `id:      ${created.id}\ntoken:   ${created.token}  (shown once; only its hash is stored)\nexpires: ${
          iso(created.expiresAt) ?? "never"
        }`
      )
  }).pipe(Effect.provide(TokensLive))

export const revoke = (o: { readonly json: boolean; readonly tokenId: string }) =>
  Effect.gen(function*() {
    const id = yield* Effect.mapError(
      decodeArgument(Ids.TokenId, o.tokenId),
      () => new CliError({ message: `not a token id: "${o.tokenId}"` })
    )
    yield* runMigrations
    const found = yield* Effect.flatMap(TokensRepo, (repo) => repo.revoke(id))
    if (!found) return yield* new CliError({ message: `no live token has the id ${id}` })
    yield* o.json
      ? json({ id, revoked: true })
      : Console.log(`revoked ${id}: running servers refuse it, and end its streams, within 1 s`)
  }).pipe(Effect.provide(TokensLive))
