import { expect, it } from "@effect/vitest"
import { Errors } from "@herald/domain"
import { Effect } from "effect"
import { TestServer, TestServerLive } from "./support/TestServer.js"

it.layer(TestServerLive)("GET /api/projects/:projectId/members", (it) => {
  const setup = Effect.gen(function*() {
    const server = yield* TestServer
    const owner = yield* server.user("olga")
    const member = yield* server.user("mike")
    const outsider = yield* server.user("otto")
    const project = yield* owner.api.projects.create({ payload: { name: "crew" } })
    yield* owner.api.projects.addMember({ path: { projectId: project.id }, payload: { userId: member.id } })
    return { server, owner, member, outsider, project, path: `/api/projects/${project.id}/members` }
  })

  it.effect("members see every member with name and role, owner first", () =>
    Effect.gen(function*() {
      const { member, owner, project } = yield* setup
      for (const who of [owner, member]) {
        const [members, res] = yield* who.api.projects.members({ path: { projectId: project.id }, withResponse: true })
        expect(res.status).toBe(200)
        expect(members).toEqual({
          items: [
            { userId: owner.id, name: "olga", role: "owner" },
            { userId: member.id, name: "mike", role: "member" }
          ]
        })
      }
    }))

  it.effect("a non-member, a removed member and an unknown project get the same 404; no token is a 401", () =>
    Effect.gen(function*() {
      const { member, outsider, owner, project, server } = yield* setup
      // The typed client fails with the error declared for the answer's status: NotFound is the 404.
      const hidden = yield* Effect.flip(outsider.api.projects.members({ path: { projectId: project.id } }))
      expect(hidden).toBeInstanceOf(Errors.NotFound)
      const unknown = yield* Effect.flip(outsider.api.projects.members({
        path: { projectId: "00000000-0000-4000-8000-000000000000" as typeof project.id }
      }))
      expect(unknown).toBeInstanceOf(Errors.NotFound)
      expect(hidden).toEqual(unknown)
      yield* owner.api.projects.removeMember({ path: { projectId: project.id, userId: member.id } })
      const removed = yield* Effect.flip(member.api.projects.members({ path: { projectId: project.id } }))
      expect(removed).toBeInstanceOf(Errors.NotFound)
      const anonymous = yield* Effect.flip(
        (yield* server.client()).projects.members({ path: { projectId: project.id } })
      )
      expect(anonymous).toBeInstanceOf(Errors.Unauthorized)
      expect(anonymous._tag).toBe("Unauthorized")
    }))

  it.effect("a project id that is not a uuid is a 400 naming the field", () =>
    Effect.gen(function*() {
      const { owner, server } = yield* setup
      // Malformed input: the typed client would refuse to send it, so this one is raw.
      const res = yield* server.request("GET", "/api/projects/not-a-uuid/members", { token: owner.token })
      expect(res.status).toBe(400)
      expect(res.body._tag).toBe("HttpApiDecodeError")
      expect(res.body.issues.map((i: { path: Array<string> }) => i.path.join("."))).toContain("projectId")
    }))
})
