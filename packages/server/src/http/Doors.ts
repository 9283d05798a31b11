import * as HttpApiError from "@effect/platform/HttpApiError"
import { Effect, Schema } from "effect"
import type { ServerResponse } from "node:http"

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
  e._tag === "Unauthorized" ? 401 : e._tag === "NotFound" ? 404 : 400

/** A JSON answer, unless the response is already under way or gone. */
export const answer = (res: ServerResponse, code: number, body: unknown) => {
  if (res.headersSent || res.destroyed) return
  const json = JSON.stringify(body)
  res.writeHead(code, { "content-type": "application/json", "content-length": Buffer.byteLength(json) })
  res.end(json)
}

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
