/**
 * The SSE endpoints over real HTTP against real PostgreSQL, read the way a browser's EventSource
 * reads them (the README's G4, G5, G7):
 *
 * - wire format: status, headers, `retry:` first, `id:`/`event:`/`data:` per event, keepalives;
 * - resume: `?after`, `Last-Event-ID` (which wins), neither; any position, exactly once, in order;
 * - bad positions 400, tokens 401, non-members 404, and no stream ever carries another's events;
 * - a removed member's stream ends after their removal;
 * - live continuity under concurrent writers, slow consumers, and a broker that duplicates,
 *   reorders and loses deliveries.
 *
 * "Exactly these events" is checked with a sentinel: after the expected events, one more is
 * posted and must arrive right after them — so a duplicate, a stray or a gap before it shows.
 * The layers run with the live clock (the server's heartbeats and the publisher need real time).
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, layer } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Effect, FastCheck, Fiber } from "effect"
import { randomUUID } from "node:crypto"
import { connectSse, type SseConnection, type SseEvent } from "../../../test-support/SseClient.js"
import { EventReader } from "../src/stream/EventReader.js"
import { addMember, createProject, post, postMany } from "./support/HttpTesting.js"
import {
  awaitEvents,
  connectStalling,
  fetchSse,
  ids,
  openSse,
  range,
  settlesWithin,
  sseConnectionsGauge
} from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

// ---------------------------------------------------------------------------------------------
// Helpers

const projectStream = (projectId: string) => `/api/projects/${projectId}/stream`
const workspaceStream = (projectId: string) => `/api/projects/${projectId}/workspace/stream`

/** A new user who owns a new project (whose stream holds `project.created` at seq 1). */
const ownedProject = (name = "owner") =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const owner = yield* server.user(name)
    const project = yield* createProject(owner, "sse")
    return { server, owner, projectId: project.id }
  })

/** A new user, made a member of the project. */
const newMember = (owner: TestUser, projectId: Ids.ProjectId, name: string) =>
  Effect.flatMap(TestServer, (server) => Effect.tap(server.user(name), (user) => addMember(owner, projectId, user)))

/**
 * The connection has received exactly `expected` (seqs) and nothing else: a sentinel event is
 * posted by `as` and must be the very next one to arrive.
 */
const expectExactly = (
  connection: SseConnection,
  expected: ReadonlyArray<number>,
  sentinel: { readonly as: TestUser; readonly projectId: Ids.ProjectId; readonly workspace?: boolean }
) =>
  Effect.gen(function*() {
    yield* awaitEvents(connection, expected.length, 5_000)
    const last = yield* post(sentinel.as, sentinel.projectId, {
      workspace: sentinel.workspace ?? false,
      body: "sentinel"
    })
    yield* Effect.promise(() => connection.waitForEvents(expected.length + 1, 5_000).catch(() => []))
    expect(ids(connection.events)).toEqual([...expected, last.event.seq])
  })

/**
 * Posts `n` messages and returns once a live client has seen them all: they are published, so a
 * connection opened next replays them from the database and gets nothing of them from the broker.
 */
const postAndSettle = (
  as: TestUser,
  projectId: Ids.ProjectId,
  n: number,
  options: { readonly workspace?: boolean } = {}
) =>
  Effect.scoped(Effect.gen(function*() {
    const witness = yield* openSse((options.workspace ? workspaceStream : projectStream)(projectId), {
      token: as.token
    })
    yield* postMany(as, projectId, n, options)
    yield* awaitEvents(witness, n)
  }))

const ENVELOPE_KEYS = ["actorId", "data", "id", "occurredAt", "projectId", "seq", "stream", "type"]
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

/** The `id:` and `event:` lines agree with an envelope that has exactly the envelope's fields (domain Events). */
const expectWellFormed = (event: SseEvent) => {
  expect(Object.keys(event.data).sort()).toEqual(ENVELOPE_KEYS)
  // `<seq>.<tag>`: the tag is the first 8 hex digits of the event's id (G9).
  expect(event.id).toBe(`${event.data.seq}.${event.data.id.slice(0, 8)}`)
  expect(event.event).toBe(event.data.type)
  expect(event.data.occurredAt).toMatch(ISO_8601)
  expect(Number.isNaN(Date.parse(event.data.occurredAt))).toBe(false)
}

