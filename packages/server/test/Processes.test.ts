import { describe, expect, it } from "@effect/vitest"
import pg from "pg"
import { api, freePort, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { connectSse } from "../../../test-support/SseClient.js"
import { withFreshDatabase } from "../../../test-support/TestDatabase.js"

const ADMIN = "process-test-admin"

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

/** The publisher id a server logs at start-up: what it writes into `claimed_by`. */
const publisherId = (proc: Spawned) => {
  const match = /outbox publisher (\S+) started/.exec(proc.output())
  if (!match) throw new Error(`no "outbox publisher … started" line in:\n${proc.output()}`)
  return match[1]!
}

interface HeldClaim {
  readonly id: string
  readonly claimedBy: string
  readonly claimedUntil: Date
  readonly leaseLive: boolean
}

interface ClaimChange {
  readonly before: string | null
  readonly after: string | null
  readonly status: string
  readonly at: Date
}

/**
 * A direct connection to a server's database, to watch the outbox's claims from outside: an audit
 * trigger records every change of `claimed_by` or `status` with the time it was made, and
 * `holdClaims` installs a trigger that refuses any update ending a claim.
 */
const outboxObserver = async (databaseUrl: string) => {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  await client.query(`
    CREATE TABLE test_claim_history (event_id uuid, before text, after text, status text, at timestamptz);
    CREATE FUNCTION test_record_claim() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO test_claim_history VALUES (NEW.id, OLD.claimed_by, NEW.claimed_by, NEW.status, clock_timestamp());
      RETURN NULL;
    END $$;
    CREATE TRIGGER test_record_claim AFTER UPDATE ON event_outbox FOR EACH ROW
      WHEN (OLD.claimed_by IS DISTINCT FROM NEW.claimed_by OR OLD.status IS DISTINCT FROM NEW.status)
      EXECUTE FUNCTION test_record_claim();`)
  const until = async <A>(what: string, probe: () => Promise<A | undefined>, timeoutMs = 10_000): Promise<A> => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      const found = await probe()
      if (found !== undefined) return found
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`timed out waiting for ${what}`)
  }
  return {
    until,
    holdClaims: () =>
      client.query(`
        CREATE FUNCTION test_hold_claims() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION 'test: this claim may not be given back';
        END $$;
        CREATE TRIGGER test_hold_claims BEFORE UPDATE ON event_outbox FOR EACH ROW
          WHEN (OLD.claimed_by IS NOT NULL AND NEW.claimed_by IS NULL)
          EXECUTE FUNCTION test_hold_claims();`),
    releaseClaims: () => client.query(`DROP TRIGGER test_hold_claims ON event_outbox`),
    /** Pending rows that some publisher has claimed, with whether the lease still runs. */
    claims: async (): Promise<Array<HeldClaim>> =>
      (await client.query<HeldClaim>(`
        SELECT id, claimed_by AS "claimedBy", claimed_until AS "claimedUntil", claimed_until > now() AS "leaseLive"
        FROM event_outbox WHERE status = 'pending' AND claimed_by IS NOT NULL ORDER BY position`)).rows,
    history: async (id: string): Promise<Array<ClaimChange>> =>
      (await client.query<ClaimChange>(
        `SELECT before, after, status, at FROM test_claim_history WHERE event_id = $1 ORDER BY at`,
        [id]
      )).rows,
    end: () => client.end()
  }
}

