import { ROOMY_LIMITS_ENV } from "@herald/server"
import { Effect, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import * as http from "node:http"
import { freePort, runProcess, SERVER, type Spawned, spawnProcess } from "../../../test-support/Process.js"
import { attempt, requestJson } from "./support.js"

/**
 * The server as its own OS process on a database the bench started, for the benches that read it
 * from /proc or time it from outside: `write` and `deliver` run the compiled bundle as the
 * production command does (`node packages/server/dist/main.js`).
 */

const START_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 15_000

export interface HeraldProcess {
  readonly spawned: Spawned
  readonly pid: number
  readonly port: number
  readonly adminToken: string
}

export interface HeraldOptions {
  /** Node's own flags and the entry module, e.g. `["packages/server/dist/main.js"]`. */
  readonly args: ReadonlyArray<string>
  /** More variables, or `undefined` to remove one. */
  readonly env?: Record<string, string | undefined>
}

/**
 * Starts the server on a free 127.0.0.1 port against `databaseUrl`, with an admin token, the memory
 * broker, the publisher and materializer inside it (the defaults) and — unless `env` says otherwise — no
 * per-request access log;
 * resolves once it says it is up. Stopped with the scope: SIGTERM, so it shuts down as in
 * production (and writes a `--cpu-prof` profile), SIGKILL after 15 s.
 */
export const heraldProcess = (databaseUrl: Redacted.Redacted, options: HeraldOptions) =>
  Effect.acquireRelease(
    attempt("starting the server process", async () => {
      const port = await freePort()
      const adminToken = randomBytes(16).toString("hex")
      // HERALD_* variables of the bench's environment reach the server; these win over them.
      const spawned = spawnProcess(process.execPath, options.args, {
        DATABASE_URL: Redacted.value(databaseUrl),
        HOST: "127.0.0.1",
        PORT: String(port),
        HERALD_ADMIN_TOKEN: adminToken,
        HERALD_BROKER: "memory",
        HERALD_CHAOS_PUBLISH_FAILURE_RATE: "0",
        // A bench measures throughput: its load (one user, thousands of posts) must not meet the limits.
        ...ROOMY_LIMITS_ENV,
        // Per-request access logs would measure the pipe; warnings and errors still show.
        LOG_LEVEL: "WARN",
        LOG_FORMAT: "json",
        ...options.env
      })
      const stop = () => spawned.stop(STOP_TIMEOUT_MS)
      try {
        await spawned.waitFor(/Herald is up/, START_TIMEOUT_MS)
      } catch (error) {
        await stop()
        throw error
      }
      const server: HeraldProcess = { spawned, pid: spawned.child.pid!, port, adminToken }
      return { server, stop }
    }),
    ({ stop }) => Effect.promise(stop)
  ).pipe(Effect.map(({ server }) => server))

/**
 * The production command, `node [nodeArgs] packages/server/dist/main.js`, as `npm start` runs it
 * (but not under npm: `npm_lifecycle_event` removed, so it does not watch for its launcher).
 */
export const compiledServer = (databaseUrl: Redacted.Redacted, nodeArgs: ReadonlyArray<string> = []) =>
  heraldProcess(databaseUrl, {
    args: [...nodeArgs, ...SERVER],
    // Logging as in production (LOG_LEVEL=info, pretty): the access log is part of what a post costs.
    env: { npm_lifecycle_event: undefined, LOG_LEVEL: undefined, LOG_FORMAT: undefined }
  })

/** `node scripts/build.mjs`: the bundles `compiledServer` runs, from the sources as they are now. */
export const buildServer = attempt("node scripts/build.mjs", async () => {
  const { code, stderr, stdout } = await runProcess(process.execPath, ["scripts/build.mjs"], {}, {
    timeoutMs: 120_000
  }).finished
  if (code !== 0) throw new Error(`exit ${code}:\n${stdout}${stderr}`)
})

/** A user (through the admin API) and `projects` projects it owns, named `${name} 1…n`, over one keep-alive socket. */
export const userWithProjects = (server: HeraldProcess, name: string, projects: number) =>
  attempt("creating the user and its projects over HTTP", async () => {
    const { token } = await requestJson<{ token: string }>({
      port: server.port,
      method: "POST",
      path: "/api/admin/users",
      token: server.adminToken,
      body: { name }
    }, 201)
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
    try {
      const projectIds: Array<string> = []
      for (let i = 1; i <= projects; i++) {
        const project = await requestJson<{ id: string }>({
          port: server.port,
          method: "POST",
          path: "/api/projects",
          token,
          body: { name: `${name} ${i}` },
          agent
        }, 201)
        projectIds.push(project.id)
      }
      return { token, projectIds }
    } finally {
      agent.destroy()
    }
  })
