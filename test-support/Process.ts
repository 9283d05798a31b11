import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { ROOMY_LIMITS_ENV } from "../packages/server/src/limits/Limits.js"

/**
 * Child processes as the tests and the benches run them: a free port, one spawner that collects
 * the output and waits for lines in it, and the commands people run (the compiled server).
 */

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")

export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address() as net.AddressInfo
      server.close(() => resolve(address.port))
    })
  })

export interface Spawned {
  readonly child: ChildProcess
  /** stdout and stderr as they arrived, interleaved. */
  readonly output: () => string
  readonly stdout: () => string
  readonly stderr: () => string
  /**
   * Resolves with the first match of `pattern` in the output (from offset `from` of `output()`);
   * rejects after `timeoutMs` or once the process has exited without it.
   */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number, from?: number) => Promise<RegExpMatchArray>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Resolves once the process has exited and its output has been read to the end. */
  readonly closed: Promise<void>
  /** SIGTERM, then SIGKILL if it is still running after `graceMs`; resolves once it has exited. */
  readonly stop: (graceMs?: number) => Promise<void>
}

export interface SpawnOptions {
  readonly cwd?: string
  readonly uid?: number
  readonly gid?: number
  /** An IPC channel to the child (`child.send`, `process.send`). */
  readonly ipc?: boolean
}

/**
 * Runs `command args…` (from the repository root unless `cwd` says otherwise) with this
 * process's environment plus `env`; an `undefined` in `env` removes the variable. DATABASE_URL
 * is never inherited: a child is always told which database it talks to.
 */
export const spawnProcess = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  options: SpawnOptions = {}
): Spawned => {
  const child = spawn(command, args, {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, DATABASE_URL: undefined, ...env } as NodeJS.ProcessEnv,
    stdio: options.ipc ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe"],
    ...(options.uid === undefined ? {} : { uid: options.uid }),
    ...(options.gid === undefined ? {} : { gid: options.gid })
  })
  let text = ""
  let stdout = ""
  let stderr = ""
  const listeners = new Set<() => void>()
  // Decoded by stream (setEncoding): a character split across two chunks stays whole.
  const onData = (stream: "stdout" | "stderr") => (s: string) => {
    text += s
    if (stream === "stdout") stdout += s
    else stderr += s
    for (const l of [...listeners]) l()
  }
  child.stdout!.setEncoding("utf8").on("data", onData("stdout"))
  child.stderr!.setEncoding("utf8").on("data", onData("stderr"))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()))
  let hasExited = false
  void exited.then(() => (hasExited = true))
  const waitFor = (pattern: RegExp, timeoutMs = 60_000, from = 0) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = text.slice(from).match(pattern)
        if (m) {
          listeners.delete(check)
          clearTimeout(timer)
          resolve(m)
        }
      }
      const timer = setTimeout(() => {
        listeners.delete(check)
        reject(new Error(`timed out waiting for ${pattern}; output so far:\n${text}`))
      }, timeoutMs)
      listeners.add(check)
      void exited.then(() =>
        setTimeout(() => {
          listeners.delete(check)
          clearTimeout(timer)
          reject(new Error(`process exited before ${pattern}; output:\n${text}`))
        }, 50)
      )
      check()
    })
  const stop = async (graceMs = 15_000) => {
    if (hasExited) return
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs)
    await exited
    clearTimeout(timer)
  }
  return { child, output: () => text, stdout: () => stdout, stderr: () => stderr, waitFor, exited, closed, stop }
}

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** Wall time from spawn to exit. */
  readonly ms: number
}

/**
 * Runs a command to its end: resolves once it has exited and its output is read. After
 * `timeoutMs` it is killed and the promise rejects with what it wrote.
 */
