import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Api, Errors } from "@herald/domain"
import { Cache, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import { timingSafeEqual } from "node:crypto"
import { hashToken, UsersRepo } from "../chat/UsersRepo.js"
import { AppConfig } from "../config/AppConfig.js"
import { Limits } from "../limits/Limits.js"

const unauthorized = (message: string) => new Errors.Unauthorized({ message })

/**
 * How long an unknown token is remembered as unknown: a flood of bad tokens (the same one again and
 * again) is then not a flood of SELECTs. A token is random, so none is created during that time.
 */
const UNKNOWN_TOKEN_TTL = Duration.seconds(2)

/**
 * Bearer tokens → users, through one short-lived cache for every middleware: every request
 * authenticates, and the cache saves a database round trip per request. Tokens are never revoked
 * today, so the only staleness is an unknown token looked up again.
 */
export class Tokens extends Effect.Service<Tokens>()("Herald/Tokens", {
  effect: Effect.gen(function*() {
    const users = yield* UsersRepo
    const limits = yield* Limits
    const cache = yield* Cache.makeWith({
      capacity: 10_000,
      lookup: (token: string) => users.findByToken(Redacted.make(token)),
      timeToLive: (exit) => Exit.isSuccess(exit) && Option.isSome(exit.value) ? Duration.seconds(30) : UNKNOWN_TOKEN_TTL
    })
    const lookup = (token: string) =>
      cache.get(token).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(unauthorized("invalid bearer token")),
          onSome: Effect.succeed
        }))
      )
    // Limits (SPEC §5): a token already known good costs nothing; any other is looked up within the
    // client address's budget of failed authentications (Limits.authentication).
    const user = (token: Redacted.Redacted) =>
      Effect.flatMap(
        cache.getOptionComplete(Redacted.value(token)),
        (known) =>
          Option.isSome(known) && Option.isSome(known.value)
            ? Effect.succeed(known.value.value)
            : limits.authentication(lookup(Redacted.value(token)))
      )
    return { user } as const
  })
}) {}

/** The platform strips the header's first 7 characters whatever they are: insist on the Bearer scheme. */
const bearerScheme = Effect.flatMap(
  HttpServerRequest.HttpServerRequest,
  (request) =>
    /^Bearer [^\s]/i.test(request.headers.authorization ?? "")
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
  Effect.map(Effect.all([Tokens, Limits]), ([tokens, limits]) => ({
    bearer: (token: Redacted.Redacted) => Effect.zipRight(bearerScheme, tokens.user(token)),
    accessToken: (token: Redacted.Redacted) =>
      Redacted.value(token).length === 0
        // Tried after the header: an address the header's attempt found over its budget stays a 429.
        ? Effect.zipRight(
          limits.stillRefused,
          Effect.fail(unauthorized("missing token: send Authorization: Bearer <token> or ?access_token=<token>"))
        )
        : tokens.user(token)
  }))
)

/** The admin API's token, compared by digest (equal length, constant time); 404 while it is unset. */
export const AdminAuthenticationLive = Layer.effect(
  Api.AdminAuthentication,
  Effect.map(Effect.all([AppConfig, Limits]), ([{ adminToken }, limits]) => ({
    bearer: (token: Redacted.Redacted) =>
      Option.match(adminToken, {
        onNone: () =>
          Effect.fail(new Errors.NotFound({ message: "admin API is disabled (HERALD_ADMIN_TOKEN is unset)" })),
        onSome: (expected) =>
          Effect.zipRight(
            bearerScheme.pipe(Effect.mapError(() => unauthorized("admin token required"))),
            limits.authentication(Effect.suspend(() =>
              timingSafeEqual(hashToken(Redacted.value(token)), hashToken(Redacted.value(expected)))
                ? Effect.void
                : Effect.fail(unauthorized("admin token required"))
            ))
          )
      })
  }))
)
