import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TestServer, TestServerLive } from "./support/TestServer.js"

const countRows = (projectId: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(
      Effect.map(
        sql<{ messages: number; events: number }>`
          SELECT (SELECT count(*)::int FROM messages WHERE project_id = ${projectId}) AS messages,
                 (SELECT count(*)::int FROM event_outbox WHERE project_id = ${projectId}) AS events`,
        ([row]) => row!
      )
    ))

it.layer(TestServerLive)("clientMessageId", (it) => {
  const setup = Effect.gen(function*() {
    const server = yield* TestServer
    const alice = yield* server.user("alice")
    const project = yield* server.request("POST", "/api/projects", { token: alice.token, json: { name: "idem" } })
    return { server, alice, projectId: project.body.id as string }
  })

  for (const path of ["messages", "workspace/messages"]) {
    it.effect(`repeating a post to ${path} answers 200 with the original message and event and writes nothing`, () =>
      Effect.gen(function*() {
        const { alice, projectId, server } = yield* setup
        const url = `/api/projects/${projectId}/${path}`
        const first = yield* server.request("POST", url, { token: alice.token, json: { body: "once", clientMessageId: "c-1" } })
        expect(first.status).toBe(201)
        const before = yield* countRows(projectId)
        // Even with a different body: the key decides, the original stands.
        const again = yield* server.request("POST", url, { token: alice.token, json: { body: "twice?", clientMessageId: "c-1" } })
        expect(again.status).toBe(200)
        expect(again.body).toEqual(first.body)
        expect(yield* countRows(projectId)).toEqual(before)
        // A new key is a new message.
        const other = yield* server.request("POST", url, { token: alice.token, json: { body: "new", clientMessageId: "c-2" } })
        expect(other.status).toBe(201)
        expect(other.body.event.seq).toBe(first.body.event.seq + 1)
      }))
  }

  it.effect("20 concurrent posts with one clientMessageId write one message and one event, and all get it", () =>
    Effect.gen(function*() {
      const { alice, projectId, server } = yield* setup
      const before = yield* countRows(projectId)
      const responses = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () =>
          server.request("POST", `/api/projects/${projectId}/messages`, {
            token: alice.token,
            json: { body: "race", clientMessageId: "same" }
          }),
        { concurrency: "unbounded" }
      )
      expect(responses.filter((r) => r.status === 201)).toHaveLength(1)
      expect(responses.filter((r) => r.status === 200)).toHaveLength(19)
      expect(new Set(responses.map((r) => r.body.message.id)).size).toBe(1)
      expect(new Set(responses.map((r) => r.body.event.id)).size).toBe(1)
      expect(yield* countRows(projectId)).toEqual({ messages: before.messages + 1, events: before.events + 1 })
    }))

  it.effect("the key is per author and per space: another author, or the workspace, may reuse it", () =>
    Effect.gen(function*() {
      const { alice, projectId, server } = yield* setup
      const bob = yield* server.user("bob")
      yield* server.request("POST", `/api/projects/${projectId}/members`, { token: alice.token, json: { userId: bob.id } })
      const post = (token: string, path: string) =>
        server.request("POST", `/api/projects/${projectId}/${path}`, { token, json: { body: "hi", clientMessageId: "k" } })
      expect((yield* post(alice.token, "messages")).status).toBe(201)
      expect((yield* post(bob.token, "messages")).status).toBe(201)
      expect((yield* post(alice.token, "workspace/messages")).status).toBe(201)
      expect((yield* post(alice.token, "messages")).status).toBe(200)
    }))
})
