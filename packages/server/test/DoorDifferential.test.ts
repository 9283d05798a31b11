/**
 * One front end (docs/http.md, "The doors"): the SSE door and the post door serve their endpoints
 * below the HTTP app, built from the same HttpApi definition. Every request here — the normal
 * ones and the whole hostile corpus of BadInput.test.ts for those endpoints, plus the credential
 * and body corners where the doors once drifted — is sent to the server (through its doors) and
 * to a second listener serving the app alone, on the same database: both must answer the same
 * status, content type and body. A counter on the doors proves they took what they should.
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServer from "@effect/platform/HttpServer"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { createServer } from "node:http"
import { connectSse } from "../../../test-support/SseClient.js"
import { NodeServer, serveOn } from "../src/http/HttpApp.js"
import {
  casesOf,
  type Endpoint,
  ENDPOINTS,
  fill,
  Fixture,
  type FixtureShape,
  TestLive,
  UNKNOWN_UUID
} from "./support/BadInputCorpus.js"
import { settlesWithin } from "./support/SseTesting.js"
import { type RequestOptions, TestServer } from "./support/TestServer.js"

interface Answer {
  readonly status: number
  readonly contentType: string | null
  readonly body: unknown
}

/** One request, answered with what a client can compare; an event stream's body is not read. */
const send = (base: string, method: string, path: string, options: RequestOptions) =>
  Effect.promise(async (): Promise<Answer> => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    let body: string | undefined
    if (options.json !== undefined || options.raw !== undefined) {
      headers["content-type"] ??= "application/json"
      body = options.raw ?? JSON.stringify(options.json)
    }
    const res = await fetch(base + path, { method, headers, ...(body === undefined ? {} : { body }) })
    const contentType = res.headers.get("content-type")
    if (contentType === "text/event-stream") {
      await res.body?.cancel()
      return { status: res.status, contentType, body: "(an event stream)" }
    }
    const text = await res.text()
    let parsed: unknown = text
    try {
      parsed = text === "" ? undefined : JSON.parse(text)
    } catch {
      // not JSON: compare the text
    }
    return { status: res.status, contentType, body: parsed }
  })

/** A created message's ids and times differ between two posts: compare everything else. */
const comparable = (answer: Answer): Answer => {
  const body = answer.body as any
  if (answer.status !== 201 && answer.status !== 200 || typeof body?.message !== "object") return answer
  const { createdAt: _c, id: _i, ...message } = body.message
  const { id: _e, seq: _s, ...event } = body.event
  return { ...answer, body: { message, event } }
}

class AppAlone extends Context.Tag("test/AppAlone")<AppAlone, {
  readonly url: string
  /** Requests the doors of the server (not the app alone) took so far. */
  readonly doorTaken: () => number
}>() {}

/** The same app on a second listener with no doors (no NodeServer: the doors stand aside), same services. */
const AppAloneLive = Layer.scoped(
  AppAlone,
  Effect.gen(function*() {
    const context = yield* Layer.build(
      serveOn(NodeHttpServer.layer(() => createServer(), { port: 0, host: "127.0.0.1" }))
    )
    const address = Context.get(context, HttpServer.HttpServer).address as HttpServer.TcpAddress
    const node = yield* NodeServer
    let taken = 0
    node.doors.splice(
      0,
      node.doors.length,
      ...node.doors.map((door) => (req: any, res: any) => {
        const took = door(req, res)
        if (took) taken++
        return took
      })
    )
    return { url: `http://127.0.0.1:${address.port}`, doorTaken: () => taken }
  })
)

const DiffLive = AppAloneLive.pipe(Layer.provideMerge(TestLive))

const DOOR_PATHS = new Set([
  "POST /api/projects/:projectId/messages",
  "POST /api/projects/:projectId/workspace/messages",
  "GET /api/projects/:projectId/stream",
  "GET /api/projects/:projectId/workspace/stream",
  "GET /api/stream"
])
const doorEndpoints = ENDPOINTS.filter((e) => DOOR_PATHS.has(`${e.method} ${e.path}`))

interface Probe {
  readonly name: string
  readonly method: string
  readonly path: (f: FixtureShape) => string
  readonly options: (f: FixtureShape) => RequestOptions
}

const UTF8_BOM = "\uFEFF"

