/**
 * G4 on the multiplexed stream when a join is decided late: a `member.added` the broker delivers
 * again (a duplicate, a replay, or the answer of a Resync's look for joins read before a removal
 * committed) must not make a project's streams join at an add the connection is already past —
 * that would send again every event from that add to where the connection left the project.
 * Found by `npm run chaos` (seed 3859668269, redis: 19 duplicates on one connection). The test
 * publishes by hand, so it decides what reaches the broker and in which order.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { EventReader } from "../src/stream/EventReader.js"
import { publisherServerLayer, RecordingBroker, sse, withoutLogs } from "./support/PublisherHarness.js"
import { TestServer } from "./support/TestServer.js"

const publishRange = (stream: string, from: number, to: number) =>
  Effect.gen(function*() {
    const reader = yield* EventReader
    const broker = yield* RecordingBroker
    const events = (yield* Effect.orDie(reader.range(stream, from - 1, to, 1_000))).filter((e) => e.seq <= to)
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: to - from + 1 }, (_, i) => from + i))
    yield* Effect.orDie(broker.publisherAs("test").publish(events))
  })

const waitFor = (what: string, check: () => boolean, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 10))
    }
  })

describe("a late join on the multiplexed stream", () => {
  it.live("an old add delivered again after the caller left and was added back joins at the new add: nothing twice", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const owner = yield* server.user("owner")
      const member = yield* server.user("member")
      const created = yield* server.request("POST", "/api/projects", { token: owner.token, json: { name: "p" } })
      const projectId = created.body.id as string
      const stream = `project:${projectId}`
      yield* server.request("POST", `/api/projects/${projectId}/members`, {
        token: owner.token,
        json: { userId: member.id }
      })
      yield* publishRange(stream, 1, 2)

      const client = yield* sse(server.url, "/api/stream", { token: member.token })
      yield* waitFor("heads", () => client.events.some((e) => e.event === "heads"))
      const seqs = () =>
        client.events.filter((e) => e.data?.stream === stream && e.id !== undefined).map((e) => e.data.seq as number)

      // Removed (3): its last frame of the project. Added back (4), not yet published.
      yield* server.request("DELETE", `/api/projects/${projectId}/members/${member.id}`, { token: owner.token })
      yield* publishRange(stream, 3, 3)
      yield* waitFor("the removal", () => seqs().includes(3))
      yield* Effect.sleep("200 millis")
      yield* server.request("POST", `/api/projects/${projectId}/members`, {
        token: owner.token,
        json: { userId: member.id }
      })
      // The first add (2) arrives again: the caller is a member (the add at 4), but this connection is past 2.
      yield* publishRange(stream, 2, 2)
      yield* waitFor("the add at 4", () => seqs().includes(4))
      yield* publishRange(stream, 4, 4)
      yield* Effect.sleep("300 millis")
      expect(seqs()).toEqual([3, 4])
    }).pipe(Effect.scoped, Effect.provide(publisherServerLayer()), withoutLogs))
})
