import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { freePort, type Spawned, spawnServer } from "./support/Process.js"
import { connectSse } from "./support/SseClient.js"
import { freshDatabaseUrl } from "./support/TestDatabase.js"

const ADMIN = "process-test-admin"

const withDatabase = async <A>(f: (url: string) => Promise<A>): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    return await f(await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope)))
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

const startServer = async (databaseUrl: string, env: Record<string, string> = {}) => {
  const port = await freePort()
  const proc = spawnServer({ DATABASE_URL: databaseUrl, PORT: String(port), HERALD_ADMIN_TOKEN: ADMIN, ...env })
  await proc.waitFor(/API docs at/)
  return { proc, url: `http://127.0.0.1:${port}` }
}

const stop = async (proc: Spawned) => {
  const started = Date.now()
  proc.child.kill("SIGTERM")
  const { code } = await proc.exited
  return { code, ms: Date.now() - started }
}

const api = async (url: string, method: string, path: string, token: string, body?: unknown) => {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: res.status, body: await res.json() as any }
}

describe("server processes", () => {
  it("two servers with the postgres broker: a client on one receives, in order, what is posted on the other", () =>
    withDatabase(async (databaseUrl) => {
      const a = await startServer(databaseUrl, { HERALD_BROKER: "postgres" })
      const b = await startServer(databaseUrl, { HERALD_BROKER: "postgres" })
      try {
        const alice = (await api(a.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
        const project = (await api(a.url, "POST", "/api/projects", alice.token, { name: "two servers" })).body
        const onA = await connectSse(a.url, `/api/projects/${project.id}/stream`, { token: alice.token, after: "0" })
        const onB = await connectSse(b.url, `/api/projects/${project.id}/stream`, { token: alice.token, after: "0" })
        // Posts alternate between the servers; one large body travels as a reference (NOTIFY limit).
        for (let i = 0; i < 30; i++) {
          const body = i === 7 ? "x".repeat(9_000) : `m${i}`
          const res = await api(i % 2 ? a.url : b.url, "POST", `/api/projects/${project.id}/messages`, alice.token, { body })
          expect(res.status).toBe(201)
        }
        for (const client of [onA, onB]) {
          const events = await client.waitForEvents(31)
          expect(events.map((e) => Number(e.id))).toEqual(Array.from({ length: 31 }, (_, i) => i + 1))
          expect(events[8]!.data.data.body).toHaveLength(9_000)
          client.close()
        }
      } finally {
        await stop(a.proc)
        await stop(b.proc)
      }
    }), 90_000)

  it("SIGTERM with open SSE streams: the streams end, the process exits 0 within 10 s", () =>
    withDatabase(async (databaseUrl) => {
      const server = await startServer(databaseUrl)
      const alice = (await api(server.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
      const project = (await api(server.url, "POST", "/api/projects", alice.token, { name: "shutdown" })).body
      const clients = await Promise.all(
        Array.from({ length: 5 }, () => connectSse(server.url, `/api/projects/${project.id}/stream`, { token: alice.token, after: "0" }))
      )
      await Promise.all(clients.map((c) => c.waitForEvents(1)))
      const { code, ms } = await stop(server.proc)
      expect(code).toBe(0)
      expect(ms).toBeLessThan(10_000)
      await Promise.all(clients.map((c) => c.ended))
    }), 60_000)

  it("kill -9 loses nothing: events committed before the crash are delivered after a restart", () =>
    withDatabase(async (databaseUrl) => {
      // A broker that always fails keeps events pending (and possibly claimed) when the process dies;
      // a claim the dead process held is taken again once its lease has expired.
      const first = await startServer(databaseUrl, {
        HERALD_CHAOS_PUBLISH_FAILURE_RATE: "1",
        HERALD_CLAIM_LEASE_MS: "500",
        HERALD_PUBLISH_BACKOFF_MAX_MS: "500"
      })
      const alice = (await api(first.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
      const project = (await api(first.url, "POST", "/api/projects", alice.token, { name: "crash" })).body
      for (let i = 0; i < 10; i++) {
        await api(first.url, "POST", `/api/projects/${project.id}/messages`, alice.token, { body: `m${i}` })
      }
      first.proc.child.kill("SIGKILL")
      await first.proc.exited
      const second = await startServer(databaseUrl, { HERALD_CLAIM_LEASE_MS: "500" })
      try {
        const client = await connectSse(second.url, `/api/projects/${project.id}/stream`, { token: alice.token, after: "0" })
        const events = await client.waitForEvents(11)
        expect(events.map((e) => Number(e.id))).toEqual(Array.from({ length: 11 }, (_, i) => i + 1))
        // and the outbox drains: everything ends published
        const deadline = Date.now() + 15_000
        let pending = -1
        while (Date.now() < deadline) {
          const metrics = await (await fetch(`${second.url}/metrics`)).text()
          pending = Number(/^herald_outbox_pending (\d+)/m.exec(metrics)?.[1])
          if (pending === 0) break
          await new Promise((r) => setTimeout(r, 200))
        }
        expect(pending).toBe(0)
        client.close()
      } finally {
        await stop(second.proc)
      }
    }), 90_000)
})
