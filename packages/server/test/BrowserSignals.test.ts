import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { freePort, repoRoot, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { connectSse } from "../../../test-support/SseClient.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { chromiumArgs, ensureChromium, spawnedApi, type SpawnedUser } from "./support/Browser.js"
import { countEventSources, eventSourcesOpened, headsFramesSeen, signIn as signInAt } from "./support/BrowserPage.js"

/**
 * Live signals (SPEC §5, G10) in Chromium: the web client shows who is present, who is typing and
 * a worker's reply growing live; and the browser's own EventSource shows that signal frames, which
 * come without `id:`, leave its last event id (what it resumes from) where the last event put it.
 */

const ADMIN = "browser-signals-admin"
const screenshotDir = path.join(repoRoot, "test-results")
const LIVE = { timeout: 20_000 }

let browser: Browser
let scope: Scope.CloseableScope
let databaseUrl: string
let port: number
let server: Spawned

const startServer = async () => {
  server = spawnServer({
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HERALD_ADMIN_TOKEN: ADMIN,
    HERALD_POLL_INTERVAL_MS: "200"
  })
  await server.waitFor(/API docs at/)
}
const base = () => `http://127.0.0.1:${port}`

const { call, createUser } = spawnedApi(base, ADMIN)
type User = SpawnedUser

/** A project of `owner`'s with `others` added. */
const projectOf = async (owner: User, name: string, others: ReadonlyArray<User>): Promise<string> => {
  const project = await call("POST", "/api/projects", owner.token, { name })
  for (const other of others) {
    await call("POST", `/api/projects/${project.id}/members`, owner.token, { userId: other.id })
  }
  return project.id
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const newPage = async (): Promise<{ context: BrowserContext; page: Page }> => {
  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } })
  await context.addInitScript(countEventSources)
  return { context, page: await context.newPage() }
}

const signIn = (page: Page, token: string) => signInAt(page, base(), token, LIVE.timeout)

/** Who the page says is here now, in its order. */
const present = (page: Page) => page.locator("#presence .present").allTextContents()
const typingLine = (page: Page) => page.locator("#project-chat .typing").textContent()

/** The worker space as a person reads it: committed messages (with their seqs) and live drafts. */
const workspaceLines = (page: Page) =>
  page.locator("#workspace-chat li.message").evaluateAll((lis) =>
    lis.map((li) => ({
      body: li.querySelector(".body")!.textContent,
      draft: li.classList.contains("draft"),
      worker: li.classList.contains("role-worker"),
      seq: (li as HTMLElement).dataset.seq === undefined ? undefined : Number((li as HTMLElement).dataset.seq)
    }))
  )

beforeAll(async () => {
  const executablePath = ensureChromium()
  scope = Effect.runSync(Scope.make())
  databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
  port = await freePort()
  await startServer()
  browser = await chromium.launch({ executablePath, args: chromiumArgs })
}, 600_000)

