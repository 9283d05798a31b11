import { type Api, type Chat } from "@herald/domain"
import { Effect, FiberSet, Layer, Option } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { AppConfig } from "../config/AppConfig.js"
import { doorSpan } from "../observability/Tracing.js"
import { SSE_HEADERS } from "../stream/SseStream.js"
import { AuthorizationHeader } from "./AuthorizationHeader.js"
import { doorEndpoint, endpointOf, finished, fromClient, pathOf } from "./Doors.js"
import { redactUrl } from "./Middleware.js"
import { NodeServer } from "./NodeServer.js"
import { openStreamOf, type StreamEndpoint, StreamOpen, type StreamRequest } from "./Streams.js"

/**
 * The SSE door: Herald's Node server hands the SSE requests (GET and HEAD on the three stream
 * paths) to this door instead of the HTTP app. The three endpoints are built from the API definition
 * (Doors.ts: the same authentication, decoding and errors as the app's) and opened by the same
 * handler (`openStreamOf`), then gives the Node
 * response itself to the SSE hub and lets go: no request fiber, no platform body pipe and no
 * context stays behind for the connection's lifetime — what it costs is Node's socket and the
 * hub's few objects per connection (docs/benchmarks.md, "sse"). A HEAD is only checked
 * (`StreamOpen.check`): the GET's status and headers, nothing opened, nothing written. Everything
 * else, and any other method on those paths, goes to the HTTP app as before.
 */

const ENDPOINTS: ReadonlyArray<StreamEndpoint> = ["multiplexed", "project", "workspace"]

export const SseDoorLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const node = yield* Effect.serviceOption(NodeServer)
    if (Option.isNone(node)) return
    const open = yield* StreamOpen
    const traced = Option.isSome((yield* AppConfig).tracing)
    const context = yield* Effect.context<Api.StreamAuthentication>()
    const run = yield* FiberSet.makeRuntime<never>()
    const endpoints = ENDPOINTS.map((name) => ({
      name,
      endpoint: doorEndpoint<Chat.User>(endpointOf("streams", name), context)
    }))

    const serve = (
      req: IncomingMessage,
      res: ServerResponse,
      target: (typeof endpoints)[number],
      params: Record<string, string>
    ) => {
      const url = redactUrl(req.url ?? "")
      const served = Effect.gen(function*() {
        const request = yield* target.endpoint.decode(req, params)
        const opened = yield* openStreamOf(
          open,
          target.name,
          req.method === "HEAD",
          request.caller,
          request as unknown as StreamRequest
        )
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
        Effect.provideService(AuthorizationHeader, req.headers.authorization),
        fromClient(req),
        finished(res, req.method ?? "GET", url)
      )
      return traced ? doorSpan(req, target.endpoint.path, url)(served) : served
    }

    const door = (req: IncomingMessage, res: ServerResponse) => {
      if ((req.method !== "GET" && req.method !== "HEAD") || req.url === undefined || !req.url.startsWith("/api/")) {
        return false
      }
      const path = pathOf(req.url)
      for (const target of endpoints) {
        const params = target.endpoint.match(path)
        if (params === undefined) continue
        run(serve(req, res, target, params))
        return true
      }
      return false
    }

    yield* node.value.hang(door)
  })
)