/** The normal requests and the corners where the doors once drifted from the app. */
const probesOf = (endpoint: Endpoint): ReadonlyArray<Probe> => {
  const path = (query = "") => (f: FixtureShape) => fill(endpoint.path, f) + query
  const at = (name: string, p: (f: FixtureShape) => string, options: (f: FixtureShape) => RequestOptions) => ({
    name,
    method: endpoint.method,
    path: p,
    options
  })
  if (endpoint.method === "POST") {
    const json = { "content-type": "application/json" }
    return [
      at("a post", path(), (f) => ({ token: f.alice.token, json: { body: "hello" } })),
      // Sent once first (below), so both fronts answer the replay.
      at("a replayed clientMessageId", path(), (f) => ({
        token: f.alice.token,
        json: { body: "hello", clientMessageId: "differential-1" }
      })),
      at("a post with a query string", path("?x=1"), (f) => ({ token: f.alice.token, json: { body: "q" } })),
      at("a body led by a UTF-8 byte-order mark", path(), (f) => ({
        token: f.alice.token,
        raw: `${UTF8_BOM}{"body":"bom"}`
      })),
      at("content-type with charset", path(), (f) => ({
        token: f.alice.token,
        raw: "{\"body\":\"cs\"}",
        headers: { "content-type": "application/json; charset=utf-8" }
      })),
      at("a post by a non-member", path(), (f) => ({ token: f.carol.token, json: { body: "x" } })),
      at("an unknown project", () => endpoint.path.replace(":projectId", UNKNOWN_UUID), (f) => ({
        token: f.alice.token,
        json: { body: "x" }
      })),
      at("an empty project id", () => endpoint.path.replace(":projectId", ""), (f) => ({
        token: f.alice.token,
        json: { body: "x" }
      })),
      at("invalid JSON and an invalid token", path(), () => ({ token: "nope", raw: "{bad" })),
      at("invalid JSON and a bad project id", () => endpoint.path.replace(":projectId", "x"), (f) => ({
        token: f.alice.token,
        raw: "{bad"
      })),
      at("the token in ?access_token= (not an SSE path)", (f) => path(`?access_token=${f.alice.token}`)(f), () => ({
        raw: "{\"body\":\"x\"}",
        headers: json
      })),
      at("a role on a project post", path(), (f) => ({ token: f.alice.token, json: { body: "x", role: "worker" } }))
    ]
  }
  const positions = endpoint.path === "/api/stream"
    ? [["?cursor=AAAA", {}], ["", { "last-event-id": "not a cursor!" }]] as const
    : [["?after=0", {}], ["", { "last-event-id": "1" }], ["", { "last-event-id": "1.0000abcd" }], [
      "?after=1",
      { "last-event-id": "1.zz" }
    ]] as const
  return [
    at("a stream", path(), (f) => ({ token: f.alice.token })),
    at("?access_token=", (f) => path(`?access_token=${f.alice.token}`)(f), () => ({})),
    at("?access%5Ftoken= (the name percent-encoded)", (f) => path(`?access%5Ftoken=${f.alice.token}`)(f), () => ({})),
    at(
      "a bad Authorization header and a valid ?access_token=",
      (f) => path(`?access_token=${f.alice.token}`)(f),
      () => ({
        headers: { authorization: "Basic xyz" }
      })
    ),
    at("a valid header and a bad ?access_token=", path("?access_token=nope"), (f) => ({ token: f.alice.token })),
    at(
      "?access_token= twice",
      (f) => path(`?access_token=${f.alice.token}&access_token=${f.alice.token}`)(f),
      () => ({})
    ),
    at("an empty ?access_token=", path("?access_token="), () => ({})),
    at("a non-member", path(), (f) => ({ token: f.carol.token })),
    at("?after= twice", path("?after=1&after=2"), (f) => ({ token: f.alice.token })),
    ...positions.map(([query, headers]) =>
      at(`position ${query} ${JSON.stringify(headers)}`, path(query), (f) => ({ token: f.alice.token, headers }))
    )
  ]
}

