import * as NodeContext from "@effect/platform-node/NodeContext"
import { clientLayer, runMigrations } from "@herald/server"
import { Data, Effect, Fiber, FiberSet, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { type RedisServer, startRedis } from "../../../test-support/Redis.js"
import { check, type Shutdown, Timeline, type Violation } from "./Checker.js"
import { type Client, makeClient, runClient, streamOf } from "./Clients.js"
import { startFleet } from "./Fleet.js"
import { type HistoryReader, makeHistoryReader, runHistoryReader } from "./History.js"
import { plan, type PlannedFault, runNemesis } from "./Nemesis.js"
import { type Cluster, startCluster } from "./Postgres.js"
import { FAULT_KINDS, type FaultKind, type Observation, projectStream, workspaceStream } from "./Records.js"
import { Rng } from "./Rng.js"
import { type Broker, now, restartRedis, type Run, sleep } from "./Run.js"
import { head, openDb, type Truth } from "./Truth.js"
import { actor, OVERSIZED, probes, setup } from "./Workload.js"

/**
 * A campaign: one PostgreSQL of its own, then one run per broker — a fleet of compiled servers on
 * a fresh database (and, for redis, a real redis-server), the seeded workload, SSE clients and
 * history readers, and the nemesis for the run's duration; then quiescence (everything restarted,
 * the outbox drained, one more post in every stream, every client caught up or found stuck, one
 * last resume) and the checker.
 */

export class CampaignError extends Data.TaggedError("CampaignError")<{ readonly message: string }> {}

export interface CampaignOptions {
  readonly seed: number
  readonly brokers: ReadonlyArray<Broker>
  readonly nodes: number
  /** How long the workload and the nemesis run, per broker. */
  readonly durationMs: number
  readonly users?: number
  readonly projects?: number
  /** The deadline of each wait after the run (drain, live catch-up, final resume, history). */
  readonly quiescenceMs?: number
  /** Mean gap between two faults. */
  readonly meanFaultGapMs?: number
  /** false: a control run — no scheduled faults and no node failing publishes (the workload and the clients as usual). */
  readonly faults?: boolean
  readonly log?: (line: string) => void
  /** Called with each broker's report as soon as its run is over. */
  readonly onRun?: (report: RunReport) => void
}

export interface RunReport {
  readonly broker: Broker
  readonly seed: number
  readonly nodes: number
  readonly durationMs: number
  readonly wallMs: number
  readonly schedule: ReadonlyArray<PlannedFault>
  readonly run: Run
  readonly faultCounts: Readonly<Record<FaultKind, number>>
  readonly listenTerminated: number
  readonly publishFailureNodes: ReadonlyArray<string>
  readonly oversizedPosts: number
  readonly violations: ReadonlyArray<Violation>
  readonly notes: ReadonlyArray<string>
}

export interface CampaignReport {
  readonly seed: number
  readonly runs: ReadonlyArray<RunReport>
}

/** The node that is started with HERALD_CHAOS_PUBLISH_FAILURE_RATE (the second). */
const PUBLISH_FAILURE_RATE = 0.3

const migrate = (url: string) =>
  runMigrations.pipe(
    Effect.provide(
      clientLayer({ url: Redacted.make(url), maxConnections: 1, applicationName: "herald-chaos-migrate" })
    ),
    Effect.provide(NodeContext.layer),
    Effect.mapError((e) => new CampaignError({ message: `migrations: ${e.message}` }))
  )

/** A redis-server of the run's own; killed with the campaign's process even if the scope never closes. */
const redisLayer = Effect.acquireRelease(
  Effect.tryPromise({
    try: async () => {
      const redis = await startRedis()
      const lastResort = () => redis.process().child.kill("SIGKILL")
      process.once("exit", lastResort)
      return { redis, lastResort }
    },
    catch: (e) => new CampaignError({ message: `redis-server: ${String(e)}` })
  }),
  ({ lastResort, redis }) =>
    Effect.promise(async () => {
      await redis.stop()
      process.off("exit", lastResort)
    })
).pipe(Effect.map(({ redis }) => redis))

export const runCampaign = (options: CampaignOptions) =>
  Effect.gen(function*() {
    const cluster = yield* startCluster
    const runs: Array<RunReport> = []
    for (const broker of options.brokers) {
      const report = yield* Effect.scoped(runOne(cluster, broker, options))
      options.onRun?.(report)
      runs.push(report)
    }
    return { seed: options.seed, runs } satisfies CampaignReport
  }).pipe(Effect.scoped)

const runOne = (cluster: Cluster, broker: Broker, options: CampaignOptions) =>
  Effect.gen(function*() {
    const started = Date.now()
    const log = options.log ?? (() => undefined)
    const quiescenceMs = options.quiescenceMs ?? 30_000
    const rng = new Rng(options.seed).fork(`run:${broker}`)
    const url = yield* Effect.tryPromise({
      try: () => cluster.createDatabase(`chaos_${broker}_${randomBytes(4).toString("hex")}`),
      catch: (e) => new CampaignError({ message: `create database: ${String(e)}` })
    })
    yield* migrate(url)
    const db = yield* openDb(url)
    const redis: RedisServer | undefined = broker === "redis" ? yield* redisLayer : undefined
    const adminToken = randomBytes(16).toString("hex")
    const faults = options.faults ?? true
    const rates = Array.from({ length: options.nodes }, (_, i) => i === 1 && faults ? PUBLISH_FAILURE_RATE : 0)
    log(`${broker}: starting ${options.nodes} nodes`)
    const fleet = yield* startFleet({
      databaseUrl: url,
      broker,
      redisUrl: redis?.url,
      adminToken,
      nodes: options.nodes,
      publishFailureRates: rates,
      log: (line) => log(`${broker}: ${line}`)
    })
    const run: Run = {
      broker,
      seed: options.seed,
      rng,
      t0: Date.now(),
      cluster,
      db,
      fleet,
      redis,
      adminToken,
      users: [],
      projects: [],
      believed: new Map(),
      phase: "run",
      faults: [],
      writes: [],
      clients: [],
      histories: [],
      observations: [],
      log
    }
    yield* setup(run, { users: options.users ?? 5, projects: options.projects ?? 3 })
    run.t0 = Date.now()

    // The clients and readers: a multiplexed client per user; per-stream clients and history readers on random pairs.
    const layout = rng.fork("layout")
    const clients: Array<Client> = []
    const readers: Array<HistoryReader> = []
    for (const user of run.users) {
      clients.push(makeClient(run, `${user.name}/mux`, "multiplexed", user))
      for (const project of run.projects) {
        if (layout.chance(0.5)) {
          clients.push(makeClient(run, `${user.name}/${project.name}`, "project", user, project.id))
        }
        if (layout.chance(0.35)) {
          clients.push(makeClient(run, `${user.name}/${project.name}/ws`, "workspace", user, project.id))
        }
        if (layout.chance(0.4)) {
          readers.push(makeHistoryReader(run, `${user.name}/${project.name}/history`, user, project.id, "project"))
        }
        if (layout.chance(0.25)) {
          readers.push(makeHistoryReader(run, `${user.name}/${project.name}/ws-history`, user, project.id, "workspace"))
        }
      }
    }
    const listeners = yield* FiberSet.make()
    for (const client of clients) {
      yield* FiberSet.run(listeners, runClient(run, client, rng.fork(`client:${client.record.name}`)))
    }
    for (const reader of readers) {
      yield* FiberSet.run(listeners, runHistoryReader(run, reader, rng.fork(`history:${reader.record.name}`)))
    }

    const schedule = faults
      ? plan(rng.fork("nemesis"), broker, options.nodes, {
        startMs: 1_500,
        endMs: Math.max(2_000, options.durationMs - 1_000),
        meanGapMs: options.meanFaultGapMs ?? 2_500
      })
      : []
    log(
      `${broker}: ${run.users.length} users, ${run.projects.length} projects, ${clients.length} SSE clients, ` +
        `${readers.length} history readers, ${schedule.length} faults planned over ${options.durationMs / 1000} s`
    )
    const actors = yield* FiberSet.make()
    for (const user of run.users) {
      yield* FiberSet.run(actors, actor(run, user))
    }
    const nemesis = yield* Effect.fork(runNemesis(run, schedule))
    yield* Effect.sleep(options.durationMs)
    log(`${broker}: stopping the workload`)
    yield* FiberSet.clear(actors)
    log(`${broker}: waiting for the nemesis`)
    yield* Fiber.join(nemesis)
    run.phase = "calm"
    log(`${broker}: run over at ${now(run)} ms; recovering`)

    // Quiescence: everything back up, the outbox drained, one more event in every stream.
    yield* recover(run)
    let unsettled = yield* settle(run, quiescenceMs)
    // Every client connected and caught up with what the run wrote (not judged yet) ...
    yield* waitLive(run, clients, yield* Effect.promise(() => db.truth()), quiescenceMs, false)
    // ... then one more event in every stream, which every open connection must deliver live.
    yield* probes(run)
    unsettled ??= yield* settle(run, quiescenceMs)
    log(`${broker}: quiescent at ${now(run)} ms${unsettled === undefined ? "" : ` (not quite: ${unsettled})`}`)
    const truth = yield* Effect.promise(() => db.truth())
    yield* waitLive(run, clients, truth, quiescenceMs, true)
    run.phase = "final"
    for (const client of clients) client.reconnect()
    yield* waitFinal(run, clients, truth, quiescenceMs)
    yield* waitHistory(readers, truth, quiescenceMs)
    log(`${broker}: clients done at ${now(run)} ms; stopping the nodes`)

    // SIGTERM with the clients still connected (G8), then the truth and the checker.
    const shutdowns: Array<Shutdown> = yield* Effect.promise(() =>
      Promise.all(fleet.nodes.map(async (node) => ({ node: node.name, ...(await fleet.stop(node)) })))
    )
    yield* FiberSet.clear(listeners)
    for (const client of run.clients) {
      for (const c of client.connections) {
        if (c.endedAt === undefined) {
          c.endedAt = now(run)
          c.end = "stopped"
        }
      }
    }
    const final = yield* Effect.promise(() => db.truth())
    const violations = check({
      t0: run.t0,
      truth: final,
      users: run.users,
      projects: run.projects,
      clients: run.clients,
      histories: run.histories,
      writes: run.writes,
      observations: run.observations,
      shutdowns,
      unsettled
    })
    const notes: Array<string> = []
    if (final.outbox.dead > 0) notes.push(`${final.outbox.dead} outbox rows are dead (G3: kept, retryable)`)
    const injected = run.faults.filter((f) => !f.skipped)
    const faultCounts = Object.fromEntries(
      FAULT_KINDS.map((k) => [k, injected.filter((f) => f.kind === k).length])
    ) as Record<FaultKind, number>
    const listenTerminated = injected.filter((f) => f.kind === "listen-terminate")
      .reduce((n, f) => n + (Number(/^(\d+)/.exec(f.detail)?.[1]) || 0), 0)
    return {
      broker,
      seed: options.seed,
      nodes: options.nodes,
      durationMs: options.durationMs,
      wallMs: Date.now() - started,
      schedule,
      run,
      faultCounts,
      listenTerminated,
      publishFailureNodes: fleet.nodes.filter((n) => n.publishFailureRate > 0).map((n) =>
        `${n.name} (${n.publishFailureRate})`
      ),
      oversizedPosts: run.writes.filter((w) => (w.bodyLength ?? 0) >= OVERSIZED.min).length,
      violations,
      notes
    } satisfies RunReport
  })

/** Every node up (thawed, restarted) and ready, PostgreSQL and Redis running. */
const recover = (run: Run) =>
  Effect.promise(async () => {
    await run.cluster.ensureRunning()
    const redis = run.redis
    if (redis !== undefined) {
      const child = redis.process().child
      if (child.exitCode !== null || child.signalCode !== null) await restartRedis(redis)
    }
    await Promise.all(run.fleet.nodes.map(async (node) => {
      if (node.state === "paused") run.fleet.resume(node)
      if (node.state === "down") await run.fleet.start(node)
    }))
    const deadline = Date.now() + 60_000
    for (const node of run.fleet.nodes) {
      while (Date.now() < deadline) {
        const ready = await fetch(`${node.url}/health/ready`, { signal: AbortSignal.timeout(3_000) }).then(
          (r) => r.status === 200,
          () => false
        )
        if (ready) break
        await sleep(200)
      }
    }
  })

/** Waits for no pending outbox row and nothing left to materialize; says what is left at the deadline. */
const settle = (run: Run, deadlineMs: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + deadlineMs
    let last = "the database did not answer"
    while (Date.now() < deadline) {
      try {
        const o = await run.db.outbox()
        if (o.pending === 0 && o.unmaterialized === 0) return undefined
        last = `${o.pending} outbox rows still pending, ${o.unmaterialized} not materialized`
      } catch (e) {
        last = `the database did not answer: ${String(e)}`
      }
      await sleep(200)
    }
    return `not quiescent after ${deadlineMs / 1000} s: ${last}`
  })

