import { ROOMY_LIMITS_ENV } from "@herald/server"
import { Data, Effect } from "effect"
import { type Spawned, spawnServer, withoutHeraldSettings } from "../../../test-support/Process.js"
import { lowPort } from "./Ports.js"

/**
 * The server processes under test: the compiled server (`node packages/server/dist/main.js`, the
 * production command), each on a fixed port of its own so that a node the nemesis killed comes
 * back where its clients look for it. A node can be killed (SIGKILL), frozen (SIGSTOP) and thawed,
 * and restarted; its output is kept for the report.
 */

export class FleetError extends Data.TaggedError("FleetError")<{ readonly message: string }> {}

export type NodeState = "starting" | "up" | "down" | "paused"

export interface ServerNode {
  readonly name: string
  readonly url: string
  readonly port: number
  /** The fraction of its publishes the chaos broker wrapper makes fail. */
  readonly publishFailureRate: number
  state: NodeState
  /** How many processes this node has had. */
  generation: number
  process: Spawned | undefined
}

export interface FleetOptions {
  readonly databaseUrl: string
  readonly broker: "postgres" | "redis"
  readonly redisUrl: string | undefined
  readonly adminToken: string
  readonly nodes: number
  /** Node index → HERALD_CHAOS_PUBLISH_FAILURE_RATE. */
  readonly publishFailureRates: ReadonlyArray<number>
  readonly log: (line: string) => void
}

const START_TIMEOUT_MS = 90_000

export interface Fleet {
  readonly nodes: ReadonlyArray<ServerNode>
  /** Starts the node's process (again), retrying while it exits during start-up (e.g. the database is down). */
  readonly start: (node: ServerNode) => Promise<void>
  readonly kill: (node: ServerNode) => Promise<void>
  readonly pause: (node: ServerNode) => void
  readonly resume: (node: ServerNode) => void
  /** SIGTERM: resolves with its exit code, how long it took (G8) and the last lines it wrote. */
  readonly stop: (
    node: ServerNode
  ) => Promise<{ readonly code: number | null; readonly ms: number; readonly tail: string }>
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The nodes, started; every process still alive is killed when the scope closes. */
export const startFleet = (options: FleetOptions) =>
  Effect.acquireRelease(
    Effect.tryPromise({ try: () => launchFleet(options), catch: (e) => new FleetError({ message: String(e) }) }),
    (fleet) => Effect.promise(() => killAll(fleet))
  )

const launchFleet = async (options: FleetOptions): Promise<Fleet> => {
  const nodes: Array<ServerNode> = []
  for (let i = 0; i < options.nodes; i++) {
    const port = await lowPort()
    nodes.push({
      name: `n${i + 1}`,
      url: `http://127.0.0.1:${port}`,
      port,
      publishFailureRate: options.publishFailureRates[i] ?? 0,
      state: "down",
      generation: 0,
      process: undefined
    })
  }
  const envOf = (node: ServerNode): Record<string, string | undefined> => ({
    ...withoutHeraldSettings(),
    DATABASE_URL: options.databaseUrl,
    HOST: "127.0.0.1",
    PORT: String(node.port),
    HERALD_ADMIN_TOKEN: options.adminToken,
    HERALD_BROKER: options.broker,
    REDIS_URL: options.redisUrl,
    // Other nodes' rows publish within a poll; retries and expired leases finish during quiescence.
    HERALD_POLL_INTERVAL_MS: "200",
    HERALD_PUBLISH_BACKOFF_BASE_MS: "50",
    HERALD_PUBLISH_BACKOFF_MAX_MS: "2000",
    HERALD_CLAIM_LEASE_MS: "3000",
    HERALD_SSE_HEARTBEAT_MS: "1000",
    HERALD_CHAOS_PUBLISH_FAILURE_RATE: String(node.publishFailureRate),
    // The drill checks delivery under faults, not the per-user limits: its load must not meet them.
    ...ROOMY_LIMITS_ENV,
    LOG_LEVEL: "warn",
    LOG_FORMAT: "json",
    // The server follows its launcher (main.ts): if the campaign dies, its nodes shut down.
    npm_lifecycle_event: "chaos"
  })
  const start = async (node: ServerNode) => {
    node.state = "starting"
    const deadline = Date.now() + START_TIMEOUT_MS
    for (;;) {
      node.generation++
      const spawned = spawnServer(envOf(node))
      const generation = node.generation
      node.process = spawned
      void spawned.exited.then(({ code, signal }) => {
        options.log(`${node.name}: process ${generation} exited (${code ?? signal})`)
        if (node.process === spawned) node.state = "down"
      })
      try {
        await spawned.waitFor(/Herald is up/, Math.max(1_000, deadline - Date.now()))
        if (generation > 1) options.log(`${node.name}: up again (process ${generation})`)
        node.state = "up"
        return
      } catch (error) {
        const lines = String(error).split("\n").filter((l) => l.trim() !== "")
        options.log(`${node.name}: process ${generation} did not start: ${lines[lines.length - 1]?.slice(0, 300)}`)
        spawned.child.kill("SIGKILL")
        await spawned.exited
        if (Date.now() > deadline) {
          throw new Error(`${node.name} did not start within ${START_TIMEOUT_MS / 1000} s: ${String(error)}`)
        }
        await sleep(500)
      }
    }
  }
  const alive = (node: ServerNode) =>
    node.process !== undefined && node.process.child.exitCode === null && node.process.child.signalCode === null
  const fleet: Fleet = {
    nodes,
    start,
    kill: async (node) => {
      if (!alive(node)) return
      node.process!.child.kill("SIGCONT")
      node.process!.child.kill("SIGKILL")
      await node.process!.exited
      node.state = "down"
    },
    pause: (node) => {
      if (node.state !== "up") return
      node.process!.child.kill("SIGSTOP")
      node.state = "paused"
    },
    resume: (node) => {
      if (node.state !== "paused") return
      node.process!.child.kill("SIGCONT")
      node.state = "up"
    },
    stop: async (node) => {
      const started = Date.now()
      if (!alive(node)) return { code: null, ms: 0, tail: "" }
      node.process!.child.kill("SIGCONT")
      await node.process!.stop(15_000)
      const { code } = await node.process!.exited
      node.state = "down"
      const tail = node.process!.output().trim().split("\n").slice(-3).join(" | ")
      return { code, ms: Date.now() - started, tail }
    }
  }
  try {
    await Promise.all(nodes.map((n) => start(n)))
  } catch (error) {
    await killAll(fleet)
    throw error
  }
  return fleet
}

const killAll = async (fleet: Fleet) => {
  for (const node of fleet.nodes) {
    const child = node.process?.child
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      child.kill("SIGCONT")
      child.kill("SIGKILL")
      await node.process!.exited
    }
  }
}
