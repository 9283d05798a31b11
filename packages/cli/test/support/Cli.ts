import { NodeContext } from "@effect/platform-node"
import type { Chat, Ids } from "@herald/domain"
import { ChatService } from "@herald/server/chat/ChatService"
import { asUser } from "@herald/server/chat/Policy"
import { RequestPathLive } from "@herald/server/chat/RequestPath"
import { UsersRepo } from "@herald/server/chat/UsersRepo"
import { clientLayer } from "@herald/server/db/Database"
import { runMigrations } from "@herald/server/db/Migrations"
import { Wakeup } from "@herald/server/outbox/Wakeup"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import pg from "pg"
import { expect } from "vitest"
import {
  freePort,
  repoRoot,
  runProcess,
  type Spawned,
  spawnServer,
  withoutHeraldSettings
} from "../../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../../test-support/TestDatabase.js"

export { repoRoot }

const bin = path.join(repoRoot, "packages/cli/bin/herald.mjs")

export interface CliResult {
  readonly args: ReadonlyArray<string>
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs the real `herald` bin from the repository root, as an operator would: `node
 * packages/cli/bin/herald.mjs …`. The environment is the test's, minus anything Herald reads,
 * plus `env` — so a test always says which database the CLI talks to.
 */
export const herald = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}, timeoutMs = 45_000) =>
  run(args, env, timeoutMs)

/**
 * Runs many `herald` processes, a few at a time: each spends a few hundred ms of CPU starting,
 * and a batch of a dozen at once would only starve the other tests' processes.
 */
export const heraldAll = async (
  runs: ReadonlyArray<readonly [args: ReadonlyArray<string>, env: Record<string, string | undefined>]>,
  concurrency = Math.min(3, Math.max(2, os.availableParallelism()))
): Promise<Array<CliResult>> => {
  const results: Array<CliResult> = new Array(runs.length)
  let next = 0
  const worker = async () => {
    while (next < runs.length) {
      const i = next++
      results[i] = await herald(runs[i]![0], runs[i]![1])
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, runs.length) }, worker))
  return results
}

const run = async (
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined>,
  timeoutMs: number
): Promise<CliResult> => {
  const { code, stderr, stdout } = await runProcess(process.execPath, [bin, ...args], {
    ...withoutHeraldSettings(),
    ...env
  }, {
    timeoutMs
  }).finished
  return { args, code, stdout, stderr }
}

const describeRun = (r: CliResult) =>
  `herald ${r.args.join(" ")} → exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`

/** Exit 0, nothing on stderr (progress lines aside, when `allowStderr`). */
export const expectSuccess = (r: CliResult, options: { readonly allowStderr?: RegExp } = {}) => {
  expect(r.code, describeRun(r)).toBe(0)
  const stray = r.stderr.split("\n").filter((l) => l.trim() !== "" && !(options.allowStderr?.test(l) ?? false))
  expect(stray, describeRun(r)).toEqual([])
  return r
}

/** Parses stdout as JSON (after asserting success). */
export const jsonOf = (r: CliResult, options: { readonly allowStderr?: RegExp } = {}): any => {
  expectSuccess(r, options)
  try {
    return JSON.parse(r.stdout)
  } catch {
    throw new Error(`stdout is not JSON:\n${describeRun(r)}`)
  }
}

/**
 * The bad-input contract: a non-zero exit and exactly one clear line on stderr — no stack trace,
 * no FiberFailure dump, no usage page — and nothing on stdout.
 */
export const expectOneLineFailure = (r: CliResult, message: RegExp) => {
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "")
  expect(r.code, describeRun(r)).not.toBe(0)
  expect(r.code, describeRun(r)).not.toBe(null)
  expect(lines, describeRun(r)).toHaveLength(1)
  expect(lines[0], describeRun(r)).toMatch(message)
  expect(r.stderr, describeRun(r)).not.toMatch(/^\s+at /m)
  expect(r.stderr, describeRun(r)).not.toMatch(/FiberFailure|\{\s*"?_tag|\bUSAGE\b/)
  expect(r.stdout.trim(), describeRun(r)).toBe("")
}

/** The cells of a cli-table3 table: one array per row (the header row first). */
export const tableRows = (text: string): Array<Array<string>> =>
  text.split("\n")
    .filter((l) => l.startsWith("│"))
    .map((l) => l.split("│").slice(1, -1).map((c) => c.trim()))

/** Runs `f` with a fresh, empty database on the test cluster, dropped afterwards. */
export const withDatabase = async <A>(f: (url: string) => Promise<A>): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    return await f(await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope)))
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

/** The server's request path (no HTTP, no publisher, no materializer) over `url`, migrated. */
const requestPath = (url: string) =>
  RequestPathLive.pipe(
    Layer.provideMerge(Wakeup.Default),
    Layer.provideMerge(
      Layer.tap(
        clientLayer({ url: Redacted.make(url), maxConnections: 4 }),
        (ctx) => Effect.provide(runMigrations, ctx)
      )
    ),
    Layer.provide(NodeContext.layer)
  )

export const migrate = (url: string) => Effect.runPromise(Effect.provide(Effect.void, requestPath(url)))

export interface Seeded {
  readonly alice: Chat.User
  readonly bob: Chat.User
  /** alice's project, bob a member: project.created, member.added, 5 posts, 1 edit, 1 delete. */
  readonly projectId: Ids.ProjectId
  /** bob's project: project.created and one post. */
  readonly otherProjectId: Ids.ProjectId
  readonly projectStream: string
  readonly otherStream: string
  /** alice's workspace in her project: two posts (user, worker). */
  readonly workspaceStream: string
  /** Every event id in commit order (oldest first). */
  readonly eventIds: ReadonlyArray<string>
}

