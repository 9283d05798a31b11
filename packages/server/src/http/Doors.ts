import * as HttpApiError from "@effect/platform/HttpApiError"
import type { Errors } from "@herald/domain"
import { Effect, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ClientAddress } from "../limits/Limits.js"

/** What the doors (SseDoor, PostDoor) share: the API's decoding and answers, below the HTTP app. */

/** Decodes with an API schema; a failure is the API's own 400 (HttpApiDecodeError). */
export const decode = <A, I>(schema: Schema.Schema<A, I>, input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.catchTag("ParseError", (error) => Effect.flip(HttpApiError.HttpApiDecodeError.fromParseError(error)))
  )

/** The body the API answers an HttpApiDecodeError with. */
export const decodeErrorBody = (e: HttpApiError.HttpApiDecodeError) => ({
  issues: e.issues,
  message: e.message,
  _tag: e._tag
})

/** The status the API answers each of the doors' failures with. */
export const failureStatus = (e: { readonly _tag: string }) =>
  e._tag === "Unauthorized" ? 401 : e._tag === "NotFound" ? 404 : e._tag === "TooManyRequests" ? 429 : 400

/** The API's body for a TooManyRequests: every field of the error, as the API encodes it. */
export const tooManyRequestsBody = (e: Errors.TooManyRequests) => ({
  _tag: e._tag,
  message: e.message,
  limit: e.limit,
  retryAfter: e.retryAfter
})

/**
 * A JSON answer, unless the response is already under way or gone; a 429's `retryAfter` is sent
 * as `Retry-After` too, as the HTTP app does (Middleware.ts `retryAfter`).
 */
export const answer = (res: ServerResponse, code: number, body: unknown) => {
  if (res.headersSent || res.destroyed) return
  const json = JSON.stringify(body)
  const wait = code === 429 && typeof body === "object" && body !== null && "retryAfter" in body
    ? { "retry-after": String(body.retryAfter) }
    : {}
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(json), ...wait })
  res.end(json)
}

/** The client address of a door's request, for the limits (Limits.ts `ClientAddress`). */
export const fromClient = (req: IncomingMessage) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  req.socket.remoteAddress === undefined ? self : Effect.provideService(self, ClientAddress, req.socket.remoteAddress)

/**
 * The end of every door's request, as the HTTP app ends its own: a defect is logged and answers
 * the API's 500; then the access-log line (method, URL as given, status).
 */
export const finished =
  (res: ServerResponse, method: string, url: string) => <E, R>(self: Effect.Effect<number, E, R>) =>
    self.pipe(
      Effect.catchAllDefect((defect) =>
        Effect.as(
          Effect.zipRight(
            Effect.logError("unexpected failure", defect),
            Effect.sync(() =>
              answer(res, 500, {
                _tag: "InternalServerError",
                message: "internal error; the server log has the details"
              })
            )
          ),
          500
        )
      ),
      Effect.tap((code) =>
        Effect.annotateLogs(Effect.logInfo("Sent HTTP response"), {
          "http.method": method,
          "http.url": url,
          "http.status": code
        })
      ),
      Effect.withLogSpan("http")
    )