export const runProcess = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  options: SpawnOptions & { readonly timeoutMs?: number } = {}
): { readonly spawned: Spawned; readonly finished: Promise<Finished> } => {
  const started = performance.now()
  const spawned = spawnProcess(command, args, env, options)
  const finished = new Promise<Finished>((resolve, reject) => {
    const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
      spawned.child.kill("SIGKILL")
      reject(
        new Error(
          `${[command, ...args].join(" ")} did not exit within ${options.timeoutMs} ms\n` +
            `stdout:\n${spawned.stdout()}\nstderr:\n${spawned.stderr()}`
        )
      )
    }, options.timeoutMs)
    spawned.child.on("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    void spawned.exited.then(async ({ code, signal }) => {
      const ms = performance.now() - started
      await spawned.closed
      clearTimeout(timer)
      resolve({ code, signal, stdout: spawned.stdout(), stderr: spawned.stderr(), ms })
    })
  })
  return { spawned, finished }
}

/**
 * Every variable of this environment that Herald reads (DATABASE_URL, HERALD_*, OTEL_*, LOG_LEVEL,
 * LOG_FORMAT), set to `undefined`: spread into a child's `env`, it runs with only the settings it
 * is given.
 */
export const withoutHeraldSettings = (): Record<string, undefined> =>
  Object.fromEntries(
    Object.keys(process.env)
      .filter((key) =>
        key === "DATABASE_URL" || key.startsWith("HERALD_") || key.startsWith("OTEL_") || key === "LOG_LEVEL" ||
        key === "LOG_FORMAT"
      )
      .map((key) => [key, undefined])
  )

/** The production command (README, Dockerfile): the compiled server with plain node. */
export const SERVER = ["packages/server/dist/main.js"] as const

/**
 * The compiled server (`node packages/server/dist/main.js`), as the production command runs it —
 * with roomy limits (ROOMY_LIMITS_ENV) unless `env` sets them: a test of something else must not
 * trip over its 41st post.
 */
export const spawnServer = (env: Record<string, string | undefined>): Spawned =>
  spawnProcess(process.execPath, SERVER, { ...ROOMY_LIMITS_ENV, ...env })

/** One JSON request to a server process with a bearer token: its status and parsed body. */
export const api = async (url: string, method: string, path: string, token: string, body?: unknown) => {
  const res = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: res.status, body: await res.json() as any }
}

/** Polls `probe` every 50 ms until it answers `{ done }`; rejects after `timeoutMs`, saying what it last saw. */
export const pollUntil = async <A>(
  what: string,
  probe: () => Promise<{ readonly done: A } | { readonly seen: unknown }>,
  timeoutMs: number
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    const result = await probe()
    if ("done" in result) return result.done
    last = result.seen
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last)}`)
}

/** `GET /health/ready` of a server: its status and its checks. */
export const readiness = async (url: string) => {
  const res = await fetch(`${url}/health/ready`)
  return { status: res.status, checks: ((await res.json()) as { checks?: Record<string, string> }).checks ?? {} }
}

/** Waits until `GET /health/ready` answers `status`, with a broker check matching `broker` if given. */
export const readinessBecomes = (url: string, status: number, timeoutMs: number, broker?: RegExp) =>
  pollUntil(
    `${url}/health/ready to answer ${status}${broker === undefined ? "" : ` with broker ${broker}`}`,
    async () => {
      const r = await readiness(url)
      return r.status === status && (broker === undefined || broker.test(r.checks.broker ?? ""))
        ? { done: r }
        : { seen: r }
    },
    timeoutMs
  )

/** A compiled server process on a free port, with the URL it answers on. */
export interface ServerNode {
  readonly proc: Spawned
  readonly url: string
}

/** Starts the compiled server on a free port with `env` (DATABASE_URL among it); resolves once it serves. */
export const startServerNode = async (env: Record<string, string | undefined>): Promise<ServerNode> => {
  const port = await freePort()
  const proc = spawnServer({ PORT: String(port), ...env })
  await proc.waitFor(/API docs at/)
  return { proc, url: `http://127.0.0.1:${port}` }
}

/** SIGTERM to every node; resolves with how each ended and how long it took (G8: exit 0 within 10 s). */
export const stopServerNodes = (nodes: ReadonlyArray<ServerNode>) =>
  Promise.all(nodes.map(async (n) => {
    const started = Date.now()
    await n.proc.stop()
    return { code: (await n.proc.exited).code, ms: Date.now() - started, output: n.proc.output() }
  }))
