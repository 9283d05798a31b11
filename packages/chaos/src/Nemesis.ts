import { Effect, FiberSet } from "effect"
import type { ServerNode } from "./Fleet.js"
import type { FaultKind, FaultRecord } from "./Records.js"
import type { Rng } from "./Rng.js"
import { type Broker, now, restartRedis, type Run, sleep } from "./Run.js"

/**
 * The nemesis: faults at random moments, from a schedule drawn from the seed before the run
 * starts (the same seed, the same schedule). Faults may overlap — a node is restarting while
 * PostgreSQL restarts — but a node is not hit again while it is down or frozen, and one node is
 * always left up. Each fault puts things back itself (a killed node restarts, a frozen one thaws,
 * Redis and PostgreSQL come back); the recovery after the run makes sure of it.
 *
 * Publish failures (HERALD_CHAOS_PUBLISH_FAILURE_RATE on some nodes) and oversized envelopes
 * (bodies over the NOTIFY limit) are not scheduled: they are in the fleet's settings and the
 * workload.
 */

export interface PlannedFault {
  readonly at: number
  readonly kind: FaultKind
  /** The node index it aims at (kill-9, pause); another node if that one is not up then. */
  readonly node: number
  /** How long the thing stays down, frozen or stopped. */
  readonly holdMs: number
}

const WEIGHTS: Record<Broker, ReadonlyArray<readonly [FaultKind, number]>> = {
  postgres: [["kill-9", 3], ["pause", 2], ["listen-terminate", 3], ["pg-restart-fast", 1], ["pg-restart-immediate", 1]],
  redis: [["kill-9", 3], ["pause", 2], ["redis-kill", 3], ["pg-restart-fast", 1], ["pg-restart-immediate", 1]]
}

const HOLD: Record<FaultKind, readonly [number, number]> = {
  "kill-9": [300, 3_000],
  pause: [1_000, 4_000],
  "listen-terminate": [0, 0],
  "redis-kill": [200, 2_000],
  "pg-restart-fast": [0, 1_500],
  "pg-restart-immediate": [0, 1_500]
}

/**
 * The schedule: faults from `startMs` until `endMs`, gaps exponential around `meanGapMs`. The kinds
 * come in rounds: first every kind of this broker once (shuffled), then weighted rounds, so even a
 * short run sees each kind.
 */
export const plan = (
  rng: Rng,
  broker: Broker,
  nodes: number,
  window: { readonly startMs: number; readonly endMs: number; readonly meanGapMs: number }
): ReadonlyArray<PlannedFault> => {
  const weights = WEIGHTS[broker]
  const rounds = function*() {
    yield* rng.shuffle(weights.map(([kind]) => kind))
    for (;;) yield* rng.shuffle(weights.flatMap(([kind, w]) => Array.from({ length: w }, () => kind)))
  }
  const kinds = rounds()
  const faults: Array<PlannedFault> = []
  let at = window.startMs
  while (at < window.endMs) {
    const kind = kinds.next().value as FaultKind
    const [min, max] = HOLD[kind]
    faults.push({ at: Math.round(at), kind, node: rng.int(0, nodes - 1), holdMs: rng.int(min, max) })
    at += Math.max(500, rng.exponential(window.meanGapMs))
  }
  return faults
}

/** Runs the schedule; each fault in a fiber of its own (they overlap), all waited for at the end. */
export const runNemesis = (run: Run, schedule: ReadonlyArray<PlannedFault>) =>
  Effect.gen(function*() {
    const fibers = yield* FiberSet.make()
    for (const fault of schedule) {
      const wait = fault.at - now(run)
      if (wait > 0) yield* Effect.sleep(wait)
      yield* FiberSet.run(fibers, Effect.promise(() => inject(run, fault)))
    }
    yield* FiberSet.awaitEmpty(fibers)
  }).pipe(Effect.scoped)

const record = (run: Run, kind: FaultKind, target: string, detail = ""): FaultRecord => {
  const r: FaultRecord = { kind, target, at: now(run), until: undefined, detail, skipped: false }
  run.faults.push(r)
  run.log(`${run.broker}: ${(r.at / 1000).toFixed(1)} s ${kind} ${target}${detail === "" ? "" : ` (${detail})`}`)
  return r
}

const skip = (run: Run, kind: FaultKind, target: string, why: string) => {
  const r = record(run, kind, target, why)
  r.skipped = true
  r.until = r.at
}

/** The planned node if it is up, else the next one that is — never the last one up. */
const targetNode = (run: Run, fault: PlannedFault): ServerNode | undefined => {
  const nodes = run.fleet.nodes
  const up = nodes.filter((n) => n.state === "up")
  if (up.length <= 1) return undefined
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[(fault.node + i) % nodes.length]!
    if (node.state === "up") return node
  }
  return undefined
}

/** Runs whose Redis a fault has down now: one Redis fault at a time. */
const redisDown = new WeakSet<Run>()

const inject = async (run: Run, fault: PlannedFault): Promise<void> => {
  const { kind } = fault
  switch (kind) {
    case "kill-9":
    case "pause": {
      const node = targetNode(run, fault)
      if (node === undefined) return skip(run, kind, "-", "no node to spare")
      if (kind === "kill-9") {
        const r = record(run, kind, node.name, `process ${node.generation}`)
        await run.fleet.kill(node)
        await sleep(fault.holdMs)
        await run.fleet.start(node).then(
          () => (r.until = now(run)),
          (e) => {
            r.detail += `; restart failed: ${String(e)}`
            run.log(`${run.broker}: ${node.name} restart failed: ${String(e)}`)
          }
        )
      } else {
        const r = record(run, kind, node.name, `${fault.holdMs} ms`)
        run.fleet.pause(node)
        await sleep(fault.holdMs)
        run.fleet.resume(node)
        r.until = now(run)
      }
      return
    }
    case "listen-terminate": {
      const r = record(run, kind, "postgres")
      // PostgreSQL may be restarting (another fault): try for a few seconds.
      for (let attempt = 0;; attempt++) {
        try {
          const n = await run.db.terminateListeners()
          r.detail = `${n} LISTEN connection${n === 1 ? "" : "s"} terminated`
          break
        } catch (e) {
          if (attempt >= 20) {
            r.detail = `failed: ${e instanceof Error ? e.message : String(e)}`
            r.skipped = true
            break
          }
          await sleep(250)
        }
      }
      r.until = now(run)
      run.log(`${run.broker}: listen-terminate: ${r.detail}`)
      return
    }
    case "redis-kill": {
      const redis = run.redis
      if (redis === undefined) return skip(run, kind, "redis", "no redis in this run")
      if (redisDown.has(run)) return skip(run, kind, "redis", "redis is already down")
      redisDown.add(run)
      const r = record(run, kind, "redis", `down ${fault.holdMs} ms`)
      try {
        await redis.kill()
        await sleep(fault.holdMs)
        await restartRedis(redis).then(
          () => (r.until = now(run)),
          (e) => (r.detail += `; restart failed: ${String(e)}`)
        )
      } finally {
        redisDown.delete(run)
      }
      return
    }
    case "pg-restart-fast":
    case "pg-restart-immediate": {
      const r = record(run, kind, "postgres", `down ${fault.holdMs} ms`)
      await run.cluster.restart(kind === "pg-restart-fast" ? "fast" : "immediate", fault.holdMs).then(
        () => (r.until = now(run)),
        (e) => (r.detail += `; restart failed: ${String(e)}`)
      )
      return
    }
  }
}
