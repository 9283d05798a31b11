import { type ChildProcess, spawn } from "node:child_process"
import * as net from "node:net"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..")

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
  readonly output: () => string
  /** Resolves with the first match of `pattern` in stdout+stderr. */
  readonly waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** The production command (README, Dockerfile): the compiled server with plain node. */
export const SERVER = ["packages/server/dist/main.js"] as const

/** Runs `command args…` from the repository root with the test's environment plus `env`. */
export const spawnProcess = (
  command: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  options: { readonly cwd?: string; readonly uid?: number; readonly gid?: number } = {}
): Spawned => {
  const child = spawn(command, args, {
    cwd: options.cwd ?? repoRoot,
    env: { ...process.env, DATABASE_URL: undefined, ...env } as NodeJS.ProcessEnv,
    stdio: ["ignore", "pipe", "pipe"],
    ...(options.uid === undefined ? {} : { uid: options.uid }),
    ...(options.gid === undefined ? {} : { gid: options.gid })
  })
  let text = ""
  const listeners = new Set<() => void>()
  const onData = (chunk: Buffer) => {
    text += chunk.toString()
    for (const l of listeners) l()
  }
  child.stdout!.on("data", onData)
  child.stderr!.on("data", onData)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal }))
  )
  const waitFor = (pattern: RegExp, timeoutMs = 60_000) =>
    new Promise<RegExpMatchArray>((resolve, reject) => {
      const check = () => {
        const m = text.match(pattern)
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
      void exited.then(() => setTimeout(() => {
        listeners.delete(check)
        clearTimeout(timer)
        reject(new Error(`process exited before ${pattern}; output:\n${text}`))
      }, 50))
      check()
    })
  return { child, output: () => text, waitFor, exited }
}

/** The compiled server (`node packages/server/dist/main.js`), as the production command runs it. */
export const spawnServer = (env: Record<string, string | undefined>): Spawned => spawnProcess(process.execPath, SERVER, env)
