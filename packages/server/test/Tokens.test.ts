/**
 * Revocable tokens and stream tickets (SPEC §5: the tokens and stream-tickets rows) over real HTTP
 * against real PostgreSQL, in one server: listing, creating and revoking tokens and their bad
 * input; expiry; `?ticket=` on the three SSE paths and nowhere else; a ticket's expiry and its
 * token's revocation; and the SSE connections a revoked token opened. Across two server processes:
 * Revocation.test.ts.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { SseConnection } from "../../../test-support/SseClient.js"
import { redactUrl } from "../src/http/Middleware.js"
import { createProject } from "./support/HttpTesting.js"
import { openSse, settlesWithin } from "./support/SseTesting.js"
import { TestServer, testServerLayer, type TestUser } from "./support/TestServer.js"

const live = { excludeTestServices: true } as const
const TICKET_TTL_MS = 1_500

const sleep = (ms: number) => Effect.promise(() => new Promise((r) => setTimeout(r, ms)))

const ticketFor = (as: { readonly token: string }) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const res = yield* server.request("POST", "/api/stream-tickets", { token: as.token })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    return res.body as { ticket: string; expiresAt: string }
  })

const newToken = (as: { readonly token: string }, json: unknown = {}) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const res = yield* server.request("POST", "/api/me/tokens", { token: as.token, json })
    expect(res.status, JSON.stringify(res.body)).toBe(201)
    return res.body as { id: string; token: string; expiresAt: string | null }
  })

const ended = (sse: SseConnection, ms: number) => settlesWithin(sse.ended, ms)

layer(testServerLayer({ ticketTtl: Duration.millis(TICKET_TTL_MS) }), live)("tokens and stream tickets", (it) => {
  describe("GET/POST/DELETE /api/me/tokens", () => {
    it.effect("lists the caller's live tokens without secrets; a new token works at once; revoked, it is refused", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("me")
        const other = yield* server.user("other")

        const first = yield* server.request("GET", "/api/me/tokens", { token: me.token })
        expect(first.status).toBe(200)
        expect(first.body.items).toHaveLength(1)
        expect(first.body.items[0]).toEqual({
          id: expect.stringMatching(/^[0-9a-f-]{36}$/),
          label: null,
          createdAt: expect.any(String),
          lastUsedAt: null,
          expiresAt: null
        })

        const ci = yield* newToken(me, { label: "ci", expiresIn: "30d" })
        expect(ci.token).toMatch(/^hrld_/)
        const days = (Date.parse(ci.expiresAt!) - Date.now()) / 86_400_000
        expect(days).toBeGreaterThan(29.9)
        expect(days).toBeLessThan(30.1)
        const laptop = yield* newToken(me, {})
        expect(laptop.expiresAt).toBeNull()

        const mine = yield* server.request("GET", "/api/me", { token: ci.token })
        expect(mine.status).toBe(200)
        expect(mine.body).toEqual({ id: me.id, name: "me", createdAt: expect.any(String) })

        const listed = yield* server.request("GET", "/api/me/tokens", { token: laptop.token })
        expect(listed.body.items.map((t: any) => t.id).sort()).toEqual(
          [first.body.items[0].id, ci.id, laptop.id].sort()
        )
        expect(listed.body.items.find((t: any) => t.id === ci.id)).toMatchObject({
          label: "ci",
          expiresAt: ci.expiresAt
        })
        // Never a secret, never another user's token.
        expect(JSON.stringify(listed.body)).not.toMatch(/hrld_/)
        const theirs = yield* server.request("GET", "/api/me/tokens", { token: other.token })
        expect(theirs.body.items).toHaveLength(1)
        expect(JSON.stringify(theirs.body)).not.toContain(ci.id)

        // Another user's token, or an unknown one: 404, and it keeps working.
        const notYours = yield* server.request("DELETE", `/api/me/tokens/${ci.id}`, { token: other.token })
        expect(notYours.status).toBe(404)
        expect(notYours.body._tag).toBe("NotFound")
        expect((yield* server.request("GET", "/api/me", { token: ci.token })).status).toBe(200)
        const unknown = yield* server.request("DELETE", "/api/me/tokens/6f1c2d3e-0000-4000-8000-000000000000", {
          token: me.token
        })
        expect(unknown.status).toBe(404)

        const revoked = yield* server.request("DELETE", `/api/me/tokens/${ci.id}`, { token: laptop.token })
        expect(revoked.status).toBe(204)
        const refused = yield* server.request("GET", "/api/me", { token: ci.token })
        expect(refused.status).toBe(401)
        expect(refused.body._tag).toBe("Unauthorized")
        // Gone from the list; revoking it again: 404.
        const after = yield* server.request("GET", "/api/me/tokens", { token: me.token })
        expect(after.body.items.map((t: any) => t.id)).not.toContain(ci.id)
        expect((yield* server.request("DELETE", `/api/me/tokens/${ci.id}`, { token: me.token })).status).toBe(404)

        // A token can revoke itself.
        expect((yield* server.request("DELETE", `/api/me/tokens/${laptop.id}`, { token: laptop.token })).status).toBe(
          204
        )
        expect((yield* server.request("GET", "/api/me/tokens", { token: laptop.token })).status).toBe(401)
        expect((yield* server.request("GET", "/api/me", { token: me.token })).status).toBe(200)
      }))

    it.effect("bad input: 400 naming the field, 404 for a malformed id, 401 without a token; nothing created", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("bad")
        const create = (json: unknown) => server.request("POST", "/api/me/tokens", { token: me.token, json })
        for (const expiresIn of ["soon", "-1d", "0s", "30s", "3651d", "1e3", ""]) {
          const res = yield* create({ expiresIn })
          expect(res.status, `${expiresIn}: ${JSON.stringify(res.body)}`).toBe(400)
          expect(res.body._tag).toBe("BadRequest")
          expect(res.body.message).toMatch(/expiresIn/)
        }
        for (
          const json of [
            { expiresIn: 30 },
            { expiresIn: "1".repeat(100) + "d" },
            { label: 7 },
            { label: "x".repeat(201) },
            { label: "a\u0000b" },
            []
          ]
        ) {
          const res = yield* create(json)
          expect(res.status, JSON.stringify(json)).toBe(400)
          expect(res.body._tag).toMatch(/BadRequest|HttpApiDecodeError/)
          expect(res.body.message).toEqual(expect.any(String))
        }
        const notJson = yield* server.request("POST", "/api/me/tokens", { token: me.token, raw: "{" })
        expect(notJson.status).toBe(400)
        expect((yield* server.request("DELETE", "/api/me/tokens/not-an-id", { token: me.token })).status).toBe(400)
        expect((yield* server.request("GET", "/api/me/tokens")).status).toBe(401)
        expect((yield* server.request("POST", "/api/me/tokens", { json: {} })).status).toBe(401)
        const list = yield* server.request("GET", "/api/me/tokens", { token: me.token })
        expect(list.body.items).toHaveLength(1)
      }))

    it.effect("at most 100 live tokens per user: the 101st is a JSON 429 with Retry-After, counted; revoking one makes room", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("many")
        const created = yield* Effect.forEach(
          Array.from({ length: 99 }, (_, i) => i),
          (i) => newToken(me, { label: `t${i}` }),
          { concurrency: 8 }
        )
        const refusals = () =>
          Effect.map(
            server.request("GET", "/metrics"),
            (res) => Number(/herald_limit_refusals_total\{limit="tokens"\} (\d+)/.exec(String(res.body))?.[1] ?? 0)
          )
        const before = yield* refusals()
        const over = yield* server.request("POST", "/api/me/tokens", { token: me.token, json: {} })
        expect(over.status).toBe(429)
        expect(over.headers.get("retry-after")).toBe("60")
        expect(over.body).toEqual({
          _tag: "TooManyRequests",
          message: expect.stringMatching(/at most 100 live tokens/),
          limit: "tokens",
          retryAfter: 60
        })
        expect(yield* refusals()).toBe(before + 1)
        expect((yield* server.request("GET", "/api/me/tokens", { token: me.token })).body.items).toHaveLength(100)
        expect((yield* server.request("DELETE", `/api/me/tokens/${created[0]!.id}`, { token: me.token })).status).toBe(
          204
        )
        yield* newToken(me)
      }))

    it.scoped("an expired token is refused, and its SSE connections end within 1 s", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const sql = yield* SqlClient.SqlClient
        const me = yield* server.user("expiring")
        const p = yield* createProject(me, "exp")
        const short = yield* newToken(me, { expiresIn: "1m" })
        yield* sql`UPDATE api_tokens SET expires_at = now() + interval '1500 milliseconds' WHERE id = ${short.id}`
        const viaHeader = yield* openSse(`/api/projects/${p.id}/stream`, { token: short.token })
        const { ticket } = yield* ticketFor({ token: short.token })
        const viaTicket = yield* openSse(`/api/stream?ticket=${ticket}`)
        expect([viaHeader.status, viaTicket.status]).toEqual([200, 200])
        expect((yield* server.request("GET", "/api/me", { token: short.token })).status).toBe(200)
        yield* sleep(1_500)
        expect(yield* ended(viaHeader, 1_000)).toBe(true)
        expect(yield* ended(viaTicket, 1_000)).toBe(true)
        const refused = yield* server.request("GET", "/api/me", { token: short.token })
        expect(refused.status).toBe(401)
        expect(refused.body.message).toMatch(/expired/)
        expect((yield* server.request("GET", "/api/me/tokens", { token: me.token })).body.items.map((t: any) => t.id))
          .not.toContain(short.id)
      }))

    it.effect("lastUsedAt is kept, coarsely: one write for many requests", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const sql = yield* SqlClient.SqlClient
        const me = yield* server.user("used")
        const t = yield* newToken(me)
        for (let i = 0; i < 20; i++) {
          expect((yield* server.request("GET", "/api/me", { token: t.token })).status).toBe(200)
        }
        // Written in the background within a few seconds.
        const deadline = Date.now() + 10_000
        let lastUsedAt: string | null = null
        while (lastUsedAt === null && Date.now() < deadline) {
          yield* sleep(200)
          const list = yield* server.request("GET", "/api/me/tokens", { token: me.token })
          lastUsedAt = list.body.items.find((x: any) => x.id === t.id).lastUsedAt
        }
        expect(lastUsedAt).not.toBeNull()
        expect(Math.abs(Date.parse(lastUsedAt!) - Date.now())).toBeLessThan(15_000)
        // More use within the minute writes nothing.
        const [before] = yield* sql<{ at: Date }>`SELECT last_used_at AS at FROM api_tokens WHERE id = ${t.id}`
        for (let i = 0; i < 10; i++) yield* server.request("GET", "/api/me", { token: t.token })
        yield* sleep(6_000)
        const [after] = yield* sql<{ at: Date }>`SELECT last_used_at AS at FROM api_tokens WHERE id = ${t.id}`
        expect(after!.at.getTime()).toBe(before!.at.getTime())
      }), 30_000)
  })

  describe("stream tickets", () => {
    it.scoped("a ticket opens each SSE path (GET and HEAD), and nothing else", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("ticketed")
        const p = yield* createProject(me, "t")
        const issued = yield* ticketFor(me)
        expect(issued.ticket).toMatch(/^[A-Za-z0-9_.-]+$/)
        const ttl = Date.parse(issued.expiresAt) - Date.now()
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(TICKET_TTL_MS)
        const q = `ticket=${encodeURIComponent(issued.ticket)}`
        for (const path of [`/api/projects/${p.id}/stream`, `/api/projects/${p.id}/workspace/stream`, `/api/stream`]) {
          const sse = yield* openSse(`${path}?${q}`, path === "/api/stream" ? {} : { after: "0" })
          expect(sse.status, `${path}: ${JSON.stringify(sse.errorBody)}`).toBe(200)
          sse.close()
          const head = yield* server.request("HEAD", `${path}?${q}`)
          expect(head.status, path).toBe(200)
        }
        // Not a bearer token, not a query credential anywhere else.
        for (const [method, path] of [["GET", "/api/me"], ["GET", "/api/projects"], ["GET", "/api/me/tokens"]]) {
          const asBearer = yield* server.request(method!, path!, { token: issued.ticket })
          expect(asBearer.status, `${path} with the ticket as bearer`).toBe(401)
          const asQuery = yield* server.request(method!, `${path}?${q}`)
          expect(asQuery.status, `${path}?ticket=`).toBe(401)
        }
        expect((yield* server.request("POST", "/api/stream-tickets", { token: issued.ticket })).status).toBe(401)
        expect((yield* server.request("POST", "/api/stream-tickets")).status).toBe(401)
        // As an access token it is not one either.
        const asAccessToken = yield* openSse(`/api/stream`, { accessToken: issued.ticket })
        expect(asAccessToken.status).toBe(401)
      }))

    it.scoped("a forged, altered or another's ticket is 401; a bad ticket does not hide a good access token", () =>
      Effect.gen(function*() {
        const me = yield* (yield* TestServer).user("forger")
        const { ticket } = yield* ticketFor(me)
        const dot = ticket.indexOf(".")
        const flipped = ticket.slice(0, dot - 2) + (ticket[dot - 2] === "A" ? "B" : "A") + ticket.slice(dot - 1)
        for (const bad of [flipped, ticket.slice(0, -3), "hst_x.y", me.token, "x".repeat(2_000)]) {
          const sse = yield* openSse(`/api/stream?ticket=${encodeURIComponent(bad)}`)
          expect(sse.status).toBe(401)
          expect(sse.errorBody).toMatchObject({ _tag: "Unauthorized", message: expect.any(String) })
        }
        const both = yield* openSse(`/api/stream?ticket=nonsense`, { accessToken: me.token })
        expect(both.status).toBe(200)
        const none = yield* openSse(`/api/stream`)
        expect(none.status).toBe(401)
        expect((none.errorBody as any).message).toMatch(/ticket/)
      }))

    it.scoped("a connection opened with a ticket outlives it; a reconnect after expiry is 401, a new ticket works", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me = yield* server.user("long-lived")
        const p = yield* createProject(me, "l")
        const { ticket } = yield* ticketFor(me)
        const sse = yield* openSse(`/api/projects/${p.id}/stream?ticket=${encodeURIComponent(ticket)}`, { after: "0" })
        expect(sse.status).toBe(200)
        yield* Effect.promise(() => sse.waitForEvents(1))
        yield* sleep(TICKET_TTL_MS + 300)
        const res = yield* server.request("POST", `/api/projects/${p.id}/messages`, {
          token: me.token,
          json: { body: "after the ticket expired" }
        })
        expect(res.status).toBe(201)
        const events = yield* Effect.promise(() => sse.waitForEvents(2))
        expect(events[1]!.data.data.body).toBe("after the ticket expired")
        expect(yield* ended(sse, 300)).toBe(false)

        const again = yield* openSse(`/api/projects/${p.id}/stream?ticket=${encodeURIComponent(ticket)}`)
        expect(again.status).toBe(401)
        expect((again.errorBody as any).message).toMatch(/expired/)
        const fresh = yield* ticketFor(me)
        const resumed = yield* openSse(`/api/projects/${p.id}/stream?ticket=${encodeURIComponent(fresh.ticket)}`, {
          after: "1"
        })
        expect(resumed.status).toBe(200)
        expect((yield* Effect.promise(() => resumed.waitForEvents(1)))[0]!.data.seq).toBe(2)
      }))

    it.scoped("revoking a token ends, within 1 s, the connections it opened directly and through its tickets", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const me: TestUser = yield* server.user("revoker")
        const p = yield* createProject(me, "r")
        const doomed = yield* newToken(me, { label: "doomed" })
        const { ticket } = yield* ticketFor({ token: doomed.token })
        const direct = yield* openSse(`/api/projects/${p.id}/workspace/stream`, { token: doomed.token })
        const query = yield* openSse(`/api/stream`, { accessToken: doomed.token })
        const ticketed = yield* openSse(`/api/stream?ticket=${encodeURIComponent(ticket)}`)
        const bystander = yield* openSse(`/api/stream`, { token: me.token })
        for (const c of [direct, query, ticketed, bystander]) expect(c.status).toBe(200)

        const revoked = yield* server.request("DELETE", `/api/me/tokens/${doomed.id}`, { token: me.token })
        expect(revoked.status).toBe(204)
        const at = Date.now()
        for (const c of [direct, query, ticketed]) expect(yield* ended(c, 1_000)).toBe(true)
        const ms = Date.now() - at
        console.log(`revocation → the token's 3 SSE connections ended after ${ms} ms (one server)`)
        expect(yield* ended(bystander, 300)).toBe(false)
        // Its unexpired ticket died with it.
        const reopened = yield* openSse(`/api/stream?ticket=${encodeURIComponent(ticket)}`)
        expect(reopened.status).toBe(401)
        expect((yield* server.request("POST", "/api/stream-tickets", { token: doomed.token })).status).toBe(401)
      }))
  })
})

describe("redactUrl: no credential reaches the access log, however its parameter is spelled", () => {
  const secret = "hrld_s3cr3t-value"
  const cases = [
    `/api/stream?access_token=${secret}`,
    `/api/stream?access%5Ftoken=${secret}`,
    `/api/stream?access%5ftoken=${secret}`,
    `/api/stream?%61ccess_token=${secret}`,
    `/api/stream?ACCESS_TOKEN=${secret}`,
    `/api/stream?ticket=${secret}`,
    `/api/stream?TICKET=${secret}`,
    `/api/stream?%74icket=${secret}`,
    `/api/stream?cursor=abc&ticket=${secret}&streams=x`,
    `/api/stream?ticket=${encodeURIComponent(secret)}`,
    `/api/stream?other=${secret}`,
    `/api/stream?x=%E0%A4%A&access_token=${secret}`,
    `/api/stream?access_token=${secret}&access_token=${secret}`
  ]
  for (const url of cases) {
    it(url, () => {
      const logged = redactUrl(url)
      expect(logged).not.toContain("s3cr3t")
      expect(logged.startsWith("/api/stream?")).toBe(true)
    })
  }
  it("leaves other parameters as they were", () => {
    expect(redactUrl("/api/stream?cursor=abc&streams=project%3Ax&after=3")).toBe(
      "/api/stream?cursor=abc&streams=project%3Ax&after=3"
    )
    expect(redactUrl("/api/me")).toBe("/api/me")
  })
})
