import { Config, Console, Duration, Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { SERVER } from "../../../test-support/Process.js"
import {
  type Client,
  clientProcess,
  fdLimit,
  type Floor,
  floorProcess,
  type HeraldServer,
  heraldServer,
  restingRssKb,
  rssKb,
  sseConnectionsMetric,
  statusOf
} from "./sse/children.js"
import { type Connection, connection, createLayout, type Endpoint, ENDPOINT_PATH, type Layout } from "./sse/layout.js"
import { eventKey, now } from "./sse/protocol.js"
import {
  ascending,
  attempt,
  BenchError,
  count,
  fixed,
  loadAverage,
  percentile,
  ranged,
  ratio,
  repoRoot,
  requestJson,
  sleep,
  table,
  tempDir,
  withinBudget
} from "./support.js"

/**
 * Idle SSE connections on the compiled server (`node packages/server/dist/main.js`, on an
 * embedded cluster of its own), for the per-stream endpoint and the multiplexed `GET /api/stream`:
 *
 *   memory    the server's VmRSS before any connection and once 1 000 / 5 000 / 10 000 are open
 *             and idle (BENCH_SSE_SETTLE_MS), per connection = growth / connections;
 *             and once more at the largest count, after the fan-out and BENCH_SSE_IDLE_MS more idle
 *             (the opening's garbage collected and given back);
 *   fan-out   with every connection open, posts over HTTP; each client process records when each
 *             of its connections reads the event's frame: POST sent → frame read, p50/p99/max.
 *
 * Baseline in the same run: a plain `node:http` server (sse/floor.ts, its own process) holding the
 * same idle `text/event-stream` responses on the same paths, measured the same way, from the same
 * client processes. The connections are opened by client processes (sse/client.ts, plain
 * `node:http`), never by this one or the server's. Targets: ≤ 15 KB per idle connection at the
 * largest count, fan-out p99 ≤ 250 ms.
 *
 * Burst opening (issue 23, as after a deploy: every client reconnecting at once), on a fresh server
 * and a fresh floor: BENCH_SSE_BURST_COUNT connections opened BENCH_SSE_BURST at a time (each burst
 * a `Promise.all` of `http.get`s with `?access_token=`, spread over the client processes, the next
 * once all are open); VmRSS 5 s and BENCH_SSE_LATE_MS after the last one opened, per connection
 * against the floor's read the same way; then the fan-out rounds. Targets are ratios to the floor:
 * per-stream ≤ 1.3×, `/api/stream` (each user in BENCH_SSE_MEMBERSHIPS projects: 20 streams) ≤ 1.5×
 * at the late reading, fan-out p99 ≤ 1.2×. BENCH_SSE_OPENINGS picks `burst`, `gentle` or both.
 *
 * BENCH_SSE_QUICK=true: small counts and short waits, under a minute, for trying the bench out.
 */

const TARGETS = { kbPerConnection: 15, fanOutP99Ms: 250 } as const
/** The burst opening's targets: ratios to the floor, in the same run. */
const BURST_TARGETS = {
  memoryRatio: { project: 1.3, multiplexed: 1.5 } as Record<Endpoint, number>,
  fanOutP99Ratio: 1.2
} as const
/** The first RSS reading after a burst opening, before the late one (BENCH_SSE_LATE_MS). */
const BURST_EARLY_MS = 5_000
/** HERALD_SSE_HEARTBEAT_MS's default, given to the server and to the floor alike. */
const HEARTBEAT_MS = 15_000
const OPEN_TIMEOUT_MS = 60_000
/** How long a round waits for every connection to have its event. */
const ROUND_TIMEOUT_MS = 15_000
/** File descriptors a server needs besides its connections (database pool, log pipes, …). */
const FD_HEADROOM = 500

const ENDPOINTS: ReadonlyArray<Endpoint> = ["project", "multiplexed"]
type Opening = "burst" | "gentle"
const OPENINGS: ReadonlyArray<Opening> = ["burst", "gentle"]

const list = <A>(
  name: string,
  defaultValue: string,
  parse: (s: string) => A,
  message: string,
  ok: (a: Array<A>) => boolean
) =>
  Config.string(name).pipe(
    Config.withDefault(defaultValue),
    Config.map((s) => s.split(",").map((p) => p.trim()).filter((p) => p.length > 0).map(parse)),
    Config.validate({ message, validation: ok })
  )

/** BENCH_SSE_QUICK=true changes the defaults (each setting still reads its own variable). */
const settingsWith = (quick: boolean) =>
  Config.all({
    quick: Config.succeed(quick),
    counts: list(
      "BENCH_SSE_COUNTS",
      quick ? "200,500" : "1000,5000,10000",
      Number,
      "Expected ascending whole numbers of connections from 10 to 19000, at most 6, comma-separated",
      (ns) =>
        ns.length > 0 && ns.length <= 6 &&
        ns.every((n, i) => Number.isInteger(n) && n >= 10 && n <= 19_000 && (i === 0 || n > ns[i - 1]!))
    ),
    endpoints: list(
      "BENCH_SSE_ENDPOINTS",
      ENDPOINTS.join(","),
      (s) => s as Endpoint,
      `Expected a comma-separated subset of ${ENDPOINTS.join(",")}`,
      (es) => es.length > 0 && es.every((e) => ENDPOINTS.includes(e))
    ),
    openings: list(
      "BENCH_SSE_OPENINGS",
      OPENINGS.join(","),
      (s) => s as Opening,
      `Expected a comma-separated subset of ${OPENINGS.join(",")}`,
      (os) => os.length > 0 && os.every((o) => OPENINGS.includes(o))
    ),
    burst: ranged(Config.integer("BENCH_SSE_BURST"), 250, [1, 5_000], "Expected from 1 to 5000 connections a burst"),
    burstCount: ranged(
      Config.integer("BENCH_SSE_BURST_COUNT"),
      quick ? 500 : 10_000,
      [10, 19_000],
      "Expected from 10 to 19000 connections"
    ),
    lateMs: ranged(
      Config.integer("BENCH_SSE_LATE_MS"),
      quick ? 10_000 : 35_000,
      [BURST_EARLY_MS, 300_000],
      `Expected from ${BURST_EARLY_MS} to 300000 ms`
    ),
    clients: ranged(
      Config.integer("BENCH_SSE_CLIENTS"),
      quick ? 2 : 4,
      [1, 16],
      "Expected from 1 to 16 client processes"
    ),
    users: ranged(Config.integer("BENCH_SSE_USERS"), 100, [1, 1000], "Expected from 1 to 1000 users"),
    projects: ranged(
      Config.integer("BENCH_SSE_PROJECTS"),
      quick ? 10 : 20,
      [1, 200],
      "Expected from 1 to 200 projects"
    ),
    memberships: ranged(
      Config.integer("BENCH_SSE_MEMBERSHIPS"),
      10,
      [1, 50],
      "Expected from 1 to 50 projects per user"
    ),
    settleMs: ranged(
      Config.integer("BENCH_SSE_SETTLE_MS"),
      quick ? 1_000 : 5_000,
      [0, 60_000],
      "Expected from 0 to 60000 ms"
    ),
    idleMs: ranged(
      Config.integer("BENCH_SSE_IDLE_MS"),
      quick ? 2_000 : 30_000,
      [0, 300_000],
      "Expected from 0 to 300000 ms"
    ),
    rounds: ranged(Config.integer("BENCH_SSE_ROUNDS"), quick ? 2 : 5, [1, 50], "Expected from 1 to 50 rounds"),
    pauseMs: ranged(
      Config.integer("BENCH_SSE_ROUND_PAUSE_MS"),
      1_000,
      [0, 10_000],
      "Expected from 0 to 10000 ms between rounds"
    )
  }).pipe(
    Config.validate({
      message: "BENCH_SSE_MEMBERSHIPS must not exceed BENCH_SSE_PROJECTS",
      validation: (s) => s.memberships <= s.projects
    })
  )

const Settings = Effect.flatMap(Config.boolean("BENCH_SSE_QUICK").pipe(Config.withDefault(false)), settingsWith)
type Settings = Config.Config.Success<ReturnType<typeof settingsWith>>

const progress = (line: string) => Console.error(`  ${line}`)

/** The newest modification time of the files under `dir`, in ms. */
const newest = async (dir: string): Promise<number> => {
  let latest = 0
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name)
    latest = Math.max(latest, entry.isDirectory() ? await newest(file) : (await fs.stat(file)).mtimeMs)
  }
  return latest
}

