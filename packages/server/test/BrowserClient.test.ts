/**
 * The web client on @herald/client, in Chromium (issue 22): the page's one connection is the
 * library's `subscribe`, and what a person reads must stay exact through what a connection lives
 * through — a server restart, a stream ticket that expired while the page was open, a transport
 * that repeats frames, and a database restored to an earlier state (`event: reset`).
 *
 * Two server processes share one database (HERALD_BROKER=postgres): the page talks to the first;
 * the second keeps posting while the first restarts, so events are committed while the page has
 * no connection and must come to it from the database on resume.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { freePort, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { chromiumArgs, ensureChromium, spawnedApi } from "./support/Browser.js"
import { countEventSources, eventSourcesOpened, headsFramesSeen, signIn as signInAt } from "./support/BrowserPage.js"

const ADMIN = "browser-client-test-admin"
const LIVE = { timeout: 30_000 }
const TICKET_TTL_MS = 2_000

let browser: Browser
let scope: Scope.CloseableScope
let databaseUrl: string
/** The page's server, and a second one on the same database that posts while the first is down. */
let port: number
let server: Spawned
let otherPort: number
let other: Spawned

const start = async (on: number) => {
  const spawned = spawnServer({
    DATABASE_URL: databaseUrl,
    PORT: String(on),
    HERALD_ADMIN_TOKEN: ADMIN,
    HERALD_BROKER: "postgres",
    HERALD_POLL_INTERVAL_MS: "200",
    HERALD_TICKET_TTL: `${TICKET_TTL_MS / 1000}s`
  })
  await spawned.waitFor(/API docs at/)
  return spawned
}
const base = () => `http://127.0.0.1:${port}`
const { call: api, createUser } = spawnedApi(base, ADMIN)
const { call: otherApi } = spawnedApi(() => `http://127.0.0.1:${otherPort}`, ADMIN)

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Runs in the page before its scripts: every event frame reaches the page's EventSource listeners
 * twice, as a transport that repeats itself would deliver it; the library must hand it on once.
 */
const repeatEveryEvent = {
  content: `(() => {
    const Base = window.EventSource
    window.EventSource = class extends Base {
      addEventListener(type, listener, options) {
        if (!type.startsWith("message.")) return super.addEventListener(type, listener, options)
        super.addEventListener(type, (e) => { listener(e); listener(e) }, options)
      }
    }
  })()`
}

const newPage = async (): Promise<{ context: BrowserContext; page: Page }> => {
  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } })
  await context.addInitScript(countEventSources)
  await context.addInitScript(repeatEveryEvent)
  return { context, page: await context.newPage() }
}

const signIn = (page: Page, token: string) => signInAt(page, base(), token, LIVE.timeout)

/** The project chat as a person reads it: each message's text, and its seq (set when it arrived live). */
const chat = (page: Page) =>
  page.locator("#project-chat li.message").evaluateAll((lis) =>
    lis.map((li) => ({
      body: li.querySelector(".body")!.textContent ?? "",
      seq: (li as HTMLElement).dataset.seq === undefined ? undefined : Number((li as HTMLElement).dataset.seq)
    }))
  )
const bodies = (page: Page) => chat(page).then((lines) => lines.map((l) => l.body))

/** Posts `body` through `call` (one of the two servers): its seq. */
const post = async (call: typeof api, token: string, projectId: string, body: string) =>
  (await call("POST", `/api/projects/${projectId}/messages`, token, { body })).event.seq as number

beforeAll(async () => {
  const executablePath = ensureChromium()
  scope = Effect.runSync(Scope.make())
  databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
  port = await freePort()
  otherPort = await freePort()
  server = await start(port)
  other = await start(otherPort)
  browser = await chromium.launch({ executablePath, args: chromiumArgs })
}, 600_000)

