import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpApiScalar from "@effect/platform/HttpApiScalar"
import * as HttpServer from "@effect/platform/HttpServer"
import { Api } from "@herald/domain"
import { Effect, Layer, Option } from "effect"
import { RequestPathLive } from "../chat/RequestPath.js"
import { AppConfig } from "../config/AppConfig.js"
import { Limits } from "../limits/Limits.js"
import { SseHub } from "../stream/SseHub.js"
import { AdminAuthenticationLive, AuthenticationLive, StreamAuthenticationLive, Tokens } from "./Auth.js"
import { provideAuthorizationHeader } from "./AuthorizationHeader.js"
import { AnalyticsLive, HistoryLive } from "./EventLogHandlers.js"
import { AdminLive, MeLive, MessagesLive, ProjectsLive, WorkspaceLive } from "./Handlers.js"
import { HealthLive } from "./Health.js"
import { accessLog, bodyLimit, clientAddress, jsonErrors, redactedSpanUrl, retryAfter } from "./Middleware.js"
import { NodeServer, nodeServerLayer } from "./NodeServer.js"
import { PostDoorLive } from "./PostDoor.js"
import { RevocationsLive } from "./Revocations.js"
import { SignalsLive } from "./SignalHandlers.js"
import { SseDoorLive } from "./SseDoor.js"
import { StreamOpen, StreamsLive } from "./Streams.js"
import { StreamTickets } from "./StreamTickets.js"
import { TokensLive } from "./TokenHandlers.js"
import { WebClientLive } from "./WebClient.js"

/** The authentication middleware's implementations: for the app, and for the doors built from the same API. */
const AuthLive = Layer.mergeAll(AuthenticationLive, StreamAuthenticationLive, AdminAuthenticationLive)

/** The HTTP API: handlers of every group over the request path (plus the SSE hub's read side). */
export const ApiLive = HttpApiBuilder.api(Api.HeraldApi).pipe(
  Layer.provide([
    AdminLive,
    MeLive,
    TokensLive,
    ProjectsLive,
    MessagesLive,
    WorkspaceLive,
    SignalsLive,
    StreamsLive,
    HistoryLive,
    AnalyticsLive,
    HealthLive
  ]),
  Layer.provide(AuthLive)
)

/** The API with its OpenAPI document and reference page, served on whichever HttpServer is given. */
export const HttpAppLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  HttpApiBuilder.serve((app) => {
    const served = bodyLimit(accessLog(clientAddress(provideAuthorizationHeader(app))))
    return Option.isSome(config.tracing) ? redactedSpanUrl(served) : served
  }))).pipe(
    Layer.provide(HttpApiBuilder.middleware(jsonErrors)),
    Layer.provide(HttpApiBuilder.middleware(retryAfter)),
    Layer.provide(WebClientLive),
    Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
    Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
    Layer.provide(ApiLive)
  )

/** What both the API's handlers and the SSE door use to authenticate and authorise. */
const RequestSideLive = Layer.mergeAll(Tokens.Default, StreamOpen.Default).pipe(
  Layer.provideMerge(StreamTickets.Default),
  Layer.provideMerge(RequestPathLive)
)

export { NodeServer, nodeServerLayer } from "./NodeServer.js"

/** How long in-flight requests get to finish once shutdown has begun. */
const SHUTDOWN_GRACE_MS = 3_000

/**
 * Open SSE responses — and browsers' keep-alive connections, which an EventSource or a polling
 * page keeps busy — would keep Node's `server.close()` waiting (G8). This layer needs the HTTP
 * server, so it is built after it and torn down before it: its finalizer ends every SSE response,
 * closes idle connections at once and any still open after a short grace; then the server closes.
 */
export const EndStreamsBeforeServerLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    yield* HttpServer.HttpServer
    const hub = yield* SseHub
    const node = yield* Effect.serviceOption(NodeServer)
    yield* Effect.addFinalizer(() =>
      Effect.zipRight(
        hub.closeAll,
        Effect.sync(() => {
          if (node._tag === "None") return
          node.value.closeIdleConnections()
          setTimeout(() => node.value.closeAllConnections(), SHUTDOWN_GRACE_MS).unref()
        })
      )
    )
  })
)

/** Requests the Node server refuses for their headers' size (a JSON 431, NodeServer.ts) are counted with the limits. */
const HeaderRefusalsLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const node = yield* Effect.serviceOption(NodeServer)
    if (Option.isNone(node)) return
    const limits = yield* Limits
    yield* Effect.acquireRelease(
      Effect.sync(() => node.value.onHeadersTooLarge = () => limits.refused("headers")),
      () => Effect.sync(() => node.value.onHeadersTooLarge = () => undefined)
    )
  })
)

/** The app and the SSE shutdown hook on one HttpServer. */
export const serveOn = <ROut, E, R>(server: Layer.Layer<ROut, E, R>) =>
  Layer.mergeAll(
    HttpAppLive,
    EndStreamsBeforeServerLive,
    RevocationsLive,
    HeaderRefusalsLive,
    Layer.mergeAll(SseDoorLive, PostDoorLive).pipe(Layer.provide(AuthLive))
  ).pipe(
    Layer.provide(RequestSideLive),
    Layer.provideMerge(server)
  )

/** Node's HTTP server on HOST:PORT. */
export const NodeServerLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (c) => nodeServerLayer({ port: c.port, host: c.host }))
)
