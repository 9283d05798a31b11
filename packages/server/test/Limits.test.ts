/**
 * Limits (SPEC §5 "Limits", G11), tried from outside on a real server over real PostgreSQL: open
 * SSE connections per user and in all, writes per user, failed authentications per client address,
 * and request headers over the limit. Every refusal is a JSON 429 (431 for headers) with
 * `Retry-After`, counted in `/metrics`; what was already open is never touched.
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Events, type Ids } from "@herald/domain"
import { Effect, Option } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import { type SseConnection } from "../../../test-support/SseClient.js"
import { chunkedRequest } from "./support/ChunkedRequest.js"
import { addMember, createProject, eventually, expectStatus, post, send, show } from "./support/HttpTesting.js"
import { openSse, withoutSseDoor } from "./support/SseTesting.js"
import { type Response, TestServer, testServerLayer } from "./support/TestServer.js"

// `layer` rather than `it.layer`: the same function, but only its signature accepts this option.
const live = { excludeTestServices: true } as const

/** The SPEC's defaults (§7), spelled out: the test harness otherwise runs with roomy limits. */
const DEFAULTS = { sseMaxPerUser: 16, sseMaxConnections: 50_000, writeRate: 20, draftRate: 200, authFailureRate: 10 }

/** `herald_limit_refusals_total{limit}` as `/metrics` reports it (0 before the first refusal). */
const refusals = (limit: string) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const res = yield* server.request("GET", "/metrics")
    const match = new RegExp(`^herald_limit_refusals_total\\{limit="${limit}"\\} (\\d+)$`, "m").exec(String(res.body))
    return match === null ? 0 : Number(match[1])
  })

/** A 429 as SPEC §5 has it: JSON `{_tag, message}` and a whole number of seconds in Retry-After. */
const expectTooMany = (res: { readonly status: number; readonly headers: Headers; readonly body: any }) => {
  expect(res.status, JSON.stringify(res.body)).toBe(429)
  expect(res.headers.get("content-type")).toMatch(/^application\/json/)
  expect(res.body._tag).toBe("TooManyRequests")
  expect(typeof res.body.message).toBe("string")
  expect(res.headers.get("retry-after")).toMatch(/^[1-9]\d*$/)
}

/** An SSE connection's non-200 answer, as a Response (headers, parsed body). */
const refusedAnswer = (c: SseConnection) => {
  const headers = new Headers()
  for (const [k, v] of Object.entries(c.headers)) if (typeof v === "string") headers.set(k, v)
  return { status: c.status, headers, body: c.errorBody }
}

/** `n` requests sent at once; the answers in order. */
const atOnce = <A, E, R>(n: number, request: (i: number) => Effect.Effect<A, E, R>) =>
  Effect.forEach(Array.from({ length: n }, (_, i) => i), request, { concurrency: "unbounded" })

const split = (answers: ReadonlyArray<Response>) => {
  const counts: Record<number, number> = {}
  for (const a of answers) counts[a.status] = (counts[a.status] ?? 0) + 1
  return counts
}

/** An SSE connection, if it opens (200). */
const opened = (path: string, token: string) =>
  Effect.map(openSse(path, { token }), (c) => c.status === 200 ? Option.some(c) : Option.none())

const messagesPath = (projectId: Ids.ProjectId) => `/api/projects/${projectId}/messages`

