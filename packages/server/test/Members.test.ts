import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestServer, TestServerLive } from "./support/TestServer.js"

it.layer(TestServerLive)("GET /api/projects/:projectId/members", (it) => {
  const setup = Effect.gen(function*() {
    const server = yield* TestServer
    const owner = yield* server.user("olga")
    const member = yield* server.user("mike")
    const outsider = yield* server.user("otto")
    const project = (yield* server.request("POST", "/api/projects", { token: owner.token, json: { name: "crew" } })).body
    yield* server.request("POST", `/api/projects/${project.id}/members`, { token: owner.token, json: { userId: member.id } })
    return { server, owner, member, outsider, path: `/api/projects/${project.id}/members` }
  })

  it.effect("members see every member with name and role, owner first", () =>
    Effect.gen(function*() {
      const { member, owner, path, server } = yield* setup
      for (const who of [owner, member]) {
        const res = yield* server.request("GET", path, { token: who.token })
        expect(res.status).toBe(200)
        expect(res.body).toEqual({
          items: [
            { userId: owner.id, name: "olga", role: "owner" },
            { userId: member.id, name: "mike", role: "member" }
          ]
        })
      }
    }))

  it.effect("a non-member, a removed member and an unknown project get the same 404; no token is a 401", () =>
    Effect.gen(function*() {
      const { member, outsider, owner, path, server } = yield* setup
      const hidden = yield* server.request("GET", path, { token: outsider.token })
      expect(hidden.status).toBe(404)
      const unknown = yield* server.request("GET", "/api/projects/00000000-0000-4000-8000-000000000000/members", {
        token: outsider.token
      })
      expect(unknown.status).toBe(404)
      expect(hidden.body).toEqual(unknown.body)
      yield* server.request("DELETE", `${path}/${member.id}`, { token: owner.token })
      expect((yield* server.request("GET", path, { token: member.token })).status).toBe(404)
      const anonymous = yield* server.request("GET", path)
      expect(anonymous.status).toBe(401)
      expect(anonymous.body._tag).toBe("Unauthorized")
    }))

  it.effect("a project id that is not a uuid is a 400 naming the field", () =>
    Effect.gen(function*() {
      const { owner, server } = yield* setup
      const res = yield* server.request("GET", "/api/projects/not-a-uuid/members", { token: owner.token })
      expect(res.status).toBe(400)
      expect(res.body._tag).toBe("HttpApiDecodeError")
      expect(res.body.issues.map((i: { path: Array<string> }) => i.path.join("."))).toContain("projectId")
    }))
})
