import { Effect, type Redacted } from "effect"
import { readCpuMs, readRss } from "../proc.js"
import { heraldProcess } from "../serverProcess.js"
import { attempt, requestJson } from "../support.js"
import type { Target } from "./common.js"

/**
 * The server as its own OS process (`node --import tsx packages/server/src/main.ts`), so its
 * memory can be read from /proc without the bench's own in it.
 */

export { readCpuMs, readRss }

const ENTRY = "packages/server/src/main.ts"

export interface ServerProcess {
  readonly pid: number
  readonly port: number
  readonly adminToken: string
  /** VmRSS from /proc/<pid>/status, in bytes, as it is (no collection first). */
  readonly rss: () => number
  /** CPU time (user + system) the server process has used so far, in ms (10 ms resolution). */
  readonly cpuMs: () => number
}

/** Starts the server on a free 127.0.0.1 port against `databaseUrl`; stops it with the scope. */
export const serverProcess = (databaseUrl: Redacted.Redacted) =>
  heraldProcess(databaseUrl, { args: ["--import", "tsx", ENTRY] }).pipe(
    Effect.map(({ adminToken, pid, port }): ServerProcess => ({
      pid,
      port,
      adminToken,
      rss: () => readRss(pid),
      cpuMs: () => readCpuMs(pid)
    }))
  )

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
