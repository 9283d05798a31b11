import type * as HttpApiError from "@effect/platform/HttpApiError"
import { Api, Errors } from "@herald/domain"
import { Effect, FiberSet, Layer, Option, Redacted } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { type Opened, SSE_HEADERS } from "../stream/SseStream.js"
import { Tokens } from "./Auth.js"
import { answer, decode, decodeErrorBody, failureStatus, finished, fromClient, tooManyRequestsBody } from "./Doors.js"
import { redactUrl } from "./Middleware.js"
import { NodeServer } from "./NodeServer.js"
import { position, StreamOpen, streamPosition } from "./Streams.js"

/**
 * The SSE door: Herald's Node server hands the SSE requests (GET and HEAD on the three stream
 * paths) to this door instead of the HTTP app. The door authenticates, decodes and authorises them
 * with the API's own schemas and the same StreamOpen as the API's handlers, then gives the Node
 * response itself to the SSE hub and lets go: no request fiber, no platform body pipe and no
 * context stays behind for the connection's lifetime — what it costs is Node's socket and the
 * hub's few objects per connection (docs/benchmarks.md, "sse"). A HEAD is only checked
 * (`StreamOpen.check`): the GET's status and headers, nothing opened, nothing written. Everything
 * else, and any other method on those paths, goes to the HTTP app as before.
 */

type Route =
  | { readonly _tag: "project" | "workspace"; readonly projectId: string }
  | { readonly _tag: "multiplexed" }

const STREAM_PATH = /^\/api\/projects\/([^/]*)\/(stream|workspace\/stream)$/

const route = (path: string): Route | undefined => {
  if (path === "/api/stream") return { _tag: "multiplexed" }
  const m = STREAM_PATH.exec(path)
  if (m === null) return undefined
  try {
    return { _tag: m[2] === "stream" ? "project" : "workspace", projectId: decodeURIComponent(m[1]!) }
  } catch {
    // A path that is not UTF-8 matches no route: the HTTP app answers it, as it does for every other path.
    return undefined
  }
}

/** The query as the API sees it: a repeated parameter is an array. */
const queryRecord = (params: URLSearchParams) => {
  const record: Record<string, string | Array<string>> = {}
  for (const key of new Set(params.keys())) {
    const all = params.getAll(key)
    record[key] = all.length === 1 ? all[0]! : all
  }
  return record
}

const unauthorized = (message: string) => new Errors.Unauthorized({ message })

type Failure =
  | Errors.Unauthorized
  | Errors.NotFound
  | Errors.BadRequest
  | Errors.TooManyRequests
  | HttpApiError.HttpApiDecodeError

export const SseDoorLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const node = yield* Effect.serviceOption(NodeServer)
    if (Option.isNone(node)) return
    const tokens = yield* Tokens
    const open = yield* StreamOpen
    const run = yield* FiberSet.makeRuntime<never>()

    /** Header first (as the API's security does), then `?access_token=`. */
    const authenticate = (req: IncomingMessage, params: URLSearchParams) => {
      const header = req.headers.authorization
      if (header !== undefined) {
        return /^Bearer [^\s]/i.test(header)
          ? tokens.user(Redacted.make(header.slice(7)))
          : Effect.fail(unauthorized("missing bearer token: send Authorization: Bearer <token>"))
      }
      const query = params.get("access_token")
      return query === null || query.length === 0
        ? Effect.fail(unauthorized("missing token: send Authorization: Bearer <token> or ?access_token=<token>"))
        : tokens.user(Redacted.make(query))
    }

    const serve = (req: IncomingMessage, res: ServerResponse, target: Route, url: URL) =>
      Effect.gen(function*() {
        const me = yield* authenticate(req, url.searchParams)
        const query = queryRecord(url.searchParams)
        const streams = req.method === "HEAD" ? open.check : open
        const opening: Effect.Effect<Opened | void, Failure> = target._tag === "multiplexed"
          ? Effect.gen(function*() {
            const params = yield* decode(Api.MultiplexParams, query)
            const headers = yield* decode(Api.MultiplexHeaders, req.headers)
            return yield* streams.multiplexed(
              me,
              Option.fromNullable(params.streams),
              position(headers["last-event-id"], params.cursor)
            )
          })
          : Effect.gen(function*() {
            const { projectId } = yield* decode(Api.ProjectPath, { projectId: target.projectId })
            const params = yield* decode(Api.StreamParams, query)
            const headers = yield* decode(Api.StreamHeaders, req.headers)
            const after = streamPosition(headers["last-event-id"], params.after)
            return yield* (target._tag === "project" ? streams.project : streams.workspace)(me, projectId, after)
          })
        const opened = yield* opening
        // The client may have gone while we looked: then there is nothing to serve.
        if (res.destroyed || res.socket === null || res.socket.destroyed) {
          if (opened !== undefined) yield* opened.abandon
          return 499
        }
        res.removeHeader("connection")
        res.writeHead(200, SSE_HEADERS)
        // A HEAD: its head is the answer.
        if (opened === undefined) res.end()
        else yield* opened.attach(res)
        return 200
      }).pipe(
        Effect.catchAll((e: Failure) =>
          Effect.sync(() => {
            const code = failureStatus(e)
            answer(
              res,
              code,
              e._tag === "HttpApiDecodeError"
                ? decodeErrorBody(e)
                : e._tag === "TooManyRequests"
                ? tooManyRequestsBody(e)
                : {
                  _tag: e._tag,
                  message: e.message,
                  ...("field" in e && e.field !== undefined ? { field: e.field } : {})
                }
            )
            return code
          })
        ),
        finished(res, req.method ?? "GET", redactUrl(req.url ?? "")),
        fromClient(req)
      )

    const door = (req: IncomingMessage, res: ServerResponse) => {
      if ((req.method !== "GET" && req.method !== "HEAD") || req.url === undefined || !req.url.startsWith("/api/")) {
        return false
      }
      const url = new URL(req.url, "http://herald")
      const target = route(url.pathname)
      if (target === undefined) return false
      run(serve(req, res, target, url))
      return true
    }

    yield* node.value.hang(door)
  })
)
