import { execSync } from "node:child_process"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { freePort, type Spawned, spawnProcess } from "./Process.js"

/**
 * A real Redis for the tests and the fleet bench: Debian's `redis-server`, never a mock. On a
 * machine without it, as root, it is installed with apt-get; otherwise one line says how to.
 * Each caller starts its own server on a free loopback port, without persistence (a SIGKILL
 * loses whatever it held, which is the harsh case the broker must survive).
 */

export const REDIS_SERVER = "/usr/bin/redis-server"

export const ensureRedisServer = () => {
  if (fs.existsSync(REDIS_SERVER)) return REDIS_SERVER
  if (process.getuid?.() !== 0) {
    throw new Error("redis tests need Debian's redis-server: run `sudo apt-get install -y redis-server`")
  }
  execSync(
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server",
    { stdio: "ignore", timeout: 600_000 }
  )
  if (!fs.existsSync(REDIS_SERVER)) throw new Error(`apt-get install redis-server did not provide ${REDIS_SERVER}`)
  return REDIS_SERVER
}

export interface RedisServer {
  readonly port: number
  /** `redis://127.0.0.1:<port>`, what REDIS_URL is set to. */
  readonly url: string
  /** The running server process (a new one after each `restart`). */
  readonly process: () => Spawned
  /** SIGKILL: the server dies at once and its data with it. */
  readonly kill: () => Promise<void>
  /** A new, empty server on the same port (after `kill` or `stop`). */
  readonly restart: () => Promise<void>
  /** SIGTERM, then removes its directory. */
  readonly stop: () => Promise<void>
}

const READY = /Ready to accept connections/

/** Starts `redis-server` on a free 127.0.0.1 port (installing it first if need be); resolves once it accepts connections. */
export const startRedis = async (): Promise<RedisServer> => {
  const command = ensureRedisServer()
  const port = await freePort()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-redis-"))
  const launch = async () => {
    const spawned = spawnProcess(command, [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
      "--daemonize",
      "no"
    ], {})
    try {
      await spawned.waitFor(READY, 30_000)
    } catch (error) {
      await spawned.stop(1_000)
      throw error
    }
    return spawned
  }
  let current = await launch()
  const exitedNow = async () => {
    if (current.child.exitCode !== null || current.child.signalCode !== null) return
    current.child.kill("SIGKILL")
    await current.exited
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    process: () => current,
    kill: exitedNow,
    restart: async () => {
      await exitedNow()
      current = await launch()
    },
    stop: async () => {
      await current.stop(5_000)
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}
