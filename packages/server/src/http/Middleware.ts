import { HttpIncomingMessage, HttpMiddleware, HttpServerError, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Option } from "effect"

/** Requests are small JSON documents; a 10 000-character message fits many times over. */
export const MAX_BODY_BYTES = 256 * 1024

const errorJson = (status: number, _tag: string, message: string) =>
  HttpServerResponse.unsafeJson({ _tag, message }, { status })

/**
 * 413 for a declared length over the limit. A chunked body with no declared length is cut off
 * at the limit while it is read; the platform then closes the connection rather than answer.
 */
export const bodyLimit = HttpMiddleware.make((app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > MAX_BODY_BYTES) {
      return errorJson(413, "PayloadTooLarge", `request body is larger than ${MAX_BODY_BYTES} bytes`)
    }
    return yield* app.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(MAX_BODY_BYTES)))
  })
)

/**
 * Every error answers JSON with `_tag` and `message`: a body that is not JSON (the API builder
 * turns it into a defect), an unknown route, and — logged, with no details leaked — a defect.
 */
export const jsonErrors = HttpMiddleware.make((app) =>
  app.pipe(
    Effect.catchAll((e) =>
      HttpServerError.isServerError(e) && e._tag === "RouteNotFound"
        ? Effect.succeed(errorJson(404, "NotFound", `no route for ${e.request.method} ${e.request.url}`))
        : Effect.fail(e)
    ),
    Effect.catchAllDefect((defect) =>
      HttpServerError.isServerError(defect) && defect._tag === "RequestError"
        ? Effect.succeed(errorJson(400, "BadRequest", `the request body is not valid JSON: ${defect.message}`))
        : Effect.as(
          Effect.logError("unexpected failure", defect),
          errorJson(500, "InternalServerError", "internal error; the server log has the details")
        )
    )
  )
)

const redactUrl = (url: string) => url.replace(/access_token=[^&]*/g, "access_token=REDACTED")

/**
 * The access log: one line per response with method, URL and status — the URL with any
 * `?access_token=` redacted, so tokens never reach the logs.
 */
export const accessLog = HttpMiddleware.make((app) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    app.pipe(
      Effect.onExit((exit) =>
        Effect.annotateLogs(Effect.logInfo("Sent HTTP response"), {
          "http.method": request.method,
          "http.url": redactUrl(request.url),
          "http.status": exit._tag === "Success" ? exit.value.status : HttpServerError.causeResponseStripped(exit.cause)[0].status
        })
      ),
      Effect.withLogSpan("http")
    ))
)