/** Chat activity written by the server's own ChatService, in-process, on `url` (migrated first). */
export const seedChat = async (url: string): Promise<Seeded> => {
  const seeded = await Effect.runPromise(
    Effect.gen(function*() {
      const users = yield* UsersRepo
      const chat = yield* ChatService
      const alice = (yield* users.create("alice")).user
      const bob = (yield* users.create("bob")).user
      const project = yield* chat.createProject("alpha").pipe(asUser(alice))
      yield* chat.addMember(project.id, bob.id).pipe(asUser(alice))
      const posts = []
      for (let i = 0; i < 4; i++) {
        posts.push(yield* chat.postMessage(project.id, { body: `alice ${i}` }).pipe(asUser(alice)))
      }
      yield* chat.postMessage(project.id, { body: "bob says hi" }).pipe(asUser(bob))
      yield* chat.editMessage(project.id, posts[0]!.message.id, "alice 0 (edited)").pipe(asUser(alice))
      yield* chat.deleteMessage(project.id, posts[1]!.message.id).pipe(asUser(alice))
      const other = yield* chat.createProject("beta").pipe(asUser(bob))
      yield* chat.postMessage(other.id, { body: "beta 1" }).pipe(asUser(bob))
      yield* chat.postWorkspaceMessage(project.id, { body: "note to self" }).pipe(asUser(alice))
      yield* chat.postWorkspaceMessage(project.id, { body: "worker reply", role: "worker" }).pipe(asUser(alice))
      return {
        alice,
        bob,
        projectId: project.id,
        otherProjectId: other.id,
        projectStream: `project:${project.id}`,
        otherStream: `project:${other.id}`,
        workspaceStream: `workspace:${project.id}:${alice.id}`
      }
    }).pipe(Effect.orDie, Effect.provide(requestPath(url)))
  )
  const rows = await query<{ id: string }>(url, "SELECT id FROM event_outbox ORDER BY position")
  return { ...seeded, eventIds: rows.map((r) => r.id) }
}

/** A plain SQL query on `url` (the test's own view of the database, independent of the CLI). */
export const query = async <A = any>(
  url: string,
  text: string,
  params: ReadonlyArray<unknown> = []
): Promise<Array<A>> => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text, [...params])).rows as Array<A>
  } finally {
    await client.end()
  }
}

/** Copies the given outbox rows into event_log and stamps them materialized (as the materializer does). */
export const markMaterialized = (url: string, ids: ReadonlyArray<string>) =>
  query(
    url,
    `WITH c AS (
       INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
       SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox WHERE id = ANY($1::uuid[])
       ON CONFLICT DO NOTHING)
     UPDATE event_outbox SET materialized_at = now() WHERE id = ANY($1::uuid[])`,
    [ids]
  )

export const markPublished = (url: string, ids: ReadonlyArray<string>, publishedAgo = "0 seconds") =>
  query(
    url,
    `UPDATE event_outbox SET status = 'published', attempts = attempts + 1, published_at = now() - $2::interval
     WHERE id = ANY($1::uuid[])`,
    [ids, publishedAgo]
  )

export const markDead = (url: string, ids: ReadonlyArray<string>, error: string) =>
  query(
    url,
    `UPDATE event_outbox SET status = 'dead', attempts = 25, last_error = $2 WHERE id = ANY($1::uuid[])`,
    [ids, error]
  )

// ------------------------------------------------------------------------------------------------
// Server processes

export const ADMIN = "cli-test-admin"

export const startServer = async (env: Record<string, string>) => {
  const port = await freePort()
  const proc = spawnServer({
    PORT: String(port),
    HERALD_ADMIN_TOKEN: ADMIN,
    HERALD_POLL_INTERVAL_MS: "200",
    ...env
  })
  await proc.waitFor(/API docs at/)
  return { proc, url: `http://127.0.0.1:${port}` }
}

export const stopServer = async (proc: Spawned) => {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return proc.exited
  proc.child.kill("SIGTERM")
  return proc.exited
}

export const api = async (url: string, method: string, p: string, token: string, body?: unknown) => {
  const res = await fetch(url + p, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await res.text()
  return { status: res.status, body: text === "" ? undefined : JSON.parse(text) as any }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ------------------------------------------------------------------------------------------------
// Embedded PostgreSQL processes

/** Processes (other than ours) whose command line names `dir`: the embedded cluster's postgres. */
export const processesUsing = async (dir: string): Promise<Array<{ pid: number; cmd: string }>> => {
  const found: Array<{ pid: number; cmd: string }> = []
  for (const entry of await fs.readdir("/proc")) {
    const pid = Number(entry)
    if (!Number.isInteger(pid) || pid === process.pid) continue
    const cmd = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
    if (cmd.includes(dir)) found.push({ pid, cmd: cmd.split("\0").join(" ").trim() })
  }
  return found
}

export const exists = (p: string) => fs.access(p).then(() => true, () => false)

/** A LISTEN connection on the postgres broker's channel: what `replay` actually publishes. */
export const listenBroker = async (url: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const received: Array<any> = []
  client.on("notification", (n) => {
    if (n.channel === "herald_events" && n.payload !== undefined) received.push(JSON.parse(n.payload))
  })
  await client.query("LISTEN herald_events")
  return { received, close: () => client.end() }
}
