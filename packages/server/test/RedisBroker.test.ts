import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either } from "effect"
import { Redis } from "ioredis"
import {
  api,
  freePort,
  readinessBecomes,
  runProcess,
  type ServerNode,
  spawnServer,
  startServerNode,
  stopServerNodes
} from "../../../test-support/Process.js"
import { type RedisServer, startRedis } from "../../../test-support/Redis.js"
import { connectSse, type SseConnection } from "../../../test-support/SseClient.js"
import { withFreshDatabase } from "../../../test-support/TestDatabase.js"
import { STREAM_KEY } from "../src/broker/RedisBroker.js"
import { AppConfig, formatConfigError } from "../src/config/AppConfig.js"

/**
 * HERALD_BROKER=redis end to end: compiled server processes on one PostgreSQL database and one
 * real redis-server (Debian's, started for this file; see test-support/Redis.ts). Each test uses
 * a Redis database of its own (`redis://…/<n>`), so their streams never meet.
 */

const ADMIN = "redis-test-admin"

let redis: RedisServer
let nextDb = 1
/** A REDIS_URL on this file's server, a database no other test uses. */
const redisUrl = () => `${redis.url}/${nextDb++}`

// Up to 10 minutes: on a machine without redis-server, this installs it with apt-get first.
beforeAll(async () => {
  redis = await startRedis()
}, 600_000)

afterAll(async () => {
  await redis?.stop()
})

type Node = ServerNode

const startNode = (databaseUrl: string, env: Record<string, string>): Promise<Node> =>
  startServerNode({
    DATABASE_URL: databaseUrl,
    HERALD_ADMIN_TOKEN: ADMIN,
    HERALD_BROKER: "redis",
    LOG_LEVEL: "warn",
    ...env
  })

/** SIGTERM to every node: each exits 0 within 10 s (G8), its Redis connections closed. */
const stopAll = async (nodes: ReadonlyArray<ServerNode>) => {
  for (const stopped of await stopServerNodes(nodes)) {
    expect(stopped.code, stopped.output).toBe(0)
    expect(stopped.ms).toBeLessThan(10_000)
  }
}

const setUp = async (node: Node, name: string) => {
  const alice = (await api(node.url, "POST", "/api/admin/users", ADMIN, { name: "alice" })).body
  const project = (await api(node.url, "POST", "/api/projects", alice.token, { name })).body
  return { token: alice.token as string, projectId: project.id as string }
}

/**
 * Two nodes on the Redis at `brokerUrl` with a client each on one project stream from seq 0; node B is frozen (SIGSTOP)
 * while A takes 5 posts, which only A's client reads, and `meanwhile` happens; then B goes on
 * and its client must get all 6 events exactly once, in order, without another event.
 */
const whileAway = async (
  databaseUrl: string,
  brokerUrl: string,
  name: string,
  who: string,
  meanwhile: (projectId: string) => Promise<unknown>
) => {
  const env = { REDIS_URL: brokerUrl }
  const nodes = [await startNode(databaseUrl, env), await startNode(databaseUrl, env)]
  const [a, b] = nodes as [Node, Node]
  try {
    const { projectId, token } = await setUp(a, name)
    const path = `/api/projects/${projectId}/stream`
    const onA = await connectSse(a.url, path, { token, after: "0" })
    const onB = await connectSse(b.url, path, { token, after: "0" })
    await Promise.all([onA.waitForEvents(1), onB.waitForEvents(1)])
    b.proc.child.kill("SIGSTOP")
    try {
      for (let i = 0; i < 5; i++) {
        expect((await api(a.url, "POST", `/api/projects/${projectId}/messages`, token, { body: `m${i}` })).status)
          .toBe(201)
      }
      await onA.waitForEvents(6)
      await meanwhile(projectId)
    } finally {
      b.proc.child.kill("SIGCONT")
    }
    await expectExactly(onB, 6, who, 15_000)
    onA.close()
    onB.close()
  } finally {
    await stopAll(nodes)
  }
}

const seqs = (n: number) => Array.from({ length: n }, (_, i) => i + 1)

