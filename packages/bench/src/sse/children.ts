import { ROOMY_LIMITS_ENV } from "@herald/server"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import {
  freePort,
  SERVER,
  type Spawned,
  spawnProcess,
  withoutHeraldSettings
} from "../../../../test-support/Process.js"
import { attempt, repoRoot, sleep } from "../support.js"
import type { FromClient, FromFloor, ToClient, ToFloor } from "./protocol.js"

/**
 * The processes of the `sse` bench: the compiled Herald server on an embedded cluster, the floor
 * server, and the client processes — each its own OS process, so that the memory read from
 * /proc is the server's alone and no client shares an event loop with it.
 */

const HERE = path.dirname(fileURLToPath(import.meta.url))
const START_TIMEOUT_MS = 90_000
const STOP_TIMEOUT_MS = 20_000
/** What the bench asks for; kept only if the hard limit allows it (it is reported either way). */
const WANTED_FDS = 65_536

/** VmRSS of a process, in KB. */
export const rssKb = (pid: number) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (kb === null) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(kb[1])
}

/** The soft limit on open files of a process ("Max open files" in /proc/<pid>/limits). */
export const fdLimit = (pid: number | "self") => {
  const limits = fs.readFileSync(`/proc/${pid}/limits`, "utf8")
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits)
  return m === null || m[1] === "unlimited" ? Infinity : Number(m[1])
}

/**
 * VmRSS once it has stopped moving: read every 500 ms until two reads in a row are within
 * 256 KB of each other (at most 10 s), so that the start-up's or the warm-up's memory still being
 * given back does not hide what the connections add.
 */
export const restingRssKb = async (pid: number) => {
  let last = rssKb(pid)
  for (let i = 0; i < 20; i++) {
    await sleep(500)
    const again = rssKb(pid)
    const moved = Math.abs(again - last)
    last = again
    if (moved < 256) break
  }
  return last
}

// ---------------------------------------------------------------------------------------------
// Child processes with an IPC channel

interface IpcChild<In, Out> {
  readonly spawned: Spawned
  readonly pid: number
  /** Sends the message made with a fresh id; resolves with the child's answer of the same id. */
  readonly call: (make: (id: number) => In, timeoutMs: number) => Promise<Out>
  readonly send: (message: In) => void
  /** The next message without an id (e.g. `listening`). */
  readonly next: (timeoutMs: number) => Promise<Out>
}

const ipcChild = <In, Out extends { readonly type: string }>(script: string, env: Record<string, string | undefined>) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const spawned = spawnProcess(process.execPath, ["--import", "tsx", path.join(HERE, script)], env, { ipc: true })
      const waiting = new Map<number, { resolve: (m: Out) => void; reject: (e: Error) => void }>()
      const unsolicited: Array<(m: Out) => void> = []
      spawned.child.on("message", (m: Out & { id?: number }) => {
        const w = m.id === undefined ? undefined : waiting.get(m.id)
        if (w !== undefined) {
          waiting.delete(m.id!)
          w.resolve(m)
        } else {
          unsolicited.shift()?.(m)
        }
      })
      void spawned.exited.then(({ code, signal }) => {
        const error = new Error(`${script} exited (${code ?? signal}):\n${spawned.output().slice(-2000)}`)
        for (const w of waiting.values()) w.reject(error)
        waiting.clear()
      })
      let ids = 0
      const withTimeout = <A>(what: string, timeoutMs: number, p: Promise<A>) => {
        let timer: NodeJS.Timeout | undefined
        return Promise.race([
          p,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`${script}: no answer to ${what} within ${timeoutMs} ms`)),
              timeoutMs
            )
          })
        ]).finally(() => clearTimeout(timer))
      }
      const child: IpcChild<In, Out> = {
        spawned,
        pid: spawned.child.pid!,
        send: (message) => spawned.child.send(message as object),
        call: (make, timeoutMs) => {
          const id = ++ids
          const message = make(id)
          const answer = new Promise<Out>((resolve, reject) => waiting.set(id, { resolve, reject }))
          spawned.child.send(message as object)
          return withTimeout(String((message as { type?: string }).type), timeoutMs, answer)
        },
        next: (timeoutMs) =>
          withTimeout("start-up", timeoutMs, new Promise<Out>((resolve) => unsolicited.push(resolve)))
      }
      return child
    }),
    (child) => Effect.promise(() => child.spawned.stop(STOP_TIMEOUT_MS))
  )

