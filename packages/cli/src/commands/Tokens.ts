import { Args, Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"
import { jsonOption } from "./Outbox.js"

const run = lazy(() => import("../run/Tokens.js"))

const user = Args.text({ name: "user" }).pipe(Args.withDescription("the user's id"))

const list = Command.make("list", { json: jsonOption, user }, (o) => run((m) => m.list(o))).pipe(
  Command.withDescription("a user's live tokens: id, label, created, last used, expiry (never the secret)")
)

const label = Options.text("label").pipe(
  Options.withDescription("what the token is for, e.g. \"ci\" or \"laptop\""),
  Options.optional
)
const expiresIn = Options.text("expires-in").pipe(
  Options.withDescription("e.g. 30d, 12h, 90m (1 minute to 3650 days); without it the token never expires"),
  Options.optional
)

const create = Command.make("create", { json: jsonOption, user, label, expiresIn }, (o) => run((m) => m.create(o)))
  .pipe(Command.withDescription("a new token for a user; the secret is printed once (only its hash is stored)"))

const tokenId = Args.text({ name: "tokenId" }).pipe(Args.withDescription("the token's id (from tokens list)"))

const revoke = Command.make("revoke", { json: jsonOption, tokenId }, (o) => run((m) => m.revoke(o))).pipe(
  Command.withDescription("revoke a token: running servers refuse it, and end its streams, within 1 s")
)

export const tokens = Command.make("tokens").pipe(
  Command.withDescription("users' API tokens: list, create, revoke"),
  Command.withSubcommands([list, create, revoke])
)