/** Where each client must get to, per stream: the head of every stream its user may read at the end. */
const targets = (client: Client, truth: Truth) => {
  const user = client.user
  const ends = new Map<string, number>()
  const member = (projectId: string) => new Timeline(truth.streams.get(projectStream(projectId)) ?? []).final(user.id)
  const single = streamOf(client.record, user)
  if (single !== undefined) {
    if (member(client.record.projectId!) && head(truth, single) > 0) ends.set(single, head(truth, single))
    return ends
  }
  const projects = new Set<string>()
  for (const stream of truth.streams.keys()) if (stream.startsWith("project:")) projects.add(stream.slice(8))
  for (const projectId of projects) {
    if (!member(projectId)) continue
    ends.set(projectStream(projectId), head(truth, projectStream(projectId)))
    const ws = workspaceStream(projectId, user.id)
    if (head(truth, ws) > 0) ends.set(ws, head(truth, ws))
  }
  return ends
}

const behind = (client: Client, truth: Truth) =>
  [...targets(client, truth)].filter(([stream, end]) => (client.progress.get(stream) ?? -1) < end)

/** How long a connection must have been open, at the deadline, to be judged on what it delivered. */
const JUDGED_AFTER_MS = 5_000

/**
 * The clients as they are (no random disconnects any more; a cut connection resumes): every one
 * should reach the heads. Judged: a connection open for a while on a node that is up, and still
 * behind at the deadline, is stuck — the events were committed and published while it was open.
 */
