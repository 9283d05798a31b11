import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core"
import { freePort, repoRoot, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { chromiumArgs, ensureChromium, spawnedApi, type SpawnedUser } from "./support/Browser.js"
import { countEventSources, eventSourcesOpened, headsFramesSeen } from "./support/BrowserPage.js"

const ADMIN = "browser-test-admin"
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
    HERALD_POLL_INTERVAL_MS: "200",
    // Shorter than a restart: the page's reconnect needs a fresh stream ticket.
    HERALD_TICKET_TTL: "2s"
  })
  await server.waitFor(/API docs at/)
}
const base = () => `http://127.0.0.1:${port}`

const { call: api, createUser } = spawnedApi(base, ADMIN)
type User = SpawnedUser

/** A message posted over the API, with the seq the server gave its event. */
interface Posted {
  readonly body: string
  readonly seq: number
}
const post = async (user: User, projectId: string, body: string): Promise<Posted> => {
  const result = await api("POST", `/api/projects/${projectId}/messages`, user.token, { body })
  return { body, seq: result.event.seq }
}

/** Open SSE responses as the server counts them (`herald_sse_connections`, summed over any labels). */
const sseConnections = async () => {
  const text = await (await fetch(base() + "/metrics")).text()
  return [...text.matchAll(/^herald_sse_connections(?:\{[^}]*\})? ([0-9.e+]+)$/gm)]
    .reduce((sum, m) => sum + Number(m[1]), 0)
}

type StorageState = Awaited<ReturnType<BrowserContext["storageState"]>>
const newPage = async (storageState?: StorageState): Promise<{ context: BrowserContext; page: Page }> => {
  const context = await browser.newContext({
    viewport: { width: 1360, height: 1000 },
    ...(storageState === undefined ? {} : { storageState })
  })
  await context.addInitScript(countEventSources)
  return { context, page: await context.newPage() }
}

const signIn = async (page: Page, token: string) => {
  await page.goto(base() + "/")
  await page.getByLabel("Token").fill(token)
  await page.getByRole("button", { name: "Sign in" }).click()
}
const waitCaughtUp = (page: Page) =>
  expect.poll(() => page.locator("#project-chat .state").textContent(), LIVE).toMatch(/caught up/)

/** The switcher as a person reads it: each project's name, its unread badge (0 when none shows), which is open. */
const switcher = (page: Page) =>
  page.locator("#projects li").evaluateAll((lis) =>
    lis.map((li) => {
      const badge = li.querySelector<HTMLElement>(".unread")!
      return {
        name: li.querySelector(".name")!.textContent,
        unread: badge.checkVisibility() ? Number(badge.textContent) : 0,
        open: li.querySelector("button")!.getAttribute("aria-current") === "page"
      }
    })
  )
const unreadCounts = async (page: Page) => Object.fromEntries((await switcher(page)).map((p) => [p.name, p.unread]))

/** What a person reads in a chat: each message's text and, for those that arrived live, its seq. */
const chatMessages = (page: Page, section: "#project-chat" | "#workspace-chat" = "#project-chat") =>
  page.locator(`${section} li.message`).evaluateAll((lis) =>
    lis.map((li) => ({
      body: li.querySelector(".body")!.textContent,
      seq: (li as HTMLElement).dataset.seq === undefined ? undefined : Number((li as HTMLElement).dataset.seq),
      pending: li.classList.contains("pending")
    }))
  )
const chatNotices = (page: Page) =>
  page.locator("#project-chat li.notice").evaluateAll((lis) =>
    lis.map((li) => ({ seq: Number((li as HTMLElement).dataset.seq), text: li.textContent }))
  )
const openProject = (page: Page, name: string) =>
  page.locator("#projects button.project").filter({ hasText: name }).click()

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