it.layer(DiffLive)("the doors answer as the app alone", (it) => {
  const compare = (method: string, path: (f: FixtureShape) => string, options: (f: FixtureShape) => RequestOptions) =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alone = yield* AppAlone
      const f = yield* Fixture
      if (JSON.stringify(options(f)).includes("differential-1")) yield* send(server.url, method, path(f), options(f))
      const viaDoor = yield* send(server.url, method, path(f), options(f))
      const viaApp = yield* send(alone.url, method, path(f), options(f))
      const what = `${method} ${path(f)}: door ${JSON.stringify(viaDoor)} / app ${JSON.stringify(viaApp)}`
      expect(comparable(viaDoor), what).toEqual(comparable(viaApp))
      return viaDoor
    })

  for (const endpoint of doorEndpoints) {
    describe(`${endpoint.method} ${endpoint.path}`, () => {
      for (const c of casesOf(endpoint)) {
        it.effect(`${c.name} (corpus)`, () => compare(endpoint.method, c.path, c.options))
      }
      for (const probe of probesOf(endpoint)) {
        it.effect(probe.name, () => compare(probe.method, probe.path, probe.options))
        if (endpoint.method === "GET") {
          it.effect(`HEAD: ${probe.name}`, () => compare("HEAD", probe.path, probe.options))
        }
      }
    })
  }

  describe("stream tickets, through both fronts", () => {
    const ticketOf = (token: string) =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const res = yield* server.request("POST", "/api/stream-tickets", { token })
        expect(res.status).toBe(201)
        return res.body.ticket as string
      })
    const cases: ReadonlyArray<readonly [string, (f: FixtureShape, ticket: string) => [string, RequestOptions]]> = [
      ["?ticket= on the project stream", (f, t) => [`/api/projects/${f.ids.projectId}/stream?ticket=${t}`, {}]],
      [
        "?ticket= on the workspace stream",
        (f, t) => [`/api/projects/${f.ids.projectId}/workspace/stream?ticket=${t}`, {}]
      ],
      ["?ticket= on /api/stream", (_, t) => [`/api/stream?ticket=${t}`, {}]],
      ["a forged ticket", (f, t) => [`/api/projects/${f.ids.projectId}/stream?ticket=${t.slice(0, -2)}xx`, {}]],
      [
        "a ticket and a bad Authorization header",
        (_, t) => [`/api/stream?ticket=${t}`, { headers: { authorization: "Basic x" } }]
      ],
      ["a ticket and a bad ?access_token=", (_, t) => [`/api/stream?ticket=${t}&access_token=nope`, {}]],
      ["a ticket twice", (_, t) => [`/api/stream?ticket=${t}&ticket=${t}`, {}]],
      ["another user's ticket on a project they cannot read", (f, t) => [
        `/api/projects/${f.ids.projectId}/stream?ticket=${t}`,
        {}
      ]]
    ]
    for (const [name, request] of cases) {
      for (const method of ["GET", "HEAD"]) {
        it.effect(`${method}: ${name}`, () =>
          Effect.gen(function*() {
            const f = yield* Fixture
            const ticket = yield* ticketOf(name.startsWith("another user") ? f.carol.token : f.alice.token)
            const [path, options] = request(f, ticket)
            yield* compare(method, () => path, () => options)
          }))
      }
    }

    it.effect("a ticket is a 401 on an endpoint that is not a stream (the post door and the app alike)", () =>
      Effect.gen(function*() {
        const f = yield* Fixture
        const ticket = yield* ticketOf(f.alice.token)
        const answer = yield* compare(
          "POST",
          () => `/api/projects/${f.ids.projectId}/messages`,
          () => ({ token: ticket, json: { body: "x" } })
        )
        expect(answer.status).toBe(401)
      }))
  })

  it.effect("revoking a token ends the streams it opened through the SSE door and through the app alone", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alone = yield* AppAlone
      const f = yield* Fixture
      const created = yield* server.request("POST", "/api/me/tokens", { token: f.alice.token, json: { label: "d" } })
      expect(created.status).toBe(201)
      const path = `/api/projects/${f.ids.projectId}/stream?access_token=${created.body.token}`
      const viaDoor = yield* Effect.promise(() => connectSse(server.url, path))
      const viaApp = yield* Effect.promise(() => connectSse(alone.url, path))
      expect([viaDoor.status, viaApp.status]).toEqual([200, 200])
      const revoked = yield* server.request("DELETE", `/api/me/tokens/${created.body.id}`, { token: f.alice.token })
      expect(revoked.status).toBe(204)
      expect(yield* settlesWithin(viaDoor.ended, 1_000)).toBe(true)
      expect(yield* settlesWithin(viaApp.ended, 1_000)).toBe(true)
    }))

  it.effect("the doors took the requests they serve (this file is not comparing the app with itself)", () =>
    Effect.gen(function*() {
      const alone = yield* AppAlone
      const server = yield* TestServer
      const f = yield* Fixture
      const before = alone.doorTaken()
      yield* send(server.url, "GET", `/api/projects/${f.ids.projectId}/stream`, { token: f.alice.token })
      yield* send(server.url, "POST", `/api/projects/${f.ids.projectId}/messages`, {
        token: f.alice.token,
        json: { body: "through the door" }
      })
      yield* send(alone.url, "GET", `/api/projects/${f.ids.projectId}/stream`, { token: f.alice.token })
      expect(alone.doorTaken() - before).toBe(2)
    }))
})
