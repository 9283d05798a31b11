import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import { Context, Effect } from "effect"

/**
 * The request's `Authorization` header, whole. The platform hands a bearer middleware only what
 * follows the header's first 7 characters, whatever they were; the implementations (Auth.ts) read
 * the scheme here — set by the app for each request (`provideAuthorizationHeader`) and by the doors
 * from Node's request — so both fronts run the same implementation without the platform's request.
 */
export class AuthorizationHeader extends Context.Reference<AuthorizationHeader>()("Herald/AuthorizationHeader", {
  defaultValue: (): string | undefined => undefined
}) {}

/** The app's side: each request's header, for the authentication middleware under it. */
export const provideAuthorizationHeader = HttpMiddleware.make((app) =>
  Effect.flatMap(
    HttpServerRequest.HttpServerRequest,
    (request) => Effect.provideService(app, AuthorizationHeader, request.headers.authorization)
  )
)
