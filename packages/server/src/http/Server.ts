import { HttpApiBuilder, HttpApiScalar, HttpMiddleware, HttpServer } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { Api } from "@herald/domain"
import { Effect, Layer } from "effect"
import { createServer } from "node:http"
import { ChatService } from "../chat/ChatService.js"
import { MessagesRepo } from "../chat/MessagesRepo.js"
import { ProjectsRepo } from "../chat/ProjectsRepo.js"
import { UsersRepo } from "../chat/UsersRepo.js"
import { AppConfig } from "../config/AppConfig.js"
import { OutboxWriter } from "../outbox/OutboxWriter.js"
import { AuthenticationLive } from "./Auth.js"
import { bodyLimit, jsonErrors } from "./Middleware.js"
import { AdminLive, MeLive, MessagesLive, ProjectsLive, WorkspaceLive } from "./Handlers.js"
import { HealthLive } from "./Health.js"

/**
 * The request path: every service an HTTP handler can reach. It needs a SqlClient, the config
 * and the in-process Wakeup — and no broker (G2): `test/G2.test.ts` keeps it that way.
 */
export const RequestPathLive = ChatService.Default.pipe(
  Layer.provideMerge(Layer.mergeAll(UsersRepo.Default, ProjectsRepo.Default, MessagesRepo.Default, OutboxWriter.Default))
)

/** The HTTP API: handlers of every group over the request path. */
export const ApiLive = HttpApiBuilder.api(Api.HeraldApi).pipe(
  Layer.provide([AdminLive, MeLive, ProjectsLive, MessagesLive, WorkspaceLive, HealthLive]),
  Layer.provide(AuthenticationLive),
  Layer.provide(RequestPathLive)
)

/** The API with its OpenAPI document and reference page, served on whichever HttpServer is given. */
export const HttpAppLive = HttpApiBuilder.serve((app) => bodyLimit(HttpMiddleware.logger(app))).pipe(
  Layer.provide(HttpApiBuilder.middleware(jsonErrors)),
  Layer.provide(HttpApiScalar.layer({ path: "/docs" })),
  Layer.provide(HttpApiBuilder.middlewareOpenApi({ path: "/openapi.json" })),
  Layer.provide(ApiLive)
)

/** Node's HTTP server on HOST:PORT. */
export const NodeServerLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (c) => NodeHttpServer.layer(createServer, { port: c.port, host: c.host }))
)

export const HttpLive = HttpAppLive.pipe(HttpServer.withLogAddress, Layer.provide(NodeServerLive))
