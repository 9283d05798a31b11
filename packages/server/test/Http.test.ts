import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@herald/domain"
import { Effect, Option } from "effect"
import { MAX_BODY_BYTES, MAX_DRAINED_BYTES } from "../src/http/Middleware.js"
import { chunkedRequest } from "./support/ChunkedRequest.js"
import { ADMIN_TOKEN, TestServer, testServerLayer, TestServerLive } from "./support/TestServer.js"

const postChunked = (url: string, path: string, token: string, body: string, chunkBytes?: number) =>
  chunkedRequest(url, "POST", path, token, body, chunkBytes)

/** `{"name":"<name>"}` padded with whitespace to exactly `bytes` bytes: still valid JSON. */
const paddedUser = (name: string, bytes: number) => {
  const json = JSON.stringify({ name })
  return json.slice(0, -1) + " ".repeat(bytes - json.length) + "}"
}

describe("HTTP surface", () => {
  it.layer(TestServerLive)("with HERALD_ADMIN_TOKEN set", (it) => {
    it.effect("the admin creates a user whose token then authenticates as that user", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        // Raw: the name is sent untrimmed, which the typed client (whose Name schema trims) would refuse to encode.
        const created = yield* server.request("POST", "/api/admin/users", {
          token: ADMIN_TOKEN,
          json: { name: "  carol  " }
        })
        expect(created.status).toBe(201)
        expect(created.body).toMatchObject({ name: "carol", token: expect.stringMatching(/^hrld_/) })
        const carol = yield* server.client(created.body.token)
        const [me, res] = yield* carol.me.me({ withResponse: true })
        expect(res.status).toBe(200)
        expect(me).toMatchObject({ id: created.body.id, name: "carol" })
        // A user token is not an admin token.
        const denied = yield* Effect.flip(carol.admin.createUser({ payload: { name: "x" } }))
        expect(denied).toBeInstanceOf(Errors.Unauthorized)
        expect(denied._tag).toBe("Unauthorized")
      }))

    it.effect("health, OpenAPI and the reference page are served", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const api = yield* server.client()
        const [, live] = yield* api.health.live({ withResponse: true })
        expect(live.status).toBe(200)
        const [ready, readyRes] = yield* api.health.ready({ withResponse: true })
        expect(readyRes.status).toBe(200)
        expect(ready.checks.database).toBe("ok")
        // Outside the API declaration: raw requests.
        const spec = yield* server.request("GET", "/openapi.json")
        expect(spec.status).toBe(200)
        expect(Object.keys(spec.body.paths)).toEqual(expect.arrayContaining([
          "/api/projects/{projectId}/messages",
          "/api/projects/{projectId}/workspace/messages",
          "/api/admin/users"
        ]))
        const docs = yield* server.request("GET", "/docs")
        expect(docs.status).toBe(200)
        expect(docs.headers.get("content-type")).toMatch(/text\/html/)
      }))

    it.effect(`a chunked body streamed past ${MAX_BODY_BYTES} bytes answers a JSON 413`, () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const body = paddedUser("too-big", 300 * 1024)
        const res = yield* postChunked(server.url, "/api/admin/users", ADMIN_TOKEN, body)
        expect(res.error).toBeUndefined()
        expect(res.status).toBe(413)
        expect(res.body).toEqual({
          _tag: "PayloadTooLarge",
          message: expect.stringContaining(`${MAX_BODY_BYTES} bytes`)
        })
        // Far past the limit too, in bigger pieces.
        const huge = yield* postChunked(
          server.url,
          "/api/admin/users",
          ADMIN_TOKEN,
          paddedUser("huge", 900 * 1024),
          100 * 1024
        )
        expect(huge.status).toBe(413)
        expect(huge.body._tag).toBe("PayloadTooLarge")
      }))

    it.effect(`a chunked body past ${MAX_DRAINED_BYTES} bytes is cut off, and the server goes on`, () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const res = yield* postChunked(
          server.url,
          "/api/admin/users",
          ADMIN_TOKEN,
          paddedUser("endless", 8 * MAX_DRAINED_BYTES)
        )
        // The socket is closed while the client is still sending: the 413 may or may not get through.
        if (res.status !== 0) expect(res.status).toBe(413)
        const [, live] = yield* (yield* server.client()).health.live({ withResponse: true })
        expect(live.status).toBe(200)
      }))

    it.effect("a chunked body at or just under the limit is read and handled", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        for (const bytes of [MAX_BODY_BYTES - 1, MAX_BODY_BYTES]) {
          const res = yield* postChunked(
            server.url,
            "/api/admin/users",
            ADMIN_TOKEN,
            paddedUser(`chunked-${bytes}`, bytes)
          )
          expect(res.status).toBe(201)
          expect(res.body).toMatchObject({ name: `chunked-${bytes}`, token: expect.stringMatching(/^hrld_/) })
        }
        const over = yield* postChunked(
          server.url,
          "/api/admin/users",
          ADMIN_TOKEN,
          paddedUser("over", MAX_BODY_BYTES + 1)
        )
        expect(over.status).toBe(413)
      }))

    it.effect("a declared Content-Length over the limit answers a JSON 413", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const res = yield* server.request("POST", "/api/admin/users", {
          token: ADMIN_TOKEN,
          raw: paddedUser("declared", MAX_BODY_BYTES + 1)
        })
        expect(res.status).toBe(413)
        expect(res.body).toMatchObject({ _tag: "PayloadTooLarge", message: expect.any(String) })
      }))

    it.effect("an unknown route answers a JSON 404", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const res = yield* server.request("GET", "/api/nope")
        expect(res.status).toBe(404)
        expect(res.body).toMatchObject({ _tag: "NotFound", message: expect.stringContaining("/api/nope") })
      }))
  })

  it.layer(testServerLayer({ adminToken: Option.none() }))(
    "with HERALD_ADMIN_TOKEN unset",
    (it) => {
      it.effect("user creation over HTTP is disabled: 404", () =>
        Effect.gen(function*() {
          const server = yield* TestServer
          const admin = yield* server.client(ADMIN_TOKEN)
          const res = yield* Effect.flip(admin.admin.createUser({ payload: { name: "x" } }))
          expect(res).toBeInstanceOf(Errors.NotFound)
          expect(res._tag).toBe("NotFound")
        }))
    }
  )
})