const waitLive = (run: Run, clients: ReadonlyArray<Client>, truth: Truth, deadlineMs: number, judge: boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + deadlineMs
    while (Date.now() < deadline && clients.some((c) => behind(c, truth).length > 0)) await sleep(250)
    if (!judge) return
    for (const client of clients) {
      const conn = client.current
      if (conn === undefined || conn.status !== 200 || conn.openedAt === undefined) continue
      if (now(run) - conn.openedAt < JUDGED_AFTER_MS) continue
      const node = run.fleet.nodes.find((n) => n.name === conn.node)
      if (node?.state !== "up") continue
      // Opened without a position and given nothing: where it started is unknown, so is what it owes.
      const owed = behind(client, truth).filter(([stream]) =>
        client.progress.get(stream) !== undefined || conn.position._tag !== "none"
      )
      if (owed.length === 0) continue
      const position = conn.position._tag === "after"
        ? `?after=${conn.position.after}`
        : conn.position._tag === "lastEventId"
        ? "its last id"
        : "no position"
      const streams = owed.map(([stream, end]) => {
        const reached = client.progress.get(stream)
        const missing = (truth.streams.get(stream) ?? []).filter((e) => e.seq > (reached ?? 0))
        return `${stream} at ${reached ?? "nothing"} of ${end} (missing ${
          missing.map((e) => `${e.seq} committed at ${e.occurredAt - run.t0} ms`).join(", ")
        })`
      })
      const detail = `opened at ${conn.openedAt} ms with ${position}, ${conn.frames.length} frames, the last at ${
        conn.frames[conn.frames.length - 1]?.at ?? "-"
      } ms; behind on ${streams.join("; ")}; ${nodeHistory(run, conn.node)}`
      const [stream, end] = owed[0]!
      run.observations.push(observation(run, client, "stalled", stream, end, conn.index, conn.node, detail))
    }
  })

