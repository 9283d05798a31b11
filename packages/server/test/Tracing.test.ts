import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import pg from "pg"
import { api, pollUntil, type ServerNode, startServerNode, stopServerNodes } from "../../../test-support/Process.js"
import { type RedisServer, startRedis } from "../../../test-support/Redis.js"
import { connectSse } from "../../../test-support/SseClient.js"
import { withFreshDatabase } from "../../../test-support/TestDatabase.js"

/**
 * Traces (SPEC §9, issue 22): compiled server processes with OTEL_EXPORTER_OTLP_ENDPOINT pointing
 * at an OTLP/HTTP receiver this file starts (POST /v1/traces, OTLP JSON as Effect's exporter sends
 * it). A post with an incoming `traceparent` must show, in that one trace: the request's server
 * span continuing it, the `herald_post_message` statement, the publish of its event, and the SSE
 * fan-out of that event on every node with the number of connections it was written to.
 */

const ADMIN = "tracing-test-admin"

interface ReceivedSpan {
  readonly service: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId: string | undefined
  readonly name: string
  readonly kind: number
  readonly attributes: Record<string, unknown>
  /** OTLP status code: 2 is an error. */
  readonly status: number
}

interface OtlpValue {
  readonly stringValue?: string
  readonly intValue?: number | string
  readonly doubleValue?: number
  readonly boolValue?: boolean
}
interface OtlpKeyValue {
  readonly key: string
  readonly value: OtlpValue
}
interface OtlpTraces {
  readonly resourceSpans: ReadonlyArray<{
    readonly resource: { readonly attributes: ReadonlyArray<OtlpKeyValue> }
    readonly scopeSpans: ReadonlyArray<{
      readonly spans: ReadonlyArray<{
        readonly traceId: string
        readonly spanId: string
        readonly parentSpanId?: string
        readonly name: string
        readonly kind: number
        readonly attributes: ReadonlyArray<OtlpKeyValue>
        readonly status?: { readonly code?: number }
      }>
    }>
  }>
}

const valueOf = (v: OtlpValue): unknown =>
  v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue

const attributesOf = (list: ReadonlyArray<OtlpKeyValue>) =>
  Object.fromEntries(list.map((kv) => [kv.key, valueOf(kv.value)]))

