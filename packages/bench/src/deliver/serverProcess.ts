import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { freePort, spawnProcess } from "../../../../test-support/Process.js"
import { attempt, requestJson } from "../support.js"
import type { Target } from "./common.js"

/**
 * The server as its own OS process (`node --import tsx packages/server/src/main.ts`, as
 * `npm start` runs it), so its memory can be read from /proc without the bench's own in it.
 */

const ENTRY = "packages/server/src/main.ts"
const PROBE = path.join(path.dirname(fileURLToPath(import.meta.url)), "memoryProbe.ts")
const START_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 15_000

export interface MemoryUsage {
  /** false when the process was started without --expose-gc (then nothing was collected). */
  readonly gc: boolean
  readonly rss: number
  readonly heapTotal: number
  readonly heapUsed: number
  readonly external: number
  readonly arrayBuffers: number
}

export interface ServerProcess {
  readonly pid: number
  readonly port: number
  readonly adminToken: string
  /** VmRSS from /proc/<pid>/status, in bytes, as it is (no collection first). */
  readonly rss: () => number
  /** A full GC in the server, then its `process.memoryUsage()`. */
  readonly collect: () => Promise<MemoryUsage>
  /** CPU time (user + system) the server process has used so far, in ms (10 ms resolution). */
  readonly cpuMs: () => number
}

export const readRss = (pid: number) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (kb === null) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(kb[1]) * 1024
}

/** utime + stime of a process from /proc/<pid>/stat, in ms (USER_HZ is 100 on Linux). */
export const readCpuMs = (pid: number) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  // The fields after the command name (which may hold spaces) start at state, field 3.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Starts the server on a free 127.0.0.1 port against `databaseUrl`; stops it with the scope. */
export const serverProcess = (databaseUrl: Redacted.Redacted) =>
  Effect.acquireRelease(
    attempt("starting the server process", async () => {
      const port = await freePort()
      const adminToken = randomBytes(16).toString("hex")
      const spawned = spawnProcess(process.execPath, ["--expose-gc", "--import", "tsx", "--import", PROBE, ENTRY], {
        DATABASE_URL: Redacted.value(databaseUrl),
        HOST: "127.0.0.1",
        PORT: String(port),
        HERALD_ADMIN_TOKEN: adminToken,
        HERALD_BROKER: "memory",
        HERALD_CHAOS_PUBLISH_FAILURE_RATE: "0",
        // Per-request access logs would measure the pipe; warnings and errors still show.
        LOG_LEVEL: "WARN",
        LOG_FORMAT: "json"
      })
      const stop = () => spawned.stop(STOP_TIMEOUT_MS)
      try {
        await spawned.waitFor(/Herald is up/, START_TIMEOUT_MS)
      } catch (error) {
        await stop()
        throw error
      }
      const pid = spawned.child.pid!
      const server: ServerProcess = {
        pid,
        port,
        adminToken,
        rss: () => readRss(pid),
        cpuMs: () => readCpuMs(pid),
        collect: async () => {
          const line = spawned.waitFor(/bench-memory (\{.*\})\n/, 30_000, spawned.output().length)
          spawned.child.kill("SIGUSR2")
          return JSON.parse((await line)[1]!) as MemoryUsage
        }
      }
      return { server, stop }
    }),
    ({ stop }) => Effect.promise(stop)
  ).pipe(Effect.map(({ server }) => server))

/** A user (through the admin endpoint) and a project of theirs on a server process. */
export const makeTarget = (server: ServerProcess, name: string) =>
  attempt("creating a user and a project", async (): Promise<Target> => {
    const user = await requestJson<{ token: string }>({
      port: server.port,
      method: "POST",
      path: "/api/admin/users",
      token: server.adminToken,
      body: { name }
    }, 201)
    const project = await requestJson<{ id: string }>({
      port: server.port,
      method: "POST",
      path: "/api/projects",
      token: user.token,
      body: { name: `${name} project` }
    }, 201)
    return { port: server.port, token: user.token, projectId: project.id }
  })
