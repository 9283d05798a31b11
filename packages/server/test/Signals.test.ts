/**
 * Live signals on one node (SPEC §5 "Live signals", G10) over real HTTP against real PostgreSQL:
 * presence, typing and drafts on both SSE endpoints — who gets them and who never does (G5),
 * frames without `id:` that leave a resume position where it was, nothing in `event_outbox` or
 * `event_log`, the draft's end after its message, coalescing, bad input and the limits. The fleet
 * (two and three nodes on each broker, a node killed) is SignalsFleet.test.ts.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Effect } from "effect"
import type { SseConnection, SseEvent } from "../../../test-support/SseClient.js"
import { addMember, createProject, expectStatus, post, send } from "./support/HttpTesting.js"
import { awaitEvents, connectStalling, openSse } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

const live = { excludeTestServices: true } as const

const projectStream = (projectId: string) => `project:${projectId}`
const workspaceStream = (projectId: string, userId: string) => `workspace:${projectId}:${userId}`

const signalsOf = (sse: SseConnection, kind: string) => sse.signals.filter((e) => e.event === kind)
const sleep = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

/** Waits until a frame matching `match` has arrived on `sse`; fails with what did. */
const awaitFrame = (sse: SseConnection, what: string, match: (e: SseEvent) => boolean, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const found = sse.all.find(match)
      if (found !== undefined) return found
      await new Promise((r) => setTimeout(r, 10))
    }
    throw new Error(
      `no ${what} within ${timeoutMs} ms; got ${
        JSON.stringify(sse.all.map((e) => [e.event, JSON.stringify(e.data).slice(0, 160)]).slice(-40))
      }`
    )
  })

const presenceOf = (as: TestUser, projectId: string) =>
  Effect.map(send(as, "GET", `/api/projects/${projectId}/presence`), (res) => {
    const body = expectStatus(res, 200, "GET presence") as { projectId: string; users: Array<{ userId: string }> }
    return body.users.map((u) => u.userId).sort()
  })

const typing = (as: TestUser, projectId: string) =>
  Effect.map(send(as, "POST", `/api/projects/${projectId}/typing`), (res) => expectStatus(res, 204, "typing"))

const putDraft = (as: TestUser, projectId: string, draftId: string, body: string, role?: string) =>
  Effect.map(
    send(
      as,
      "PUT",
      `/api/projects/${projectId}/workspace/drafts/${draftId}`,
      role === undefined ? { body } : { body, role }
    ),
    (res) => expectStatus(res, 204, "PUT draft")
  )

/**
 * What the outbox and the log hold of a workspace stream (the materializer copies into the log on
 * its own time, so the log may still lack some), to show signals never reach either.
 */
const heldOf = (stream: string) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* sql<{ type: string }>`SELECT type FROM event_outbox WHERE stream_id = ${stream}`
    const log = yield* sql<{ type: string }>`SELECT type FROM event_log WHERE stream_id = ${stream}`
    return { outbox: outbox.map((r) => r.type), log: log.map((r) => r.type) }
  })

/** Two members of one project (A owns it), and a user of another project. */
const setup = Effect.gen(function*() {
  const server = yield* TestServer
  const a = yield* server.user("a")
  const b = yield* server.user("b")
  const outsider = yield* server.user("c")
  const project = yield* createProject(a)
  yield* addMember(a, project.id, b)
  const other = yield* createProject(outsider)
  return { a, b, outsider, projectId: project.id as Ids.ProjectId, otherId: other.id as Ids.ProjectId }
})