/** Live clock: the server's heartbeats, publisher and timeouts run in real time. */
const live = { excludeTestServices: true } as const

// ---------------------------------------------------------------------------------------------

layer(testServerLayer({ sseHeartbeatMs: 100 }), live)("SSE", (it) => {
  describe("wire format", () => {
    it.scoped("answers 200 text/event-stream, no-cache no-transform, X-Accel-Buffering: no, uncompressed", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        for (const path of [projectStream(projectId), workspaceStream(projectId)]) {
          const res = yield* fetchSse(server.url, path, {
            headers: { authorization: `Bearer ${owner.token}`, "accept-encoding": "gzip, deflate, br" },
            until: (text) => text.includes("\n\n")
          })
          expect(res.status).toBe(200)
          expect(res.headers.get("content-type")).toBe("text/event-stream")
          expect(res.headers.get("cache-control")).toBe("no-cache, no-transform")
          expect(res.headers.get("x-accel-buffering")).toBe("no")
          expect(res.headers.get("content-encoding")).toBeNull()
          // The body is plain text from its first byte: a `retry:` frame before anything else.
          expect(res.text).toMatch(/^retry: \d+\n\n/)
        }
      }))

    it.scoped("never sends a Connection header (HTTP/2 forbids it), whether the client keeps the connection alive or not", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        // fetch keeps connections alive; connectSse asks for `Connection: close`.
        const keptAlive = yield* fetchSse(server.url, projectStream(projectId), {
          headers: { authorization: `Bearer ${owner.token}` },
          until: (text) => text.includes("\n\n")
        })
        const closing = yield* openSse(projectStream(projectId), { token: owner.token })
        expect({ keepAlive: keptAlive.headers.get("connection"), close: closing.headers.connection ?? null })
          .toEqual({ keepAlive: null, close: null })
      }))

    it.scoped("every event is `id: <seq>.<tag>`, `event: <type>`, `data: <envelope>` and the envelope has exactly its fields", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        const bob = yield* newMember(owner, projectId, "bob")
        const created = yield* server.request("POST", `/api/projects/${projectId}/messages`, {
          token: owner.token,
          json: { body: "multi\nline \"quoted\" ✓", clientMessageId: "c-1" }
        })
        const messageId = created.body.message.id as string
        yield* server.request("PATCH", `/api/projects/${projectId}/messages/${messageId}`, {
          token: owner.token,
          json: { body: "edited" }
        })
        yield* server.request("DELETE", `/api/projects/${projectId}/messages/${messageId}`, { token: owner.token })
        yield* server.request("DELETE", `/api/projects/${projectId}/members/${bob.id}`, { token: owner.token })

        // The raw frames, byte for byte: retry, the presence snapshot (a live signal: no id, G10),
        // then one `id`/`event`/`data` triple per event.
        const raw = yield* fetchSse(server.url, `${projectStream(projectId)}?after=0`, {
          headers: { authorization: `Bearer ${owner.token}` },
          // Six whole frames (what follows the last blank line may still be arriving).
          until: (text) => text.split("\n\n").slice(0, -1).filter((f) => f.startsWith("id: ")).length >= 6
        })
        const frames = raw.text.split("\n\n").filter((f) => f !== "" && !f.startsWith(":"))
        expect(frames[0]).toMatch(/^retry: \d+$/)
        expect(frames[1]).toMatch(/^event: presence\ndata: \{"stream":"project:[^\n]*\}$/)
        expect(frames.slice(2)).toHaveLength(6)
        for (const frame of frames.slice(2)) {
          expect(frame).toMatch(/^id: \d+\.[0-9a-f]{8}\nevent: [a-z.]+\ndata: \{[^\n]*\}$/)
        }

        const sse = yield* openSse(projectStream(projectId), { token: owner.token, after: "0" })
        const events = yield* awaitEvents(sse, 6)
        expect(sse.retry.length).toBe(1)
        expect(sse.retry[0]).toBeGreaterThan(0)
        events.forEach(expectWellFormed)
        expect(events.map((e) => e.event)).toEqual([
          "project.created",
          "member.added",
          "message.created",
          "message.edited",
          "message.deleted",
          "member.removed"
        ])
        expect(ids(events)).toEqual([1, 2, 3, 4, 5, 6])
        for (const e of events) {
          expect(e.data.stream).toBe(`project:${projectId}`)
          expect(e.data.projectId).toBe(projectId)
          expect(e.data.actorId).toBe(owner.id)
        }
        expect(events[0]!.data.data).toEqual({ name: "sse", ownerId: owner.id })
        expect(events[1]!.data.data).toEqual({ userId: bob.id, role: "member" })
        // The message.created event is the one the POST answered with, carrying the body verbatim.
        expect(events[2]!.data).toMatchObject(created.body.event)
        expect(events[2]!.data.data).toEqual({
          messageId,
          authorId: owner.id,
          role: "user",
          body: "multi\nline \"quoted\" ✓",
          clientMessageId: "c-1"
        })
        expect(events[3]!.data.data).toEqual({ messageId, body: "edited" })
        expect(events[4]!.data.data).toEqual({ messageId })
        expect(events[5]!.data.data).toEqual({ userId: bob.id })
      }))

    it.scoped("an idle stream carries `: keepalive` comments at the heartbeat interval", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        const raw = yield* fetchSse(server.url, projectStream(projectId), {
          headers: { authorization: `Bearer ${owner.token}` },
          until: (text) => text.split(": keepalive\n\n").length > 3,
          timeoutMs: 3_000
        })
        // retry first, then (nothing happening) nothing but keepalive comments.
        // (After the presence snapshot of a project stream: a live signal, G10.)
        expect(raw.text).toMatch(/^retry: \d+\n\n(event: presence\ndata: [^\n]*\n\n)?(: keepalive\n\n){3,}$/)
        const sse = yield* openSse(workspaceStream(projectId), { token: owner.token })
        const keepalives = () => sse.comments.filter((c) => c === "keepalive").length
        for (let i = 0; i < 30 && keepalives() < 2; i++) yield* Effect.sleep("100 millis")
        expect(keepalives()).toBeGreaterThanOrEqual(2)
        expect(sse.events).toEqual([])
      }))
  })

  describe("resume", () => {
    it.scoped("?after=0 replays the whole stream from seq 1, then continues live", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        yield* postAndSettle(owner, projectId, 4)
        const sse = yield* openSse(projectStream(projectId), { token: owner.token, after: "0" })
        yield* awaitEvents(sse, 5)
        yield* postMany(owner, projectId, 2)
        yield* expectExactly(sse, range(1, 7), { as: owner, projectId })
      }))

    it.scoped("Last-Event-ID: k replays exactly k+1..head, then continues live", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        yield* postAndSettle(owner, projectId, 5)
        const sse = yield* openSse(projectStream(projectId), { token: owner.token, lastEventId: "3" })
        yield* awaitEvents(sse, 3)
        yield* postMany(owner, projectId, 2)
        yield* expectExactly(sse, range(4, 8), { as: owner, projectId })
      }))

    it.scoped("the workspace stream resumes the same way", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        yield* postAndSettle(owner, projectId, 4, { workspace: true })
        const fromStart = yield* openSse(workspaceStream(projectId), { token: owner.token, after: "0" })
        const fromTwo = yield* openSse(workspaceStream(projectId), { token: owner.token, lastEventId: "2" })
        yield* awaitEvents(fromStart, 4)
        yield* post(owner, projectId, { workspace: true })
        const sentinel = { as: owner, projectId, workspace: true }
        yield* expectExactly(fromStart, range(1, 5), sentinel)
        yield* awaitEvents(fromTwo, 4)
        expect(ids(fromTwo.events)).toEqual([3, 4, 5, 6])
      }))

    it.scoped("Last-Event-ID wins over ?after when both are sent, whichever is larger", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        yield* postAndSettle(owner, projectId, 5)
        const headerAhead = yield* openSse(projectStream(projectId), {
          token: owner.token,
          lastEventId: "4",
          after: "1"
        })
        const headerBehind = yield* openSse(projectStream(projectId), {
          token: owner.token,
          lastEventId: "1",
          after: "4"
        })
        const headerZero = yield* openSse(projectStream(projectId), {
          token: owner.token,
          lastEventId: "0",
          after: "5"
        })
        yield* awaitEvents(headerBehind, 5)
        yield* expectExactly(headerAhead, [5, 6], { as: owner, projectId })
        yield* awaitEvents(headerBehind, 6)
        yield* awaitEvents(headerZero, 7)
        expect(ids(headerBehind.events)).toEqual(range(2, 7))
        expect(ids(headerZero.events)).toEqual(range(1, 7))
      }))

    it.scoped("with neither position, only events committed after connecting arrive", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        yield* postAndSettle(owner, projectId, 3)
        const sse = yield* openSse(projectStream(projectId), { token: owner.token })
        const workspace = yield* openSse(workspaceStream(projectId), { token: owner.token })
        yield* postMany(owner, projectId, 2)
        yield* expectExactly(sse, [5, 6], { as: owner, projectId })
        yield* expectExactly(workspace, [], { as: owner, projectId, workspace: true })
      }))

    it.effect.prop(
      "from any position p of a stream of H events, then M more: exactly p+1..H+M, in order, once each",
      {
        scenario: FastCheck.integer({ min: 1, max: 8 }).chain((head) =>
          FastCheck.record({
            head: FastCheck.constant(head),
            position: FastCheck.integer({ min: 0, max: head }),
            more: FastCheck.integer({ min: 0, max: 4 }),
            via: FastCheck.constantFrom("after" as const, "lastEventId" as const)
          })
        )
      },
      ({ scenario: { head, more, position, via } }) =>
        Effect.scoped(Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject()
          yield* postAndSettle(owner, projectId, head - 1)
          const sse = yield* openSse(projectStream(projectId), {
            token: owner.token,
            ...(via === "after" ? { after: String(position) } : { lastEventId: String(position) })
          })
          yield* postMany(owner, projectId, more)
          yield* expectExactly(sse, range(position + 1, head + more), { as: owner, projectId })
        })),
      { fastCheck: { numRuns: 20 } }
    )
  })

  describe("access and isolation", () => {
    /** Asks both streams for every value, by ?after and by Last-Event-ID; returns the answers that were not 400. */
    const notRefused = (values: ReadonlyArray<string>, vias: ReadonlyArray<"after" | "lastEventId">) =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        const accepted: Array<string> = []
        for (const path of [projectStream(projectId), workspaceStream(projectId)]) {
          for (const value of values) {
            for (const via of vias) {
              const sse = yield* Effect.promise(() =>
                connectSse(server.url, path, {
                  token: owner.token,
                  ...(via === "after" ? { after: value } : { lastEventId: value })
                })
              )
              sse.close()
              if (sse.status !== 400) {
                accepted.push(`${path.replace(projectId, ":id")} ${via}=${JSON.stringify(value)} → ${sse.status}`)
              } else {
                expect(sse.errorBody).toMatchObject({ _tag: expect.any(String), message: expect.any(String) })
                expect(JSON.stringify(sse.errorBody)).toMatch(via === "after" ? /after/ : /last-event-id/i)
              }
            }
          }
        }
        return accepted
      })

    it.effect("a negative, non-numeric, fractional or empty position is a 400 naming the field, by ?after and by Last-Event-ID", () =>
      Effect.map(
        notRefused(["-1", "abc", "1.5", ""], ["after", "lastEventId"]),
        (accepted) => expect(accepted).toEqual([])
      ))

    it.effect("a position is plain decimal digits: exponents, hex, signs and padding are 400 too", () =>
      Effect.gen(function*() {
        // (HTTP strips a header value's surrounding spaces, so the padded case is only sent in the URL.)
        const accepted = [
          ...yield* notRefused(["1e2", "0x10", "+3", "9007199254740993"], ["after", "lastEventId"]),
          ...yield* notRefused([" 7"], ["after"])
        ]
        expect(accepted).toEqual([])
      }))

    it.scoped("a missing or invalid token is a 401; the bearer header and ?access_token= both work", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        for (const path of [projectStream(projectId), workspaceStream(projectId)]) {
          const cases = [
            {},
            { token: "not-a-token" },
            { accessToken: "not-a-token" },
            { accessToken: "" }
          ]
          for (const options of cases) {
            const sse = yield* Effect.promise(() => connectSse(server.url, path, options))
            sse.close()
            expect(sse.status, `${path} ${JSON.stringify(options)}`).toBe(401)
            expect(sse.errorBody).toMatchObject({ _tag: "Unauthorized" })
          }
        }
        const viaHeader = yield* openSse(projectStream(projectId), { token: owner.token, after: "0" })
        const viaQuery = yield* openSse(projectStream(projectId), { accessToken: owner.token, after: "0" })
        const workspaceViaQuery = yield* openSse(workspaceStream(projectId), { accessToken: owner.token })
        expect([viaHeader.status, viaQuery.status, workspaceViaQuery.status]).toEqual([200, 200, 200])
        yield* awaitEvents(viaQuery, 1)
        yield* expectExactly(viaHeader, [1], { as: owner, projectId })
        yield* awaitEvents(viaQuery, 2)
        expect(ids(viaQuery.events)).toEqual([1, 2])
        yield* expectExactly(workspaceViaQuery, [], { as: owner, projectId, workspace: true })
      }))

    it.scoped("a non-member gets the same 404 as for a project that does not exist, on both streams", () =>
      Effect.gen(function*() {
        const { projectId, server } = yield* ownedProject()
        const stranger = yield* server.user("stranger")
        for (const path of [projectStream, workspaceStream]) {
          const hidden = yield* Effect.promise(() =>
            connectSse(server.url, path(projectId), { token: stranger.token, after: "0" })
          )
          const missing = yield* Effect.promise(() =>
            connectSse(server.url, path(randomUUID()), { token: stranger.token, after: "0" })
          )
          hidden.close()
          missing.close()
          expect(hidden.status).toBe(404)
          expect(missing.status).toBe(404)
          expect(hidden.errorBody).toMatchObject({ _tag: "NotFound" })
          expect(JSON.stringify(hidden.errorBody).replace(projectId, "X")).toBe(
            JSON.stringify(missing.errorBody).replace(/[0-9a-f-]{36}/, "X")
          )
        }
      }))

    it.scoped("a workspace stream carries only its owner's workspace events, replayed or live", () =>
      Effect.gen(function*() {
        const { owner: alice, projectId } = yield* ownedProject("alice")
        const bob = yield* newMember(alice, projectId, "bob")
        yield* post(bob, projectId, { workspace: true })
        yield* post(alice, projectId)
        yield* post(alice, projectId, { workspace: true })
        const alices = yield* openSse(workspaceStream(projectId), { token: alice.token, after: "0" })
        const bobs = yield* openSse(workspaceStream(projectId), { token: bob.token, after: "0" })
        yield* postMany(bob, projectId, 3, { workspace: true })
        yield* postMany(bob, projectId, 2)
        yield* postMany(alice, projectId, 2)
        yield* post(alice, projectId, { workspace: true })
        yield* expectExactly(alices, [1, 2], { as: alice, projectId, workspace: true })
        yield* expectExactly(bobs, [1, 2, 3, 4], { as: bob, projectId, workspace: true })
        for (const e of alices.events) {
          expect(e.data.stream).toBe(`workspace:${projectId}:${alice.id}`)
          expect(e.data.actorId).toBe(alice.id)
        }
        for (const e of bobs.events) expect(e.data.stream).toBe(`workspace:${projectId}:${bob.id}`)
      }))

    it.scoped("a project stream never carries workspace events", () =>
      Effect.gen(function*() {
        const { owner: alice, projectId } = yield* ownedProject("alice")
        const bob = yield* newMember(alice, projectId, "bob")
        yield* post(bob, projectId, { workspace: true })
        const replayed = yield* openSse(projectStream(projectId), { token: bob.token, after: "0" })
        const liveOnly = yield* openSse(projectStream(projectId), { token: alice.token })
        yield* postMany(alice, projectId, 2, { workspace: true })
        yield* postMany(bob, projectId, 2, { workspace: true })
        yield* expectExactly(liveOnly, [], { as: alice, projectId })
        yield* awaitEvents(replayed, 3)
        expect(ids(replayed.events)).toEqual([1, 2, 3])
        for (const e of [...replayed.events, ...liveOnly.events]) expect(e.data.stream).toBe(`project:${projectId}`)
      }))

    it.scoped("a member removed from the project sees their member.removed, then their project stream ends", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        const bob = yield* newMember(owner, projectId, "bob")
        const carol = yield* newMember(owner, projectId, "carol")
        const bobs = yield* openSse(projectStream(projectId), { token: bob.token })
        const carols = yield* openSse(projectStream(projectId), { token: carol.token })
        // Someone else's removal does not end bob's stream.
        expect(
          (yield* server.request("DELETE", `/api/projects/${projectId}/members/${carol.id}`, { token: owner.token }))
            .status
        ).toBe(204)
        yield* awaitEvents(bobs, 1)
        expect(yield* settlesWithin(bobs.ended, 300)).toBe(false)
        expect(yield* settlesWithin(carols.ended, 2_000)).toBe(true)
        expect(
          (yield* server.request("DELETE", `/api/projects/${projectId}/members/${bob.id}`, { token: owner.token }))
            .status
        ).toBe(204)
        expect(yield* settlesWithin(bobs.ended, 2_000)).toBe(true)
        yield* post(owner, projectId)
        expect(bobs.events.map((e) => [String(e.data.seq), e.event, e.data.data.userId])).toEqual([
          ["4", "member.removed", carol.id],
          ["5", "member.removed", bob.id]
        ])
        expect(carols.events.map((e) => [String(e.data.seq), e.event, e.data.data.userId])).toEqual([[
          "4",
          "member.removed",
          carol.id
        ]])
        // And they cannot come back to it.
        const again = yield* Effect.promise(() =>
          connectSse(server.url, projectStream(projectId), { token: bob.token, lastEventId: "5" })
        )
        again.close()
        expect(again.status).toBe(404)
      }))

    it.scoped("a member removed and added back replays their old removal without their stream ending", () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        const bob = yield* newMember(owner, projectId, "bob")
        yield* server.request("DELETE", `/api/projects/${projectId}/members/${bob.id}`, { token: owner.token })
        expect(
          (yield* server.request("POST", `/api/projects/${projectId}/members`, {
            token: owner.token,
            json: { userId: bob.id }
          })).status
        )
          .toBe(201)
        const sse = yield* openSse(projectStream(projectId), { token: bob.token, after: "0" })
        yield* awaitEvents(sse, 3)
        expect(yield* settlesWithin(sse.ended, 300), "the stream ended at the replayed member.removed").toBe(false)
        yield* expectExactly(sse, [1, 2, 3, 4], { as: owner, projectId })
        expect(sse.events.map((e) => e.event)).toEqual([
          "project.created",
          "member.added",
          "member.removed",
          "member.added",
          "message.created"
        ])
      }))
  })

  describe("live continuity", () => {
    it.scoped("a connected client gets 100 concurrently committed events exactly once, in seq order", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        const sse = yield* openSse(projectStream(projectId), { token: owner.token })
        const bob = yield* newMember(owner, projectId, "bob")
        yield* Effect.forEach(range(1, 100), (i) => post(i % 2 === 0 ? owner : bob, projectId), {
          concurrency: "unbounded"
        })
        yield* expectExactly(sse, range(2, 102), { as: owner, projectId })
      }))

    it.scoped("connecting with ?after=0 while 150 posts are in flight: the replay and the live tail meet exactly", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        const writers = yield* Effect.fork(
          Effect.forEach(range(1, 150), () => post(owner, projectId), { concurrency: 8 })
        )
        yield* Effect.sleep("100 millis")
        const sse = yield* openSse(projectStream(projectId), { token: owner.token, after: "0" })
        const midway = yield* openSse(projectStream(projectId), { token: owner.token, lastEventId: "10" })
        yield* Fiber.join(writers)
        yield* expectExactly(sse, range(1, 151), { as: owner, projectId })
        yield* awaitEvents(midway, 142)
        expect(ids(midway.events)).toEqual(range(11, 152))
      }))
  })
})

