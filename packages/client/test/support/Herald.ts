import * as net from "node:net"
import { freePort, type Spawned, spawnServer } from "../../../../test-support/Process.js"

/**
 * A real Herald for the client's tests: the compiled server on a database of its own, on a fixed
 * port so that it can be stopped and started again (a restart) where its clients expect it, behind
 * a TCP proxy that can cut every connection at once (a network fault the server does not see
 * coming).
 */

export const ADMIN_TOKEN = "client-test-admin"

export interface Herald {
  /** Where clients connect: the proxy. */
  readonly baseUrl: string
  /** The server itself, bypassing the proxy. */
  readonly serverUrl: string
  /** Creates a user through the admin endpoint: its id and token. */
  readonly user: (name: string) => Promise<{ readonly id: string; readonly token: string }>
  /** SIGTERM, then the same server again on the same port and database. */
  readonly restart: (between?: () => Promise<void>) => Promise<void>
  /** Every client connection through the proxy is destroyed (the server sees resets). */
  readonly cut: () => void
  readonly stop: () => Promise<void>
}

const startServer = async (port: number, env: Record<string, string>) => {
  const proc = spawnServer({ ...env, PORT: String(port), HERALD_ADMIN_TOKEN: ADMIN_TOKEN, HERALD_BROKER: "memory" })
  await proc.waitFor(/API docs at/, 30_000)
  return proc
}

/** A TCP proxy to `target` on a free port. */
const proxy = async (target: number) => {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1")
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on("close", () => sockets.delete(s))
      s.on("error", () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  const port = await freePort()
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  return {
    port,
    cut: () => {
      for (const s of sockets) s.destroy()
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => resolve())
      })
  }
}

export const startHerald = async (databaseUrl: string, env: Record<string, string> = {}): Promise<Herald> => {
  const port = await freePort()
  const fullEnv = { DATABASE_URL: databaseUrl, ...env }
  let proc: Spawned = await startServer(port, fullEnv)
  const front = await proxy(port)
  const serverUrl = `http://127.0.0.1:${port}`
  return {
    baseUrl: `http://127.0.0.1:${front.port}`,
    serverUrl,
    user: async (name) => {
      const res = await fetch(`${serverUrl}/api/admin/users`, {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ name })
      })
      if (res.status !== 201) throw new Error(`creating a user: ${res.status} ${await res.text()}`)
      return await res.json() as { id: string; token: string }
    },
    restart: async (between) => {
      await proc.stop()
      await between?.()
      proc = await startServer(port, fullEnv)
    },
    cut: front.cut,
    stop: async () => {
      await front.close()
      await proc.stop()
    }
  }
}

/** Polls `check` every 50 ms until it holds; throws after `timeoutMs` with `describe()`. */
export const until = async (what: string, check: () => boolean, timeoutMs = 20_000, describe?: () => unknown) => {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${describe ? `; saw ${JSON.stringify(describe())}` : ""}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** `promise`, or a rejection naming `what` after `ms` (a hang is a failure that says where). */
export const within = <A>(ms: number, what: string, promise: Promise<A>): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}