export type Client = IpcChild<ToClient, FromClient>
export type Floor = IpcChild<ToFloor, FromFloor>

export const clientProcess = ipcChild<ToClient, FromClient>("client.ts", {})

/** The floor server, listening; its port. */
export const floorProcess = (heartbeatMs: number) =>
  Effect.gen(function*() {
    const floor = yield* ipcChild<ToFloor, FromFloor>("floor.ts", { HERALD_SSE_HEARTBEAT_MS: String(heartbeatMs) })
    const listening = yield* attempt("starting the floor server", () => floor.next(30_000))
    if (listening.type !== "listening") return yield* Effect.die(`the floor server said ${listening.type}`)
    return { floor, port: listening.port }
  })

// ---------------------------------------------------------------------------------------------
// The Herald server

export interface HeraldServer {
  readonly pid: number
  readonly port: number
  readonly fdLimit: number
  readonly output: () => string
}

/**
 * The compiled server (`node packages/server/dist/main.js`) on the embedded cluster in `dataDir`,
 * through a shell that first tries `ulimit -n 65536` (kept only where the hard limit allows);
 * ready (/health/ready); stopped with the scope (SIGTERM, which stops its cluster too).
 */
export const heraldServer = (dataDir: string, adminToken: string, heartbeatMs: number) =>
  Effect.acquireRelease(
    attempt("starting the server", async () => {
      const port = await freePort()
      const spawned = spawnProcess(
        "/bin/sh",
        ["-c", `ulimit -n ${WANTED_FDS} 2>/dev/null; exec "$0" "$@"`, process.execPath, ...SERVER],
        {
          ...withoutHeraldSettings(),
          HERALD_DATA_DIR: dataDir,
          HOST: "127.0.0.1",
          PORT: String(port),
          HERALD_ADMIN_TOKEN: adminToken,
          HERALD_SSE_HEARTBEAT_MS: String(heartbeatMs),
          // 100 connections a user and the set-up's burst of writes are over the default limits.
          ...ROOMY_LIMITS_ENV,
          // An access log line per request would measure the pipe; warnings and errors still show.
          LOG_LEVEL: "WARN",
          LOG_FORMAT: "json"
        },
        { cwd: repoRoot }
      )
      const deadline = Date.now() + START_TIMEOUT_MS
      while (Date.now() < deadline) {
        if (spawned.child.exitCode !== null) {
          throw new Error(`the server exited with ${spawned.child.exitCode}:\n${spawned.output()}`)
        }
        const ready = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok, () => false)
        if (ready) {
          const pid = spawned.child.pid!
          const server: HeraldServer = { pid, port, fdLimit: fdLimit(pid), output: spawned.output }
          return { spawned, server }
        }
        await sleep(100)
      }
      await spawned.stop(STOP_TIMEOUT_MS)
      throw new Error(`the server was not ready within ${START_TIMEOUT_MS / 1000} s:\n${spawned.output()}`)
    }),
    ({ spawned }) => Effect.promise(() => spawned.stop(STOP_TIMEOUT_MS))
  ).pipe(Effect.map(({ server }) => server))

/** The status one GET answers with (its body is not read: an SSE answer would never end). */
export const statusOf = (port: number, requestPath: string, token: string) =>
  new Promise<number>((resolve, reject) => {
    const req = http.get({
      host: "127.0.0.1",
      port,
      path: requestPath,
      agent: false,
      timeout: 15_000,
      headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" }
    }, (response) => {
      response.on("error", () => undefined)
      resolve(response.statusCode ?? 0)
      req.destroy()
    })
    req.on("timeout", () => req.destroy(new Error(`GET ${requestPath} timed out`)))
    req.on("error", reject)
  })

/** The server's own count of open SSE connections (herald_sse_connections in /metrics). */
export const sseConnectionsMetric = async (port: number) => {
  const body = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text())
  const m = /^herald_sse_connections(?:\{[^}]*\})? (\d+)/m.exec(body)
  return m === null ? NaN : Number(m[1])
}