/**
 * The last resume: every client reconnects (to a random node, from its last id) and must reach
 * every head. One that cannot get a connection at all is reported only when a node answered it
 * with an error or not at all within the connect timeout (never merely for still trying).
 */
const waitFinal = (run: Run, clients: ReadonlyArray<Client>, truth: Truth, deadlineMs: number) =>
  Effect.promise(async () => {
    const deadline = Date.now() + deadlineMs
    const served = (c: Client) => c.record.connections.some((k) => k.phase === "final" && k.status === 200)
    const answered = (c: Client) => c.record.connections.some((k) => k.phase === "final" && k.end !== undefined)
    // Done: caught up on a connection of this phase — or, with nothing it may read, answered at all (a 404 is right then).
    const done = (c: Client) =>
      targets(c, truth).size === 0 ? served(c) || answered(c) : served(c) && behind(c, truth).length === 0
    while (Date.now() < deadline && !clients.every(done)) await sleep(250)
    for (const client of clients) {
      if (served(client)) continue
      const attempts = client.record.connections.filter((k) => k.phase === "final" && k.end !== undefined)
      const failed = attempts.filter((k) =>
        (k.status !== undefined && k.status >= 400 && k.status !== 429 && k.status !== 404) ||
        k.end === "connect-timeout"
      )
      // A 404 is right for who is no longer a member; for a member it is not.
      const refusedMember = attempts.filter((k) => k.status === 404 && targets(client, truth).size > 0)
      const bad = [...failed, ...refusedMember]
      if (bad.length === 0) continue
      const [stream, end] = [...targets(client, truth)][0] ?? ["(every stream)", 0]
      run.observations.push(
        observation(
          run,
          client,
          "unserved",
          stream,
          end,
          bad[0]!.index,
          bad[0]!.node,
          bad.map((k) =>
            `#${k.index} on ${k.node}: ${k.status ?? "no answer"} ${k.end}${
              k.errorBody === undefined ? "" : ` ${JSON.stringify(k.errorBody)}`
            }`
          ).join("; ")
        )
      )
    }
  })

