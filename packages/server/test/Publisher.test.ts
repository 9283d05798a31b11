import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Scope } from "effect"
import type { SseConnection } from "../../../test-support/SseClient.js"
import { ChatService } from "../src/chat/ChatService.js"
import { asUser } from "../src/chat/Policy.js"
import { OutboxStore } from "../src/outbox/OutboxStore.js"
import { PublisherStatus } from "../src/outbox/PublisherStatus.js"
import { HAND_OFF_GRACE_MS } from "../src/outbox/Wakeup.js"
import { failingAfter } from "./support/ChatHarness.js"
import {
  deliveryRows,
  eventually,
  publisherAs,
  publisherServerLayer,
  RecordingBroker,
  sse,
  sseEvents,
  statusCounts,
  userWithToken,
  withoutLogs
} from "./support/PublisherHarness.js"
import { TestServer, testServerLayer } from "./support/TestServer.js"

const range = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

/** The seqs an SSE client received, in arrival order. */
const seqsOf = (client: SseConnection) => client.events.map((e) => Number(e.data.seq))

/** After `n` events, waits a little longer: anything more would be a duplicate. */
const receivedExactly = (client: SseConnection, n: number) =>
  Effect.gen(function*() {
    yield* sseEvents(client, n, 15_000)
    yield* Effect.sleep("150 millis")
    expect(seqsOf(client)).toEqual(range(n))
    expect(client.events.map((e) => e.data.seq)).toEqual(range(n))
  })

const allPublished = (what: string) =>
  eventually(what, Effect.map(deliveryRows, (rows) => rows.length > 0 && rows.every((r) => r.status === "published")))