/** Waits for `n` events, then a little longer: exactly `n`, with seq 1…n in order (nothing twice, nothing missing). */
const expectExactly = async (client: SseConnection, n: number, what: string, timeoutMs = 30_000) => {
  await client.waitForEvents(n, timeoutMs)
  await new Promise((r) => setTimeout(r, 300))
  expect(client.events.map((e) => Number(e.data.seq)), what).toEqual(seqs(n))
}

const metric = async (node: Node, name: string) => {
  const text = await (await fetch(`${node.url}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\S+)`, "m").exec(text)?.[1] ?? NaN)
}

/** The broker's Redis stream as a client sees it: the envelope of each entry. */
const entriesIn = async (url: string) => {
  const client = new Redis(url, { lazyConnect: true })
  await client.connect()
  try {
    const entries = await client.xrange(STREAM_KEY, "-", "+")
    return entries.map(([, fields]) => JSON.parse(fields[fields.indexOf("e") + 1]!))
  } finally {
    client.disconnect()
  }
}

describe("HERALD_BROKER=redis", () => {
  it(
    "three servers on one PostgreSQL and one Redis: every node's clients get every event once, in order, whichever node took the write",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const env = { REDIS_URL: redisUrl() }
        const nodes = [
          await startNode(databaseUrl, env),
          await startNode(databaseUrl, env),
          await startNode(databaseUrl, env)
        ]
        try {
          const { projectId, token } = await setUp(nodes[0]!, "three nodes")
          const path = `/api/projects/${projectId}/stream`
          // Two clients per node: one replaying from the start, one live from the head (no position).
          const fromStart = await Promise.all(nodes.map((n) => connectSse(n.url, path, { token, after: "0" })))
          const live = await Promise.all(nodes.map((n) => connectSse(n.url, path, { token })))
          await Promise.all(fromStart.map((c) => c.waitForEvents(1)))
          const POSTS = 60
          for (let i = 0; i < POSTS; i++) {
            // One body over PostgreSQL's NOTIFY limit: through Redis it travels whole.
            const body = i === 10 ? "x".repeat(10_000) : `m${i}`
            const res = await api(nodes[i % 3]!.url, "POST", `/api/projects/${projectId}/messages`, token, { body })
            expect(res.status).toBe(201)
          }
          for (const [i, client] of fromStart.entries()) {
            await expectExactly(client, POSTS + 1, `node ${i} from the start`)
            expect(client.events[11]!.data.data.body).toHaveLength(10_000)
          }
          for (const [i, client] of live.entries()) {
            await client.waitForEvents(POSTS)
            await new Promise((r) => setTimeout(r, 300))
            expect(client.events.map((e) => Number(e.data.seq)), `node ${i} live`).toEqual(seqs(POSTS + 1).slice(1))
          }
          // Every event went through the Redis stream, whole, once per publish.
          const entries = await entriesIn(env.REDIS_URL)
          const mine = entries.filter((e) => e.stream === `project:${projectId}`)
          expect(new Set(mine.map((e) => e.seq))).toEqual(new Set(seqs(POSTS + 1)))
          expect(mine.find((e) => e.seq === 12)!.data.body).toHaveLength(10_000)

          // A post on one node reaches the others' clients by the broker within a second, not by a later gap.
          const started = Date.now()
          expect(
            (await api(nodes[0]!.url, "POST", `/api/projects/${projectId}/messages`, token, { body: "last" }))
              .status
          ).toBe(201)
          await Promise.all(live.slice(1).map((c) => c.waitForEvents(POSTS + 1, 5_000)))
          expect(Date.now() - started).toBeLessThan(1_000)
          for (const c of [...fromStart, ...live]) c.close()
        } finally {
          await stopAll(nodes)
        }
      }),
    120_000
  )

  it(
    "Redis killed with SIGKILL mid-burst and restarted empty: writes go on, nothing is lost, every client stays in order",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        // Short retry delays: the outbox re-publishes soon after Redis is back.
        const env = { REDIS_URL: redisUrl(), HERALD_PUBLISH_BACKOFF_MAX_MS: "500" }
        const nodes = [
          await startNode(databaseUrl, env),
          await startNode(databaseUrl, env),
          await startNode(databaseUrl, env)
        ]
        try {
          const { projectId, token } = await setUp(nodes[0]!, "outage")
          const path = `/api/projects/${projectId}/stream`
          const clients = await Promise.all(nodes.map((n) => connectSse(n.url, path, { token, after: "0" })))
          await Promise.all(clients.map((c) => c.waitForEvents(1)))
          const mux = await connectSse(nodes[1]!.url, "/api/stream", { token })
          await mux.waitForEvents(1) // heads
          let posted = 0
          const post = async () => {
            const i = posted++
            const res = await api(nodes[i % 3]!.url, "POST", `/api/projects/${projectId}/messages`, token, {
              body: `m${i}`
            })
            // Writes never depend on Redis.
            expect(res.status).toBe(201)
          }
          /** `n` posts, four at a time. */
          const burst = async (n: number) => {
            const end = posted + n
            await Promise.all(Array.from({ length: 4 }, async () => {
              while (posted < end) await post()
            }))
          }
          await burst(60)
          let postedAtKill = 0
          const killing = (async () => {
            await new Promise((r) => setTimeout(r, 50))
            postedAtKill = posted
            await redis.kill()
          })()
          await burst(60)
          await killing
          // Killed mid-burst: posts went on while it died.
          expect(postedAtKill).toBeGreaterThan(60)
          expect(postedAtKill).toBeLessThan(120)
          // Redis is down: more writes, all accepted.
          await burst(40)
          const failures = await Promise.all(nodes.map((n) => metric(n, "herald_outbox_publish_failures_total")))
          expect(failures.reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
          await redis.restart()
          await burst(40)
          const total = 1 + posted
          for (const [i, client] of clients.entries()) await expectExactly(client, total, `node ${i}`, 60_000)
          await mux.waitForEvents(1 + total - 1, 60_000)
          await new Promise((r) => setTimeout(r, 300))
          expect(mux.events.slice(1).map((e) => e.data.seq), "multiplexed").toEqual(seqs(total).slice(1))
          for (const node of nodes) {
            expect(node.proc.output()).toMatch(
              /redis broker \(\w+\): connection to redis:\/\/127\.0\.0\.1:\d+\/\d+ lost/
            )
          }
          for (const c of [...clients, mux]) c.close()
        } finally {
          await stopAll(nodes)
        }
      }),
    180_000
  )

  it(
    "while Redis is down a node answers /health/ready 503 naming the broker, and 200 once it reads again — and hears again",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const node = await startNode(databaseUrl, { REDIS_URL: redisUrl() })
        try {
          const { projectId, token } = await setUp(node, "readiness")
          const client = await connectSse(node.url, `/api/projects/${projectId}/stream`, { token, after: "0" })
          await client.waitForEvents(1)
          await readinessBecomes(node.url, 200, 5_000, /^ok$/)
          await redis.kill()
          await readinessBecomes(node.url, 503, 15_000, /^not listening: /)
          await redis.restart()
          await readinessBecomes(node.url, 200, 15_000, /^ok$/)
          // Ready again means hearing again: a post reaches the stream through the restarted Redis.
          const started = Date.now()
          expect((await api(node.url, "POST", `/api/projects/${projectId}/messages`, token, { body: "back" })).status)
            .toBe(201)
          await expectExactly(client, 2, "after Redis came back", 5_000)
          expect(Date.now() - started).toBeLessThan(5_000)
          client.close()
        } finally {
          await stopAll([node])
        }
      }),
    90_000
  )

  it(
    "a node that was frozen while Redis lost its entries catches up from the database without waiting for another event",
    () =>
      withFreshDatabase((databaseUrl) =>
        // … then Redis dies with them and comes back empty. No later event will show B's clients a
        // gap: B learns on reconnecting that it may have missed some.
        whileAway(databaseUrl, redisUrl(), "frozen node", "the frozen node's client", () => redis.restart())
      ),
    90_000
  )

  it(
    "a node frozen for longer than the trim window catches up from the database without waiting for another event",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const url = redisUrl()
        const redisClient = new Redis(url, { lazyConnect: true })
        await redisClient.connect()
        try {
          await whileAway(databaseUrl, url, "trimmed away", "the node that was away", async (projectId) => {
            // While B is away, 2 000 events of other streams go by and the trim window (made 1 500 entries
            // here) passes over this stream's 5: B comes back to a stream that no longer holds them.
            const holds = async () =>
              (await redisClient.xrange(STREAM_KEY, "-", "+")).some(([, f]) => f[1]!.includes(projectId))
            expect(await holds(), "the Redis stream holds this stream's events before the trim").toBe(true)
            const other = crypto.randomUUID()
            const tx = redisClient.multi()
            for (let seq = 1; seq <= 2_000; seq++) {
              tx.xadd(
                STREAM_KEY,
                "*",
                "e",
                JSON.stringify({
                  id: crypto.randomUUID(),
                  stream: `project:${other}`,
                  seq,
                  type: "message.deleted",
                  projectId: other,
                  actorId: crypto.randomUUID(),
                  occurredAt: new Date().toISOString(),
                  data: { messageId: crypto.randomUUID() }
                })
              )
            }
            await tx.exec()
            await redisClient.xtrim(STREAM_KEY, "MAXLEN", 1_500)
            expect(await holds()).toBe(false)
          })
        } finally {
          redisClient.disconnect()
        }
      }),
    90_000
  )

  it(
    "a node started later serves whole streams from the database, then live events from the others",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const env = { REDIS_URL: redisUrl() }
        const nodes = [await startNode(databaseUrl, env), await startNode(databaseUrl, env)]
        try {
          const { projectId, token } = await setUp(nodes[0]!, "late node")
          for (let i = 0; i < 30; i++) {
            const res = await api(nodes[i % 2]!.url, "POST", `/api/projects/${projectId}/messages`, token, {
              body: `early ${i}`
            })
            expect(res.status).toBe(201)
          }
          nodes.push(await startNode(databaseUrl, env))
          const late = nodes[2]!
          const path = `/api/projects/${projectId}/stream`
          const whole = await connectSse(late.url, path, { token, after: "0" })
          const resumed = await connectSse(late.url, path, { token, lastEventId: "20" })
          await whole.waitForEvents(31)
          for (let i = 0; i < 10; i++) {
            const res = await api(nodes[i % 2]!.url, "POST", `/api/projects/${projectId}/messages`, token, {
              body: `later ${i}`
            })
            expect(res.status).toBe(201)
          }
          await expectExactly(whole, 41, "whole stream")
          await resumed.waitForEvents(21)
          expect(resumed.events.map((e) => Number(e.data.seq))).toEqual(seqs(41).slice(20))
          whole.close()
          resumed.close()
        } finally {
          await stopAll(nodes)
        }
      }),
    120_000
  )

  it(
    "herald replay with HERALD_BROKER=redis appends the range to the Redis stream",
    () =>
      withFreshDatabase(async (databaseUrl) => {
        const url = redisUrl()
        const node = await startNode(databaseUrl, { REDIS_URL: url })
        try {
          const { projectId, token } = await setUp(node, "replay")
          for (let i = 0; i < 5; i++) {
            await api(node.url, "POST", `/api/projects/${projectId}/messages`, token, { body: `m${i}` })
          }
          const client = await connectSse(node.url, `/api/projects/${projectId}/stream`, { token, after: "0" })
          await client.waitForEvents(6)
          const before = (await entriesIn(url)).length
          const { finished } = runProcess(
            process.execPath,
            [
              "packages/cli/bin/herald.mjs",
              "replay",
              "--stream",
              `project:${projectId}`,
              "--from-seq",
              "2",
              "--to-seq",
              "4",
              "--json"
            ],
            { DATABASE_URL: databaseUrl, HERALD_BROKER: "redis", REDIS_URL: url },
            { timeoutMs: 60_000 }
          )
          const run = await finished
          expect(run.code, run.stderr).toBe(0)
          expect(JSON.parse(run.stdout)).toMatchObject({ events: 3, broker: "redis" })
          const after = await entriesIn(url)
          expect(after.slice(before).map((e) => [e.stream, e.seq])).toEqual(
            [2, 3, 4].map((s) => [`project:${projectId}`, s])
          )
          // The server's clients already had them: they drop the replayed copies by seq.
          await new Promise((r) => setTimeout(r, 500))
          expect(client.events.map((e) => Number(e.data.seq))).toEqual(seqs(6))
          client.close()

          const unreachable = await runProcess(
            process.execPath,
            [
              "packages/cli/bin/herald.mjs",
              "replay",
              "--stream",
              `project:${projectId}`
            ],
            { DATABASE_URL: databaseUrl, HERALD_BROKER: "redis", REDIS_URL: `redis://127.0.0.1:${await freePort()}` },
            {
              timeoutMs: 60_000
            }
          ).finished
          expect(unreachable.code).toBe(1)
          expect(unreachable.stderr.trim()).toMatch(
            /^herald: REDIS_URL: cannot reach redis:\/\/127\.0\.0\.1:\d+: .*ECONNREFUSED/
          )
        } finally {
          await stopAll([node])
        }
      }),
    90_000
  )

  describe("start-up", () => {
    const readFrom = (env: Record<string, string>) =>
      Effect.runSync(
        Effect.withConfigProvider(Effect.either(AppConfig.config), ConfigProvider.fromMap(new Map(Object.entries(env))))
      )

    it("REDIS_URL is read with HERALD_BROKER=redis, and refused when missing or not a redis URL", () => {
      const ok = readFrom({ HERALD_BROKER: "redis", REDIS_URL: "redis://127.0.0.1:6379/2" })
      expect(Either.isRight(ok) && ok.right.broker).toBe("redis")
      for (
        const [env, message] of [
          [{ HERALD_BROKER: "redis" }, "REDIS_URL: required with HERALD_BROKER=redis"],
          [{ HERALD_BROKER: "redis", REDIS_URL: " " }, "REDIS_URL: required with HERALD_BROKER=redis"],
          [{ HERALD_BROKER: "redis", REDIS_URL: "http://x:1" }, "REDIS_URL: Expected a redis:// or rediss:// URL"],
          [{ REDIS_URL: "localhost:6379" }, "REDIS_URL: Expected a redis:// or rediss:// URL"]
        ] as const
      ) {
        const read = readFrom(env)
        expect(Either.isLeft(read), JSON.stringify(env)).toBe(true)
        if (Either.isLeft(read)) expect(formatConfigError(read.left)).toContain(`Invalid configuration: ${message}`)
      }
      // Other brokers do not need it.
      expect(Either.isRight(readFrom({ HERALD_BROKER: "postgres" }))).toBe(true)
    })

    it(
      "HERALD_BROKER=redis without REDIS_URL, or with an unreachable one, stops the server with one line naming it",
      () =>
        withFreshDatabase(async (databaseUrl) => {
          const missing = spawnServer({ DATABASE_URL: databaseUrl, HERALD_BROKER: "redis", REDIS_URL: undefined })
          expect((await missing.exited).code).toBe(1)
          expect(missing.output().trim().split("\n")).toEqual([
            "Invalid configuration: REDIS_URL: required with HERALD_BROKER=redis (e.g. redis://127.0.0.1:6379)"
          ])

          const port = await freePort()
          const unreachable = spawnServer({
            DATABASE_URL: databaseUrl,
            PORT: String(await freePort()),
            HERALD_BROKER: "redis",
            REDIS_URL: `redis://herald:secret@127.0.0.1:${port}/3`
          })
          const { code } = await unreachable.exited
          await unreachable.closed
          expect(code).toBe(1)
          expect(unreachable.stderr().trim().split("\n")).toEqual([
            `REDIS_URL: cannot reach redis://127.0.0.1:${port}/3: connect ECONNREFUSED 127.0.0.1:${port}`
          ])
          expect(unreachable.output()).not.toContain("secret")
          expect(unreachable.output()).not.toMatch(/Herald is up/)
        }),
      60_000
    )
  })
})
