import { describe, expect, it } from "@effect/vitest"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import {
  freePort,
  pollUntil,
  type Spawned,
  spawnProcess,
  spawnServer,
  withoutHeraldSettings
} from "../../../test-support/Process.js"
import { connectSse, type SseConnection, type SseEvent } from "../../../test-support/SseClient.js"
import {
  ADMIN,
  api,
  exists,
  expectOneLineFailure,
  herald,
  heraldAll,
  migrate,
  repoRoot,
  sleep,
  startServer,
  stopServer,
  withDatabase
} from "./support/Cli.js"

/**
 * `herald worker --project <id> --token <token> [--url]` through the real bin against a real
 * server (a real PostgreSQL behind it): the demo worker answers each `user` message in the caller's
 * workspace with a reply written as a live draft — `event: draft` frames without `id:`, a growing
 * body — then posted as a `worker` message whose `clientMessageId` is the draft's id, after which
 * the draft ends. It answers nothing else, stops cleanly on SIGTERM, reconnects and resumes after a
 * server restart, and refuses bad input with one clear line. It is a client of the HTTP API only:
 * no DATABASE_URL, no data dir.
 */

const bin = path.join(repoRoot, "packages/cli/bin/herald.mjs")

/** `herald worker …` as a long-running child, with no database settings at all (only `dataDir`, to see it stays unused). */
const startWorker = (args: ReadonlyArray<string>, dataDir: string): Spawned =>
  spawnProcess(process.execPath, [bin, "worker", ...args], { ...withoutHeraldSettings(), HERALD_DATA_DIR: dataDir })

const createUser = async (server: string, name: string) => {
  const r = await api(server, "POST", "/api/admin/users", ADMIN, { name })
  expect(r.status).toBe(201)
  return r.body as { id: string; token: string }
}

const createProject = async (server: string, token: string, name = "worker demo") => {
  const r = await api(server, "POST", "/api/projects", token, { name })
  expect(r.status).toBe(201)
  return r.body.id as string
}

const postWorkspace = async (server: string, token: string, projectId: string, payload: Record<string, string>) => {
  const r = await api(server, "POST", `/api/projects/${projectId}/workspace/messages`, token, payload)
  expect(r.status).toBe(201)
  return r.body as { message: { id: string }; event: { id: string; seq: number } }
}

const draftIdOf = (messageId: string) => `reply-${messageId.replace(/-/g, "")}`

const isEnd = (draftId: string) => (e: SseEvent) => e.event === "draft" && e.data.draftId === draftId && e.data.ended
const isCreated = (messageId: string) => (e: SseEvent) =>
  e.event === "message.created" && e.data.data.messageId === messageId

const waitForEvent = (sse: SseConnection, what: string, match: (e: SseEvent) => boolean, timeoutMs = 20_000) =>
  pollUntil(
    what,
    async () => {
      const found = sse.all.find(match)
      return found === undefined ? { seen: sse.all.slice(-3) } : { done: found }
    },
    timeoutMs
  )

const describeWorker = (w: Spawned) => `worker output:\n${w.output()}`

