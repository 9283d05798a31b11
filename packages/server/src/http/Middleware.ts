import * as HttpApp from "@effect/platform/HttpApp"
import * as HttpIncomingMessage from "@effect/platform/HttpIncomingMessage"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerError from "@effect/platform/HttpServerError"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Option, Predicate, Stream } from "effect"
import { ClientAddress } from "../limits/Limits.js"

/** Requests are small JSON documents; a 10 000-character message fits many times over. */
export const MAX_BODY_BYTES = 256 * 1024

/**
 * A chunked body past the limit is still read to its end, and dropped, up to this many bytes in
 * all: closing the socket while the client is still sending resets the connection, and the client
 * loses the 413. A client that sends more than this is cut off without an answer.
 */
export const MAX_DRAINED_BYTES = 4 * MAX_BODY_BYTES

const errorJson = (status: number, _tag: string, message: string) =>
  HttpServerResponse.unsafeJson({ _tag, message }, { status })

const payloadTooLarge = () => errorJson(413, "PayloadTooLarge", `request body is larger than ${MAX_BODY_BYTES} bytes`)

/**
 * A chunked body (no Content-Length) read whole, or `None` once it passed the limit. The
 * platform's own limit (`withMaxBodySize`) destroys the request when it trips, which closes the
 * socket before any answer can be written, so chunked bodies are counted here instead.
 */
const readChunked = (request: HttpServerRequest.HttpServerRequest) =>
  Effect.map(
    Stream.runFoldWhile(
      request.stream,
      { bytes: 0, chunks: [] as Array<Uint8Array> },
      (read) => read.bytes <= MAX_DRAINED_BYTES,
      (read, chunk) => {
        const bytes = read.bytes + chunk.length
        if (bytes <= MAX_BODY_BYTES) read.chunks.push(chunk)
        return { bytes, chunks: read.chunks }
      }
    ),
    ({ bytes, chunks }): Option.Option<Uint8Array> => {
      if (bytes > MAX_BODY_BYTES) return Option.none()
      const body = new Uint8Array(bytes)
      let offset = 0
      for (const chunk of chunks) {
        body.set(chunk, offset)
        offset += chunk.length
      }
      return Option.some(body)
    }
  )

/**
 * The request with its body already read: everything else (headers, URL, the response it is
 * answered on, which the Node server finds through the request) comes from the original, which
 * is why this is a prototype-derived object rather than a new request.
 */
const withReadBody = (
  request: HttpServerRequest.HttpServerRequest,
  body: Uint8Array
): HttpServerRequest.HttpServerRequest => {
  // As the platform reads a body: a byte-order mark is kept (and is not JSON).
  const text = Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8")
  const derived: HttpServerRequest.HttpServerRequest = Object.create(request, {
    text: { value: Effect.succeed(text) },
    json: {
      value: Effect.try({
        try: (): unknown => text === "" ? null : JSON.parse(text),
        catch: (cause) => new HttpServerError.RequestError({ request: derived, reason: "Decode", cause })
      })
    },
    arrayBuffer: { value: Effect.succeed(body.slice().buffer) },
    stream: { value: Stream.succeed(body) }
  })
  return derived
}

/**
 * 413 for a body over the limit: at once for a declared Content-Length; for a chunked body once
 * it is read past the limit (the rest drained, so the client reads the answer).
 */
export const bodyLimit = HttpMiddleware.make((app) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest.HttpServerRequest
    const declared = request.headers["content-length"]
    if (declared !== undefined) {
      if (Number(declared) > MAX_BODY_BYTES) return payloadTooLarge()
      return yield* app.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(MAX_BODY_BYTES)))
    }
    // With neither header an HTTP/1.1 request has no body.
    if (request.headers["transfer-encoding"] === undefined) return yield* app
    return yield* Effect.matchEffect(readChunked(request), {
      // The client broke off mid-body: there is most likely nobody left to read this.
      onFailure: () => Effect.succeed(errorJson(400, "BadRequest", "the request body could not be read")),
      onSuccess: Option.match({
        onNone: () => Effect.succeed(payloadTooLarge()),
        onSome: (body) => Effect.provideService(app, HttpServerRequest.HttpServerRequest, withReadBody(request, body))
      })
    })
  })
)

