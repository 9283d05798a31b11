import { Api, Errors } from "@herald/domain"
import { Effect, Layer, Option, Redacted } from "effect"
import { UsersRepo } from "../chat/UsersRepo.js"

const unauthorized = (message: string) => new Errors.Unauthorized({ message })

/** Bearer-token authentication: provides `CurrentUser` to every endpoint of a protected group. */
export const AuthenticationLive = Layer.effect(
  Api.Authentication,
  Effect.gen(function*() {
    const users = yield* UsersRepo
    return {
      bearer: (token) =>
        Redacted.value(token).length === 0
          ? Effect.fail(unauthorized("missing bearer token: send Authorization: Bearer <token>"))
          : users.findByToken(token).pipe(
            Effect.orDie,
            Effect.flatMap(Option.match({
              onNone: () => Effect.fail(unauthorized("invalid bearer token")),
              onSome: Effect.succeed
            }))
          )
    }
  })
)