// ---------------------------------------------------------------------------------------------

/**
 * Follows a stream the way EventSource does: each time the server ends the response, reconnect
 * with `Last-Event-ID` = the last id received — until seq `to` has arrived. Returns every seq
 * received, over all connections, and how many connections it took.
 */
const follow = (path: string, token: string, from: number, to: number) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const received: Array<number> = []
    let connections = 0
    while ((received.at(-1) ?? from) < to && connections < 20) {
      connections++
      const last = received.at(-1) ?? from
      const sse = yield* Effect.promise(() => connectSse(server.url, path, { token, lastEventId: String(last) }))
      expect(sse.status).toBe(200)
      yield* Effect.promise(() =>
        Promise.race([sse.waitForEvents(to - last, 10_000).catch(() => undefined), sse.ended])
      )
      sse.close()
      received.push(...ids(sse.events))
    }
    return { received, connections }
  })

layer(testServerLayer({ sseBuffer: 5 }), live)("SSE slow consumers (buffer of 5 events)", (it) => {
  // ~30 KB of UTF-8 per event: a few hundred of them outgrow what the sockets' buffers absorb.
  const BIG = "€".repeat(10_000)
  const FLOOD = 250

  const flood = (as: TestUser, projectId: Ids.ProjectId, concurrency = 16) =>
    postMany(as, projectId, FLOOD, { body: BIG, concurrency })

  it.scoped(
    "a client that stops reading has its response ended; resuming from its last id it gets every event exactly once",
    () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        const path = projectStream(projectId)
        const stalled = yield* Effect.acquireRelease(
          Effect.promise(() => connectStalling(server.url, path, { token: owner.token })),
          (c) => Effect.sync(() => c.close())
        )
        expect(stalled.status).toBe(200)
        // Meanwhile a reading client, reconnecting whenever it is cut off, misses nothing either.
        const reader = yield* Effect.fork(follow(path, owner.token, 0, FLOOD + 1))
        yield* flood(owner, projectId)
        const followed = yield* Fiber.join(reader)
        expect(followed.received).toEqual(range(1, FLOOD + 1))

        stalled.resume()
        expect(yield* settlesWithin(stalled.ended, 10_000), "the server ends the stalled response").toBe(true)
        // Ended cleanly if the client took the end in time; otherwise its socket was cut after a grace.
        expect(["end", "aborted"]).toContain(yield* Effect.promise(() => stalled.ended))
        const got = ids(stalled.events)
        // What it got is an unbroken prefix — and not everything: the server cut it off.
        expect(got).toEqual(range(2, got.length + 1))
        expect(got.length).toBeLessThan(FLOOD)
        const resumed = yield* follow(path, owner.token, got.at(-1) ?? 1, FLOOD + 1)
        expect(resumed.received).toEqual(range((got.at(-1) ?? 1) + 1, FLOOD + 1))
      }),
    { timeout: 30_000 }
  )

  it.scoped(
    "the server lets go of a stalled connection that overflowed, without waiting for the client to read",
    () =>
      Effect.gen(function*() {
        const { owner, projectId, server } = yield* ownedProject()
        yield* flood(owner, projectId)
        // The replay of ~7 MB fills the socket of a client that reads nothing: the server's writes
        // stall. Then live events overflow its buffer of 5 — the connection is over.
        const stalled = yield* Effect.acquireRelease(
          Effect.promise(() =>
            connectStalling(server.url, projectStream(projectId), { token: owner.token, after: "0" })
          ),
          (c) => Effect.sync(() => c.close())
        )
        expect(stalled.status).toBe(200)
        yield* Effect.sleep("300 millis")
        expect(yield* sseConnectionsGauge).toBe(1)
        yield* postMany(owner, projectId, 10, { concurrency: 1 })
        // The server must not keep holding it (its fiber, subscription and socket buffers) for as
        // long as the client stays silent: it ends the response, or drops the connection.
        let open = 1
        for (let i = 0; i < 30 && open > 0; i++) {
          yield* Effect.sleep("100 millis")
          open = yield* sseConnectionsGauge
        }
        expect(open, "SSE connections the server still holds 3 s after the overflow").toBe(0)
      }),
    { timeout: 30_000 }
  )
})

