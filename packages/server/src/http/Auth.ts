import { Api, Errors } from "@herald/domain"
import { Cache, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import { timingSafeEqual } from "node:crypto"
import { hashToken, UsersRepo } from "../chat/UsersRepo.js"
import { AppConfig } from "../config/AppConfig.js"
import { AuthorizationHeader } from "./AuthorizationHeader.js"

const unauthorized = (message: string) => new Errors.Unauthorized({ message })

/**
 * Bearer tokens → users, through one short-lived cache for every middleware: every request
 * authenticates, and the cache saves a database round trip per request. Tokens are never revoked
 * today, so the only staleness is an unknown token looked up again.
 */
export class Tokens extends Effect.Service<Tokens>()("Herald/Tokens", {
  effect: Effect.gen(function*() {
    const users = yield* UsersRepo
    const cache = yield* Cache.makeWith({
      capacity: 10_000,
      lookup: (token: string) => users.findByToken(Redacted.make(token)),
      timeToLive: (exit) => Exit.isSuccess(exit) && Option.isSome(exit.value) ? Duration.seconds(30) : Duration.zero
    })
    const user = (token: Redacted.Redacted) =>
      cache.get(Redacted.value(token)).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(unauthorized("invalid bearer token")),
          onSome: Effect.succeed
        }))
      )
    return { user } as const
  })
}) {}

/** The platform strips the header's first 7 characters whatever they are: insist on the Bearer scheme. */
const bearerScheme = Effect.flatMap(
  AuthorizationHeader,
  (authorization) =>
    /^Bearer [^\s]/i.test(authorization ?? "")
      ? Effect.void
      : Effect.fail(unauthorized("missing bearer token: send Authorization: Bearer <token>"))
)

/** Bearer-token authentication: provides `CurrentUser` to every endpoint of a protected group. */
export const AuthenticationLive = Layer.effect(
  Api.Authentication,
  Effect.map(
    Tokens,
    (tokens) => ({ bearer: (token: Redacted.Redacted) => Effect.zipRight(bearerScheme, tokens.user(token)) })
  )
)

/** The same for the SSE endpoints, which also take `?access_token=` (EventSource sends no headers). */
export const StreamAuthenticationLive = Layer.effect(
  Api.StreamAuthentication,
  Effect.map(Tokens, (tokens) => ({
    bearer: (token: Redacted.Redacted) => Effect.zipRight(bearerScheme, tokens.user(token)),
    accessToken: (token: Redacted.Redacted) =>
      Redacted.value(token).length === 0
        ? Effect.fail(unauthorized("missing token: send Authorization: Bearer <token> or ?access_token=<token>"))
        : tokens.user(token)
  }))
)

/** The admin API's token, compared by digest (equal length, constant time); 404 while it is unset. */
export const AdminAuthenticationLive = Layer.effect(
  Api.AdminAuthentication,
  Effect.map(AppConfig, ({ adminToken }) => ({
    bearer: (token: Redacted.Redacted) =>
      Option.match(adminToken, {
        onNone: () =>
          Effect.fail(new Errors.NotFound({ message: "admin API is disabled (HERALD_ADMIN_TOKEN is unset)" })),
        onSome: (expected) =>
          Effect.zipRight(
            bearerScheme.pipe(Effect.mapError(() => unauthorized("admin token required"))),
            timingSafeEqual(hashToken(Redacted.value(token)), hashToken(Redacted.value(expected)))
              ? Effect.void
              : Effect.fail(unauthorized("admin token required"))
          )
      })
  }))
)
