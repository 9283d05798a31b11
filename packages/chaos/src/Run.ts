import type { RedisServer } from "../../../test-support/Redis.js"
import type { Fleet, ServerNode } from "./Fleet.js"
import type { Cluster } from "./Postgres.js"
import type {
  ClientRecord,
  FaultRecord,
  HistoryRecord,
  Observation,
  Phase,
  Project,
  User,
  WriteRecord
} from "./Records.js"
import type { Rng } from "./Rng.js"
import type { Db } from "./Truth.js"

export type Broker = "postgres" | "redis"

/** One run of the campaign (one broker): what every actor shares, and what they record. */
export interface Run {
  readonly broker: Broker
  readonly seed: number
  /** The run's generator: every actor forks its own from it. */
  readonly rng: Rng
  /** Epoch milliseconds at the start of the run (after the setup). */
  t0: number
  readonly cluster: Cluster
  readonly db: Db
  readonly fleet: Fleet
  readonly redis: RedisServer | undefined
  readonly adminToken: string
  users: ReadonlyArray<User>
  projects: ReadonlyArray<Project>
  /** The workload's belief of who is in each project (confirmed changes only): project → user indexes. */
  readonly believed: Map<string, Set<number>>
  /** run: faults and random disconnects; calm: neither (clients stay, reconnect when cut); final: the last resume. */
  phase: Phase
  readonly faults: Array<FaultRecord>
  readonly writes: Array<WriteRecord>
  readonly clients: Array<ClientRecord>
  readonly histories: Array<HistoryRecord>
  readonly observations: Array<Observation>
  readonly log: (line: string) => void
}

/** Milliseconds since the run started. */
export const now = (run: Run) => Date.now() - run.t0

/** Any node, up or not: a request to a node that is down fails as a real client's would. */
export const anyNode = (run: Run, rng: Rng): ServerNode => rng.pick(run.fleet.nodes)

/** A node that is up, if there is one (else any). */
export const upNode = (run: Run, rng: Rng): ServerNode => {
  const up = run.fleet.nodes.filter((n) => n.state === "up")
  return rng.pick(up.length > 0 ? up : run.fleet.nodes)
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Redis again on its port (test-support/Redis.ts keeps the port it was first given, from the
 * ephemeral range): while it was down, a client socket of this machine may have taken that port
 * for a moment, so a failed start is tried again for a while.
 */
export const restartRedis = async (redis: RedisServer) => {
  for (let attempt = 1;; attempt++) {
    try {
      return await redis.restart()
    } catch (error) {
      if (attempt >= 20) throw error
      await sleep(500)
    }
  }
}