// ---------------------------------------------------------------------------------------------

layer(testServerLayer({ broker: "postgres", chaosPublishFailureRate: 1 }), live)(
  "SSE over a broker that duplicates, reorders and loses deliveries",
  (it) => {
    // The server's own publisher fails every publish (chaos rate 1), so nothing reaches the SSE
    // hub except what the test delivers itself on the postgres broker's channel: committed
    // events, in whatever order, as many times as it likes, or not at all.
    const deliver = (stream: string, deliveries: ReadonlyArray<number | { readonly byReference: number }>) =>
      Effect.gen(function*() {
        const reader = yield* EventReader
        const sql = yield* SqlClient.SqlClient
        const events = new Map((yield* Effect.orDie(reader.range(stream, 0, undefined, 10_000))).map((e) => [e.seq, e]))
        const payloads = deliveries.map((d) => {
          const event = events.get(typeof d === "number" ? d : d.byReference)
          expect(event, `seq ${JSON.stringify(d)} is committed`).toBeDefined()
          return JSON.stringify(typeof d === "number" ? event : { stream: event!.stream, seq: event!.seq })
        })
        yield* Effect.orDie(
          sql`SELECT pg_notify('herald_events', p) FROM unnest(${payloads}::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`
        )
      })

    it.scoped("each event reaches the client exactly once, in seq order, whatever the broker does", () =>
      Effect.gen(function*() {
        const { owner, projectId } = yield* ownedProject()
        const stream = `project:${projectId}`
        const sse = yield* openSse(projectStream(projectId), { token: owner.token })
        yield* postMany(owner, projectId, 9)
        yield* Effect.sleep("300 millis")
        // The control: with the publisher failing, nothing arrives by itself.
        expect(sse.events).toEqual([])
        yield* deliver(stream, [4, 4, 2, 3, 3, 7, 2, 10, 9, 10, 5])
        yield* awaitEvents(sse, 9)
        yield* post(owner, projectId)
        // The newest, announced only by reference (as an oversized NOTIFY payload would be), then stale repeats.
        yield* deliver(stream, [{ byReference: 11 }, 11, 6, 1])
        yield* Effect.promise(() => sse.waitForEvents(10, 5_000).catch(() => []))
        yield* Effect.sleep("100 millis")
        expect(ids(sse.events)).toEqual(range(2, 11))
        sse.events.forEach(expectWellFormed)
      }))

    it.effect.prop(
      "from any position, with any delivery schedule ending at the head, the client gets exactly position+1..head",
      {
        scenario: FastCheck.record({
          before: FastCheck.integer({ min: 1, max: 6 }),
          after: FastCheck.integer({ min: 1, max: 6 })
        })
          .chain(({ after, before }) =>
            FastCheck.record({
              before: FastCheck.constant(before),
              after: FastCheck.constant(after),
              position: FastCheck.integer({ min: 0, max: before }),
              // Any seqs of the stream, repeated, shuffled, some never: the broker's worst.
              deliveries: FastCheck.array(FastCheck.integer({ min: 1, max: before + after }), { maxLength: 20 })
            })
          )
      },
      ({ scenario: { after, before, deliveries, position } }) =>
        Effect.scoped(Effect.gen(function*() {
          const { owner, projectId } = yield* ownedProject()
          yield* postMany(owner, projectId, before - 1)
          const sse = yield* openSse(projectStream(projectId), { token: owner.token, lastEventId: String(position) })
          yield* postMany(owner, projectId, after)
          const head = before + after
          yield* deliver(`project:${projectId}`, [...deliveries, head, ...deliveries])
          yield* Effect.promise(() => sse.waitForEvents(head - position, 5_000).catch(() => []))
          yield* Effect.sleep("50 millis")
          expect(ids(sse.events)).toEqual(range(position + 1, head))
        })),
      { fastCheck: { numRuns: 15 } }
    )
  }
)