/** The message of the 400 for a body that is not JSON, on the app and the doors alike. */
export const invalidJsonMessage = (method: string, url: string) =>
  `the request body is not valid JSON: Decode error (${method} ${url})`

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
        ? Effect.succeed(errorJson(
          400,
          "BadRequest",
          defect.reason === "Decode"
            ? invalidJsonMessage(defect.request.method, defect.request.url)
            : `the request body could not be read: ${defect.message}`
        ))
        : Effect.as(
          Effect.logError("unexpected failure", defect),
          errorJson(500, "InternalServerError", "internal error; the server log has the details")
        )
    )
  )
)

/** A query parameter name (decoded, in any case) that may carry a credential: `access_token`, `ticket` and kin. */
const SECRET_NAME = /token|ticket|secret|password/i
/** A value that is one of our credentials, whatever its parameter: a token or a stream ticket. */
const SECRET_VALUE = /hrld_|hst_/i

const decodeComponent = (text: string): string | undefined => {
  try {
    return decodeURIComponent(text.replace(/\+/g, " "))
  } catch {
    return undefined
  }
}

/**
 * The URL for the logs, with the value of every parameter that may carry a credential redacted:
 * the name is compared as the server reads it (percent-decoded: `access%5Ftoken` is
 * `access_token`), in any case, and any value that is a token or ticket goes too. A query that
 * cannot be decoded is redacted whole: whatever it holds never reaches a log.
 */
export const redactUrl = (url: string) => {
  const q = url.indexOf("?")
  if (q < 0) return url
  const parts = url.slice(q + 1).split("&")
  const redacted: Array<string> = []
  for (const part of parts) {
    const eq = part.indexOf("=")
    const rawName = eq < 0 ? part : part.slice(0, eq)
    const name = decodeComponent(rawName)
    const value = eq < 0 ? "" : decodeComponent(part.slice(eq + 1))
    if (name === undefined || value === undefined) return `${url.slice(0, q)}?REDACTED`
    redacted.push(SECRET_NAME.test(name) || SECRET_VALUE.test(value) ? `${rawName}=REDACTED` : part)
  }
  return `${url.slice(0, q)}?${redacted.join("&")}`
}

/**
 * The access log: one line per response with method, URL and status — the URL with every
 * credential redacted (`redactUrl`), so tokens and tickets never reach the logs.
 */
export const accessLog = HttpMiddleware.make((app) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    app.pipe(
      Effect.onExit((exit) =>
        Effect.annotateLogs(Effect.logInfo("Sent HTTP response"), {
          "http.method": request.method,
          "http.url": redactUrl(request.url),
          "http.status": exit._tag === "Success"
            ? exit.value.status
            : HttpServerError.causeResponseStripped(exit.cause)[0].status
        })
      ),
      Effect.withLogSpan("http")
    ))
)

/** The client's address (the TCP peer) for the limits: what the auth budget is kept by (Limits.ts). */
export const clientAddress = HttpMiddleware.make((app) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Option.match(request.remoteAddress, {
      onNone: () => app,
      onSome: (address) => Effect.provideService(app, ClientAddress, address)
    }))
)

/**
 * `Retry-After` on every 429: the API encodes a `TooManyRequests` as its JSON body; this adds its
 * `retryAfter` (whole seconds) as the header, through the request fiber's pre-response handler.
 */
export const retryAfter = HttpMiddleware.make((app) =>
  Effect.tapError(
    app,
    (e: unknown) =>
      Predicate.isTagged(e, "TooManyRequests") && Predicate.hasProperty(e, "retryAfter")
        ? HttpApp.appendPreResponseHandler((_, response) =>
          Effect.succeed(
            response.status === 429
              ? HttpServerResponse.setHeader(response, "retry-after", String(e.retryAfter))
              : response
          )
        )
        : Effect.void
  )
)

/**
 * With tracing on: the server span the platform opens for each request shows the URL as the
 * access log does, credentials redacted (`redactUrl`) — a span is a log too.
 */
export const redactedSpanUrl = HttpMiddleware.make((app) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.zipRight(
      Effect.flatMap(Effect.option(Effect.currentSpan), (span) =>
        Effect.sync(() => {
          if (Option.isNone(span)) return
          const url = redactUrl(request.url)
          const q = url.indexOf("?")
          span.value.attribute("url.full", `http://${request.headers.host ?? "localhost"}${url}`)
          if (q >= 0) span.value.attribute("url.query", url.slice(q + 1))
        })),
      app
    ))
)
