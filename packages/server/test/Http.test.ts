import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { ADMIN_TOKEN, TestServer, TestServerLive, testServerLayer } from "./support/TestServer.js"

describe("HTTP surface", () => {
  it.layer(TestServerLive)("with HERALD_ADMIN_TOKEN set", (it) => {
    it.effect("the admin creates a user whose token then authenticates as that user", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const created = yield* server.request("POST", "/api/admin/users", { token: ADMIN_TOKEN, json: { name: "  carol  " } })
        expect(created.status).toBe(201)
        expect(created.body).toMatchObject({ name: "carol", token: expect.stringMatching(/^hrld_/) })
        const me = yield* server.request("GET", "/api/me", { token: created.body.token })
        expect(me.status).toBe(200)
        expect(me.body).toMatchObject({ id: created.body.id, name: "carol" })
        // A user token is not an admin token.
        const denied = yield* server.request("POST", "/api/admin/users", { token: created.body.token, json: { name: "x" } })
        expect(denied.status).toBe(401)
        expect(denied.body._tag).toBe("Unauthorized")
      }))

    it.effect("health, OpenAPI and the reference page are served", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        expect((yield* server.request("GET", "/health/live")).status).toBe(200)
        const ready = yield* server.request("GET", "/health/ready")
        expect(ready.status).toBe(200)
        expect(ready.body.checks.database).toBe("ok")
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
          const res = yield* server.request("POST", "/api/admin/users", { token: ADMIN_TOKEN, json: { name: "x" } })
          expect(res.status).toBe(404)
          expect(res.body._tag).toBe("NotFound")
        }))
    }
  )
})