/** A warning when the compiled server is older than its sources: the bench measures what `dist` holds. */
const staleBuild = (main: string) =>
  attempt("comparing the build with its sources", async () => {
    const built = (await fs.stat(main)).mtimeMs
    const sources = Math.max(
      ...(await Promise.all(["packages/server/src", "packages/domain/src"].map((d) => newest(path.join(repoRoot, d)))))
    )
    return sources > built
  })

// ---------------------------------------------------------------------------------------------
// What is measured on one server (Herald or the floor)

interface Target {
  readonly name: "Herald" | "floor"
  readonly pid: number
  readonly port: number
  /** Posts one event into a project: its key, when it was sent, when it was answered. */
  readonly post: (projectId: string) => Promise<{ key: string; sentAt: number; answeredAt: number }>
  /** The server's own count of open SSE connections, where it has one. */
  readonly counted: () => Promise<number>
}

const heraldTarget = (server: HeraldServer, layout: Layout): Target => ({
  name: "Herald",
  pid: server.pid,
  port: server.port,
  post: async (projectId) => {
    const sentAt = now()
    // A connection of its own per post: nothing of one post's connection is left to the next.
    const { event } = await requestJson<{ event: { stream: string; seq: number } }>({
      port: server.port,
      method: "POST",
      path: `/api/projects/${projectId}/messages`,
      token: layout.ownerToken,
      body: { body: `fan-out ${sentAt}` }
    }, 201)
    return { key: eventKey(event.stream, event.seq), sentAt, answeredAt: now() }
  },
  counted: () => sseConnectionsMetric(server.port)
})

