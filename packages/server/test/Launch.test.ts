import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { freePort, repoRoot, type Spawned, spawnProcess, spawnServer } from "../../../test-support/Process.js"
import { connectSse } from "../../../test-support/SseClient.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { SHARED_ROOT } from "../src/db/EmbeddedPostgres.js"
import { execForm, parseEnv, readDockerfile, type Stage } from "./support/Dockerfile.js"

/**
 * Herald as a new user and an operator run it: built from a fresh copy in a folder no other user
 * can enter, started with `npm start` and signalled through npm, the Dockerfile's own build and
 * start commands, and a restart while the previous server is still shutting down.
 */

const isRoot = process.getuid?.() === 0

// ------------------------------------------------------------------------------------------------
// Processes

/** `pid` and every process below it (Linux /proc). */
const processTree = async (pid: number): Promise<Array<number>> => {
  const parents = new Map<number, number>()
  for (const entry of await fs.readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await fs.readFile(`/proc/${entry}/stat`, "utf8").catch(() => undefined)
    // pid (comm) state ppid …; comm may hold spaces and parentheses: read after the last ')'.
    if (stat !== undefined) parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]))
  }
  const tree = [pid]
  for (let i = 0; i < tree.length; i++) {
    for (const [child, parent] of parents) if (parent === tree[i]) tree.push(child)
  }
  return tree
}

const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Resolves with the processes still alive after `ms` (none, when all went away in time). */
const survivors = async (pids: ReadonlyArray<number>, ms: number) => {
  const deadline = Date.now() + ms
  while (pids.some(isAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
  return pids.filter(isAlive)
}

const get = async (url: string, token?: string) => {
  const res = await fetch(url, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } })
  return { status: res.status, body: await res.json() as any }
}

// ------------------------------------------------------------------------------------------------
// Folders

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
})

/** A new folder as `mktemp -d` makes it: mode 0700, so the `postgres` user cannot enter it. */
const privateFolder = async (prefix: string) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix))
  cleanups.push(() => fs.rm(dir, { recursive: true, force: true }))
  return dir
}

/** As root, the cluster of a private data dir lives under SHARED_ROOT: remove it after the test. */
const forgetCluster = (dataDir: string) =>
  cleanups.push(async () => {
    const target = await fs.readlink(path.join(dataDir, "pg")).catch(() => undefined)
    if (target?.startsWith(SHARED_ROOT)) await fs.rm(path.dirname(target), { recursive: true, force: true })
  })

/** npm run by a test must not inherit the settings of the `npm test` that runs the suite. */
const freshNpm = Object.fromEntries(
  Object.keys(process.env).filter((k) => k.toLowerCase().startsWith("npm_") || k === "INIT_CWD").map((
    k
  ) => [k, undefined])
)

// ------------------------------------------------------------------------------------------------
// The Dockerfile's build context