describe("the web client in a real browser, on one connection", () => {
  it(
    "a user in 8 projects gets every project live over one EventSource, through a server restart: every message once, in seq order, with unread counts",
    async () => {
      const alice = await createUser("alice")
      const bob = await createUser("bob")
      // Alice owns four projects and adds Bob; Bob owns four and adds Alice.
      const projects: Array<{ id: string; name: string }> = []
      for (
        const [owner, other, name] of [
          [alice, bob, "Alpha"],
          [alice, bob, "Bravo"],
          [alice, bob, "Charlie"],
          [alice, bob, "Delta"],
          [bob, alice, "Echo"],
          [bob, alice, "Foxtrot"],
          [bob, alice, "Golf"],
          [bob, alice, "Hotel"]
        ] as const
      ) {
        const project = await api("POST", "/api/projects", owner.token, { name })
        await api("POST", `/api/projects/${project.id}/members`, owner.token, { userId: other.id })
        projects.push({ id: project.id, name })
      }
      const names = projects.map((p) => p.name)
      const expected = new Map<string, Array<Posted>>(names.map((n) => [n, []]))
      const bobSays = async (round: string) => {
        for (const p of projects) expected.get(p.name)!.push(await post(bob, p.id, `${p.name}: ${round}`))
      }
      // Written before Alice opens the page: loaded over HTTP, and unread in every project but the open one.
      await bobSays("before you came")

      const { context, page } = await newPage()
      await signIn(page, alice.token)
      await waitCaughtUp(page)
      await expect.poll(() => switcher(page).then((s) => s.map((p) => p.name)), LIVE).toEqual(names)
      expect((await switcher(page))[0]!.open).toBe(true)
      await expect.poll(() => unreadCounts(page), LIVE).toEqual(
        Object.fromEntries(names.map((n) => [n, n === "Alpha" ? 0 : 1]))
      )
      await expect.poll(() => chatMessages(page), LIVE).toEqual([
        { body: "Alpha: before you came", seq: undefined, pending: false }
      ])
      // One connection for all 8 projects (16 streams), by the server's count and the page's.
      await expect.poll(sseConnections, LIVE).toBe(1)
      // Opened with a stream ticket: the long-lived token is never in a URL.
      expect(await eventSourcesOpened(page)).toEqual([expect.stringMatching(/^[^?]*\/api\/stream\?ticket=hst_[^&]+$/)])

      // Live in all 8: the open project shows the messages, the other seven count them.
      await bobSays("live")
      await page.getByLabel("Message", { exact: true }).first().fill("Alice here, reading all of them")
      await page.locator("#project-chat .composer button[type=submit]").click()
      // Alice's line shows at once as pending, then committed, with its seq, once.
      const lines = () => chatMessages(page).then((m) => m.map((x) => `${x.body}${x.pending ? " (pending)" : ""}`))
      await expect.poll(lines, LIVE).toEqual([
        "Alpha: before you came",
        "Alpha: live",
        "Alice here, reading all of them"
      ])
      await expect.poll(() => unreadCounts(page), LIVE).toEqual(
        Object.fromEntries(names.map((n) => [n, n === "Alpha" ? 0 : 2]))
      )
      const aliceLine = (await chatMessages(page))[2]!
      expect(aliceLine.seq).toBeGreaterThan(expected.get("Alpha")![1]!.seq)

      // The server restarts mid-conversation; the page's one EventSource reconnects by itself.
      await server.stop()
      expect((await server.exited).code).toBe(0)
      await expect.poll(() => page.locator("#connection").textContent(), LIVE).toMatch(/reconnecting/)
      await startServer()
      await bobSays("after the restart")
      await expect.poll(() => unreadCounts(page), LIVE).toEqual(
        Object.fromEntries(names.map((n) => [n, n === "Alpha" ? 0 : 3]))
      )
      await expect.poll(() => chatMessages(page).then((m) => m.map((x) => x.body)), LIVE).toEqual([
        "Alpha: before you came",
        "Alpha: live",
        "Alice here, reading all of them",
        "Alpha: after the restart"
      ])
      // Still one connection: the page reopened it with a fresh ticket (the first had expired) and
      // resumed from its last cursor (a fresh connection would have started with another heads frame).
      await expect.poll(sseConnections, LIVE).toBe(1)
      const reopened = await eventSourcesOpened(page)
      expect(reopened.length).toBeGreaterThanOrEqual(2)
      const last = new URL(reopened.at(-1)!, base())
      expect(last.searchParams.get("ticket")).toMatch(/^hst_/)
      expect(last.searchParams.get("ticket")).not.toBe(new URL(reopened[0]!, base()).searchParams.get("ticket"))
      expect(last.searchParams.get("cursor")).toMatch(/^[A-Za-z0-9_-]+$/)
      expect(reopened.join(" ")).not.toContain("access_token")
      expect(await headsFramesSeen(page)).toBe(1)
      const opened = reopened.length
      await expect.poll(() => page.locator("#connection").textContent(), LIVE).toMatch(
        /one connection · 16 streams · live/
      )

      // The picture for docs/: the switcher with its unread counts.
      await fs.mkdir(screenshotDir, { recursive: true })
      await page.screenshot({ path: path.join(screenshotDir, "web-client.png"), fullPage: true })

      // Every project, opened from the switcher: each message exactly once, in seq order, those that
      // arrived on the connection carrying the seq the server gave them; opening it clears its count.
      for (const name of names) {
        await openProject(page, name)
        await expect.poll(() => switcher(page).then((s) => s.find((p) => p.open)), LIVE).toEqual({
          name,
          unread: 0,
          open: true
        })
        const want = expected.get(name)!.map((m, i) => ({ body: m.body, seq: i === 0 ? undefined : m.seq }))
        const shown = () =>
          chatMessages(page).then((ms) => ms.filter((m) => m.body !== "Alice here, reading all of them"))
        await expect.poll(() => shown().then((ms) => ms.map(({ body, seq }) => ({ body, seq }))), LIVE).toEqual(want)
        const seqs = (await chatMessages(page)).flatMap((m) => m.seq === undefined ? [] : [m.seq])
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b))
      }
      expect(await unreadCounts(page)).toEqual(Object.fromEntries(names.map((n) => [n, 0])))
      // Switching projects never reconnected.
      expect(await eventSourcesOpened(page)).toHaveLength(opened)
      expect(await sseConnections()).toBe(1)

      // "Since last viewed" outlives the page: Bob writes in Bravo, Alice comes back later.
      await openProject(page, "Alpha")
      await post(bob, projects[1]!.id, "Bravo: while you were away")
      await expect.poll(() => unreadCounts(page).then((u) => u.Bravo), LIVE).toBe(1)
      const profile = await context.storageState()
      await context.close()
      await expect.poll(sseConnections, LIVE).toBe(0)
      await post(bob, projects[1]!.id, "Bravo: still away?")
      await post(bob, projects[7]!.id, "Hotel: ping")
      // The same browser profile: the token and the last views are remembered.
      const again = await newPage(profile)
      await again.page.goto(base() + "/")
      await waitCaughtUp(again.page)
      await expect.poll(() => unreadCounts(again.page), LIVE).toEqual(
        Object.fromEntries(names.map((n) => [n, n === "Bravo" ? 2 : n === "Hotel" ? 1 : 0]))
      )
      expect((await switcher(again.page)).find((p) => p.open)?.name).toBe("Alpha")
      await again.context.close()
    },
    240_000
  )

  it(
    "a new user signs in with the page's help, creates a project, adds a member, and follows being added and removed, on the same connection",
    async () => {
      const carol = await createUser("carol")
      const dave = await createUser("dave")
      const { context, page } = await newPage()
      await page.goto(base() + "/")
      // The sign-in says where a token comes from.
      const welcome = page.locator("#welcome")
      await expect.poll(() => welcome.textContent()).toMatch(/npm start[\s\S]*demo token/)
      expect(await welcome.textContent()).toMatch(/herald users create/)
      await page.getByLabel("Token").fill("hrld_not-a-real-token")
      await page.getByRole("button", { name: "Sign in" }).click()
      await expect.poll(() => page.getByRole("alert").textContent(), LIVE).toMatch(
        /Could not sign in: that token was not accepted/
      )

      await signIn(page, carol.token)
      await expect.poll(() => page.locator("#no-projects").isVisible(), LIVE).toBe(true)
      expect(await page.locator("#my-id").textContent()).toBe(carol.id)
      expect(await page.getByRole("alert").isVisible()).toBe(false)

      // A project created from the page: its project.created (seq 1) arrives on the connection.
      await page.getByLabel("New project").fill("Carol's plan")
      await page.getByRole("button", { name: "Create" }).click()
      await expect.poll(() => switcher(page), LIVE).toEqual([{ name: "Carol's plan", unread: 0, open: true }])
      await expect.poll(() => chatNotices(page), LIVE).toEqual([
        { seq: 1, text: expect.stringMatching(/carol \(you\) created the project “Carol's plan”/) }
      ])
      expect(await page.locator("#no-projects").isVisible()).toBe(false)
      const carolsPlan = (await api("GET", "/api/projects", carol.token)).items[0].id

      // Adding a member by id: the server's errors read as sentences, then it works.
      const addMember = async (userId: string) => {
        await page.getByLabel("Add a member by user id").fill(userId)
        await page.getByRole("button", { name: "Add", exact: true }).click()
      }
      await addMember("not-an-id")
      await expect.poll(() => page.getByRole("alert").textContent(), LIVE).toMatch(/^Could not add the member: .+/)
      await addMember(randomUUID())
      await expect.poll(() => page.getByRole("alert").textContent(), LIVE).toMatch(
        /Could not add the member: .*no user has that id/
      )
      await addMember(dave.id)
      await expect.poll(() => page.locator("#members li").allTextContents().then((m) => m.sort()), LIVE).toEqual([
        expect.stringMatching(/^carol \(you\)\s+owner$/),
        expect.stringMatching(/^dave\s+member$/)
      ])
      await expect.poll(() => page.getByRole("alert").isVisible(), LIVE).toBe(false)
      await expect.poll(() => chatNotices(page).then((n) => n.map((x) => x.text)), LIVE).toEqual([
        expect.stringMatching(/created the project/),
        expect.stringMatching(/#2dave joined/)
      ])
      await post(dave, carolsPlan, "thanks for the invite")
      await expect.poll(() => chatMessages(page), LIVE).toEqual([
        { body: "thanks for the invite", seq: 3, pending: false }
      ])

      // Dave adds Carol to his project: it joins the connection live, and counts unread.
      const davesRoom = await api("POST", "/api/projects", dave.token, { name: "Dave's room" })
      await api("POST", `/api/projects/${davesRoom.id}/members`, dave.token, { userId: carol.id })
      const welcomeMessage = await post(dave, davesRoom.id, "welcome, carol")
      await expect.poll(() => switcher(page), LIVE).toEqual([
        { name: "Carol's plan", unread: 0, open: true },
        { name: "Dave's room", unread: 1, open: false }
      ])
      await openProject(page, "Dave's room")
      await expect.poll(() => chatMessages(page), LIVE).toEqual([
        { body: "welcome, carol", seq: welcomeMessage.seq, pending: false }
      ])
      await expect.poll(() => chatNotices(page), LIVE).toEqual([
        { seq: welcomeMessage.seq - 1, text: expect.stringMatching(/carol \(you\) joined/) }
      ])
      expect(await page.locator("#add-member").isVisible()).toBe(false)
      expect(await page.getByText("Only the project's owner can add members.").isVisible()).toBe(true)

      // Removed while looking at it: the project leaves the switcher, and the page says why.
      await api("DELETE", `/api/projects/${davesRoom.id}/members/${carol.id}`, dave.token)
      await expect.poll(() => switcher(page), LIVE).toEqual([{ name: "Carol's plan", unread: 0, open: true }])
      expect(await page.getByRole("status").textContent()).toBe("You were removed from “Dave's room”.")

      // What the page did before stays: the worker space, and analytics with asOf.
      await page.getByLabel("Message", { exact: true }).nth(1).fill("summarise the plan")
      await page.locator("#workspace-chat .composer button[type=submit]").click()
      await page.getByLabel("as", { exact: true }).selectOption("worker")
      await page.getByLabel("Message", { exact: true }).nth(1).fill("Summary: Dave is in.")
      await page.locator("#workspace-chat .composer button[type=submit]").click()
      await expect.poll(() => chatMessages(page, "#workspace-chat"), LIVE).toEqual([
        { body: "summarise the plan", seq: 1, pending: false },
        { body: "Summary: Dave is in.", seq: 2, pending: false }
      ])
      const figure = (label: string) =>
        page.locator("#analytics .summary div").filter({ hasText: label }).locator("dd").textContent()
      await expect.poll(() => figure("messages"), LIVE).toBe("1")
      await expect.poll(() => figure("my worker space"), LIVE).toBe("2")
      await expect.poll(() => page.locator("#analytics .asof").textContent(), LIVE).toMatch(/as of/)

      // All of it on the one connection the page opened at sign-in.
      expect(await eventSourcesOpened(page)).toHaveLength(1)
      expect(await sseConnections()).toBe(1)
      await context.close()
    },
    180_000
  )

  it(
    "a page whose cursor expired while it was away (its base deleted) starts over without a cursor and reloads over HTTP",
    async () => {
      const erin = await createUser("erin")
      const project = await api("POST", "/api/projects", erin.token, { name: "Expiring" })
      await post(erin, project.id, "before the restart")
      const { context, page } = await newPage()
      await signIn(page, erin.token)
      await waitCaughtUp(page)
      await expect.poll(() => chatMessages(page).then((m) => m.map((x) => x.body)), LIVE).toEqual([
        "before the restart"
      ])

      // While the server is down, its cursor bases go (as after HERALD_CURSOR_RETENTION unused).
      await server.stop()
      const pg = await import("pg")
      const client = new pg.default.Client({ connectionString: databaseUrl })
      await client.connect()
      await client.query("DELETE FROM stream_cursors WHERE user_id = $1", [erin.id])
      await client.end()
      await startServer()
      // The page's reconnect (a fresh ticket and ?cursor=) is refused as expired (the new process's log)…
      await server.waitFor(/http\.status: 400\n\s+http\.method: GET\n\s+http\.url: \/api\/stream/, 20_000)
        .catch(() => expect.fail(`no 400 on /api/stream after the restart:\n${server.output()}`))
      await post(erin, project.id, "after the restart")
      // …the page asks why (a HEAD: 400) and starts over: a new EventSource without a cursor, a heads
      // frame, history over HTTP.
      await expect.poll(() => chatMessages(page).then((m) => m.map((x) => x.body)), LIVE).toEqual([
        "before the restart",
        "after the restart"
      ])
      await expect.poll(() => eventSourcesOpened(page), LIVE).toHaveLength(3)
      expect(await headsFramesSeen(page)).toBe(2)
      const [, refused, fresh] = await eventSourcesOpened(page)
      expect(refused).toMatch(/cursor=/)
      expect(fresh).not.toMatch(/cursor=/)
      await expect.poll(() => page.locator("#connection").textContent(), LIVE).toMatch(/live/)
      expect(await page.getByRole("alert").isVisible()).toBe(false)
      await context.close()
    },
    180_000
  )
})