const floorTarget = (floor: Floor, port: number): Target => {
  const seqs = new Map<string, number>()
  return {
    name: "floor",
    pid: floor.pid,
    port,
    post: async (projectId) => {
      const seq = (seqs.get(projectId) ?? 0) + 1
      seqs.set(projectId, seq)
      const sentAt = now()
      const done = await floor.call((id) => ({ type: "publish", id, projectId, seq }), 10_000)
      if (done.type !== "done") throw new Error(`the floor answered ${done.type}`)
      return { key: eventKey(done.stream, done.seq), sentAt, answeredAt: now() }
    },
    counted: async () => NaN
  }
}

/** A fresh floor process told every user's projects (what its `/api/stream` carries): its target. */
const floorWithMembers = (layout: Layout) =>
  Effect.map(floorProcess(HEARTBEAT_MS), ({ floor, port }) => {
    floor.send({
      type: "members",
      id: 0,
      projects: Object.fromEntries(layout.users.map((u) => [u.token, u.projects]))
    })
    return floorTarget(floor, port)
  })

interface MemoryPoint {
  readonly connections: number
  readonly rssKb: number
  readonly perConnectionKb: number
  readonly openSeconds: number
  readonly counted: number
}

interface FanOut {
  readonly connections: number
  readonly rounds: number
  readonly postsPerRound: number
  /** POST sent → frame read, every connection and every round, ascending. */
  readonly latencies: ReadonlyArray<number>
  readonly answered: ReadonlyArray<number>
  readonly missing: number
}

interface Measured {
  readonly restingKb: number
  readonly points: ReadonlyArray<MemoryPoint>
  /** Per connection at the largest count once it has been idle `idleMs` longer (V8 has had time to give garbage back). */
  readonly idlePerConnectionKb: number
  readonly fanOut: FanOut
  readonly closedByServer: number
}

/** Which client process holds connection `i`. */
const clientOf = (i: number, clients: number) => i % clients

/**
 * Opens connections [from, to) of `all`, each on its client process (connection i on client i mod n),
 * `concurrency` at a time in each.
 */
const openRange = (
  clients: ReadonlyArray<Client>,
  port: number,
  endpoint: Endpoint,
  all: ReadonlyArray<Connection>,
  from: number,
  to: number,
  concurrency = 32
) =>
  attempt(`opening connections ${from + 1}–${to}`, async () => {
    const answers = await Promise.all(clients.map((client, c) => {
      const connections: Array<{ path: string; token: string }> = []
      for (let i = from; i < to; i++) {
        if (clientOf(i, clients.length) === c) connections.push({ path: all[i]!.path, token: all[i]!.token })
      }
      return client.call((id) => ({
        type: "open",
        id,
        port,
        connections,
        ready: endpoint === "multiplexed" ? "heads" : "retry",
        concurrency,
        timeoutMs: OPEN_TIMEOUT_MS
      }), OPEN_TIMEOUT_MS * 4)
    }))
    for (const answer of answers) {
      if (answer.type !== "opened") throw new Error(`a client answered ${answer.type}`)
      if (answer.error !== undefined) throw new Error(answer.error)
    }
  })

const closeAll = (clients: ReadonlyArray<Client>) =>
  attempt("closing the connections", async () => {
    const answers = await Promise.all(clients.map((client) => client.call((id) => ({ type: "close", id }), 30_000)))
    return answers.reduce((n, a) => n + (a.type === "closed" ? a.closedByServer : 0), 0)
  })

/**
 * `rounds` rounds, `pauseMs` apart, with connections [0, open) of `all` open. A round posts one
 * event into every project that has connections on the per-stream endpoint (each connection gets
 * exactly one, its stream's), or into the shared project on the multiplexed one (every connection
 * carries it); all of a round's posts are sent at once. Then every client reports when each of its
 * connections read each event.
 */
