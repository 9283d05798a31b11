import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Api, Errors } from "@herald/domain"
import { Cache, Duration, Effect, Exit, Layer, Option, Redacted } from "effect"
import { UsersRepo } from "../chat/UsersRepo.js"

const unauthorized = (message: string) => new Errors.Unauthorized({ message })

const make = Effect.gen(function*() {
    const users = yield* UsersRepo
    // Every request authenticates; a short-lived cache saves a database round trip per request.
    // Tokens are never revoked today, so the only staleness is an unknown token looked up again.
    const cache = yield* Cache.makeWith({
      capacity: 10_000,
      lookup: (token: string) => users.findByToken(Redacted.make(token)),
      timeToLive: (exit) => Exit.isSuccess(exit) && Option.isSome(exit.value) ? Duration.seconds(30) : Duration.zero
    })
    const lookup = (token: Redacted.Redacted) =>
      cache.get(Redacted.value(token)).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(unauthorized("invalid bearer token")),
          onSome: Effect.succeed
        }))
      )
    return {
      // The platform strips the first 7 characters whatever they are; insist on the Bearer scheme.
      bearer: (token: Redacted.Redacted) =>
        Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
          /^Bearer [^\s]/i.test(request.headers.authorization ?? "")
            ? lookup(token)
            : Effect.fail(unauthorized("missing bearer token: send Authorization: Bearer <token>"))),
      accessToken: (token: Redacted.Redacted) =>
        Redacted.value(token).length === 0
          ? Effect.fail(unauthorized("missing token: send Authorization: Bearer <token> or ?access_token=<token>"))
          : lookup(token)
    }
  })

/** Bearer-token authentication: provides `CurrentUser` to every endpoint of a protected group. */
export const AuthenticationLive = Layer.effect(Api.Authentication, Effect.map(make, ({ bearer }) => ({ bearer })))

/** The same for the SSE endpoints, which also take `?access_token=` (EventSource sends no headers). */
export const StreamAuthenticationLive = Layer.effect(Api.StreamAuthentication, make)
