import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestServer, TestServerLive } from "./support/TestServer.js"

it.layer(TestServerLive)("smoke", (it) => {
  it.effect("a user creates a project and posts a message", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const project = yield* server.request("POST", "/api/projects", { token: alice.token, json: { name: "p" } })
      expect(project.status).toBe(201)
      const posted = yield* server.request("POST", `/api/projects/${project.body.id}/messages`, {
        token: alice.token,
        json: { body: "hello" }
      })
      expect(posted.status).toBe(201)
      expect(posted.body.event.seq).toBe(2)
      const bad = yield* server.request("POST", "/api/projects", { token: alice.token, raw: "{bad" })
      console.log(bad.status, bad.body)
    }))
})