/** `COPY . .`: the working tree without what `.dockerignore` leaves out (git already leaves out the ignored). */
const copyContext = async (to: string) => {
  const ignore = (await fs.readFile(path.join(repoRoot, ".dockerignore"), "utf8")).split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#")).map((l) => l.replace(/^\*\*\//, ""))
  const glob = (pattern: string) =>
    new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}$`)
  const ignored = (file: string) => file.split("/").some((segment) => ignore.some((p) => glob(p).test(segment)))
  const list = await new Promise<string>((resolve, reject) => {
    const git = spawnProcess("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {})
    void git.exited.then(({ code }) => code === 0 ? resolve(git.output()) : reject(new Error(git.output())))
  })
  for (const file of list.split("\n").filter((f) => f !== "" && !ignored(f))) {
    const source = path.join(repoRoot, file)
    if (!(await fs.lstat(source).then((s) => s.isFile(), () => false))) continue
    await fs.mkdir(path.dirname(path.join(to, file)), { recursive: true })
    await fs.copyFile(source, path.join(to, file))
  }
}

const runShell = async (command: string, cwd: string, env: Record<string, string | undefined> = {}) => {
  const proc = spawnProcess("sh", ["-c", command], env, { cwd })
  const { code } = await proc.exited
  return { code, output: proc.output() }
}

// ------------------------------------------------------------------------------------------------

describe.sequential("a fresh copy in a private folder, built with the Dockerfile's commands", () => {
  let stages: Array<Stage>
  let app: string // the build stage's WORKDIR, inside a 0700 folder

  it("the build stage: COPY . . and its RUN commands (npm ci, which compiles) succeed in a 0700 folder", async () => {
    stages = await readDockerfile()
    expect(stages).toHaveLength(2)
    const build = stages[0]!
    expect(build.name).toBe("build")
    app = path.join(await privateFolder("herald-clone-"), "herald")
    await copyContext(app)
    const runs = build.instructions.filter((i) => i.op === "RUN")
    expect(runs.map((r) => r.args)).toContain("npm ci --no-audit --no-fund")
    for (const { args } of runs) {
      const { code, output } = await runShell(args, app, { ...freshNpm, npm_config_loglevel: "error" })
      expect(code, output).toBe(0)
    }
    await fs.access(path.join(app, "packages/server/dist/main.js"))
    await fs.access(path.join(app, "packages/cli/dist/bin.js"))
  }, 300_000)

  it(
    "npm start there as the user who cloned it: ready with an SSE stream open; SIGTERM to npm ends the stream, exits 0 within 10 s, and leaves no process",
    async () => {
      const port = await freePort()
      forgetCluster(path.join(app, ".herald"))
      const npm = spawnProcess("npm", ["start"], { ...freshNpm, PORT: String(port) }, { cwd: app })
      const [, token] = await npm.waitFor(/demo token:\s+(\S+)/, 120_000)
      const [, projectId] = await npm.waitFor(/project id:\s+(\S+)/)
      await npm.waitFor(/Herald is up/)
      const url = `http://127.0.0.1:${port}`
      expect((await get(`${url}/health/ready`)).status).toBe(200)
      if (isRoot) {
        // PostgreSQL's files cannot stay in the 0700 folder: they live under SHARED_ROOT, linked from the data dir.
        expect(await fs.readlink(path.join(app, ".herald", "pg"))).toMatch(
          new RegExp(`^${SHARED_ROOT}/clusters/[0-9a-f]+/pg$`)
        )
      }
      const stream = await connectSse(url, `/api/projects/${projectId}/stream`, { token: token!, after: "0" })
      await stream.waitForEvents(1)
      const tree = await processTree(npm.child.pid!)
      expect(tree.length).toBeGreaterThanOrEqual(3) // npm, the server, PostgreSQL and its workers

      const started = Date.now()
      npm.child.kill("SIGTERM")
      const { code } = await npm.exited
      expect(code, npm.output()).toBe(0)
      expect(Date.now() - started).toBeLessThan(10_000)
      await stream.ended
      expect(await survivors(tree, 1_000)).toEqual([])
    },
    180_000
  )

  it("npm killed outright (SIGKILL): the server sees its launcher gone, shuts down and leaves no process", async () => {
    const port = await freePort()
    const npm = spawnProcess("npm", ["start"], { ...freshNpm, PORT: String(port) }, { cwd: app })
    await npm.waitFor(/Herald is up/, 120_000)
    const tree = await processTree(npm.child.pid!)
    npm.child.kill("SIGKILL")
    expect(await survivors(tree, 10_000)).toEqual([])
  }, 180_000)

  it(
    "the runtime stage: only its COPY --from=build files, as a non-root user, on DATABASE_URL; HEALTHCHECK passes; SIGTERM exits 0",
    async () => {
      const runtime = stages[1]!
      const workdir = runtime.instructions.find((i) => i.op === "WORKDIR")!.args
      expect(workdir).toBe("/app")
      const root = await fs.mkdtemp(path.join(os.tmpdir(), "herald-image-"))
      cleanups.push(() => fs.rm(root, { recursive: true, force: true }))
      await fs.chmod(root, 0o755) // our own scratch folder, standing in for the image's /app
      for (const { args, op } of runtime.instructions) {
        if (op !== "COPY") continue
        const [from, source, target] = args.split(/\s+/) as [string, string, string]
        expect(from).toBe("--from=build")
        await fs.cp(path.join(app, path.relative(workdir, source)), path.join(root, target), {
          recursive: true,
          verbatimSymlinks: true
        })
      }
      expect(runtime.instructions.find((i) => i.op === "USER")?.args).toBe("node")
      const env = Object.assign(
        {},
        ...runtime.instructions.filter((i) => i.op === "ENV").map((i) => parseEnv(i.args))
      ) as Record<string, string>
      const cmd = execForm(runtime.instructions.find((i) => i.op === "CMD")!.args)
      const healthcheck = execForm(runtime.instructions.find((i) => i.op === "HEALTHCHECK")!.args)
      expect(cmd).toEqual(["node", "packages/server/dist/main.js"])

      const scope = Effect.runSync(Scope.make())
      try {
        const databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
        const port = String(await freePort())
        // `nobody` stands in for the image's `node` user; loopback instead of the image's 0.0.0.0.
        const user = isRoot ? { uid: 65534, gid: 65534 } : {}
        const runEnv = {
          ...env,
          DATABASE_URL: databaseUrl,
          PORT: port,
          HOST: "127.0.0.1",
          HERALD_DATA_DIR: path.join(root, "data")
        }
        const server = spawnProcess(cmd[0] === "node" ? process.execPath : cmd[0]!, cmd.slice(1), runEnv, {
          cwd: root,
          ...user
        })
        await server.waitFor(/Herald is up/, 60_000)
        const probe = spawnProcess(
          healthcheck[0] === "node" ? process.execPath : healthcheck[0]!,
          healthcheck.slice(1),
          runEnv,
          { cwd: root, ...user }
        )
        expect((await probe.exited).code, probe.output()).toBe(0)
        expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(200) // the web client's files came along
        // …and its script is the bundle (dist/web): @herald/client inside, no bare import left for a browser.
        const script = await fetch(`http://127.0.0.1:${port}/app.js`)
        expect(script.status).toBe(200)
        const bundled = await script.text()
        expect(bundled).toContain("@herald/client")
        expect(bundled).not.toMatch(/from\s*["']@herald\/client["']/)
        server.child.kill("SIGTERM")
        expect((await server.exited).code, server.output()).toBe(0)
      } finally {
        await Effect.runPromise(Scope.close(scope, Exit.void))
      }
    },
    120_000
  )
})