layer(testServerLayer(DEFAULTS), live)("SSE connections per user (HERALD_SSE_MAX_PER_USER = 16)", (it) => {
  it.scoped("the 17th is a JSON 429 with Retry-After; the 16 stay open and keep receiving; closing one frees a slot", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const project = yield* createProject(alice)
      const path = `/api/projects/${project.id}/stream`
      const open: Array<SseConnection> = []
      for (let i = 0; i < 8; i++) open.push(yield* openSse(path, { token: alice.token }))
      for (let i = 0; i < 8; i++) open.push(yield* openSse("/api/stream", { token: alice.token }))
      for (const c of open) expect(c.status).toBe(200)
      const before = yield* refusals("sse_per_user")

      const seventeenth = yield* openSse(path, { token: alice.token })
      const answer = refusedAnswer(seventeenth)
      console.log(
        `17th SSE connection of one user: ${answer.status} retry-after=${answer.headers.get("retry-after")} ${
          JSON.stringify(answer.body)
        }`
      )
      expectTooMany(answer)
      // Through ?access_token= and on the multiplexed path too.
      expectTooMany(refusedAnswer(yield* openSse("/api/stream", { accessToken: alice.token })))
      expect(yield* refusals("sse_per_user")).toBe(before + 2)

      // A HEAD opens nothing, so it is never refused for want of a slot.
      const head = yield* Effect.promise(() =>
        fetch(server.url + path, { method: "HEAD", headers: { authorization: `Bearer ${alice.token}` } })
      )
      expect(head.status).toBe(200)

      // The 16 are untouched: every one still receives.
      yield* post(alice, project.id, { body: "still here" })
      for (const [i, c] of open.entries()) {
        // The multiplexed ones (the last 8) start with their `heads` frame.
        const events = yield* Effect.promise(() => c.waitForEvents(i < 8 ? 1 : 2, 5_000))
        expect(events.at(-1)!.event).toBe("message.created")
      }

      // Another user is not affected by alice's count.
      const bob = yield* server.user("bob")
      yield* addMember(alice, project.id, bob)
      expect((yield* openSse(path, { token: bob.token })).status).toBe(200)

      // A connection the client closes frees its slot at once.
      open.shift()!.close()
      const next = yield* eventually("a slot freed by a closed connection", opened(path, alice.token), 2_000)
      expect(next.status).toBe(200)
    }))

  it.scoped("the HTTP app (no SSE door) counts the same connections", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const carol = yield* server.user("carol")
      const project = yield* createProject(carol)
      const path = `/api/projects/${project.id}/workspace/stream`
      const open: Array<SseConnection> = []
      for (let i = 0; i < 15; i++) open.push(yield* openSse(path, { token: carol.token }))
      yield* withoutSseDoor
      open.push(yield* openSse(path, { token: carol.token }))
      expect(open.map((c) => c.status)).toEqual(Array.from({ length: 16 }, () => 200))
      expectTooMany(refusedAnswer(yield* openSse(path, { token: carol.token })))
      // A connection served by the app that its client closes frees its slot too.
      open.pop()!.close()
      const next = yield* eventually("a slot freed by a closed connection", opened(path, carol.token), 2_000)
      expect(next.status).toBe(200)
    }))
})

layer(testServerLayer({ ...DEFAULTS, sseMaxConnections: 3 }), live)(
  "SSE connections in all (HERALD_SSE_MAX_CONNECTIONS)",
  (it) => {
    it.scoped("one more than the server-wide cap is a 429, whoever asks; a closed one frees its slot", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const alice = yield* server.user("alice")
        const bob = yield* server.user("bob")
        const a1 = yield* openSse("/api/stream", { token: alice.token })
        yield* openSse("/api/stream", { token: alice.token })
        const b1 = yield* openSse("/api/stream", { token: bob.token })
        expect([a1.status, b1.status]).toEqual([200, 200])
        const before = yield* refusals("sse_total")
        expectTooMany(refusedAnswer(yield* openSse("/api/stream", { token: bob.token })))
        expect(yield* refusals("sse_total")).toBe(before + 1)
        a1.close()
        yield* eventually("the slot alice's closed connection held", opened("/api/stream", bob.token), 2_000)
      }))
  }
)

layer(testServerLayer(DEFAULTS), live)("writes per user (HERALD_WRITE_RATE = 20/s, burst 2 s worth)", (it) => {
  it.effect("120 posts at once from one user: about 40 × 201, the rest JSON 429s with Retry-After; others unaffected", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const project = yield* createProject(alice)
      const before = yield* refusals("write")
      // A JSON body with Content-Length and a bearer token: the post door's requests.
      const started = Date.now()
      const answers = yield* atOnce(
        120,
        (i) => server.request("POST", messagesPath(project.id), { token: alice.token, json: { body: `m${i}` } })
      )
      const seconds = (Date.now() - started) / 1000
      const counts = split(answers)
      console.log(`burst of 120 posts from one user: ${JSON.stringify(counts)} in ${seconds.toFixed(2)} s`)
      expect(Object.keys(counts).sort()).toEqual(["201", "429"])
      // The bucket's 40, plus what it refilled (20/s) while the burst was being served.
      expect(counts[201]).toBeGreaterThanOrEqual(40)
      expect(counts[201]).toBeLessThanOrEqual(40 + Math.ceil(20 * seconds) + 2)
      for (const a of answers) if (a.status === 429) expectTooMany(a)
      expect(yield* refusals("write")).toBe(before + counts[429]!)
      // What was refused was not written.
      const sql = yield* SqlClient.SqlClient
      const [row] = yield* sql<{ n: number }>`SELECT count(*)::int AS n FROM messages WHERE project_id = ${project.id}`
      expect(row!.n).toBe(counts[201])

      // Another user, at the same moment, is not slowed down.
      const bob = yield* server.user("bob")
      const bobs = yield* createProject(bob)
      const bobAnswers = yield* atOnce(
        10,
        (i) => server.request("POST", messagesPath(bobs.id), { token: bob.token, json: { body: `b${i}` } })
      )
      expect(split(bobAnswers)).toEqual({ 201: 10 })
    }))
})