const fanOutRounds = (
  target: Target,
  clients: ReadonlyArray<Client>,
  endpoint: Endpoint,
  layout: Layout,
  all: ReadonlyArray<Connection>,
  open: number,
  settings: Settings
) =>
  attempt(`fan-out to ${open} connections`, async (): Promise<FanOut> => {
    // Per client, per project: how many of its connections carry it.
    const carried = clients.map(() => new Map<string, number>())
    for (let i = 0; i < open; i++) {
      const byProject = carried[clientOf(i, clients.length)]!
      for (const p of all[i]!.projects) byProject.set(p, (byProject.get(p) ?? 0) + 1)
    }
    const projects = endpoint === "multiplexed"
      ? [layout.projects[0]!]
      : layout.projects.filter((p) => carried.some((m) => m.has(p)))
    const latencies: Array<number> = []
    const answered: Array<number> = []
    let missing = 0
    for (let round = 0; round < settings.rounds; round++) {
      if (round > 0) await sleep(settings.pauseMs)
      const posts = await Promise.all(projects.map(async (p) => ({ project: p, ...(await target.post(p)) })))
      const answers = await Promise.all(clients.map((client, c) => {
        const expected: Record<string, number> = {}
        for (const post of posts) {
          const n = carried[c]!.get(post.project) ?? 0
          if (n > 0) expected[post.key] = n
        }
        return client.call((id) => ({ type: "await", id, expected, timeoutMs: ROUND_TIMEOUT_MS }), ROUND_TIMEOUT_MS * 2)
      }))
      for (const post of posts) {
        answered.push(post.answeredAt - post.sentAt)
        let got = 0
        for (const answer of answers) {
          if (answer.type !== "received") throw new Error(`a client answered ${answer.type}`)
          for (const t of answer.times[post.key] ?? []) latencies.push(t - post.sentAt)
          got += answer.times[post.key]?.length ?? 0
        }
        const want = carried.reduce((n, m) => n + (m.get(post.project) ?? 0), 0)
        missing += Math.max(0, want - got)
      }
    }
    return {
      connections: open,
      rounds: settings.rounds,
      postsPerRound: projects.length,
      latencies: ascending(latencies),
      answered: ascending(answered),
      missing
    }
  })

/**
 * On one server: a warm-up (a few connections, a round, closed), the resting RSS, then the counts
 * one after another (each opens the connections the last one did not have) with RSS read after
 * each has been idle `settleMs`; then the fan-out rounds at the largest count; then all closed.
 */
const measure = (
  target: Target,
  clients: ReadonlyArray<Client>,
  endpoint: Endpoint,
  layout: Layout,
  settings: Settings
) =>
  Effect.gen(function*() {
    const max = settings.counts[settings.counts.length - 1]!
    const all = Array.from({ length: max }, (_, i) => connection(layout, endpoint, i))
    const label = `${target.name}, ${ENDPOINT_PATH[endpoint]}`

    const warm = Math.min(100, settings.counts[0]!)
    yield* openRange(clients, target.port, endpoint, all, 0, warm)
    yield* fanOutRounds(target, clients, endpoint, layout, all, warm, { ...settings, rounds: 1 })
    yield* closeAll(clients)
    const restingKb = yield* attempt("reading RSS", () => restingRssKb(target.pid))
    yield* progress(`${label}: resting RSS ${fixed(restingKb / 1024, 1)} MB`)

    const points: Array<MemoryPoint> = []
    let opened = 0
    for (const n of settings.counts) {
      const started = performance.now()
      yield* openRange(clients, target.port, endpoint, all, opened, n)
      const openSeconds = (performance.now() - started) / 1000
      opened = n
      yield* Effect.promise(() => sleep(settings.settleMs))
      const kb = rssKb(target.pid)
      const counted = yield* attempt("reading /metrics", target.counted)
      const point: MemoryPoint = {
        connections: n,
        rssKb: kb,
        perConnectionKb: (kb - restingKb) / n,
        openSeconds,
        counted
      }
      points.push(point)
      yield* progress(
        `${label}: ${count(n)} open (${fixed(openSeconds, 1)} s), RSS ${fixed(kb / 1024, 1)} MB, ` +
          `${fixed(point.perConnectionKb, 1)} KB per connection`
      )
    }
    const fanOut = yield* fanOutRounds(target, clients, endpoint, layout, all, max, settings)
    yield* progress(
      `${label}: fan-out to ${count(max)}: p50 ${fixed(percentile(fanOut.latencies, 50), 1)} ms, ` +
        `p99 ${fixed(percentile(fanOut.latencies, 99), 1)} ms, ${fanOut.missing} missing`
    )
    // The same connections, idle longer: what they hold once the opening's garbage is collected and given back (after the fan-out: it does not delay it).
    yield* Effect.promise(() => sleep(settings.idleMs))
    const idlePerConnectionKb = (rssKb(target.pid) - restingKb) / max
    yield* progress(
      `${label}: after ${settings.idleMs / 1000} s more idle, ${fixed(idlePerConnectionKb, 1)} KB per connection`
    )
    const closedByServer = yield* closeAll(clients)
    const measured: Measured = { restingKb, points, idlePerConnectionKb, fanOut, closedByServer }
    return measured
  })

/** The connection with its token in the query (`?access_token=`) instead of a header, as `http.get` sends it. */
const viaQuery = (c: Connection): Connection => ({
  ...c,
  path: `${c.path}${c.path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(c.token)}`,
  token: ""
})

interface BurstMeasured {
  readonly connections: number
  readonly restingKb: number
  readonly openSeconds: number
  /** Per connection, BURST_EARLY_MS and `lateMs` after the last one opened. */
  readonly earlyPerConnectionKb: number
  readonly latePerConnectionKb: number
  readonly counted: number
  readonly fanOut: FanOut
  readonly closedByServer: number
}

