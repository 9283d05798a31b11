/**
 * What the library puts on the wire, seen by a bare HTTP server: the bearer token (from `token`
 * or from `getToken`, asked again for each request), and no tracing headers unless asked — from
 * another origin, `traceparent` or `b3` would need a CORS preflight Herald does not allow.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createClient } from "@herald/client"
import * as http from "node:http"
import type { AddressInfo } from "node:net"

const seen: Array<http.IncomingHttpHeaders & { path: string }> = []
let server: http.Server
let baseUrl: string

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ ...req.headers, path: req.url ?? "" })
    res.writeHead(401, { "content-type": "application/json" })
    res.end(JSON.stringify({ _tag: "Unauthorized", message: "no such token" }))
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

describe("requests", () => {
  it("carry the token as a bearer and no tracing headers; the API's error is what the call rejects with", async () => {
    const herald = createClient({ baseUrl, token: "hrld_secret" })
    await expect(herald.me.me()).rejects.toMatchObject({ _tag: "Unauthorized", message: "no such token" })
    const last = seen.at(-1)!
    expect(last.path).toBe("/api/me")
    expect(last.authorization).toBe("Bearer hrld_secret")
    expect(last.traceparent).toBeUndefined()
    expect(last.b3).toBeUndefined()
  })

  it("getToken is asked before each request, so a refreshed token is used from then on", async () => {
    let n = 0
    const herald = createClient({ baseUrl: `${baseUrl}/`, getToken: async () => `hrld_${++n}` })
    await herald.me.me().catch(() => undefined)
    await herald.projects.list().catch(() => undefined)
    expect(seen.slice(-2).map((h) => [h.path, h.authorization])).toEqual([
      ["/api/me", "Bearer hrld_1"],
      ["/api/projects", "Bearer hrld_2"]
    ])
  })

  it("a payload the schema refuses is a ParseError, and nothing is sent", async () => {
    const herald = createClient({ baseUrl, token: "t" })
    const before = seen.length
    await expect(
      herald.messages.post({
        path: { projectId: "00000000-0000-4000-8000-000000000000" as never },
        payload: { body: "" }
      })
    ).rejects.toMatchObject({ _tag: "ParseError" })
    expect(seen.length).toBe(before)
  })

  it("a subscription the server refuses (401 on the ticket) ends: onError, then closed", async () => {
    const herald = createClient({ baseUrl, token: "t" })
    const statuses: Array<string> = []
    const errors: Array<{ status: number }> = []
    herald.subscribe({}, { onStatus: (s) => statuses.push(s), onError: (e) => errors.push(e) })
    const deadline = Date.now() + 10_000
    while (statuses.at(-1) !== "closed" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(statuses).toEqual(["connecting", "closed"])
    expect(errors).toEqual([expect.objectContaining({ status: 401 })])
    // The ticket was asked for, then a HEAD told why: never a URL with the token in it.
    expect(seen.slice(-2).map((h) => h.path)).toEqual(["/api/stream-tickets", "/api/stream"])
    expect(seen.every((h) => !h.path.includes("hrld_") && !h.path.includes("token"))).toBe(true)
  })
})
