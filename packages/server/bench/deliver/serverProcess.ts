import { Effect, Redacted } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { attempt, repoRoot, requestJson, sleep } from "../support.js"
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

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })

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
      const child = spawn(process.execPath, ["--expose-gc", "--import", "tsx", "--import", PROBE, ENTRY], {
        cwd: repoRoot,
        env: {
          ...process.env,
          DATABASE_URL: Redacted.value(databaseUrl),
          HOST: "127.0.0.1",
          PORT: String(port),
          HERALD_ADMIN_TOKEN: adminToken,
          HERALD_BROKER: "memory",
          HERALD_CHAOS_PUBLISH_FAILURE_RATE: "0",
          // Per-request access logs would measure the pipe; warnings and errors still show.
          LOG_LEVEL: "WARN",
          LOG_FORMAT: "json"
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let output = ""
      const listeners = new Set<() => void>()
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        // Keep what is needed to find the next probe line; the rest would only grow.
        if (output.length > 1_000_000) output = output.slice(-100_000)
        for (const l of [...listeners]) l()
      }
      child.stdout!.on("data", onData)
      child.stderr!.on("data", onData)
      let exited = false
      const exit = new Promise<void>((resolve) =>
        child.on("exit", () => {
          exited = true
          for (const l of [...listeners]) l()
          resolve()
        })
      )
      /** The first match of `pattern` in the output after `from`. */
      const waitFor = (pattern: RegExp, from: number, timeoutMs: number) =>
        new Promise<RegExpMatchArray>((resolve, reject) => {
          const check = () => {
            const m = output.slice(from).match(pattern)
            if (m !== null) {
              done()
              resolve(m)
            } else if (exited) {
              done()
              reject(new Error(`the server exited; its output:\n${output.slice(-4000)}`))
            }
          }
          const timer = setTimeout(() => {
            done()
            reject(new Error(`timed out waiting for ${pattern}; server output:\n${output.slice(-4000)}`))
          }, timeoutMs)
          const done = () => {
            clearTimeout(timer)
            listeners.delete(check)
          }
          listeners.add(check)
          check()
        })
      const stop = async () => {
        if (exited) return
        child.kill("SIGTERM")
        const stopped = await Promise.race([exit.then(() => true), sleep(STOP_TIMEOUT_MS).then(() => false)])
        if (!stopped) {
          child.kill("SIGKILL")
          await exit
        }
      }
      try {
        await waitFor(/Herald is up/, 0, START_TIMEOUT_MS)
      } catch (error) {
        await stop()
        throw error
      }
      const server: ServerProcess = {
        pid: child.pid!,
        port,
        adminToken,
        rss: () => readRss(child.pid!),
        cpuMs: () => readCpuMs(child.pid!),
        collect: async () => {
          const from = output.length
          const line = waitFor(/bench-memory (\{.*\})\n/, from, 30_000)
          child.kill("SIGUSR2")
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
