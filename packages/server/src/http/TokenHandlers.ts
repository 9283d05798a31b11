import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Api, Errors } from "@herald/domain"
import { DateTime, Duration, Effect, Either } from "effect"
import { parseExpiresIn, refusalMessage, TokensRepo } from "../chat/TokensRepo.js"
import { Limits } from "../limits/Limits.js"
import { Tokens } from "./Auth.js"
import { StreamTickets } from "./StreamTickets.js"

/** The caller's credential: the middleware always provides one to the API's handlers. */
const credentialOf = Effect.flatMap(Api.CurrentUser, (me) =>
  me.credential === undefined
    ? Effect.dieMessage("no credential on an authenticated request")
    : Effect.succeed({ me, credential: me.credential }))

/** Retry-After for a refused token: a live one frees its place when revoked (the caller's to do)… */
const TOKENS_RETRY_AFTER_LIVE = 60
/** … a revoked or expired one's row is deleted a day after it died. */
const TOKENS_RETRY_AFTER_ROWS = 3_600

/** `/api/me/tokens` and `/api/stream-tickets`. */
export const TokensLive = HttpApiBuilder.group(Api.HeraldApi, "tokens", (handlers) =>
  Effect.gen(function*() {
    const repo = yield* TokensRepo
    const tickets = yield* StreamTickets
    const tokens = yield* Tokens
    const limits = yield* Limits
    return handlers
      .handle(
        "list",
        () => Effect.flatMap(Api.CurrentUser, (me) => Effect.map(repo.list(me.id), (items) => ({ items })))
      )
      .handle("create", ({ payload }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          const expiresIn = payload.expiresIn === undefined || payload.expiresIn === null
            ? null
            : yield* Either.match(parseExpiresIn(payload.expiresIn), {
              onLeft: (message) => Effect.fail(new Errors.BadRequest({ message, field: "expiresIn" })),
              onRight: (d) => Effect.succeed(Duration.toMillis(d))
            })
          const label = payload.label === undefined || payload.label === null || payload.label === ""
            ? null
            : payload.label
          const created = yield* repo.create(me.id, { label, expiresInMs: expiresIn })
          if (created._tag === "Refused") {
            // The caller exists: the only refusals are the bounds (G11: a JSON 429, counted). A live
            // token frees its place when revoked; a dead one's row goes a day after it died.
            limits.refused("tokens")
            return yield* new Errors.TooManyRequests({
              message: refusalMessage(created.reason),
              limit: "tokens",
              retryAfter: created.reason === "too many live" ? TOKENS_RETRY_AFTER_LIVE : TOKENS_RETRY_AFTER_ROWS
            })
          }
          return new Api.CreatedToken({ id: created.id, token: created.token, expiresAt: created.expiresAt })
        }))
      .handle("revoke", ({ path }) =>
        Effect.flatMap(Api.CurrentUser, (me) =>
          Effect.flatMap(
            repo.revoke(path.tokenId, me.id),
            // Refused here at once; every node (this one's SSE connections too) learns of it by polling (Revocations.ts).
            (found) =>
              found ? tokens.forget([path.tokenId]) : Effect.fail(new Errors.NotFound({ message: "token not found" }))
          )))
      .handle("streamTicket", () =>
        Effect.gen(function*() {
          const { credential, me } = yield* credentialOf
          const issued = yield* tickets.issue(me.id, credential.tokenId)
          return new Api.StreamTicket({
            ticket: issued.ticket,
            expiresAt: DateTime.unsafeMake(issued.expiresAt)
          })
        }))
  }))