/**
 * On a fresh server: the warm-up, the resting RSS, then `burstCount` connections opened `burst` at a
 * time (a burst's connections all at once, over the client processes; the next burst once every
 * one of them is open), RSS read BURST_EARLY_MS and `lateMs` after the last one opened, the
 * fan-out rounds, all closed.
 */
const measureBurst = (
  target: Target,
  clients: ReadonlyArray<Client>,
  endpoint: Endpoint,
  layout: Layout,
  settings: Settings
) =>
  Effect.gen(function*() {
    const n = settings.burstCount
    // Every connection carries the shared project, so that one post reaches all of them: on the
    // per-stream endpoint, each is on its stream (user i mod users).
    const shared = layout.projects[0]!
    const all = Array.from({ length: n }, (_, i) => {
      const c = connection(layout, endpoint, i)
      return viaQuery(
        endpoint === "multiplexed" ? c : { ...c, path: `/api/projects/${shared}/stream`, projects: [shared] }
      )
    })
    const label = `${target.name}, ${ENDPOINT_PATH[endpoint]}, burst`

    const warm = Math.min(100, n)
    yield* openRange(clients, target.port, endpoint, all, 0, warm)
    yield* fanOutRounds(target, clients, endpoint, layout, all, warm, { ...settings, rounds: 1 })
    yield* closeAll(clients)
    const restingKb = yield* attempt("reading RSS", () => restingRssKb(target.pid))
    yield* progress(`${label}: resting RSS ${fixed(restingKb / 1024, 1)} MB`)

    const started = performance.now()
    for (let from = 0; from < n; from += settings.burst) {
      const to = Math.min(n, from + settings.burst)
      yield* openRange(clients, target.port, endpoint, all, from, to, to - from)
    }
    const opened = performance.now()
    const openSeconds = (opened - started) / 1000
    const readAt = (ms: number) =>
      Effect.promise(() => sleep(Math.max(0, opened + ms - performance.now()))).pipe(
        Effect.map(() => (rssKb(target.pid) - restingKb) / n)
      )
    const earlyPerConnectionKb = yield* readAt(BURST_EARLY_MS)
    const counted = yield* attempt("reading /metrics", target.counted)
    const latePerConnectionKb = yield* readAt(settings.lateMs)
    yield* progress(
      `${label}: ${count(n)} open (${fixed(openSeconds, 1)} s), ${fixed(earlyPerConnectionKb, 1)} → ${
        fixed(latePerConnectionKb, 1)
      } KB per connection`
    )
    const fanOut = yield* fanOutRounds(target, clients, endpoint, layout, all, n, settings)
    yield* progress(
      `${label}: fan-out to ${count(n)}: p50 ${fixed(percentile(fanOut.latencies, 50), 1)} ms, ` +
        `p99 ${fixed(percentile(fanOut.latencies, 99), 1)} ms, ${fanOut.missing} missing`
    )
    const closedByServer = yield* closeAll(clients)
    const measured: BurstMeasured = {
      connections: n,
      restingKb,
      openSeconds,
      earlyPerConnectionKb,
      latePerConnectionKb,
      counted,
      fanOut,
      closedByServer
    }
    return measured
  })

// ---------------------------------------------------------------------------------------------
// Output

interface EndpointResult {
  readonly endpoint: Endpoint
  readonly herald: Measured
  readonly floor: Measured
  readonly serverFdLimit: number
}

interface BurstResult {
  readonly endpoint: Endpoint
  readonly herald: BurstMeasured
  readonly floor: BurstMeasured
}

/** Never met against a floor that did not grow (a short run's reading can fall below its resting RSS). */
const burstMemoryMet = (r: BurstResult) =>
  r.floor.latePerConnectionKb > 0 &&
  r.herald.latePerConnectionKb / r.floor.latePerConnectionKb <= BURST_TARGETS.memoryRatio[r.endpoint]

const burstFanOutMet = (r: BurstResult) =>
  r.herald.fanOut.missing === 0 &&
  percentile(r.herald.fanOut.latencies, 99) / percentile(r.floor.fanOut.latencies, 99) <= BURST_TARGETS.fanOutP99Ratio