layer(testServerLayer(), live)("live signals on one node", (it) => {
  describe("presence", () => {
    it.scoped("a snapshot first, then comings and goings; GET presence answers the same set; no id:", () =>
      Effect.gen(function*() {
        const { a, b, outsider, projectId } = yield* setup
        const stream = projectStream(projectId)
        const muxA = yield* openSse("/api/stream", { token: a.token })
        const first = yield* awaitFrame(muxA, "A's presence snapshot", (e) => e.event === "presence")
        expect(muxA.events[0]!.event).toBe("heads")
        expect(first.id).toBeUndefined()
        expect(first.data).toMatchObject({ stream, users: [{ userId: a.id }] })
        expect(yield* presenceOf(a, projectId)).toEqual([a.id])

        // B opens the per-stream endpoint: its first frame is the snapshot with both; A hears B come.
        const b1 = yield* openSse(`/api/projects/${projectId}/stream`, { token: b.token })
        const snapshot = yield* awaitFrame(b1, "B's snapshot", (e) => e.event === "presence")
        expect(b1.all[0]).toBe(snapshot)
        expect((snapshot.data.users as Array<{ userId: string }>).map((u) => u.userId).sort()).toEqual(
          [a.id, b.id].sort()
        )
        const came = yield* awaitFrame(
          muxA,
          "B present",
          (e) => e.event === "presence" && e.data.userId === b.id && e.data.present === true
        )
        expect(came.id).toBeUndefined()
        expect(typeof came.data.at).toBe("string")
        expect(yield* presenceOf(b, projectId)).toEqual([a.id, b.id].sort())

        // A second connection of B: nothing changes for the others; B leaves when the last one closes.
        const b2 = yield* openSse("/api/stream", { token: b.token })
        yield* awaitFrame(b2, "B's second snapshot", (e) => e.event === "presence")
        b1.close()
        yield* sleep(300)
        expect(signalsOf(muxA, "presence").filter((e) => e.data.userId === b.id && e.data.present === false)).toEqual(
          []
        )
        b2.close()
        yield* awaitFrame(
          muxA,
          "B gone",
          (e) => e.event === "presence" && e.data.userId === b.id && e.data.present === false
        )
        expect(yield* presenceOf(a, projectId)).toEqual([a.id])

        // Not a member: 404, as for everything of the project.
        expect((yield* send(outsider, "GET", `/api/projects/${projectId}/presence`)).status).toBe(404)
        expect((yield* send(undefined, "GET", `/api/projects/${projectId}/presence`)).status).toBe(401)
      }))
  })

  describe("typing", () => {
    it.scoped("reaches the other members' connections, not the typist's own; coalesced within a second", () =>
      Effect.gen(function*() {
        const { a, b, outsider, projectId, otherId } = yield* setup
        const muxA = yield* openSse("/api/stream", { token: a.token })
        const streamB = yield* openSse(`/api/projects/${projectId}/stream`, { token: b.token })
        const muxB = yield* openSse("/api/stream", { token: b.token })
        const muxOutsider = yield* openSse("/api/stream", { token: outsider.token })
        yield* awaitFrame(muxB, "B's snapshot", (e) => e.event === "presence")
        yield* awaitFrame(muxOutsider, "the outsider's own snapshot", (e) => e.event === "presence")

        const before = Date.now()
        yield* typing(b, projectId)
        yield* typing(b, projectId)
        const frame = yield* awaitFrame(muxA, "B typing", (e) => e.event === "typing")
        expect(frame.id).toBeUndefined()
        expect(frame.data).toMatchObject({ stream: projectStream(projectId), userId: b.id })
        const until = Date.parse(frame.data.until)
        expect(until - before).toBeGreaterThanOrEqual(4_000)
        expect(until - Date.now()).toBeLessThanOrEqual(5_100)
        yield* sleep(300)
        expect(signalsOf(muxA, "typing")).toHaveLength(1)
        expect(signalsOf(streamB, "typing")).toEqual([])
        expect(signalsOf(muxB, "typing")).toEqual([])
        expect(signalsOf(muxOutsider, "typing")).toEqual([])

        // After a second, a new signal.
        yield* sleep(800)
        yield* typing(b, projectId)
        yield* awaitFrame(muxA, "B typing again", (e) => e.event === "typing" && signalsOf(muxA, "typing").length === 2)

        // Not a member of the project: 404, and nothing goes anywhere.
        expect((yield* send(outsider, "POST", `/api/projects/${projectId}/typing`)).status).toBe(404)
        expect((yield* send(a, "POST", `/api/projects/${otherId}/typing`)).status).toBe(404)
        yield* sleep(200)
        expect(signalsOf(muxA, "typing")).toHaveLength(2)
      }))
  })

  describe("drafts", () => {
    it.scoped("reach the owner's connections alone; the latest body always; ended after its message", () =>
      Effect.gen(function*() {
        const { a, b, projectId } = yield* setup
        const ws = workspaceStream(projectId, a.id)
        const muxA = yield* openSse("/api/stream", { token: a.token })
        const wsA = yield* openSse(`/api/projects/${projectId}/workspace/stream`, { token: a.token })
        const muxB = yield* openSse("/api/stream", { token: b.token })
        yield* awaitFrame(muxB, "B's snapshot", (e) => e.event === "presence")

        // 30 updates as fast as they go: at most 10 frames a second, and the last body goes out.
        const started = Date.now()
        let text = ""
        for (let i = 0; i < 30; i++) {
          text += `word${i} `
          yield* putDraft(a, projectId, "reply-1", text, "worker")
        }
        const last = yield* awaitFrame(muxA, "the last body", (e) => e.event === "draft" && e.data.body === text)
        expect(last.id).toBeUndefined()
        expect(last.data).toMatchObject({ stream: ws, draftId: "reply-1", role: "worker" })
        yield* awaitFrame(wsA, "the last body (per stream)", (e) => e.event === "draft" && e.data.body === text)
        const frames = signalsOf(muxA, "draft")
        expect(frames.length).toBeLessThanOrEqual(Math.ceil((Date.now() - started) / 100) + 1)
        expect(frames.length).toBeLessThan(30)
        // Bodies only grow: no stale body after a newer one.
        const lengths = frames.map((e) => String(e.data.body).length)
        expect(lengths).toEqual([...lengths].sort((x, y) => x - y))

        // A connection that starts carrying the workspace stream gets the live draft first.
        const lateA = yield* openSse(`/api/projects/${projectId}/workspace/stream`, { token: a.token })
        const first = yield* awaitFrame(lateA, "the live draft", (e) => e.event === "draft")
        expect(lateA.all[0]).toBe(first)
        expect(first.data.body).toBe(text)

        // The message the draft became: message.created, then the draft's end, on every connection.
        const posted = yield* a.api.workspace.post({
          path: { projectId },
          payload: { body: text, role: "worker", clientMessageId: "reply-1" }
        })
        for (const sse of [muxA, wsA, lateA]) {
          const ended = yield* awaitFrame(sse, "the draft's end", (e) => e.event === "draft" && e.data.ended === true)
          const created = sse.all.findIndex((e) =>
            e.event === "message.created" && e.data.data.messageId === posted.message.id
          )
          expect(created, "message.created arrived").toBeGreaterThanOrEqual(0)
          expect(sse.all.indexOf(ended)).toBe(created + 1)
          expect(ended.data).toEqual({ stream: ws, draftId: "reply-1", ended: true })
          expect(ended.id).toBeUndefined()
        }
        // A late update of that draft changes nothing; a new connection gets no draft.
        yield* putDraft(a, projectId, "reply-1", `${text} late`, "worker")
        const afterA = yield* openSse(`/api/projects/${projectId}/workspace/stream`, { token: a.token })
        yield* sleep(300)
        expect(signalsOf(afterA, "draft")).toEqual([])
        expect(signalsOf(muxA, "draft").filter((e) => String(e.data.body).endsWith(" late"))).toEqual([])

        // DELETE ends a draft; the role defaults to user.
        yield* putDraft(a, projectId, "note", "thinking")
        const update = yield* awaitFrame(muxA, "the note", (e) => e.event === "draft" && e.data.draftId === "note")
        expect(update.data.role).toBe("user")
        expectStatus(yield* send(a, "DELETE", `/api/projects/${projectId}/workspace/drafts/note`), 204, "DELETE draft")
        yield* awaitFrame(
          muxA,
          "the note's end",
          (e) => e.event === "draft" && e.data.draftId === "note" && e.data.ended === true
        )

        // Never to anyone else; of the workspace, nothing written but the one message.
        expect(signalsOf(muxB, "draft")).toEqual([])
        const held = yield* heldOf(ws)
        expect(held.outbox).toEqual(["message.created"])
        expect(held.log.every((type) => type === "message.created") && held.log.length <= 1, held.log.join()).toBe(true)
      }))

    it.scoped("a 10 000-character body, whole; bad input is a 400 naming what; not a member: 404", () =>
      Effect.gen(function*() {
        const { a, outsider, projectId } = yield* setup
        const muxA = yield* openSse("/api/stream", { token: a.token })
        const big = "ü😀界".repeat(2_500)
        expect(big.length).toBe(10_000)
        yield* putDraft(a, projectId, "big", big)
        const frame = yield* awaitFrame(muxA, "the big draft", (e) => e.event === "draft" && e.data.draftId === "big")
        expect(frame.data.body).toBe(big)
        yield* putDraft(a, projectId, "empty", "")

        const path = (draftId: string) => `/api/projects/${projectId}/workspace/drafts/${draftId}`
        const bad: ReadonlyArray<readonly [string, string, unknown, string]> = [
          ["a draftId of 65 characters", path("x".repeat(65)), { body: "x" }, "draftId"],
          ["a draftId with a dot", path("a.b"), { body: "x" }, "draftId"],
          ["a draftId with a space", path("a%20b"), { body: "x" }, "draftId"],
          ["a body over 10 000 characters", path("ok"), { body: "x".repeat(10_001) }, "body"],
          ["a body with NUL", path("ok"), { body: "a\u0000b" }, "body"],
          ["no body", path("ok"), {}, "body"],
          ["a body that is no string", path("ok"), { body: 5 }, "body"],
          ["an unknown role", path("ok"), { body: "x", role: "admin" }, "role"]
        ]
        for (const [what, url, json, field] of bad) {
          const res = yield* send(a, "PUT", url, json)
          expect(res.status, what).toBe(400)
          expect(JSON.stringify(res.body), what).toContain(field)
        }
        const notJson = yield* send(a, "PUT", path("ok"), undefined, { "content-type": "application/json" })
        expect(notJson.status).toBe(400)
        expect((yield* send(outsider, "PUT", path("ok"), { body: "x" })).status).toBe(404)
        expect((yield* send(outsider, "DELETE", path("ok"))).status).toBe(404)
        expect((yield* send(undefined, "PUT", path("ok"), { body: "x" })).status).toBe(401)
        expect((yield* send(a, "PUT", `/api/projects/not-a-uuid/workspace/drafts/ok`, { body: "x" })).status).toBe(400)
        // Nothing of the refused ones went out.
        yield* sleep(200)
        expect(signalsOf(muxA, "draft").map((e) => e.data.draftId)).toEqual(["big", "empty"])
      }))
  })

  describe("bounded (G11)", () => {
    it.scoped("at most 16 live drafts per workspace: one more ends the one updated longest ago, on every connection", () =>
      Effect.gen(function*() {
        const { a, projectId } = yield* setup
        const muxA = yield* openSse("/api/stream", { token: a.token })
        for (let i = 1; i <= 17; i++) yield* putDraft(a, projectId, `d${i}`, `draft ${i}`)
        yield* putDraft(a, projectId, "d2", "draft 2, updated")
        yield* putDraft(a, projectId, "d18", "draft 18")
        const ended = yield* awaitFrame(
          muxA,
          "d1's end",
          (e) => e.event === "draft" && e.data.draftId === "d1" && e.data.ended === true
        )
        expect(ended.id).toBeUndefined()
        // d2 was updated after d3: d3 went next.
        yield* awaitFrame(
          muxA,
          "d3's end",
          (e) => e.event === "draft" && e.data.draftId === "d3" && e.data.ended === true
        )
        const late = yield* openSse(`/api/projects/${projectId}/workspace/stream`, { token: a.token })
        yield* awaitFrame(late, "the live drafts", (e) => e.event === "draft" && e.data.draftId === "d18")
        yield* sleep(300)
        // The live drafts, each with its latest body (d2's update may come after the snapshot: coalesced).
        const latest = new Map(signalsOf(late, "draft").map((e) => [e.data.draftId as string, e.data.body as string]))
        expect([...latest.keys()].sort()).toEqual(["d2", ...Array.from({ length: 15 }, (_, i) => `d${i + 4}`)].sort())
        expect(latest.get("d2")).toBe("draft 2, updated")
      }))
  })

  describe("a slow reader", () => {
    it.scoped("a connection behind on its socket gets each signal's latest state once it drains, and no overflow", () =>
      Effect.gen(function*() {
        const { a, projectId } = yield* setup
        const server = yield* TestServer
        const ws = workspaceStream(projectId, a.id)
        const slow = yield* Effect.acquireRelease(
          Effect.promise(() =>
            connectStalling(server.url, `/api/projects/${projectId}/workspace/stream`, { token: a.token })
          ),
          (c) => Effect.sync(() => c.close())
        )
        expect(slow.status).toBe(200)
        // About 6 MB of events it does not read: its socket stops draining.
        yield* Effect.forEach(
          Array.from({ length: 600 }),
          (_, i) => post(a, projectId, { workspace: true, body: `${i} ${"x".repeat(9_990)}` }),
          { concurrency: 8 }
        )
        yield* sleep(300)
        for (let i = 1; i <= 5; i++) {
          yield* putDraft(a, projectId, "slow", `version ${i}`, "worker")
          yield* sleep(150)
        }
        slow.resume()
        yield* Effect.promise(() => slow.waitForEvents(600, 30_000))
        yield* awaitFrame(
          { all: slow.all } as unknown as SseConnection,
          "the latest draft",
          (e) => e.event === "draft" && e.data.body === "version 5"
        )
        const drafts = slow.signals.filter((e) => e.event === "draft" && e.data.stream === ws)
        expect(drafts.at(-1)!.data.body).toBe("version 5")
        // It was behind: it got fewer frames than were sent, the latest last — and its events all.
        expect(slow.events.map((e) => e.data.seq)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1))
      }))
  })

  describe("isolation and resume", () => {
    it.scoped("a removed member stops getting the project's signals at once; presence goes with them", () =>
      Effect.gen(function*() {
        const { a, b, projectId } = yield* setup
        const muxA = yield* openSse("/api/stream", { token: a.token })
        const muxB = yield* openSse("/api/stream", { token: b.token })
        const streamB = yield* openSse(`/api/projects/${projectId}/stream`, { token: b.token })
        yield* awaitFrame(
          muxA,
          "B present",
          (e) => e.event === "presence" && e.data.userId === b.id && e.data.present === true
        )
        yield* awaitFrame(streamB, "B's snapshot", (e) => e.event === "presence")
        yield* typing(a, projectId)
        yield* awaitFrame(muxB, "A typing, before", (e) => e.event === "typing")

        expectStatus(yield* send(a, "DELETE", `/api/projects/${projectId}/members/${b.id}`), 204, "remove B")
        for (const sse of [muxB, streamB]) {
          yield* awaitFrame(sse, "B's removal", (e) => e.event === "member.removed" && e.data.data.userId === b.id)
        }
        yield* awaitFrame(
          muxA,
          "B gone",
          (e) => e.event === "presence" && e.data.userId === b.id && e.data.present === false
        )
        expect(yield* presenceOf(a, projectId)).toEqual([a.id])

        // A types and someone else comes: B's connections hear nothing of it.
        yield* sleep(1_000)
        yield* typing(a, projectId)
        const muxA2 = yield* openSse("/api/stream", { token: a.token })
        yield* awaitFrame(muxA2, "A's snapshot", (e) => e.event === "presence")
        yield* sleep(300)
        for (const sse of [muxB, streamB]) {
          const removal = sse.all.findIndex((e) => e.event === "member.removed")
          expect(sse.all.slice(removal + 1).filter((e) => e.data.stream === projectStream(projectId))).toEqual([])
        }
        expect(signalsOf(muxB, "typing")).toHaveLength(1)
        expect((yield* send(b, "POST", `/api/projects/${projectId}/typing`)).status).toBe(404)
        expect((yield* send(b, "GET", `/api/projects/${projectId}/presence`)).status).toBe(404)
      }))

    it.scoped("signal frames leave the resume position as it was: Last-Event-ID continues with no gap or duplicate", () =>
      Effect.gen(function*() {
        const { a, b, projectId } = yield* setup
        const sse = yield* openSse(`/api/projects/${projectId}/stream`, { token: a.token })
        yield* awaitFrame(sse, "A's snapshot", (e) => e.event === "presence")
        yield* post(b, projectId, { body: "one" })
        const one = yield* awaitFrame(sse, "one", (e) => e.event === "message.created")
        // Signals after the event: presence (B comes), typing, a draft.
        const streamB = yield* openSse(`/api/projects/${projectId}/stream`, { token: b.token })
        yield* awaitFrame(streamB, "B's snapshot", (e) => e.event === "presence")
        yield* typing(b, projectId)
        yield* awaitFrame(sse, "B typing", (e) => e.event === "typing")
        // The last id a client saw is the event's: signal frames carry none.
        const lastId = [...sse.all].reverse().find((e) => e.id !== undefined)!.id
        expect(lastId).toBe(one.id)
        sse.close()
        yield* post(b, projectId, { body: "two" })
        const resumed = yield* openSse(`/api/projects/${projectId}/stream`, { token: a.token, lastEventId: lastId! })
        const two = yield* awaitFrame(resumed, "two", (e) => e.event === "message.created")
        expect(two.data.seq).toBe(one.data.seq + 1)
        yield* sleep(200)
        expect(resumed.events.filter((e) => e.id !== undefined).map((e) => e.data.seq)).toEqual([one.data.seq + 1])
        yield* awaitEvents(resumed, 1)
      }))
  })
})