layer(testServerLayer({ ...DEFAULTS, writeRate: 1 }), live)("writes per user: what counts", (it) => {
  it.effect("edits, deletes and member changes spend the same budget as posts", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const bob = yield* server.user("bob")
      const project = yield* createProject(alice) // creating a project is not a write the SPEC lists
      // Burst = 2 s worth of 1/s: two writes, then refused until the bucket refills.
      const posted = yield* post(alice, project.id)
      yield* addMember(alice, project.id, bob)
      const edit = yield* send(alice, "PATCH", `${messagesPath(project.id)}/${posted.message.id}`, { body: "x" })
      expectTooMany(edit)
      expectTooMany(yield* send(alice, "DELETE", `${messagesPath(project.id)}/${posted.message.id}`))
      expectTooMany(yield* send(alice, "DELETE", `/api/projects/${project.id}/members/${bob.id}`))
      expectTooMany(yield* send(alice, "POST", `/api/projects/${project.id}/members`, { userId: bob.id }))
      expectTooMany(
        yield* send(alice, "POST", `/api/projects/${project.id}/workspace/messages`, { body: "w" })
      )
      // Reads are not writes.
      expectStatus(yield* send(alice, "GET", messagesPath(project.id)), 200)
      // The refusals wrote nothing: the message is neither edited nor deleted, bob is still a member.
      const listed = yield* send(alice, "GET", messagesPath(project.id))
      expect(listed.body.items[0].body).toBe("hello")
      expect(listed.body.items[0].deletedAt).toBeUndefined()
      expectStatus(yield* send(bob, "GET", `/api/projects/${project.id}`), 200)
      // Once the bucket has refilled (2 s), both fronts spend the one budget: the post door (JSON with Content-Length) and the HTTP app
      // (a chunked body, which the door leaves to it).
      yield* Effect.sleep("2100 millis")
      const chunked = (body: string) =>
        chunkedRequest(server.url, "POST", messagesPath(project.id), alice.token, JSON.stringify({ body }))
      expectStatus(yield* send(alice, "POST", messagesPath(project.id), { body: "door" }), 201)
      expectStatus(yield* chunked("app"), 201)
      expectTooMany(yield* chunked("app again"))
      expectTooMany(yield* send(alice, "POST", messagesPath(project.id), { body: "door again" }))
      // A second later there is room for one more.
      yield* Effect.sleep("1100 millis")
      expectStatus(
        yield* send(alice, "PATCH", `${messagesPath(project.id)}/${posted.message.id}`, { body: "edited" }),
        200
      )
    }))
})

layer(testServerLayer(DEFAULTS), live)(
  "failed authentications per client address (HERALD_AUTH_FAILURE_RATE = 10/s)",
  (it) => {
    it.effect("60 wrong tokens at once: some are 429 without a lookup; the database saw far fewer than 60", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const alice = yield* server.user("alice")
        const project = yield* createProject(alice)
        const lookups = yield* tokenLookups
        const before = yield* refusals("auth_failure")
        const answers = yield* atOnce(
          60,
          (i) =>
            i % 2 === 0
              ? server.request("GET", "/api/me", { token: `hrld_${randomBytes(32).toString("base64url")}` })
              : server.request("POST", messagesPath(project.id), {
                token: `hrld_${randomBytes(32).toString("base64url")}`,
                json: { body: "x" }
              })
        )
        const counts = split(answers)
        for (const a of answers) if (a.status === 429) expectTooMany(a)
        expect(Object.keys(counts).sort()).toEqual(["401", "429"])
        expect(yield* refusals("auth_failure")).toBe(before + counts[429]!)
        const seen = (yield* tokenLookups) - lookups
        console.log(`60 wrong tokens at once from one address: ${JSON.stringify(counts)}; token lookups: ${seen}`)
        // One lookup per 401 (each one an unknown token): none for the 429s.
        expect(seen).toBeLessThanOrEqual(counts[401]!)
        expect(seen).toBeLessThan(40)
      }))

    it.effect("the same wrong token again and again is looked up once (failed lookups are cached briefly)", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        yield* Effect.sleep("2100 millis") // a full budget again (10/s, bursts of 20)
        const lookups = yield* tokenLookups
        const bad = `hrld_${randomBytes(32).toString("base64url")}`
        const answers: Array<Response> = []
        for (let i = 0; i < 8; i++) answers.push(yield* server.request("GET", "/api/me", { token: bad }))
        expect(split(answers)).toEqual({ 401: 8 })
        expect((yield* tokenLookups) - lookups).toBe(1)
      }))
  }
)