const burstTable = (r: BurstResult, settings: Settings, layout: Layout) => {
  const where = ENDPOINT_PATH[r.endpoint]
  const streams = r.endpoint === "multiplexed" ? 2 * layout.users[0]!.projects.length : 1
  const row = (who: string, m: BurstMeasured, base: BurstMeasured | undefined) => {
    const p99 = percentile(m.fanOut.latencies, 99)
    return [
      who,
      mb(m.restingKb),
      fixed(m.openSeconds, 1),
      fixed(m.earlyPerConnectionKb, 1),
      fixed(m.latePerConnectionKb, 1),
      base === undefined ? "1×" : ratio(m.latePerConnectionKb, base.latePerConnectionKb),
      base === undefined ? "" : `≤ ${BURST_TARGETS.memoryRatio[r.endpoint]}×`,
      base === undefined ? "" : burstMemoryMet({ endpoint: r.endpoint, herald: m, floor: base }) ? "met" : "NOT met",
      fixed(percentile(m.fanOut.latencies, 50), 1),
      fixed(p99, 1),
      String(m.fanOut.missing),
      base === undefined ? "1×" : ratio(p99, percentile(base.fanOut.latencies, 99)),
      base === undefined ? "" : `≤ ${BURST_TARGETS.fanOutP99Ratio}×`,
      base === undefined ? "" : burstFanOutMet({ endpoint: r.endpoint, herald: m, floor: base }) ? "met" : "NOT met",
      Number.isFinite(m.counted) ? count(m.counted) : "n/a"
    ]
  }
  return table(
    `sse — ${where}: ${count(r.herald.connections)} connections opened in bursts of ${settings.burst} ` +
      `(${streams} stream${
        streams === 1 ? "" : "s"
      } each), Herald next to a plain node:http floor (load average ${loadAverage()})`,
    [
      "server",
      "resting RSS",
      "s to open",
      `KB/conn ${BURST_EARLY_MS / 1000} s`,
      `KB/conn ${settings.lateMs / 1000} s`,
      "vs floor",
      "target",
      "",
      "fan-out p50",
      "p99",
      "missing",
      "p99 vs floor",
      "target",
      "",
      "server counts"
    ],
    [row("floor", r.floor, undefined), row("Herald", r.herald, r.floor)],
    [
      `Each burst: ${settings.burst} GETs at once with ?access_token= (a Promise.all spread over ${settings.clients} client`,
      `processes), the next once all are open. KB/conn = (VmRSS that long after the last connection opened − resting`,
      `VmRSS) / connections; no collection forced; each on a fresh server process. Fan-out: ${r.herald.fanOut.rounds} rounds, ` +
      `one post into the shared project (every connection carries it${
        r.endpoint === "project" ? ": each is on that project's stream" : ""
      }).`,
      `Fan-out times in ms, post sent → frame read by the client.` +
      (r.herald.closedByServer + r.floor.closedByServer > 0
        ? ` Closed by the server while idle: Herald ${r.herald.closedByServer}, floor ${r.floor.closedByServer}.`
        : "")
    ]
  )
}

const mb = (kb: number) => `${fixed(kb / 1024, 1)} MB`

const tables = (r: EndpointResult, settings: Settings, layout: Layout) => {
  const where = ENDPOINT_PATH[r.endpoint]
  const memoryRows = r.herald.points.map((h, i) => {
    const f = r.floor.points[i]!
    return [
      count(h.connections),
      mb(h.rssKb),
      `+${mb(h.rssKb - r.herald.restingKb)}`,
      fixed(h.perConnectionKb, 1),
      fixed(f.perConnectionKb, 1),
      ratio(h.perConnectionKb, f.perConnectionKb),
      `≤ ${TARGETS.kbPerConnection}`,
      h.perConnectionKb <= TARGETS.kbPerConnection ? "met" : "NOT met",
      fixed(h.openSeconds, 1),
      Number.isFinite(h.counted) ? count(h.counted) : "n/a"
    ]
  })
  const memory = table(
    `sse — ${where}: server RSS per idle SSE connection, Herald next to a plain node:http floor (load average ${loadAverage()})`,
    [
      "connections",
      "Herald RSS",
      "growth",
      "Herald KB/conn",
      "floor KB/conn",
      "Herald/floor",
      "target KB",
      "",
      "s to open",
      "server counts"
    ],
    memoryRows,
    [
      `Resting RSS before any connection: Herald ${mb(r.herald.restingKb)}, floor ${mb(r.floor.restingKb)}. ` +
      `KB/conn = (VmRSS ${settings.settleMs / 1000} s after the last`,
      `connection opened − resting VmRSS) / connections; no collection forced. Counts are cumulative on one server process.`,
      `${layout.users.length} users over ${layout.projects.length} projects (each in the shared one and ${
        layout.users[0]!.projects.length - 1
      } teams); connection i is user i mod ${layout.users.length}` +
      (r.endpoint === "project"
        ? ", on each of that user's project streams in turn."
        : ", all of that user's streams."),
      `Opened from ${settings.clients} client processes (plain node:http, keep-alive agent), 32 at a time each; ` +
      `s to open: the connections added at that count. server counts: herald_sse_connections.`,
      `Server's open-file limit: ${count(r.serverFdLimit)}.` +
      (r.herald.closedByServer + r.floor.closedByServer > 0
        ? ` Closed by the server while idle: Herald ${r.herald.closedByServer}, floor ${r.floor.closedByServer}.`
        : "")
    ]
  )
  const fanRow = (who: string, f: FanOut, base: FanOut | undefined) => [
    who,
    String(f.postsPerRound),
    count(f.latencies.length),
    String(f.missing),
    fixed(percentile(f.latencies, 50), 1),
    fixed(percentile(f.latencies, 99), 1),
    fixed(f.latencies.length === 0 ? NaN : f.latencies[f.latencies.length - 1]!, 1),
    base === undefined ? "" : `p99 ≤ ${TARGETS.fanOutP99Ms}`,
    base === undefined ? "" : f.missing === 0 && percentile(f.latencies, 99) <= TARGETS.fanOutP99Ms ? "met" : "NOT met",
    base === undefined ? "" : ratio(percentile(f.latencies, 99), percentile(base.latencies, 99)),
    fixed(percentile(f.answered, 50), 1)
  ]
  const hf = r.herald.fanOut
  const fan = table(
    `sse — ${where}: fan-out to ${count(hf.connections)} idle connections, ${hf.rounds} rounds ${
      settings.pauseMs / 1000
    } s apart (ms, post sent → frame read by the client)`,
    ["server", "posts/round", "receipts", "missing", "p50", "p99", "max", "target", "", "p99/floor", "answer p50"],
    [fanRow("floor", r.floor.fanOut, undefined), fanRow("Herald", hf, r.floor.fanOut)],
    [
      r.endpoint === "project"
        ? `A round posts one message into each of the ${hf.postsPerRound} projects at once; every connection gets its stream's.`
        : `A round posts one message into the shared project; every connection carries it.`,
      `Herald: POST /api/projects/:projectId/messages over HTTP (answer = its 201); floor: the bench tells it over IPC`,
      `to write the frame (answer = its acknowledgement). Each client process stamps the time it reads a frame`,
      `(performance.timeOrigin + now(), one machine); receipts = connections × rounds, over all of them.`,
      `Server, clients and database share 2 cores: the times include the clients' own reading.`
    ]
  )
  return `${memory}\n${fan}`
}