describe.concurrent("herald worker", () => {
  it(
    "answers a user message: a growing worker draft without id:, then the worker message with the draft's last body and the draft's id as clientMessageId, then the draft's end; nothing for worker messages; SIGTERM mid-draft ends the draft and exits 0",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        const { proc, url: server } = await startServer({ DATABASE_URL: url })
        const dataDir = path.join(os.tmpdir(), `herald-worker-unused-${randomUUID()}`)
        let worker: Spawned | undefined
        let sse: SseConnection | undefined
        try {
          const alice = await createUser(server, "alice")
          const projectId = await createProject(server, alice.token)
          const stream = `workspace:${projectId}:${alice.id}`
          worker = startWorker(["--project", projectId, "--token", alice.token, "--url", server], dataDir)
          await worker.waitFor(/answering user messages/, 30_000)
          sse = await connectSse(server, `/api/projects/${projectId}/workspace/stream`, { token: alice.token })
          expect(sse.status).toBe(200)

          // A user message: answered.
          const question = await postWorkspace(server, alice.token, projectId, {
            body: "What does a worker do with this message?\nTell me. 😀"
          })
          const draftId = draftIdOf(question.message.id)
          await waitForEvent(sse, `the end of draft ${draftId}`, isEnd(draftId))
          // Every frame after the question, events and signals as they arrived.
          const events = sse.all.slice(sse.all.findIndex(isCreated(question.message.id)) + 1)
          const replyAt = events.findIndex((e) => e.event === "message.created")
          const drafts = events.slice(0, replyAt)
          expect(drafts.length, JSON.stringify(events)).toBeGreaterThanOrEqual(5)
          for (const [i, d] of drafts.entries()) {
            expect(d.event).toBe("draft")
            expect(d.id).toBeUndefined()
            expect(d.data).toEqual({
              stream,
              draftId,
              role: "worker",
              body: expect.any(String),
              updatedAt: expect.any(String)
            })
            if (i > 0) {
              expect(d.data.body.startsWith(drafts[i - 1]!.data.body)).toBe(true)
              expect(d.data.body.length).toBeGreaterThan(drafts[i - 1]!.data.body.length)
            }
          }
          // Written over about 2 s (20 updates, 100 ms apart, at most 10 frames a second).
          const spanMs = Date.parse(drafts.at(-1)!.data.updatedAt) - Date.parse(drafts[0]!.data.updatedAt)
          expect(spanMs).toBeGreaterThan(1_000)
          expect(spanMs).toBeLessThan(6_000)

          const reply = events[replyAt]!
          const last = drafts.at(-1)!.data.body as string
          expect(reply.id).toMatch(/^\d+\.[0-9a-f]{8}$/)
          expect(reply.data.data).toEqual({
            messageId: expect.any(String),
            authorId: alice.id,
            role: "worker",
            body: last,
            clientMessageId: draftId
          })
          expect(Array.from(last).length).toBeGreaterThanOrEqual(200)
          expect(Array.from(last).length).toBeLessThanOrEqual(400)
          expect(last).toContain("What does a worker do with this message? Tell me. 😀")
          // The draft ends after its message.
          const endAt = events.findIndex(isEnd(draftId))
          expect(endAt).toBeGreaterThan(replyAt)
          expect(events[endAt]).toEqual({ id: undefined, event: "draft", data: { stream, draftId, ended: true } })
          await worker.waitFor(new RegExp(`^answered ${question.message.id} with ${reply.data.data.messageId} `, "m"))

          // The reply again (what a restarted worker that met the message again would post): the original, nothing written.
          const again = await api(server, "POST", `/api/projects/${projectId}/workspace/messages`, alice.token, {
            body: last,
            role: "worker",
            clientMessageId: draftId
          })
          expect(again.status).toBe(200)
          expect(again.body.message.id).toBe(reply.data.data.messageId)

          // A worker message (and the worker's own reply before it): not answered.
          const note = await postWorkspace(server, alice.token, projectId, {
            body: "a note from a worker",
            role: "worker"
          })
          await waitForEvent(sse, "the worker note", isCreated(note.message.id))
          const seen = sse.all.length
          await sleep(3_000)
          expect(sse.all.slice(seen), describeWorker(worker)).toEqual([])
          expect(worker.stdout().trim().split("\n"), describeWorker(worker)).toHaveLength(1)

          // SIGTERM while a reply is being drafted: the draft ends at once, nothing is posted, exit 0.
          const interrupted = await postWorkspace(server, alice.token, projectId, { body: "stop halfway" })
          const halfway = draftIdOf(interrupted.message.id)
          await waitForEvent(sse, `a draft ${halfway}`, (e) => e.event === "draft" && e.data.draftId === halfway)
          const stopping = Date.now()
          await worker.stop()
          expect((await worker.exited).code, describeWorker(worker)).toBe(0)
          expect(Date.now() - stopping).toBeLessThan(5_000)
          await waitForEvent(sse, `the end of draft ${halfway}`, isEnd(halfway), 5_000)
          await sleep(500)
          expect(sse.all.filter((e) => e.event === "message.created" && e.data.data.clientMessageId === halfway))
            .toEqual([])
          expect(worker.stdout().trim().split("\n"), describeWorker(worker)).toHaveLength(1)
          expect(worker.stderr(), describeWorker(worker)).not.toMatch(/^\s+at |FiberFailure/m)
          // A pure HTTP client: it never opened (or started) a database.
          expect(await exists(dataDir)).toBe(false)
        } finally {
          sse?.close()
          await worker?.stop()
          await stopServer(proc)
          await fs.rm(dataDir, { recursive: true, force: true })
        }
      }),
    120_000
  )

  it(
    "a server restart: the worker reconnects with backoff, resumes after the last event id it saw (a draft frame's lack of id changes nothing) and answers what comes next",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        const port = await freePort()
        const serverEnv = { DATABASE_URL: url, PORT: String(port), HERALD_ADMIN_TOKEN: ADMIN }
        const server = `http://127.0.0.1:${port}`
        let proc = spawnServer(serverEnv)
        await proc.waitFor(/API docs at/)
        const dataDir = path.join(os.tmpdir(), `herald-worker-unused-${randomUUID()}`)
        let worker: Spawned | undefined
        try {
          const bob = await createUser(server, "bob")
          const projectId = await createProject(server, bob.token)
          worker = startWorker(["--project", projectId, "--token", bob.token, "--url", server], dataDir)
          await worker.waitFor(/answering user messages/, 30_000)
          const sse = await connectSse(server, `/api/projects/${projectId}/workspace/stream`, { token: bob.token })
          const first = await postWorkspace(server, bob.token, projectId, { body: "first" })
          await waitForEvent(sse, "the first reply's draft end", isEnd(draftIdOf(first.message.id)))
          // The last frame with an id: the reply (the draft's end after it has none).
          const lastId = sse.all.filter((e) => e.id !== undefined).at(-1)!.id!
          expect(sse.all.at(-1)!.id).toBeUndefined()
          sse.close()

          await stopServer(proc)
          await worker.waitFor(/reconnecting in/, 15_000)
          proc = spawnServer(serverEnv)
          await proc.waitFor(/API docs at/)
          const resumed = await worker.waitFor(/herald worker: reconnected, resuming after (\S+)/, 60_000)
          expect(resumed[1]).toBe(lastId)

          const second = await postWorkspace(server, bob.token, projectId, { body: "second" })
          await worker.waitFor(new RegExp(`^answered ${second.message.id} with `, "m"), 20_000)
          expect(worker.stdout().trim().split("\n"), describeWorker(worker)).toHaveLength(2)
          expect(worker.child.exitCode).toBe(null)
        } finally {
          await worker?.stop()
          await stopServer(proc)
          await fs.rm(dataDir, { recursive: true, force: true })
        }
      }),
    120_000
  )

  it(
    "bad input: a project id that is not a UUID, an empty or malformed token, a URL that is not http(s), a token the server refuses, a project not found or not visible — one clear line, a non-zero exit",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        const { proc, url: server } = await startServer({ DATABASE_URL: url })
        try {
          const carol = await createUser(server, "carol")
          const dave = await createUser(server, "dave")
          const mine = await createProject(server, carol.token)
          const notMine = await createProject(server, dave.token, "dave's")
          const as = (project: string, token: string, base = server) => [
            "worker",
            "--project",
            project,
            "--token",
            token,
            "--url",
            base
          ]
          const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
            [as("nope", carol.token), /^herald: --project must be a project id \(a UUID\): "nope"$/],
            [as(mine, ""), /^herald: --token must not be empty$/],
            [as(mine, "two words"), /^herald: --token must be a bearer token/],
            [as(mine, carol.token, "ftp://127.0.0.1:3000"), /^herald: --url must be an http or https URL/],
            [as(mine, carol.token, "localhost:3000"), /^herald: --url must be an http or https URL/],
            [as(mine, carol.token, "not a url"), /^herald: --url must be an http or https URL/],
            [as(mine, "hrld_not-a-live-token"), /^herald: the server refused the token \(401 Unauthorized\)/],
            [as(randomUUID(), carol.token), /^herald: project not found or not visible: /],
            [as(notMine, carol.token), new RegExp(`^herald: project not found or not visible: ${notMine}`)]
          ]
          const results = await heraldAll(cases.map(([args]) => [args, {}] as const))
          results.forEach((r, i) => expectOneLineFailure(r, cases[i]![1]))

          // A missing option is a usage error, as for every command.
          const usage = await herald(["worker", "--project", mine])
          expect(usage.code).toBe(2)
          expect(usage.stderr).toMatch(/--token/)
        } finally {
          await stopServer(proc)
        }
      }),
    120_000
  )
})