describe("server processes", () => {
  it(
    "two servers with the postgres broker: a client on one receives, in order, what is posted on the other",
    () =>
      withFreshDatabase(async (databaseUrl) => {
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
            const res = await api(i % 2 ? a.url : b.url, "POST", `/api/projects/${project.id}/messages`, alice.token, {
              body
            })
            expect(res.status).toBe(201)
          }
          for (const client of [onA, onB]) {
            const events = await client.waitForEvents(31)
            expect(events.map((e) => Number(e.data.seq))).toEqual(Array.from({ length: 31 }, (_, i) => i + 1))
            expect(events[8]!.data.data.body).toHaveLength(9_000)
            client.close()
          }
        } finally {
          await stop(a.proc)
          await stop(b.proc)
        }
      }),
    90_000
  )

  it(
    "two servers with the postgres broker and a 30 s poll: every post reaches the other server's client by its wake-up",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        // With the fallback poll 30 s away, an event that waits for it (a lost wake-up) shows as a 30 s delay.
        const env = { HERALD_BROKER: "postgres", HERALD_POLL_INTERVAL_MS: "30000" }
        const a = await startServer(databaseUrl, env)
        const b = await startServer(databaseUrl, env)
        try {
          const alice = (await api(a.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
          const project = (await api(a.url, "POST", "/api/projects", alice.token, { name: "wake-ups" })).body
          const path = `/api/projects/${project.id}/stream`
          const onA = await connectSse(a.url, path, { token: alice.token, after: "0" })
          const onB = await connectSse(b.url, path, { token: alice.token, after: "0" })
          await Promise.all([onA.waitForEvents(1), onB.waitForEvents(1)])
          const slow: Array<string> = []
          const POSTS = 300
          for (let i = 0; i < POSTS; i++) {
            const [to, other] = i % 2 ? [a, onB] : [b, onA]
            const started = Date.now()
            const res = await api(to.url, "POST", `/api/projects/${project.id}/messages`, alice.token, {
              body: `m${i}`
            })
            expect(res.status).toBe(201)
            // Event i + 2 of the stream (seq 1 is project.created), read on the other server.
            await other.waitForEvents(i + 2, 60_000)
            const ms = Date.now() - started
            if (ms >= 1_000) slow.push(`post ${i} (seq ${i + 2}): ${ms} ms`)
          }
          expect(slow).toEqual([])
          for (const client of [onA, onB]) {
            const events = await client.waitForEvents(POSTS + 1)
            expect(events.map((e) => Number(e.data.seq))).toEqual(Array.from({ length: POSTS + 1 }, (_, i) => i + 1))
            client.close()
          }
        } finally {
          await stop(a.proc)
          await stop(b.proc)
        }
      }),
    180_000
  )

  it(
    "SIGTERM with open SSE streams: the streams end, the process exits 0 within 10 s",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const server = await startServer(databaseUrl)
        const alice = (await api(server.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
        const project = (await api(server.url, "POST", "/api/projects", alice.token, { name: "shutdown" })).body
        const clients = await Promise.all(
          Array.from(
            { length: 5 },
            () => connectSse(server.url, `/api/projects/${project.id}/stream`, { token: alice.token, after: "0" })
          )
        )
        await Promise.all(clients.map((c) => c.waitForEvents(1)))
        const { code, ms } = await stop(server.proc)
        expect(code).toBe(0)
        expect(ms).toBeLessThan(10_000)
        await Promise.all(clients.map((c) => c.ended))
      }),
    60_000
  )

  it(
    "kill -9 loses nothing: a claim the dead process held is taken again after its lease, and every event is delivered",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const FIRST_LEASE_MS = 4_000
        // A broker that always fails keeps every event pending; the database refuses the first process
        // any update that would end one of its claims (see holdClaims), so when it is killed it holds
        // claims it never gave back — as a process that dies between its claim and its confirm does.
        const first = await startServer(databaseUrl, {
          HERALD_CHAOS_PUBLISH_FAILURE_RATE: "1",
          HERALD_CLAIM_LEASE_MS: String(FIRST_LEASE_MS),
          HERALD_PUBLISH_BACKOFF_MAX_MS: "500"
        })
        const firstId = publisherId(first.proc)
        const db = await outboxObserver(databaseUrl)
        try {
          await db.holdClaims()
          const alice = (await api(first.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
          const project = (await api(first.url, "POST", "/api/projects", alice.token, { name: "crash" })).body
          for (let i = 0; i < 10; i++) {
            await api(first.url, "POST", `/api/projects/${project.id}/messages`, alice.token, { body: `m${i}` })
          }
          const held = await db.until("the first process to hold a claim", async () => {
            const rows = await db.claims()
            return rows.length > 0 ? rows : undefined
          })
          expect(held.every((row) => row.claimedBy === firstId && row.leaseLive)).toBe(true)

          first.proc.child.kill("SIGKILL")
          await first.proc.exited
          await db.releaseClaims()

          const second = await startServer(databaseUrl, { HERALD_CLAIM_LEASE_MS: "500" })
          const secondId = publisherId(second.proc)
          expect(secondId).not.toBe(firstId)
          try {
            const client = await connectSse(second.url, `/api/projects/${project.id}/stream`, {
              token: alice.token,
              after: "0"
            })
            const events = await client.waitForEvents(11)
            expect(events.map((e) => Number(e.data.seq))).toEqual(Array.from({ length: 11 }, (_, i) => i + 1))
            client.close()
            // The outbox drains: everything ends published …
            const pending = await db.until("herald_outbox_pending to reach 0", async () => {
              const metrics = await (await fetch(`${second.url}/metrics`)).text()
              const n = Number(/^herald_outbox_pending (\d+)/m.exec(metrics)?.[1])
              return n === 0 ? n : undefined
            }, 15_000)
            expect(pending).toBe(0)
            // … and each row the dead process held was claimed by the restarted one once the lease had
            // expired, then published by it.
            for (const row of held) {
              const history = await db.history(row.id)
              const reclaim = history.find((h) => h.before === firstId && h.after === secondId)
              expect(reclaim, `row ${row.id}: ${JSON.stringify(history)}`).toBeDefined()
              expect(reclaim!.at.getTime()).toBeGreaterThanOrEqual(row.claimedUntil.getTime())
              const published = history.find((h) => h.status === "published")
              expect(published, `row ${row.id}: ${JSON.stringify(history)}`).toMatchObject({ before: secondId })
            }
          } finally {
            await stop(second.proc)
          }
        } finally {
          await db.end()
        }
      }),
    90_000
  )

  it(
    "GET /api/stream resumes exactly by its last cursor across a kill -9 and a restart, with the server's own publisher",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const env = { HERALD_CLAIM_LEASE_MS: "2000" }
        let server = await startServer(databaseUrl, env)
        const alice = (await api(server.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
        const projects: Array<string> = []
        for (let i = 0; i < 3; i++) {
          projects.push((await api(server.url, "POST", "/api/projects", alice.token, { name: `p${i}` })).body.id)
        }
        const received: Array<{ stream: string; seq: number }> = []
        let cursor: string | undefined
        const connect = async () => {
          const c = await connectSse(server.url, "/api/stream", {
            token: alice.token,
            ...(cursor === undefined ? {} : { lastEventId: cursor })
          })
          expect(c.status).toBe(200)
          return c
        }
        /** Everything the connection got so far, and its last cursor, once it has ended. */
        const collect = async (c: Awaited<ReturnType<typeof connect>>) => {
          await c.ended
          for (const e of c.events) {
            if (e.event !== "heads") received.push({ stream: e.data.stream, seq: e.data.seq })
          }
          cursor = c.events.at(-1)?.id ?? cursor
        }
        const postRound = async (n: number) => {
          for (let i = 0; i < n; i++) {
            for (const p of projects) {
              const res = await api(server.url, "POST", `/api/projects/${p}/messages`, alice.token, { body: `m${i}` })
              expect(res.status).toBe(201)
            }
          }
        }
        try {
          let client = await connect()
          await client.waitForEvents(1)
          await postRound(4)
          server.proc.child.kill("SIGKILL")
          await server.proc.exited
          await collect(client)

          server = await startServer(databaseUrl, env)
          client = await connect()
          await postRound(3)
          await client.waitForEvents(3)
          // A graceful restart ends the stream cleanly; the client resumes from its last cursor again.
          expect((await stop(server.proc)).code).toBe(0)
          await collect(client)

          server = await startServer(databaseUrl, env)
          client = await connect()
          await postRound(2)
          const heads = 1 + 4 + 3 + 2
          await client.waitForEvents(1)
          const deadline = Date.now() + 10_000
          while (Date.now() < deadline) {
            const seen = new Set([...received, ...client.events.map((e) => e.data)].map((e) => `${e.stream}/${e.seq}`))
            if (projects.every((p) => seen.has(`project:${p}/${heads}`))) break
            await new Promise((r) => setTimeout(r, 50))
          }
          client.close()
          await collect(client)
          for (const p of projects) {
            const seqs = received.filter((e) => e.stream === `project:${p}`).map((e) => e.seq)
            expect(seqs, `project:${p}`).toEqual(Array.from({ length: heads - 1 }, (_, i) => i + 2))
          }
          expect(new Set(received.map((e) => e.stream))).toEqual(new Set(projects.map((p) => `project:${p}`)))
        } finally {
          if (server.proc.child.exitCode === null) await stop(server.proc)
        }
      }),
    90_000
  )
})