describe("restart", () => {
  it(
    "a server started while the previous one on the same data dir is still shutting down waits for it, then starts on the same data",
    async () => {
      const dataDir = await privateFolder("herald-restart-")
      const port = await freePort()
      const env = { HERALD_DATA_DIR: path.join(dataDir, "data"), PORT: String(port) }
      forgetCluster(env.HERALD_DATA_DIR)
      const first = spawnServer(env)
      const [, token] = await first.waitFor(/demo token:\s+(\S+)/, 60_000)
      await first.waitFor(/Herald is up/)

      // A request whose headers never finish keeps the first server's shutdown busy for its grace period.
      const held = net.connect(port, "127.0.0.1")
      await new Promise<void>((resolve) => held.once("connect", () => resolve()))
      held.write("GET /health/live HTTP/1.1\r\nHost: herald\r\n")
      await new Promise((r) => setTimeout(r, 200))

      first.child.kill("SIGTERM")
      await new Promise((r) => setTimeout(r, 300))
      const second: Spawned = spawnServer(env)
      const firstExit = await first.exited
      expect(firstExit.code).toBe(0)
      expect(second.child.exitCode, second.output()).toBeNull() // still waiting, not failed
      await second.waitFor(/Herald is up/, 60_000)
      expect(second.output()).toMatch(
        new RegExp(`waiting for process ${first.child.pid} to stop the embedded PostgreSQL`)
      )
      expect(second.output()).not.toMatch(/shutting down|Cannot/)
      const projects = await get(`http://127.0.0.1:${port}/api/projects`, token)
      expect(projects.status).toBe(200)
      expect(projects.body.items.map((p: { name: string }) => p.name)).toEqual(["Demo project"])
      held.destroy()
      second.child.kill("SIGTERM")
      expect((await second.exited).code).toBe(0)
    },
    120_000
  )
})