/** An OTLP/HTTP traces receiver on a free loopback port: every span it was sent, and every request's raw body. */
const startReceiver = async () => {
  const spans: Array<ReceivedSpan> = []
  const bodies: Array<string> = []
  const server = http.createServer((req, res) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => body += chunk)
    req.on("end", () => {
      bodies.push(body)
      if (req.method !== "POST" || req.url !== "/v1/traces" || !/json/.test(req.headers["content-type"] ?? "")) {
        res.writeHead(404).end()
        return
      }
      const traces = JSON.parse(body) as OtlpTraces
      for (const resourceSpans of traces.resourceSpans) {
        const service = String(attributesOf(resourceSpans.resource.attributes)["service.name"])
        for (const scope of resourceSpans.scopeSpans) {
          for (const span of scope.spans) {
            spans.push({
              service,
              traceId: span.traceId,
              spanId: span.spanId,
              parentSpanId: span.parentSpanId === "" ? undefined : span.parentSpanId,
              name: span.name,
              kind: span.kind,
              attributes: attributesOf(span.attributes),
              status: span.status?.code ?? 0
            })
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    bodies,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

type Receiver = Awaited<ReturnType<typeof startReceiver>>

/** OTLP span kinds. */
const SERVER = 2
const PRODUCER = 4
const CONSUMER = 5

let redis: RedisServer
let receiver: Receiver

beforeAll(async () => {
  redis = await startRedis()
  receiver = await startReceiver()
}, 600_000)

afterAll(async () => {
  await receiver?.close()
  await redis?.stop()
})

const stopAll = async (nodes: ReadonlyArray<ServerNode>) => {
  for (const stopped of await stopServerNodes(nodes)) expect(stopped.code, stopped.output).toBe(0)
}

const hex = (bytes: number) => randomBytes(bytes).toString("hex")

/** A post through the post door, with `traceparent`. */
const post = async (url: string, projectId: string, token: string, traceparent: string) => {
  const res = await fetch(`${url}/api/projects/${projectId}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", traceparent },
    body: JSON.stringify({ body: "traced" })
  })
  return { status: res.status, body: await res.json() as { event: { id: string; seq: number } } }
}

/** The spans of `traceId` the receiver has, once `done` says they are all there. */
const spansOf = (traceId: string, what: string, done: (spans: ReadonlyArray<ReceivedSpan>) => boolean) =>
  pollUntil(
    what,
    async () => {
      const spans = receiver.spans.filter((s) => s.traceId === traceId)
      return done(spans) ? { done: spans } : { seen: spans.map((s) => `${s.service} ${s.name}`) }
    },
    20_000
  )

const brokers = [
  { broker: "postgres", env: () => ({}) },
  { broker: "redis", env: () => ({ REDIS_URL: `${redis.url}/7` }) }
] as const

describe("traces (OTEL_EXPORTER_OTLP_ENDPOINT)", () => {
  for (const { broker, env } of brokers) {
    it(
      `HERALD_BROKER=${broker}, two nodes: a post's trace holds its request (continuing the incoming traceparent), its herald_post_message statement, its publish and the SSE fan-out on each node with the connections written`,
      () =>
        withFreshDatabase(async (databaseUrl) => {
          const nodeEnv = (service: string) => ({
            DATABASE_URL: databaseUrl,
            HERALD_ADMIN_TOKEN: ADMIN,
            HERALD_BROKER: broker,
            LOG_LEVEL: "warn",
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_SERVICE_NAME: service,
            OTEL_BSP_SCHEDULE_DELAY: "100",
            ...env()
          })
          const nodes = [await startServerNode(nodeEnv("herald-a")), await startServerNode(nodeEnv("herald-b"))]
          const [a, b] = nodes as [ServerNode, ServerNode]
          try {
            const alice = (await api(a.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
            const project = (await api(a.url, "POST", "/api/projects", alice.token, { name: "traced" })).body
            const path = `/api/projects/${project.id}/stream`
            // Two readers on A, one on B — that one with its token in the query, which no span may show.
            const readers = [
              await connectSse(a.url, path, { token: alice.token }),
              await connectSse(a.url, path, { token: alice.token }),
              await connectSse(b.url, path, { accessToken: alice.token })
            ]
            expect(readers.map((r) => r.status)).toEqual([200, 200, 200])

            const traceId = hex(16)
            const callerSpanId = hex(8)
            const posted = await post(a.url, project.id, alice.token, `00-${traceId}-${callerSpanId}-01`)
            expect(posted.status).toBe(201)
            for (const reader of readers) {
              const [event] = await reader.waitForEvents(1)
              // The envelope is the envelope of SPEC §5: no trace context reaches a client.
              expect(Object.keys(event!.data).sort()).toEqual(
                ["actorId", "data", "id", "occurredAt", "projectId", "seq", "stream", "type"]
              )
              expect(event!.data.id).toBe(posted.body.event.id)
            }

            const spans = await spansOf(
              traceId,
              "the post's request, statement, publish and a fan-out on each node",
              (found) =>
                found.some((s) => s.name === "herald.publish") &&
                new Set(found.filter((s) => s.name === "herald.sse.fanout").map((s) => s.service)).size === 2
            )

            // The request: a server span of node A whose parent is the caller's span.
            const request = spans.find((s) => s.kind === SERVER && s.service === "herald-a")
            expect(request, JSON.stringify(spans)).toBeDefined()
            expect(request!.name).toBe("http.server POST")
            expect(request!.parentSpanId).toBe(callerSpanId)
            expect(request!.attributes["http.route"]).toBe("/api/projects/:projectId/messages")
            expect(request!.attributes["http.response.status_code"]).toBe(201)

            // Its statement: herald_post_message, under the request.
            const byId = new Map(spans.map((s) => [s.spanId, s]))
            const descends = (span: ReceivedSpan, ancestor: ReceivedSpan) => {
              for (let at: ReceivedSpan | undefined = span; at !== undefined; at = byId.get(at.parentSpanId ?? "")) {
                if (at.spanId === ancestor.spanId) return true
              }
              return false
            }
            const statement = spans.find((s) =>
              s.name === "sql.execute" && String(s.attributes["db.query.text"]).includes("herald_post_message")
            )
            expect(statement, JSON.stringify(spans.map((s) => s.name))).toBeDefined()
            expect(descends(statement!, request!)).toBe(true)

            // The publish of its event, a child of the request.
            const publish = spans.filter((s) => s.name === "herald.publish")
            expect(publish).toHaveLength(1)
            expect(publish[0]!.kind).toBe(PRODUCER)
            expect(publish[0]!.parentSpanId).toBe(request!.spanId)
            expect(publish[0]!.attributes["herald.event.id"]).toBe(posted.body.event.id)
            expect(publish[0]!.attributes["messaging.system"]).toBe(broker)

            // The fan-out on each node, children of the publish: as many connections as readers there.
            const fanouts = spans.filter((s) => s.name === "herald.sse.fanout")
            expect(fanouts.map((s) => [s.service, s.attributes["herald.sse.connections"]]).sort()).toEqual([
              ["herald-a", 2],
              ["herald-b", 1]
            ])
            for (const fanout of fanouts) {
              expect(fanout.kind).toBe(CONSUMER)
              expect(fanout.parentSpanId).toBe(publish[0]!.spanId)
              expect(fanout.attributes["herald.event.id"]).toBe(posted.body.event.id)
              expect(fanout.attributes["herald.event.seq"]).toBe(posted.body.event.seq)
            }

            // The outbox row carries the request's context, for a publisher that claims it.
            const db = new pg.Client({ connectionString: databaseUrl })
            await db.connect()
            try {
              const row = await db.query<{ trace_context: string }>(
                "SELECT trace_context FROM event_outbox WHERE id = $1",
                [posted.body.event.id]
              )
              expect(row.rows[0]!.trace_context).toBe(`00-${traceId}-${request!.spanId}-01`)
            } finally {
              await db.end()
            }

            // Requests the HTTP app serves are spans too, continuing their traceparent.
            const appTrace = hex(16)
            const appCaller = hex(8)
            const listed = await fetch(`${a.url}/api/projects`, {
              headers: { authorization: `Bearer ${alice.token}`, traceparent: `00-${appTrace}-${appCaller}-01` }
            })
            expect(listed.status).toBe(200)
            const appSpans = await spansOf(
              appTrace,
              "the app's request span",
              (found) => found.some((s) => s.kind === SERVER)
            )
            const appSpan = appSpans.find((s) => s.kind === SERVER)!
            expect(appSpan.name).toBe("http.server GET")
            expect(appSpan.parentSpanId).toBe(appCaller)
            // Its statements (the token's lookup, the projects') are in its trace.
            expect(appSpans.filter((s) => s.name === "sql.execute").length).toBeGreaterThan(0)

            // The SSE door's request spans: there, with the token in the query redacted; no span holds it.
            await pollUntil("the SSE door's request spans", async () => {
              const door = receiver.spans.filter((s) => s.attributes["url.path"] === path)
              return door.length >= 3 ? { done: door } : { seen: door.length }
            }, 20_000)
            expect(receiver.bodies.join("\n")).not.toContain(alice.token)
            for (const reader of readers) reader.close()
          } finally {
            await stopAll(nodes)
          }
        }),
      120_000
    )
  }

  it(
    "a publish that failed and was retried from the outbox (the row's trace_context, claimed by either node) is still in the post's trace",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        // A's own publishes fail 90 % of the time: its hand-offs go back to the outbox, where B (or A
        // retrying) claims them with the context the post wrote in the row.
        const nodeEnv = (service: string, failureRate: string) => ({
          DATABASE_URL: databaseUrl,
          HERALD_ADMIN_TOKEN: ADMIN,
          HERALD_BROKER: "postgres",
          HERALD_CHAOS_PUBLISH_FAILURE_RATE: failureRate,
          HERALD_POLL_INTERVAL_MS: "100",
          LOG_LEVEL: "error",
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_SERVICE_NAME: service,
          OTEL_BSP_SCHEDULE_DELAY: "100"
        })
        const nodes = [
          await startServerNode(nodeEnv("herald-claims-a", "0.9")),
          await startServerNode(nodeEnv("herald-claims-b", "0"))
        ]
        const [a, b] = nodes as [ServerNode, ServerNode]
        try {
          const alice = (await api(a.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
          const project = (await api(a.url, "POST", "/api/projects", alice.token, { name: "claims" })).body
          const reader = await connectSse(b.url, `/api/projects/${project.id}/stream`, { token: alice.token })
          const traces: Array<{ traceId: string; eventId: string }> = []
          for (let i = 0; i < 5; i++) {
            const traceId = hex(16)
            const posted = await post(a.url, project.id, alice.token, `00-${traceId}-${hex(8)}-01`)
            expect(posted.status).toBe(201)
            traces.push({ traceId, eventId: posted.body.event.id })
          }
          await reader.waitForEvents(5, 30_000)
          reader.close()
          const sources: Array<unknown> = []
          for (const { eventId, traceId } of traces) {
            const spans = await spansOf(
              traceId,
              "a successful publish and B's fan-out",
              (found) =>
                found.some((s) => s.name === "herald.publish" && s.status !== 2) &&
                found.some((s) => s.name === "herald.sse.fanout" && s.service === "herald-claims-b")
            )
            const request = spans.find((s) => s.kind === SERVER)!
            const published = spans.filter((s) => s.name === "herald.publish" && s.status !== 2)
            for (const publish of published) {
              expect(publish.parentSpanId).toBe(request.spanId)
              expect(publish.attributes["herald.event.id"]).toBe(eventId)
              sources.push(publish.attributes["herald.publish.source"])
            }
            const fanout = spans.find((s) => s.name === "herald.sse.fanout" && s.service === "herald-claims-b")!
            expect(published.map((s) => s.spanId)).toContain(fanout.parentSpanId)
          }
          // At 90 % failures, five hand-offs all succeeding is a 1-in-100 000 run.
          expect(sources).toContain("claim")
        } finally {
          await stopAll(nodes)
        }
      }),
    120_000
  )

  it(
    "unset (or empty), nothing is exported and no outbox row carries a trace context",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const before = receiver.bodies.length
        const node = await startServerNode({
          DATABASE_URL: databaseUrl,
          HERALD_ADMIN_TOKEN: ADMIN,
          LOG_LEVEL: "warn",
          OTEL_EXPORTER_OTLP_ENDPOINT: "",
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: undefined,
          OTEL_SERVICE_NAME: "herald-untraced",
          OTEL_BSP_SCHEDULE_DELAY: "100"
        })
        try {
          const alice = (await api(node.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
          const project = (await api(node.url, "POST", "/api/projects", alice.token, { name: "untraced" })).body
          const reader = await connectSse(node.url, `/api/projects/${project.id}/stream`, { token: alice.token })
          const posted = await post(node.url, project.id, alice.token, `00-${hex(16)}-${hex(8)}-01`)
          expect(posted.status).toBe(201)
          await reader.waitForEvents(1)
          reader.close()
          await new Promise((r) => setTimeout(r, 1_000))
          const db = new pg.Client({ connectionString: databaseUrl })
          await db.connect()
          try {
            const traced = await db.query("SELECT id FROM event_outbox WHERE trace_context IS NOT NULL")
            expect(traced.rowCount).toBe(0)
          } finally {
            await db.end()
          }
        } finally {
          await stopAll([node])
        }
        expect(receiver.bodies.slice(before).filter((b) => b.includes("herald-untraced"))).toEqual([])
      }),
    60_000
  )
})