afterAll(async () => {
  await browser?.close()
  for (const s of [server, other]) if (s !== undefined && s.child.exitCode === null) await s.stop()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

describe("the web client on @herald/client, in Chromium", () => {
  it(
    "through a ticket that expired mid-session and a server restart, with every frame delivered twice, every message shows once, in seq order, none missing",
    async () => {
      const alice = await createUser("alice")
      const bob = await createUser("bob")
      const project = await api("POST", "/api/projects", bob.token, { name: "Relay" })
      await api("POST", `/api/projects/${project.id}/members`, bob.token, { userId: alice.id })
      const { context, page } = await newPage()
      await signIn(page, alice.token)

      const sent: Array<string> = []
      const seqs: Array<number> = []
      const bobSays = async (call: typeof api, body: string) => {
        sent.push(body)
        seqs.push(await post(call, bob.token, project.id, body))
      }
      // Live, through both servers.
      for (let i = 1; i <= 10; i++) await bobSays(i % 2 === 0 ? otherApi : api, `live ${i}`)
      await expect.poll(() => bodies(page), LIVE).toEqual(sent)

      // The connection's ticket expires while it is open: the connection lives on.
      await sleep(TICKET_TTL_MS + 1_000)
      for (let i = 1; i <= 5; i++) await bobSays(api, `after the ticket expired ${i}`)
      await expect.poll(() => bodies(page), LIVE).toEqual(sent)
      expect(await eventSourcesOpened(page)).toHaveLength(1)

      // The page's server restarts while Bob keeps posting through the other one: some messages are
      // committed while the page has no connection at all, and reach it on resume from the database.
      const duringRestart = (async () => {
        for (let i = 1; i <= 30; i++) {
          await bobSays(otherApi, `through the restart ${i}`)
          await sleep(100)
        }
      })()
      await sleep(300)
      await server.stop()
      expect((await server.exited).code).toBe(0)
      await expect.poll(() => page.locator("#connection").textContent(), LIVE).toMatch(/reconnecting/)
      await sleep(1_000)
      server = await start(port)
      await duringRestart
      for (let i = 1; i <= 3; i++) await bobSays(api, `after the restart ${i}`)

      await expect.poll(() => bodies(page), LIVE).toEqual(sent)
      // Each arrived on the connection, with the seq the server gave it, once and in order.
      expect((await chat(page)).map((l) => l.seq)).toEqual(seqs)
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))
      await expect.poll(() => page.locator("#connection").textContent(), LIVE).toMatch(/· live$/)

      // The library reopened the connection with a fresh ticket (the first had expired) and resumed
      // from its cursor: no second heads frame, so the page reloaded nothing.
      const opened = await eventSourcesOpened(page)
      expect(opened.length).toBeGreaterThanOrEqual(2)
      const first = new URL(opened[0]!, base())
      const last = new URL(opened.at(-1)!, base())
      expect(last.searchParams.get("ticket")).toMatch(/^hst_/)
      expect(last.searchParams.get("ticket")).not.toBe(first.searchParams.get("ticket"))
      expect(last.searchParams.get("cursor")).toMatch(/^[A-Za-z0-9_-]+$/)
      expect(await headsFramesSeen(page)).toBe(1)
      expect(await page.getByRole("alert").isVisible()).toBe(false)
      await context.close()
    },
    180_000
  )

  it(
    "after the database is restored to an earlier state, the page takes the reset and reloads the chat: what the database holds, then new posts live",
    async () => {
      await other.stop()
      const carol = await createUser("carol")
      const project = await api("POST", "/api/projects", carol.token, { name: "Restored" })
      const stream = `project:${project.id}`
      const { context, page } = await newPage()
      await signIn(page, carol.token)
      const before = ["kept 1", "kept 2", "kept 3"]
      const after = ["lost 4", "lost 5", "lost 6"]
      let backupSeq = 0
      for (const body of before) backupSeq = await post(api, carol.token, project.id, body)
      for (const body of after) await post(api, carol.token, project.id, body)
      await expect.poll(() => bodies(page), LIVE).toEqual([...before, ...after])

      // While the server is down, the database goes back to a backup taken at `backupSeq`: the
      // stream's later events and their messages are gone, and its counter is back there.
      await server.stop()
      const pg = await import("pg")
      const client = new pg.default.Client({ connectionString: databaseUrl })
      await client.connect()
      await client.query("BEGIN")
      await client.query(
        `DELETE FROM messages WHERE id IN (SELECT (data->>'messageId')::uuid FROM event_outbox
           WHERE stream_id = $1 AND seq > $2 AND type = 'message.created')`,
        [stream, backupSeq]
      )
      await client.query("DELETE FROM event_log WHERE stream_id = $1 AND seq > $2", [stream, backupSeq])
      await client.query("DELETE FROM event_outbox WHERE stream_id = $1 AND seq > $2", [stream, backupSeq])
      await client.query("UPDATE event_streams SET last_seq = $2 WHERE stream_id = $1", [stream, backupSeq])
      await client.query("COMMIT")
      await client.end()
      server = await start(port)

      // The page resumes past the stream's head: `event: reset`, and the chat reloaded over HTTP.
      await expect.poll(() => bodies(page), LIVE).toEqual(before)
      const newSeq = await post(api, carol.token, project.id, "after the restore")
      expect(newSeq).toBe(backupSeq + 1)
      await expect.poll(() => chat(page), LIVE).toEqual([
        ...before.map((body) => ({ body, seq: expect.any(Number) })),
        { body: "after the restore", seq: newSeq }
      ])
      // A reset of one stream, not a start over: still the one heads frame of the sign-in.
      expect(await headsFramesSeen(page)).toBe(1)
      await expect.poll(() => page.locator("#connection").textContent(), LIVE).toMatch(/· live$/)
      await context.close()
    },
    180_000
  )
})
