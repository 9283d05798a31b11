import { Effect } from "effect"
import { execFileSync, execSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { freePort, runProcess } from "./Process.js"

/**
 * Debian's PostgreSQL 15 server, for tests that need `pg_dump`/`pg_restore` matching the server:
 * the embedded test cluster is PostgreSQL 17, and bookworm's client tools (15) refuse newer
 * servers. On a machine without it, as root, it is installed with apt-get — telling
 * postgresql-common not to create (and start) the `main` cluster it makes by default; our cluster
 * is a throw-away one in a temp folder, on a free port, stopped and removed with the scope.
 */

export const PG15 = "/usr/lib/postgresql/15/bin"
const bin = (name: string) => path.join(PG15, name)

const NO_MAIN_CLUSTER = "/etc/postgresql-common/createcluster.d/herald-no-main-cluster.conf"

/** The binaries, installed if missing (as root); otherwise one line on how to get them. */
export const ensurePostgres15 = () => {
  const needed = ["initdb", "postgres", "pg_dump", "pg_restore"].map(bin)
  if (needed.every((file) => fs.existsSync(file))) return PG15
  if (process.getuid?.() !== 0) {
    throw new Error("this test needs Debian's PostgreSQL 15: run `sudo apt-get install -y postgresql-15`")
  }
  fs.mkdirSync(path.dirname(NO_MAIN_CLUSTER), { recursive: true })
  fs.writeFileSync(NO_MAIN_CLUSTER, "create_main_cluster = false\n")
  execSync("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15", {
    stdio: "ignore",
    timeout: 600_000
  })
  // Had a main cluster been made anyway (a config that overrides ours), it must not keep running.
  try {
    execFileSync("pg_ctlcluster", ["15", "main", "stop"], { stdio: "ignore" })
  } catch {
    // none, or not running
  }
  const missing = needed.filter((file) => !fs.existsSync(file))
  if (missing.length > 0) throw new Error(`apt-get install postgresql-15 did not provide ${missing.join(", ")}`)
  return PG15
}

/** As root, the cluster runs as the `postgres` user (initdb refuses root); that user comes with the package. */
const postgresIds = () => {
  if (process.getuid?.() !== 0) return undefined
  const id = (flag: string) => Number(execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim())
  return { uid: id("-u"), gid: id("-g") }
}

export interface DebianCluster {
  /** A superuser URL of the database `herald` on the cluster. */
  readonly url: string
  /** `pg_dump -Fc` of that database into `file`. */
  readonly dump: (file: string) => Effect.Effect<void>
  /** `file` restored as that database, dropped and re-created (nothing may be connected). */
  readonly restore: (file: string) => Effect.Effect<void>
  /** A folder for dumps, removed with the cluster. */
  readonly dir: string
}

const USER = "herald"

/** Runs one of the cluster's client tools to its end; fails the test with its output otherwise. */
const tool = (name: string, args: ReadonlyArray<string>, password: string) =>
  Effect.promise(async () => {
    const { finished } = runProcess(bin(name), args, { PGPASSWORD: password }, { timeoutMs: 120_000 })
    const done = await finished
    if (done.code !== 0) throw new Error(`${name} ${args.join(" ")} exited with ${done.code}:\n${done.stderr}`)
  })

/**
 * A fresh PostgreSQL 15 cluster (initdb in a temp folder, password auth, loopback TCP only, fsync off)
 * with a database `herald`; stopped and deleted when the scope closes.
 */
export const debianCluster = Effect.acquireRelease(
  Effect.promise(() => {
    ensurePostgres15()
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-pg15-"))
    // A start that fails leaves nothing behind (the release only runs after a successful start).
    return start(dir).catch((error) => {
      fs.rmSync(dir, { recursive: true, force: true })
      throw error
    })
  }),
  ({ child, dir, exited }) =>
    Effect.promise(async () => {
      // Fast shutdown, then immediate if it lingers.
      child.kill("SIGINT")
      const timer = setTimeout(() => child.kill("SIGQUIT"), 10_000)
      await exited
      clearTimeout(timer)
      fs.rmSync(dir, { recursive: true, force: true })
    })
).pipe(Effect.map(({ cluster }) => cluster))

/** initdb in `dir`, the postmaster on a free port, the database `herald` created. */
const start = async (dir: string) => {
  const ids = postgresIds()
  fs.chmodSync(dir, 0o755)
  const pgdata = path.join(dir, "data")
  const password = randomBytes(12).toString("hex")
  const pwfile = path.join(dir, "pw")
  fs.mkdirSync(pgdata, { mode: 0o700 })
  fs.writeFileSync(pwfile, password + "\n", { mode: 0o600 })
  if (ids !== undefined) { for (const p of [pgdata, pwfile]) fs.chownSync(p, ids.uid, ids.gid) }
  const init = runProcess(
    bin("initdb"),
    [
      `--pgdata=${pgdata}`,
      "--auth=scram-sha-256",
      `--username=${USER}`,
      `--pwfile=${pwfile}`,
      "--encoding=UTF8",
      "--no-sync"
    ],
    { LC_ALL: "C" },
    { ...ids, timeoutMs: 120_000, cwd: dir }
  )
  const initialized = await init.finished
  if (initialized.code !== 0) throw new Error(`initdb exited with ${initialized.code}:\n${initialized.stderr}`)
  fs.rmSync(pwfile)

  const port = await freePort()
  const log = fs.openSync(path.join(dir, "postgres.log"), "a")
  const child = spawn(bin("postgres"), [
    "-D",
    pgdata,
    "-p",
    String(port),
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    "unix_socket_directories=", // TCP only: no socket in a folder the postgres user cannot write
    "-c",
    "fsync=off",
    "-c",
    "max_connections=100"
  ], { ...ids, cwd: dir, stdio: ["ignore", log, log], env: { ...process.env, LC_ALL: "C" } })
  fs.closeSync(log)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const url = (database: string) => `postgres://${USER}:${password}@127.0.0.1:${port}/${database}`
  const deadline = Date.now() + 30_000
  for (;;) {
    const client = new pg.Client({ connectionString: url("postgres") })
    try {
      await client.connect()
      await client.query("CREATE DATABASE herald")
      await client.end()
      break
    } catch (error) {
      await client.end().catch(() => undefined)
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill("SIGQUIT")
        throw new Error(
          `PostgreSQL 15 did not start: ${String(error)}\n${fs.readFileSync(path.join(dir, "postgres.log"), "utf8")}`
        )
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  const target = url("herald")
  const cluster: DebianCluster = {
    url: target,
    dir,
    dump: (file) => tool("pg_dump", ["-Fc", "-f", file, "-d", target], password),
    // The whole database is dropped and re-created from the dump (`--clean --create`, connected to
    // `postgres`): an object-by-object `--clean` cannot drop the constraints a partitioned
    // table's partitions inherit, so it fails on event_log.
    restore: (file) =>
      tool(
        "pg_restore",
        ["--clean", "--create", "--if-exists", "--exit-on-error", "-d", url("postgres"), file],
        password
      )
  }
  return { cluster, child, exited, dir }
}