layer(testServerLayer({ writeRate: 2, draftRate: 5 }), live)("live signals within the limits", (it) => {
  it.scoped("typing counts as a write; draft updates have their own rate; over either, a 429 with Retry-After", () =>
    Effect.gen(function*() {
      // B has made no write yet (A's project and B's membership were A's writes).
      const { a, b, projectId } = yield* setup
      // Burst = 2 s worth: 4 writes, 10 draft updates.
      const typed = yield* Effect.forEach(
        Array.from({ length: 6 }),
        () => send(b, "POST", `/api/projects/${projectId}/typing`)
      )
      const typedStatuses = typed.map((r) => r.status)
      expect(typedStatuses.filter((s) => s === 204).length).toBeGreaterThanOrEqual(4)
      expect(typedStatuses.filter((s) => s === 204).length).toBeLessThanOrEqual(5)
      const refused = typed.find((r) => r.status === 429)!
      expect(refused.headers.get("retry-after")).toMatch(/^\d+$/)
      expect(refused.body).toMatchObject({ _tag: "TooManyRequests", limit: "write" })

      const drafts = yield* Effect.forEach(
        Array.from({ length: 14 }),
        (_, i) => send(a, "PUT", `/api/projects/${projectId}/workspace/drafts/d`, { body: `b${i}` })
      )
      const draftStatuses = drafts.map((r) => r.status)
      expect(draftStatuses.filter((s) => s === 204).length).toBeGreaterThanOrEqual(10)
      expect(draftStatuses.filter((s) => s === 204).length).toBeLessThanOrEqual(12)
      expect(drafts.find((r) => r.status === 429)!.body).toMatchObject({ _tag: "TooManyRequests", limit: "draft" })
    }))
})
