import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import pg from "pg"
import { inject } from "vitest"
import {
  api,
  pollUntil,
  readiness,
  readinessBecomes,
  type ServerNode,
  startServerNode,
  stopServerNodes
} from "../../../test-support/Process.js"
import { connectSse, type SseConnection } from "../../../test-support/SseClient.js"
import { withFreshDatabase } from "../../../test-support/TestDatabase.js"

/**
 * Issue 19: a node on the postgres broker must never go deaf. Compiled servers with
 * HERALD_BROKER=postgres on one database; the test attacks their LISTEN connections from outside
 * (terminated, refused new connections, frozen) and watches what their SSE clients and
 * `/health/ready` say.
 */

const ADMIN = "deaf-node-admin"

interface Node extends ServerNode {
  readonly name: string
}

const startNode = async (databaseUrl: string, name: string): Promise<Node> => ({
  name,
  ...await startServerNode({ DATABASE_URL: databaseUrl, HERALD_ADMIN_TOKEN: ADMIN, HERALD_BROKER: "postgres" })
})

/** SIGTERM to every node: each exits 0 within 10 s (G8), its LISTEN connection closed. */
const stopAll = async (nodes: ReadonlyArray<ServerNode>) => {
  for (const stopped of await stopServerNodes(nodes)) {
    expect(stopped.code, stopped.output).toBe(0)
    expect(stopped.ms).toBeLessThan(10_000)
  }
}

/**
 * A connection of the test's own to the nodes' database: the LISTEN backends as pg_stat_activity
 * shows them (a session's last statement), and the attacks.
 */
const databaseWatch = async (databaseUrl: string) => {
  const client = new pg.Client({ connectionString: databaseUrl, application_name: "deaf-node-test" })
  await client.connect()
  // ALTER DATABASE … ALLOW_CONNECTIONS is refused from inside that database.
  const admin = new pg.Client({ connectionString: inject("databaseAdminUrl"), application_name: "deaf-node-test" })
  await admin.connect()
  const name = (await client.query<{ name: string }>("SELECT current_database() AS name")).rows[0]!.name
  const LISTENERS = `FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%'`
  return {
    name,
    listeners: async () => (await client.query<{ pid: number }>(`SELECT pid ${LISTENERS}`)).rows.map((r) => r.pid),
    /** Issue 19's attack: every backend whose last statement was a LISTEN is terminated. How many were. */
    terminateListeners: async () => (await client.query(`SELECT pg_terminate_backend(pid) ${LISTENERS}`)).rowCount,
    /** New connections to the database are refused (those open go on), or accepted again. */
    acceptConnections: (accept: boolean) =>
      admin.query(`ALTER DATABASE ${admin.escapeIdentifier(name)} WITH ALLOW_CONNECTIONS ${accept}`),
    /** How many events of `stream` the publishers have published (NOTIFY sent). */
    published: async (stream: string) =>
      Number(
        (await client.query<{ n: string }>(
          "SELECT count(*) AS n FROM event_outbox WHERE stream_id = $1 AND status = 'published'",
          [stream]
        )).rows[0]!.n
      ),
    end: () => Promise.all([client.end(), admin.end()])
  }
}

type Watch = Awaited<ReturnType<typeof databaseWatch>>

const listenersAre = (db: Watch, n: number, timeoutMs = 10_000) =>
  pollUntil(`${n} LISTEN backend(s)`, async () => {
    const pids = await db.listeners()
    return pids.length === n ? { done: pids } : { seen: pids }
  }, timeoutMs)

