import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Effect } from "effect"
import type { TestUser } from "./support/TestServer.js"
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

/** A post to the project (`messages`) or to its workspace, through the typed client; with the answer's status. */
const post = (
  who: TestUser,
  space: "messages" | "workspace/messages",
  projectId: Ids.ProjectId,
  body: string,
  clientMessageId: string
) =>
  Effect.map(
    (space === "messages" ? who.api.messages.post : who.api.workspace.post)({
      path: { projectId },
      payload: { body, clientMessageId },
      withResponse: true
    }),
    ([written, res]) => ({ status: res.status, body: written })
  )

it.layer(TestServerLive)("clientMessageId", (it) => {
  const setup = Effect.gen(function*() {
    const server = yield* TestServer
    const alice = yield* server.user("alice")
    const project = yield* alice.api.projects.create({ payload: { name: "idem" } })
    return { server, alice, projectId: project.id }
  })

  for (const path of ["messages", "workspace/messages"] as const) {
    it.effect(`repeating a post to ${path} answers 200 with the original message and event and writes nothing`, () =>
      Effect.gen(function*() {
        const { alice, projectId } = yield* setup
        const first = yield* post(alice, path, projectId, "once", "c-1")
        expect(first.status).toBe(201)
        const before = yield* countRows(projectId)
        // Even with a different body: the key decides, the original stands.
        const again = yield* post(alice, path, projectId, "twice?", "c-1")
        expect(again.status).toBe(200)
        expect(again.body.message).toEqual(first.body.message)
        expect(again.body.event).toEqual(first.body.event)
        expect(yield* countRows(projectId)).toEqual(before)
        // A new key is a new message.
        const other = yield* post(alice, path, projectId, "new", "c-2")
        expect(other.status).toBe(201)
        expect(other.body.event.seq).toBe(first.body.event.seq + 1)
      }))
  }

  it.effect("20 concurrent posts with one clientMessageId write one message and one event, and all get it", () =>
    Effect.gen(function*() {
      const { alice, projectId } = yield* setup
      const before = yield* countRows(projectId)
      const responses = yield* Effect.forEach(
        Array.from({ length: 20 }),
        () => post(alice, "messages", projectId, "race", "same"),
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
      yield* alice.api.projects.addMember({ path: { projectId }, payload: { userId: bob.id } })
      const postK = (who: TestUser, space: "messages" | "workspace/messages") => post(who, space, projectId, "hi", "k")
      expect((yield* postK(alice, "messages")).status).toBe(201)
      expect((yield* postK(bob, "messages")).status).toBe(201)
      expect((yield* postK(alice, "workspace/messages")).status).toBe(201)
      expect((yield* postK(alice, "messages")).status).toBe(200)
    }))
})