const waitHistory = (readers: ReadonlyArray<HistoryReader>, truth: Truth, deadlineMs: number) =>
  Effect.promise(async () => {
    const streamOfReader = (r: HistoryReader) =>
      r.record.scope === "project" ? projectStream(r.record.projectId) : workspaceStream(r.record.projectId, r.user.id)
    const pending = () =>
      readers.filter((r) =>
        new Timeline(truth.streams.get(projectStream(r.record.projectId)) ?? []).final(r.user.id) &&
        r.after < head(truth, streamOfReader(r))
      )
    const deadline = Date.now() + deadlineMs
    while (Date.now() < deadline && pending().length > 0) await sleep(250)
  })

const observation = (
  run: Run,
  client: Client,
  kind: Observation["kind"],
  stream: string,
  expected: number,
  connection: number | undefined,
  node: string | undefined,
  detail: string
): Observation => ({
  kind,
  client: `${client.record.name} (${client.user.name})`,
  stream,
  at: now(run),
  expected,
  reached: client.progress.get(stream),
  node,
  connection,
  detail
})

/** What the nemesis did to a node, for a stalled connection's report. */
const nodeHistory = (run: Run, node: string) => {
  const faults = run.faults.filter((f) =>
    !f.skipped && (f.target === node || f.target === "postgres" || f.target === "redis")
  )
  return faults.length === 0
    ? `no fault touched ${node}`
    : `faults that touched ${node}: ${faults.map((f) => `${f.kind} ${f.target} at ${f.at} ms`).join(", ")}`
}
