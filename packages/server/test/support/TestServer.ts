import { HttpServer } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import type { Ids } from "@herald/domain"
import { Clock, Context, Effect, Layer, Option, Redacted } from "effect"
import { TestDatabaseLive } from "../../../../test-support/TestDatabase.js"
import { UsersRepo } from "../../src/chat/UsersRepo.js"
import { AppConfig, type AppConfigShape } from "../../src/config/AppConfig.js"
import { nodeServerLayer } from "../../src/http/HttpApp.js"
import { ROOMY_LIMITS } from "../../src/limits/Limits.js"
import { serverLayer } from "../../src/Server.js"
import { type ApiClient, apiClient } from "./ApiClient.js"

export const ADMIN_TOKEN = "test-admin-token"

export interface Response {
  readonly status: number
  readonly headers: Headers
  readonly body: any
}

export interface RequestOptions {
  readonly token?: string | undefined
  readonly json?: unknown
  /** A raw body sent as-is with content-type application/json. */
  readonly raw?: string
  readonly headers?: Record<string, string>
}

/** A user created for a test: its id, its bearer token and the typed client that sends it. */
export interface TestUser {
  readonly id: Ids.UserId
  readonly token: string
  readonly api: ApiClient
}

/**
 * The real HTTP server on an ephemeral port over a fresh database, with two clients: the typed
 * one derived from the API (`client`, `user().api`) for well-formed calls, and `request`, raw
 * fetch, for what the typed client cannot send (malformed input, routes outside the API).
 */
export class TestServer extends Context.Tag("test/TestServer")<TestServer, {
  readonly url: string
  readonly request: (method: string, path: string, options?: RequestOptions) => Effect.Effect<Response>
  /** The typed client, sending `token` (if any) as a bearer token. */
  readonly client: (token?: string) => Effect.Effect<ApiClient>
  /** A new user, its bearer token and its typed client. */
  readonly user: (name?: string) => Effect.Effect<TestUser>
}>() {}

/** The client half of TestServer, for any harness that serves the app on an HttpServer. */
export const makeTestServer = Effect.gen(function*() {
  const server = yield* HttpServer.HttpServer
  const users = yield* UsersRepo
  const address = server.address as HttpServer.TcpAddress
  const url = `http://127.0.0.1:${address.port}`
  const request = (method: string, path: string, options: RequestOptions = {}) =>
    Effect.promise(async () => {
      const headers: Record<string, string> = { ...options.headers }
      if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
      let body: string | undefined
      if (options.json !== undefined || options.raw !== undefined) {
        headers["content-type"] = "application/json"
        body = options.raw ?? JSON.stringify(options.json)
      }
      const res = await fetch(url + path, { method, headers, ...(body === undefined ? {} : { body }) })
      const text = await res.text()
      let parsed: unknown = text
      try {
        parsed = text === "" ? undefined : JSON.parse(text)
      } catch {
        // not JSON: keep the text
      }
      return { status: res.status, headers: res.headers, body: parsed as any }
    })
  const client = (token?: string) => apiClient(url, token)
  const user = (name = "user") =>
    Effect.gen(function*() {
      const created = yield* Effect.orDie(users.create(name))
      const token = Redacted.value(created.token)
      return { id: created.user.id, token, api: yield* client(token) }
    })
  return { url, request, client, user }
})

/**
 * The server over a fresh database, with the test admin token and any config overrides; its
 * limits are roomy (ROOMY_LIMITS) unless the overrides set them (Limits.test.ts does).
 */
export const testServerLayer = (config: Partial<AppConfigShape> = {}) =>
  Layer.effect(TestServer, makeTestServer).pipe(
    Layer.provideMerge(serverLayer(nodeServerLayer({ port: 0, host: "127.0.0.1" }))),
    Layer.provideMerge(TestDatabaseLive),
    Layer.provideMerge(
      AppConfig.layerWith({ adminToken: Option.some(Redacted.make(ADMIN_TOKEN)), ...ROOMY_LIMITS, ...config })
    ),
    Layer.provide(NodeContext.layer),
    // The server runs on the real clock even inside `it.layer` (whose tests get a TestClock): its
    // polls, retries and keepalives must fire as they do in production.
    Layer.provide(Layer.setClock(Clock.make()))
  )

export const TestServerLive = testServerLayer()