layer(testServerLayer({ ...DEFAULTS, authFailureRate: 0.5 }), live)(
  "failed authentications: while over budget",
  (it) => {
    it.effect("a token not known yet waits, even a good one; one already verified goes on", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const alice = yield* server.user("alice")
        const bob = yield* server.user("bob")
        expectStatus(yield* send(alice, "GET", "/api/me"), 200) // verified: cached for 30 s
        // 0.5/s: a budget of one failure, back after 2 s.
        expectStatus(yield* send({ token: "hrld_wrong" }, "GET", "/api/me"), 401)
        expectTooMany(yield* send({ token: "hrld_wrong_again" }, "GET", "/api/me"))
        // Bob's token is good but unknown to the server yet: refused before it is looked up.
        const refused = yield* send(bob, "GET", "/api/me")
        expectTooMany(refused)
        expect(refused.body.limit).toBe("auth_failure")
        // On the SSE paths too, by header or by ?access_token= (the header's 429 is not turned into a 401).
        expectTooMany(refusedAnswer(yield* Effect.scoped(openSse("/api/stream", { token: bob.token }))))
        expectTooMany(refusedAnswer(yield* Effect.scoped(openSse("/api/stream", { accessToken: bob.token }))))
        // Alice's token was verified before: it costs no lookup, and goes on.
        expectStatus(yield* send(alice, "GET", "/api/me"), 200)
        // Once the budget is back, bob gets in.
        yield* Effect.sleep("2100 millis")
        expectStatus(yield* send(bob, "GET", "/api/me"), 200)
      }))
  }
)

/**
 * Bearer tokens looked up in the database so far (cache misses), as `/metrics` counts them
 * (`herald_token_lookups_total`, incremented where the SELECT is made).
 */
const tokenLookups = Effect.gen(function*() {
  const server = yield* TestServer
  const res = yield* server.request("GET", "/metrics")
  let n = 0
  for (const m of String(res.body).matchAll(/^herald_token_lookups_total\{result="\w+"\} (\d+)$/gm)) n += Number(m[1])
  return n
})

layer(testServerLayer(DEFAULTS), live)("request headers (431) and long URLs", (it) => {
  it.effect("headers over the limit are a JSON 431, counted", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const before = yield* refusals("headers")
      const res = yield* send(alice, "GET", "/api/me", undefined, { "x-padding": "a".repeat(100 * 1024) })
      expect(res.status, show(res)).toBe(431)
      expect(res.headers.get("content-type")).toMatch(/^application\/json/)
      expect(res.body._tag).toBe("RequestHeaderFieldsTooLarge")
      expect(typeof res.body.message).toBe("string")
      expect(yield* refusals("headers")).toBe(before + 1)
      // The server goes on serving.
      expectStatus(yield* send(alice, "GET", "/api/me"), 200)
    }))

  it.effect("?streams= with 200 workspace ids (the most the docs allow) is answered, not a 431", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const alice = yield* server.user("alice")
      const ids = Array.from(
        { length: 200 },
        () => Events.workspaceStream(randomUUID() as Ids.ProjectId, alice.id)
      )
      const url = `/api/stream?streams=${ids.join(",")}`
      expect(url.length).toBeGreaterThan(16 * 1024)
      const res = yield* send(alice, "GET", url)
      expect(res.status, show(res)).toBe(404)
      expect(res.body._tag).toBe("NotFound")
    }))
})