const setUp = async (node: Node) => {
  const alice = (await api(node.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
  const project = (await api(node.url, "POST", "/api/projects", alice.token, { name: "deaf" })).body
  return { token: alice.token as string, projectId: project.id as string }
}

const seqs = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

/** Waits for `n` events, then a little longer: exactly `n`, with seq 1…n in order. */
const expectExactly = async (client: SseConnection, n: number, what: string, timeoutMs: number) => {
  await client.waitForEvents(n, timeoutMs)
  await new Promise((r) => setTimeout(r, 300))
  expect(client.events.map((e) => Number(e.data.seq)), what).toEqual(seqs(n))
}

/** Two nodes on a fresh database, a project, and a client on each node reading its stream from the start. */
const withTwoNodes = (
  f: (ctx: {
    readonly nodes: readonly [Node, Node]
    readonly db: Watch
    readonly clients: readonly [SseConnection, SseConnection]
    readonly post: (node: Node, body: string) => Promise<void>
    readonly stream: string
  }) => Promise<void>
) =>
  withFreshDatabase(async (databaseUrl) => {
    const nodes = [await startNode(databaseUrl, "node A"), await startNode(databaseUrl, "node B")] as const
    const db = await databaseWatch(databaseUrl)
    try {
      const { projectId, token } = await setUp(nodes[0])
      const path = `/api/projects/${projectId}/stream`
      const clients = [
        await connectSse(nodes[0].url, path, { token, after: "0" }),
        await connectSse(nodes[1].url, path, { token, after: "0" })
      ] as const
      await Promise.all(clients.map((c) => c.waitForEvents(1)))
      const post = async (node: Node, body: string) => {
        expect((await api(node.url, "POST", `${path.replace(/stream$/, "messages")}`, token, { body })).status)
          .toBe(201)
      }
      await f({ nodes, db, clients, post, stream: `project:${projectId}` })
      for (const c of clients) c.close()
    } finally {
      await db.acceptConnections(true)
      await db.end()
      await stopAll(nodes)
    }
  })

describe("a node on the postgres broker never goes deaf", () => {
  it(
    "its LISTEN connection terminated (pg_terminate_backend): every later post, from either node, reaches both nodes' streams within 5 s, in order",
    () =>
      withTwoNodes(async ({ clients, db, nodes, post }) => {
        await listenersAre(db, 2)
        for (const node of nodes) expect((await readiness(node.url)).status).toBe(200)

        expect(await db.terminateListeners()).toBe(2)

        for (let i = 0; i < 5; i++) {
          const started = Date.now()
          await post(nodes[i % 2]!, `after the cut ${i}`)
          // Event i + 2 of the stream (seq 1 is project.created), on both nodes.
          await Promise.all(clients.map((c) => c.waitForEvents(i + 2, 5_000)))
          expect(Date.now() - started).toBeLessThan(5_000)
        }
        for (const [i, client] of clients.entries()) await expectExactly(client, 6, `node ${i}`, 5_000)
        // Each node listens on a connection of its own again, and says it is ready.
        const pids = await listenersAre(db, 2)
        expect(new Set(pids).size).toBe(2)
        for (const node of nodes) await readinessBecomes(node.url, 200, 5_000, /^ok$/)
      }),
    90_000
  )

  it(
    "while a node cannot listen it answers 503 naming the broker; what was published meanwhile reaches its open streams once it listens again, with no later event",
    () =>
      withTwoNodes(async ({ clients, db, nodes, post, stream }) => {
        await listenersAre(db, 2)
        // The cut: the database refuses new connections (the pools' open ones go on), and the LISTEN
        // connections are terminated, so neither node can listen again until the database accepts.
        await db.acceptConnections(false)
        expect(await db.terminateListeners()).toBe(2)

        // 503, with a broker check that says why.
        for (const node of nodes) {
          await readinessBecomes(
            node.url,
            503,
            5_000,
            /^not listening: .*(terminating connection|not currently accepting connections)/
          )
        }
        // Posts on both nodes while they are deaf: committed and published (NOTIFY sent to nobody).
        for (let i = 0; i < 4; i++) await post(nodes[i % 2]!, `during the cut ${i}`)
        await pollUntil("the 4 posts to be published", async () => {
          const n = await db.published(stream)
          return n === 5 ? { done: n } : { seen: n }
        }, 10_000)
        await new Promise((r) => setTimeout(r, 500))
        for (const client of clients) expect(client.events.map((e) => Number(e.data.seq))).toEqual([1])
        for (const node of nodes) expect((await readiness(node.url)).status).toBe(503)

        // The database accepts connections again: each node listens again and catches up by itself.
        await db.acceptConnections(true)
        for (const node of nodes) await readinessBecomes(node.url, 200, 15_000, /^ok$/)
        for (const [i, client] of clients.entries()) await expectExactly(client, 5, `node ${i}`, 10_000)
        await listenersAre(db, 2)
      }),
    90_000
  )

  it(
    "its LISTEN connection silently dead (the backend frozen with SIGSTOP): it listens on a new one, catches up, and later posts arrive live",
    (ctx) =>
      withTwoNodes(async ({ clients, db, nodes, post }) => {
        const [a] = nodes
        const pids = await listenersAre(db, 2)
        // Only a process this machine can see is the database's backend may be frozen (DATABASE_URL
        // may point elsewhere): its title names the database.
        const title = (pid: number) => {
          try {
            return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8")
          } catch {
            return ""
          }
        }
        if (!pids.every((pid) => title(pid).includes(db.name))) return ctx.skip()
        const frozen = [...pids]
        for (const pid of frozen) process.kill(pid, "SIGSTOP")
        try {
          for (let i = 0; i < 2; i++) await post(nodes[i % 2]!, `while frozen ${i}`)
          // No error reaches the nodes: only their liveness probes can tell.
          for (const [i, client] of clients.entries()) await expectExactly(client, 3, `node ${i}`, 25_000)
          const fresh = await pollUntil("new LISTEN backends", async () => {
            const now = (await db.listeners()).filter((pid) => !frozen.includes(pid))
            return now.length === 2 ? { done: now } : { seen: now }
          }, 5_000)
          expect(fresh).toHaveLength(2)
        } finally {
          for (const pid of frozen) process.kill(pid, "SIGCONT")
        }
        await post(a, "after")
        for (const [i, client] of clients.entries()) await expectExactly(client, 4, `node ${i}`, 5_000)
        for (const node of nodes) await readinessBecomes(node.url, 200, 5_000, /^ok$/)
      }),
    90_000
  )
})