afterAll(async () => {
  await browser?.close()
  if (server.child.exitCode === null) await server.stop()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

/** What the page's own EventSource saw: every frame, which EventSource it came on, and its `lastEventId`. */
interface ProbeFrame {
  readonly source: number
  readonly type: string
  readonly signal: boolean
  readonly lastEventId: string
  readonly data: any
}

/**
 * A page script around the browser's native EventSource (no web client): `__probe.open(url)` opens
 * one and records each frame with the `lastEventId` the browser gave it; the browser alone
 * reconnects it. Plain JavaScript text, so nothing the test's compiler adds reaches the page.
 */
const PROBE = `(() => {
  const EVENTS = ["heads", "reset", "project.created", "member.added", "member.removed",
    "message.created", "message.edited", "message.deleted"]
  const SIGNALS = ["presence", "typing", "draft"]
  const probe = { frames: [], opens: [], errors: [], sources: [] }
  probe.open = (url) => {
    const source = new EventSource(url)
    const n = probe.sources.push(source)
    source.onopen = () => probe.opens.push(n)
    source.onerror = () => probe.errors.push({ source: n, readyState: source.readyState })
    for (const type of [...EVENTS, ...SIGNALS]) {
      source.addEventListener(type, (e) => probe.frames.push({
        source: n, type, signal: SIGNALS.includes(type), lastEventId: e.lastEventId, data: JSON.parse(e.data)
      }))
    }
  }
  probe.close = () => probe.sources.forEach((s) => s.close())
  window.__probe = probe
})()`

describe("live signals in a real browser", () => {
  it(
    "two users with the web client open: A sees B present and typing, and a worker's live draft in A's worker space becomes exactly one committed message, in its place",
    async () => {
      const alice = await createUser("alice")
      const bob = await createUser("bob")
      const projectId = await projectOf(alice, "Launch plan", [bob])
      await call("POST", `/api/projects/${projectId}/messages`, alice.token, { body: "Shall we ship on Friday?" })
      await call("POST", `/api/projects/${projectId}/messages`, bob.token, { body: "The build is green since noon." })
      await call("POST", `/api/projects/${projectId}/workspace/messages`, alice.token, {
        body: "Draft my answer on the launch date"
      })

      // Presence: each page shows who is here, the other as they come (names from the members list).
      const a = await newPage()
      await signIn(a.page, alice.token)
      await expect.poll(() => present(a.page), LIVE).toEqual(["alice (you)"])
      const b = await newPage()
      await signIn(b.page, bob.token)
      await expect.poll(() => present(a.page), LIVE).toEqual(["alice (you)", "bob"])
      await expect.poll(() => present(b.page), LIVE).toEqual(["alice", "bob (you)"])
      const here = await call("GET", `/api/projects/${projectId}/presence`, alice.token)
      expect(here.users.map((u: { userId: string }) => u.userId)).toEqual([alice.id, bob.id])

      // A worker's reply in Alice's worker space, growing: PUTs with her token, role worker.
      const draftId = `reply-${randomUUID()}`
      const growing = [
        "Friday",
        "Friday works if",
        "Friday works if the release notes",
        "Friday works if the release notes are done by Thursday noon."
      ]
      const final = `${growing.at(-1)} I'll draft them tonight.`
      // Watches Alice's worker space from the page: at every change, how many lines show the draft
      // and how many the committed message — from the draft's first appearance on, always one of them.
      await a.page.evaluate(({ draftId, final }) => {
        const list = document.querySelector("#workspace-chat .messages")!
        const watch = { seen: [] as Array<{ drafts: number; finals: number }>, node: null as Element | null }
        ;(window as any).__draftWatch = watch
        new MutationObserver(() => {
          const draft = list.querySelector(`li.draft[data-draft-id="${draftId}"]`)
          if (draft !== null && watch.node === null) watch.node = draft
          if (watch.node === null) return
          const finals = Array.from(list.querySelectorAll("li.message:not(.draft)"))
            .filter((li) => li.querySelector(".body")?.textContent === final).length
          watch.seen.push({ drafts: list.querySelectorAll("li.draft").length, finals })
        }).observe(list, { childList: true, subtree: true, characterData: true, attributes: true })
      }, { draftId, final })
      const draftPath = `/api/projects/${projectId}/workspace/drafts/${draftId}`
      for (const body of growing) {
        await call("PUT", draftPath, alice.token, { body, role: "worker" })
        await expect.poll(() => workspaceLines(a.page), LIVE).toEqual([
          { body: "Draft my answer on the launch date", draft: false, worker: false, seq: undefined },
          { body, draft: true, worker: true, seq: undefined }
        ])
      }
      // Drafts are the workspace owner's alone.
      expect(await b.page.locator("li.draft").count()).toBe(0)

      // Bob types in the project chat: his page tells the server at most once a second, and Alice sees it.
      const typingPosts: Array<number> = []
      b.page.on("request", (r) => {
        if (r.method() === "POST" && r.url().endsWith(`/api/projects/${projectId}/typing`)) typingPosts.push(Date.now())
      })
      await b.page.locator("#project-body").pressSequentially("Friday is fine by me", { delay: 120 })
      await expect.poll(() => typingLine(a.page), LIVE).toBe("bob is typing…")
      expect(typingPosts.length).toBeGreaterThanOrEqual(2)
      expect(typingPosts.length).toBeLessThanOrEqual(4)
      for (let i = 1; i < typingPosts.length; i++) expect(typingPosts[i]! - typingPosts[i - 1]!).toBeGreaterThan(900)
      // Never to the typist's own connections.
      expect(await typingLine(b.page)).toBe("")

      // The picture for docs/: presence, Bob typing, and the worker's live draft.
      expect(await a.page.locator("#presence").isVisible()).toBe(true)
      expect(await a.page.locator("#project-chat .typing").isVisible()).toBe(true)
      expect(await a.page.locator("#workspace-chat li.draft").isVisible()).toBe(true)
      await fs.mkdir(screenshotDir, { recursive: true })
      await a.page.screenshot({ path: path.join(screenshotDir, "web-client-signals.png"), fullPage: true })

      // Bob sends it: his message ends "is typing…" at once.
      await b.page.locator("#project-body").press("Enter")
      await expect.poll(
        () => a.page.locator("#project-chat li.message .body").allTextContents(),
        LIVE
      ).toEqual(["Shall we ship on Friday?", "The build is green since noon.", "Friday is fine by me"])
      expect(await typingLine(a.page)).toBe("")

      // The worker posts its reply with the draft's id as clientMessageId: it takes the draft's
      // place, once, and the draft is gone.
      const committed = await call("POST", `/api/projects/${projectId}/workspace/messages`, alice.token, {
        body: final,
        role: "worker",
        clientMessageId: draftId
      })
      const settled = [
        { body: "Draft my answer on the launch date", draft: false, worker: false, seq: undefined },
        { body: final, draft: false, worker: true, seq: committed.event.seq }
      ]
      await expect.poll(() => workspaceLines(a.page), LIVE).toEqual(settled)
      const watched = await a.page.evaluate((messageId) => {
        const watch = (window as any).__draftWatch as { seen: Array<{ drafts: number; finals: number }>; node: Element }
        const line = document.querySelector(`#workspace-chat li[data-message-id="${messageId}"]`)
        return { seen: watch.seen, sameLine: line !== null && line === watch.node }
      }, committed.message.id)
      // The draft's own line became the message (swapped in place, not removed and added)…
      expect(watched.sameLine).toBe(true)
      // …and at no moment did the page show both, or neither.
      expect(watched.seen.length).toBeGreaterThan(0)
      expect(watched.seen.filter((s) => s.drafts + s.finals !== 1)).toEqual([])
      expect(watched.seen.at(-1)).toEqual({ drafts: 0, finals: 1 })
      expect(await a.page.locator("li.draft").count()).toBe(0)
      // A late update of that draft changes nothing: no draft comes back, nothing shows twice.
      await call("PUT", draftPath, alice.token, { body: "a late update", role: "worker" })
      await sleep(1_500)
      expect(await workspaceLines(a.page)).toEqual(settled)

      // Typing shows until its `until` (5 s after the last signal), then goes by itself.
      const postsBefore = typingPosts.length
      await b.page.locator("#project-body").pressSequentially("ok", { delay: 50 })
      await expect.poll(() => typingPosts.length, LIVE).toBe(postsBefore + 1)
      const typedAt = typingPosts.at(-1)!
      await expect.poll(() => typingLine(a.page), LIVE).toBe("bob is typing…")
      await expect.poll(() => typingLine(a.page), LIVE).toBe("")
      const shownFor = Date.now() - typedAt
      expect(shownFor).toBeGreaterThan(4_000)
      expect(shownFor).toBeLessThan(8_000)

      // Bob leaves: Alice sees him go.
      await b.context.close()
      await expect.poll(() => present(a.page), LIVE).toEqual(["alice (you)"])
      // All of it on the one connection Alice's page opened.
      expect(await eventSourcesOpened(a.page)).toHaveLength(1)
      expect(await headsFramesSeen(a.page)).toBe(1)
      await a.context.close()
    },
    180_000
  )

  it(
    "the browser's own EventSource: signal frames leave lastEventId at the last event's id, and a reconnect (by the browser, then by hand with ?cursor=) goes on with no gap and no duplicate",
    async () => {
      const dora = await createUser("dora")
      const eli = await createUser("eli")
      const projectId = await projectOf(dora, "Probe", [eli])
      const projectStream = `project:${projectId}`
      const ticket = async () => (await call("POST", "/api/stream-tickets", dora.token)).ticket as string

      // On the wire: signal frames carry no id: (a raw reader of Dora's stream, beside the browser).
      const wire = await connectSse(base(), "/api/stream", { token: dora.token })

      const context = await browser.newContext()
      const page = await context.newPage()
      const streamRequests: Array<{ url: string; lastEventId: string | undefined }> = []
      // allHeaders: Last-Event-ID is added below the page, where `headers()` does not look.
      page.on("request", (r) => {
        if (r.url().includes("/api/stream?")) {
          void r.allHeaders().then((h) => streamRequests.push({ url: r.url(), lastEventId: h["last-event-id"] }))
        }
      })
      await page.goto(base() + "/health/live")
      await page.addScriptTag({ content: PROBE })
      const frames = () => page.evaluate(() => (window as any).__probe.frames as Array<ProbeFrame>)
      const waitFor = (what: string, match: (f: ProbeFrame) => boolean) =>
        expect.poll(async () => (await frames()).filter(match).length > 0, { ...LIVE, message: what }).toBe(true)
      const messageFrame = (body: string) => (f: ProbeFrame) =>
        f.type === "message.created" && f.data.data.body === body

      await page.evaluate((url) => (window as any).__probe.open(url), `/api/stream?ticket=${await ticket()}`)
      await waitFor("heads", (f) => f.type === "heads")
      await waitFor("who is present", (f) => f.type === "presence" && f.data.stream === projectStream)

      // Signals before any event: a typing of Eli's, a draft of Dora's worker, Eli arriving.
      await call("POST", `/api/projects/${projectId}/typing`, eli.token)
      // The server took the typing before it answered: its coalescing window ends a second after this at the latest.
      const typedAt = Date.now()
      await waitFor("Eli typing", (f) => f.type === "typing" && f.data.userId === eli.id)
      await call("PUT", `/api/projects/${projectId}/workspace/drafts/probe`, dora.token, {
        body: "thinking",
        role: "worker"
      })
      await waitFor("the draft", (f) => f.type === "draft" && f.data.body === "thinking")
      const eliHere = await connectSse(base(), "/api/stream", { token: eli.token })
      await waitFor("Eli present", (f) => f.type === "presence" && f.data.userId === eli.id && f.data.present)

      // An event, then more signals after it.
      const posted: Array<{ body: string; seq: number }> = []
      const eliSays = async (body: string) => {
        const result = await call("POST", `/api/projects/${projectId}/messages`, eli.token, { body })
        posted.push({ body, seq: result.event.seq })
      }
      await eliSays("one")
      await waitFor("message one", messageFrame("one"))
      await call("PUT", `/api/projects/${projectId}/workspace/drafts/probe`, dora.token, {
        body: "thinking harder",
        role: "worker"
      })
      await waitFor("the draft grown", (f) => f.type === "draft" && f.data.body === "thinking harder")
      await sleep(Math.max(0, typedAt + 1_200 - Date.now())) // past the server's coalescing of Eli's typing
      await call("POST", `/api/projects/${projectId}/typing`, eli.token)
      await expect.poll(async () => (await frames()).filter((f) => f.type === "typing").length, LIVE).toBe(2)
      eliHere.close()
      await waitFor("Eli gone", (f) => f.type === "presence" && f.data.userId === eli.id && f.data.present === false)

      // The server ends the response (it restarts): the browser reconnects by itself, sending the
      // last event's id as Last-Event-ID.
      wire.close()
      const before = await frames()
      await server.stop()
      expect((await server.exited).code).toBe(0)
      await expect.poll(() => page.evaluate(() => (window as any).__probe.errors.length as number), LIVE)
        .toBeGreaterThan(0)
      await startServer()
      await eliSays("two")
      await waitFor("message two, on the reconnected EventSource", messageFrame("two"))
      const lastBeforeRestart = before.filter((f) => !f.signal).at(-1)!
      expect(lastBeforeRestart.type).toBe("message.created")
      const resumes = () => streamRequests.filter((r) => r.lastEventId !== undefined).map((r) => r.lastEventId)
      await expect.poll(resumes, LIVE).toContain(lastBeforeRestart.lastEventId)
      expect(new Set(resumes())).toEqual(new Set([lastBeforeRestart.lastEventId]))

      // Closed by hand; two messages meanwhile; reopened with the last lastEventId as ?cursor=.
      const lastId = (await frames()).filter((f) => !f.signal).at(-1)!.lastEventId
      await page.evaluate(() => (window as any).__probe.close())
      await eliSays("three")
      await eliSays("four")
      await page.evaluate(
        (url) => (window as any).__probe.open(url),
        `/api/stream?ticket=${await ticket()}&cursor=${encodeURIComponent(lastId)}`
      )
      await waitFor("message four", messageFrame("four"))
      await eliSays("five")
      await waitFor("message five", messageFrame("five"))
      await sleep(500)

      const seen = await frames()
      // Every signal kind came; and on each EventSource, a signal's lastEventId is the last event's
      // id (empty before any), while each event brings an id of its own.
      expect(new Set(seen.filter((f) => f.signal).map((f) => f.type))).toEqual(new Set(["presence", "typing", "draft"]))
      for (const source of [1, 2]) {
        let last = ""
        for (const f of seen.filter((x) => x.source === source)) {
          if (f.signal) {
            expect({ type: f.type, lastEventId: f.lastEventId }).toEqual({ type: f.type, lastEventId: last })
          } else {
            expect(f.lastEventId).not.toBe("")
            expect(f.lastEventId).not.toBe(last)
            last = f.lastEventId
          }
        }
      }
      // The signals before the first message went out with the heads frame's id still current.
      const heads = seen.filter((f) => f.type === "heads")
      expect(heads).toHaveLength(1) // both resumes went on from the position: no fresh start
      const firstMessage = seen.findIndex(messageFrame("one"))
      const early = seen.slice(0, firstMessage).filter((f) => f.signal)
      expect(new Set(early.map((f) => f.type))).toEqual(new Set(["presence", "typing", "draft"]))
      for (const f of early) expect(f.lastEventId).toBe(heads[0]!.lastEventId)
      // Every message exactly once, in seq order, across the browser's reconnect and the reopening.
      const messages = seen.filter((f) => f.type === "message.created" && f.data.stream === projectStream)
      expect(messages.map((f) => ({ body: f.data.data.body, seq: f.data.seq }))).toEqual(posted)
      expect(posted.map((p) => p.seq)).toEqual(posted.map((_, i) => posted[0]!.seq + i))
      expect(messages.map((f) => f.source)).toEqual([1, 1, 2, 2, 2])
      // The browser resumed the first EventSource itself (one EventSource object, reopened once).
      expect(await page.evaluate(() => (window as any).__probe.opens as Array<number>)).toEqual([1, 1, 2])

      // On the wire, no signal frame had an id: line; every event had one.
      const wired = wire.all.filter((e) => ["presence", "typing", "draft"].includes(e.event ?? ""))
      expect(new Set(wired.map((e) => e.event))).toEqual(new Set(["presence", "typing", "draft"]))
      expect(wired.filter((e) => e.id !== undefined)).toEqual([])
      expect(wire.all.filter((e) => !wired.includes(e) && e.id === undefined)).toEqual([])
      await context.close()
    },
    180_000
  )
})