describe("outbox publisher", () => {
  it.live(
    "under 50 % broker failures, 200 messages posted at once are all published (none dead, none lost) and an SSE client gets seq 1..201 exactly once, in order",
    () =>
      Effect.gen(function*() {
        const n = 200
        const server = yield* TestServer
        const alice = yield* server.user("alice")
        const project = yield* server.request("POST", "/api/projects", { token: alice.token, json: { name: "chaos" } })
        const projectId = project.body.id as string
        const client = yield* sse(server.url, `/api/projects/${projectId}/stream`, { token: alice.token, after: "0" })
        yield* sseEvents(client, 1)

        const posts = yield* Effect.forEach(
          range(n),
          (i) =>
            server.request("POST", `/api/projects/${projectId}/messages`, {
              token: alice.token,
              json: { body: `m${i}` }
            }),
          { concurrency: 25 }
        )
        expect(posts.map((p) => p.status)).toEqual(posts.map(() => 201))

        yield* allPublished("every committed event is published")
        expect(yield* statusCounts).toEqual({ published: n + 1 })
        const rows = yield* deliveryRows
        // The drill really failed publishes: some rows needed more than one attempt.
        expect(rows.some((r) => r.attempts > 1)).toBe(true)
        const metrics = yield* server.request("GET", "/metrics")
        expect(Number(/herald_outbox_publish_failures_total (\d+)/.exec(metrics.body)?.[1])).toBeGreaterThan(0)

        yield* receivedExactly(client, n + 1)
        // … and they are the committed events themselves.
        expect(client.events.map((e) => e.data.id)).toEqual(rows.map((r) => r.id))
        expect(client.events.slice(1).map((e) => e.data.data.body).sort()).toEqual(range(n).map((i) => `m${i}`).sort())

        // Failing publishes are the broker's problem, not the publisher's: it stays ready.
        const ready = yield* server.request("GET", "/health/ready")
        expect(ready.status).toBe(200)
        expect(ready.body.checks).toEqual({ database: "ok", publisher: "ok", broker: "ok" })
        expect((yield* (yield* PublisherStatus).get)._tag).toBe("Running")
      }).pipe(
        Effect.scoped,
        Effect.provide(testServerLayer({
          chaosPublishFailureRate: 0.5,
          publishBackoffBaseMs: 1,
          publishBackoffMaxMs: 20,
          pollIntervalMs: 20
        })),
        withoutLogs
      )
  )

  it.live(
    "a publisher killed after claiming holds its rows only until its lease ends; then another publisher publishes each once",
    () =>
      Effect.gen(function*() {
        const k = 20
        const server = yield* TestServer
        const store = yield* OutboxStore
        const broker = yield* RecordingBroker
        const sql = yield* SqlClient.SqlClient
        const alice = yield* server.user("alice")
        const project = yield* server.request("POST", "/api/projects", { token: alice.token, json: { name: "lease" } })
        const projectId = project.body.id as string
        const client = yield* sse(server.url, `/api/projects/${projectId}/stream`, { token: alice.token, after: "0" })
        yield* sseEvents(client, 1)
        for (const i of range(k)) {
          yield* server.request("POST", `/api/projects/${projectId}/messages`, {
            token: alice.token,
            json: { body: `m${i}` }
          })
        }

        // A publisher claims everything, then dies: it never publishes, confirms or releases.
        const claimed = yield* store.claim({ publisherId: "doomed", batchSize: 1_000, leaseMs: 1_000 })
        expect(claimed.map((c) => c.envelope.seq)).toEqual(range(k + 1))

        // A healthy publisher is running, polling every 20 ms, but the rows are leased.
        yield* Layer.build(publisherAs("rescuer"))
        yield* Effect.sleep("300 millis")
        const duringLease = yield* broker.deliveries
        const [held] = yield* sql<{ n: number }>`
          SELECT count(*)::int AS n FROM event_outbox
          WHERE status = 'pending' AND claimed_by = 'doomed' AND claimed_until > clock_timestamp()`
        expect(held!.n).toBe(k + 1) // the lease was still running when we looked …
        expect(duringLease).toEqual([]) // … and nothing had been published under it
        expect(yield* store.claim({ publisherId: "other", batchSize: 1_000, leaseMs: 1_000 })).toEqual([])

        // After the lease: taken over and published, each once.
        yield* allPublished("the rescuer published the abandoned rows")
        for (const row of yield* deliveryRows) expect(row).toMatchObject({ status: "published", claimedBy: null })
        const times = yield* broker.timesPublished
        expect(times.size).toBe(k + 1)
        expect([...times.values()].every((t) => t === 1)).toBe(true)
        expect(new Set((yield* broker.deliveries).map((d) => d.by))).toEqual(new Set(["rescuer"]))
        yield* receivedExactly(client, k + 1)

        // The dead publisher coming back to life cannot undo the takeover.
        const ids = claimed.map((c) => c.envelope.id)
        expect(yield* store.markFailed("doomed", ids.map((id) => ({ id, delayMs: 10 })), "zombie")).toBe(0)
        expect(yield* store.markPublished("doomed", ids)).toEqual([])
        for (const row of yield* deliveryRows) expect(row).toMatchObject({ status: "published", lastError: null })
      }).pipe(Effect.scoped, Effect.provide(publisherServerLayer({ config: { pollIntervalMs: 20 } })), withoutLogs)
  )

  it.live(
    "two publishers on one database, while 500 events are written: every event published, none by both",
    () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const chat = yield* ChatService
        const broker = yield* RecordingBroker
        const alice = yield* userWithToken("alice")
        const projects = yield* Effect.forEach(["one", "two"], (name) =>
          chat.createProject(name).pipe(asUser(alice.user)))
        const clients = yield* Effect.forEach(projects, (p) =>
          sse(server.url, `/api/projects/${p.id}/stream`, { token: alice.token, after: "0" }))
        yield* Effect.forEach(clients, (c) =>
          sseEvents(c, 1))

        // 498 more: into both project streams and a workspace stream, 16 writers at a time.
        const writes = 498
        yield* Effect.forEach(range(writes), (i) => {
          const project = projects[i % 2]!
          return i % 3 === 0
            ? chat.postWorkspaceMessage(project.id, { body: `w${i}`, role: "worker" }).pipe(asUser(alice.user))
            : chat.postMessage(project.id, { body: `m${i}` }).pipe(asUser(alice.user))
        }, { concurrency: 16 })

        yield* allPublished("every event is published")
        const rows = yield* deliveryRows
        expect(rows).toHaveLength(writes + 2)
        const times = yield* broker.timesPublished
        expect(new Set(times.keys())).toEqual(
          new Set(rows.map((r) =>
            r.id
          ))
        )
        const twice = [...times].filter(([, t]) => t > 1)
        expect(twice).toEqual([])
        // Both really worked (otherwise this proves nothing about sharing).
        const by = new Set((yield* broker.deliveries).map((d) => d.by))
        expect(by).toEqual(new Set(["A", "B"]))

        // Two publishers interleave batches on the broker; each SSE client still gets its stream in order, once.
        for (const [i, project] of projects.entries()) {
          const inStream = rows.filter((r) => r.streamId === `project:${project.id}`).length
          yield* receivedExactly(clients[i]!, inStream)
        }
      }).pipe(
        Effect.scoped,
        Effect.provide(
          publisherServerLayer({ publishers: ["A", "B"], config: { publishBatchSize: 10, pollIntervalMs: 50 } })
        ),
        withoutLogs
      )
  )

  it.live("/health/ready follows the publisher: not running → 503, running → ok, stopped → 503", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const status = yield* PublisherStatus
      const ready = server.request("GET", "/health/ready")

      const before = yield* ready
      expect(before.status).toBe(503)
      expect(before.body.checks).toEqual({ database: "ok", publisher: "not running", broker: "ok" })

      const scope = yield* Scope.make()
      yield* Layer.buildWithScope(publisherAs("P"), scope)
      yield* eventually("the publisher reports Running", Effect.map(status.get, (s) => s._tag === "Running"))
      const running = yield* ready
      expect(running.status).toBe(200)
      expect(running.body).toEqual({ status: "ok", checks: { database: "ok", publisher: "ok", broker: "ok" } })

      yield* Scope.close(scope, Exit.void)
      expect((yield* status.get)._tag).toBe("Stopped")
      const after = yield* ready
      expect(after.status).toBe(503)
      expect(after.body.checks.publisher).toBe("not running")
    }).pipe(Effect.provide(publisherServerLayer()), withoutLogs))

  it.live("when the outbox cannot be read the publisher reports backing off (not ready), then resumes by itself", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const chat = yield* ChatService
      const broker = yield* RecordingBroker
      const status = yield* PublisherStatus
      const sql = yield* SqlClient.SqlClient
      const alice = yield* userWithToken("alice")
      const project = yield* chat.createProject("outage").pipe(asUser(alice.user))
      yield* allPublished("the first event is published")

      // The outage: every publisher query fails while the table is away.
      yield* sql`ALTER TABLE event_outbox RENAME TO event_outbox_offline`
      yield* eventually("the publisher reports backing off", Effect.map(status.get, (s) => s._tag === "BackingOff"))
      const down = yield* server.request("GET", "/health/ready")
      expect(down.status).toBe(503)
      expect(down.body.checks.publisher).toMatch(/^backing off: /)

      yield* sql`ALTER TABLE event_outbox_offline RENAME TO event_outbox`
      yield* eventually("the publisher runs again", Effect.map(status.get, (s) => s._tag === "Running"), "5 seconds")
      expect((yield* server.request("GET", "/health/ready")).status).toBe(200)
      const after = yield* chat.postMessage(project.id, { body: "after the outage" }).pipe(asUser(alice.user))
      yield* eventually(
        "the new event is published",
        Effect.map(broker.timesPublished, (t) => t.get(after.event.id) === 1),
        "5 seconds"
      )
    }).pipe(Effect.provide(publisherServerLayer({ publishers: ["P"], config: { pollIntervalMs: 20 } })), withoutLogs))

  it.live("a committed post is handed to the publisher: published once at once, with a 30 s poll and no claim", () =>
    Effect.gen(function*() {
      const chat = yield* ChatService
      const broker = yield* RecordingBroker
      const sql = yield* SqlClient.SqlClient
      const alice = yield* userWithToken("alice")
      const project = yield* chat.createProject("hand-off").pipe(asUser(alice.user))
      const posted = yield* Effect.forEach(
        ["one", "two", "three"],
        (body) => chat.postMessage(project.id, { body }).pipe(asUser(alice.user))
      )
      yield* eventually(
        "every event is published once, long before the 30 s poll",
        Effect.map(broker.timesPublished, (t) => posted.every((p) => t.get(p.event.id) === 1)),
        "2 seconds"
      )
      // A claim would have moved next_attempt_at to the end of its lease: these rows stayed as written.
      const rows = yield* sql<{ status: string; dueAfterMs: number }>`
        SELECT status, (extract(epoch FROM next_attempt_at - occurred_at) * 1000)::int AS due_after_ms
        FROM event_outbox WHERE id = ANY(${posted.map((p) => p.event.id)}::uuid[])`
      expect(rows).toEqual(posted.map(() => ({ status: "published", dueAfterMs: HAND_OFF_GRACE_MS })))
    }).pipe(
      Effect.provide(publisherServerLayer({ publishers: ["P"], config: { pollIntervalMs: 30_000 } })),
      withoutLogs
    ))

  it.live("a write rolled back after its outbox insert never reaches the broker; a refused one neither; the committed one does", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const chat = yield* ChatService
      const broker = yield* RecordingBroker
      const alice = yield* userWithToken("alice")
      const project = yield* chat.createProject("atomic").pipe(asUser(alice.user))

      yield* failingAfter("outbox insert", "rolled back")
      expect(
        Exit.isFailure(
          yield* Effect.exit(chat.postMessage(project.id, { body: "rolled back" }).pipe(asUser(alice.user)))
        )
      ).toBe(true)
      const refused = yield* server.request("POST", `/api/projects/${project.id}/messages`, {
        token: alice.token,
        json: { body: "x".repeat(10_001) }
      })
      expect(refused.status).toBe(400)
      const committed = yield* chat.postMessage(project.id, { body: "committed" }).pipe(asUser(alice.user))

      yield* allPublished("the committed events are published")
      yield* Effect.sleep("200 millis") // time for a stray publish to show up
      const rows = yield* deliveryRows
      const delivered = (yield* broker.deliveries).flatMap((d) => d.events)
      // The broker saw exactly the outbox: the committed events, once each, and nothing else.
      expect(delivered.map((e) => [e.id, e.stream, e.seq, e.type])).toEqual(
        rows.map((r) => [r.id, r.streamId, r.seq, expect.any(String)])
      )
      expect(delivered.map((e) => e.type)).toEqual(["project.created", "message.created"])
      expect(delivered[1]).toMatchObject({ id: committed.event.id, seq: 2, data: { body: "committed" } })
    }).pipe(
      Effect.scoped,
      Effect.provide(publisherServerLayer({ publishers: ["P"], config: { pollIntervalMs: 20 } })),
      withoutLogs
    ))
})