const verdicts = (
  results: ReadonlyArray<EndpointResult>,
  bursts: ReadonlyArray<BurstResult>,
  skipped: ReadonlyArray<string>,
  settings: Settings
) =>
  [
    "",
    "sse: targets",
    ...bursts.flatMap((r) => {
      const where = ENDPOINT_PATH[r.endpoint]
      const memory = r.herald.latePerConnectionKb / r.floor.latePerConnectionKb
      const fan = percentile(r.herald.fanOut.latencies, 99) / percentile(r.floor.fanOut.latencies, 99)
      return [
        `  ${burstMemoryMet(r) ? "met    " : "NOT met"}  ${where}: RSS per connection ${
          settings.lateMs / 1000
        } s after ${count(r.herald.connections)} opened in bursts of ${settings.burst} ≤ ${
          BURST_TARGETS.memoryRatio[r.endpoint]
        }× the floor's: ${fixed(memory, 2)}× (${fixed(r.herald.latePerConnectionKb, 1)} vs ${
          fixed(r.floor.latePerConnectionKb, 1)
        } KB)`,
        `  ${burstFanOutMet(r) ? "met    " : "NOT met"}  ${where}: fan-out p99 to ${
          count(r.herald.connections)
        } (burst-opened) ≤ ${BURST_TARGETS.fanOutP99Ratio}× the floor's: ${fixed(fan, 2)}× (${
          fixed(percentile(r.herald.fanOut.latencies, 99), 1)
        } vs ${fixed(percentile(r.floor.fanOut.latencies, 99), 1)} ms)` +
        (r.herald.fanOut.missing > 0 ? `, ${r.herald.fanOut.missing} receipts missing` : "")
      ]
    }),
    ...results.flatMap((r) => {
      const last = r.herald.points[r.herald.points.length - 1]!
      const f = r.herald.fanOut
      const p99 = percentile(f.latencies, 99)
      return [
        `  ${last.perConnectionKb <= TARGETS.kbPerConnection ? "met    " : "NOT met"}  ${
          ENDPOINT_PATH[r.endpoint]
        }: ≤ ${TARGETS.kbPerConnection} KB per idle connection at ${count(last.connections)}: ${
          fixed(last.perConnectionKb, 1)
        } KB (floor ${fixed(r.floor.points[r.floor.points.length - 1]!.perConnectionKb, 1)} KB) ${
          settings.settleMs / 1000
        } s after opening`,
        `  ${r.herald.idlePerConnectionKb <= TARGETS.kbPerConnection ? "met    " : "NOT met"}  ${
          ENDPOINT_PATH[r.endpoint]
        }: ≤ ${TARGETS.kbPerConnection} KB per idle connection at ${count(last.connections)}: ${
          fixed(r.herald.idlePerConnectionKb, 1)
        } KB (floor ${fixed(r.floor.idlePerConnectionKb, 1)} KB) after the fan-out and ${
          settings.idleMs / 1000
        } s more idle`,
        `  ${f.missing === 0 && p99 <= TARGETS.fanOutP99Ms ? "met    " : "NOT met"}  ${
          ENDPOINT_PATH[r.endpoint]
        }: fan-out p99 ≤ ${TARGETS.fanOutP99Ms} ms to ${count(f.connections)}: ${fixed(p99, 1)} ms` +
        (f.missing > 0 ? `, ${f.missing} receipts missing` : "")
      ]
    }),
    ...skipped.map((s) => `  not run  ${s}`)
  ].join("\n")

// ---------------------------------------------------------------------------------------------

const bench = Effect.gen(function*() {
  const settings = yield* Settings
  const started = performance.now()
  const main = path.join(repoRoot, ...SERVER)
  yield* attempt(`${path.relative(repoRoot, main)} (run \`npm run build\` first)`, () => fs.access(main))
  if (yield* staleBuild(main)) {
    yield* Console.error(
      `sse: warning: ${path.relative(repoRoot, main)} is older than the server's sources (npm run build)`
    )
  }
  const max = Math.max(settings.counts[settings.counts.length - 1]!, settings.burstCount)
  const perClient = Math.ceil(max / settings.clients)
  const ownLimit = fdLimit("self")
  if (perClient + FD_HEADROOM > ownLimit || max + FD_HEADROOM > ownLimit) {
    return yield* new BenchError({
      message: `${count(max)} connections need about ${count(max + FD_HEADROOM)} open files in the server ` +
        `and the floor and ${count(perClient + FD_HEADROOM)} in each client process; the limit here is ` +
        `${count(ownLimit)} (ulimit -n). Lower BENCH_SSE_COUNTS or raise the limit.`
    })
  }

  const dataDir = yield* tempDir
  const adminToken = randomBytes(16).toString("hex")
  yield* Console.error(`sse: starting the server on an embedded cluster, ${settings.clients} client processes…`)
  const layout = yield* Effect.scoped(Effect.gen(function*() {
    const server = yield* heraldServer(dataDir, adminToken, HEARTBEAT_MS)
    return yield* attempt("creating users and projects", () => createLayout(server.port, adminToken, settings))
  }))
  const clients = yield* Effect.all(Array.from({ length: settings.clients }, () => clientProcess))

  const results: Array<EndpointResult> = []
  const bursts: Array<BurstResult> = []
  const skipped: Array<string> = []
  for (const endpoint of settings.endpoints) {
    if (settings.openings.includes("burst")) {
      yield* Console.error(`sse: ${ENDPOINT_PATH[endpoint]}, burst opening…`)
      const herald = yield* Effect.scoped(Effect.gen(function*() {
        const server = yield* heraldServer(dataDir, adminToken, HEARTBEAT_MS)
        const probe = connection(layout, endpoint, 0)
        const status = yield* attempt(`GET ${probe.path}`, () => statusOf(server.port, probe.path, probe.token))
        if (status !== 200) return undefined
        return yield* measureBurst(heraldTarget(server, layout), clients, endpoint, layout, settings)
      }))
      if (herald !== undefined) {
        const floor = yield* Effect.scoped(Effect.gen(function*() {
          const target = yield* floorWithMembers(layout)
          return yield* measureBurst(target, clients, endpoint, layout, settings)
        }))
        const result: BurstResult = { endpoint, herald, floor }
        bursts.push(result)
        yield* Console.log(burstTable(result, settings, layout))
      }
    }
    if (!settings.openings.includes("gentle")) continue
    yield* Console.error(`sse: ${ENDPOINT_PATH[endpoint]}, gentle opening…`)
    const herald = yield* Effect.scoped(Effect.gen(function*() {
      const server = yield* heraldServer(dataDir, adminToken, HEARTBEAT_MS)
      if (max + FD_HEADROOM > server.fdLimit) {
        return yield* new BenchError({
          message: `the server may open ${count(server.fdLimit)} files (ulimit -n; raising it to 65536 was refused): ` +
            `too few for ${count(max)} connections. Lower BENCH_SSE_COUNTS.`
        })
      }
      const probe = connection(layout, endpoint, 0)
      const status = yield* attempt(`GET ${probe.path}`, () => statusOf(server.port, probe.path, probe.token))
      if (status !== 200) return { status, server } as const
      const measured = yield* measure(heraldTarget(server, layout), clients, endpoint, layout, settings)
      return { status, server, measured } as const
    }))
    if (herald.measured === undefined) {
      const line = `${ENDPOINT_PATH[endpoint]} answered ${herald.status}${
        herald.status === 404 ? " (not on this branch)" : ""
      }: skipped`
      yield* progress(line)
      skipped.push(line)
      continue
    }
    const floor = yield* Effect.scoped(Effect.gen(function*() {
      return yield* measure(yield* floorWithMembers(layout), clients, endpoint, layout, settings)
    }))
    const result: EndpointResult = { endpoint, herald: herald.measured, floor, serverFdLimit: herald.server.fdLimit }
    results.push(result)
    yield* Console.log(tables(result, settings, layout))
  }
  yield* Console.log(verdicts(results, bursts, skipped, settings))
  yield* Console.log(
    `\nsse: ${((performance.now() - started) / 1000).toFixed(0)} s in all; HERALD_SSE_HEARTBEAT_MS=${HEARTBEAT_MS}` +
      `${settings.quick ? "; quick mode (BENCH_SSE_QUICK)" : ""}`
  )
}).pipe(
  Effect.scoped,
  // Every step has its own timeout; this is the backstop.
  withinBudget(Duration.minutes(40))
)

export default bench
