import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { freePort, repoRoot, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { chromiumArgs, ensureChromium } from "./support/Browser.js"

const ADMIN = "browser-test-admin"
const screenshotDir = path.join(repoRoot, "test-results")

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

const api = async (method: string, urlPath: string, token: string, body?: unknown) => {
  const res = await fetch(base() + urlPath, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return res.json() as Promise<any>
}

const signIn = async (page: Page, token: string) => {
  await page.goto(base() + "/")
  await page.getByLabel("Token").fill(token)
  await page.getByRole("button", { name: "Sign in" }).click()
  await expect.poll(() => page.locator("#project-chat .state").textContent(), { timeout: 15_000 }).toMatch(/caught up/)
}

/** What a person reads in the project chat: each message's seq and text, top to bottom. */
const projectMessages = (page: Page) =>
  page.locator("#project-chat li.message").evaluateAll((lis) =>
    lis.map((li) => ({ seq: (li as HTMLElement).dataset.seq, body: li.querySelector(".body")?.textContent }))
  )
const projectSeqs = (page: Page) =>
  page.locator("#project-chat li[data-seq]").evaluateAll((lis) =>
    lis.map((li) => Number((li as HTMLElement).dataset.seq))
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
  if (server.child.exitCode === null) {
    server.child.kill("SIGTERM")
    await server.exited
  }
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

describe("the web client in a real browser", () => {
  it("two users chat live; after a server restart the second page shows every message once, in order", async () => {
    const alice = await api("POST", "/api/admin/users", ADMIN, { name: "alice" })
    const bob = await api("POST", "/api/admin/users", ADMIN, { name: "bob" })
    const project = await api("POST", "/api/projects", alice.token, { name: "Launch plan" })
    await api("POST", `/api/projects/${project.id}/members`, alice.token, { userId: bob.id })

    const alicePage = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage()
    const bobPage = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage()
    await signIn(alicePage, alice.token)
    await signIn(bobPage, bob.token)

    // Alice types; Bob sees it live, with its seq.
    const say = async (text: string) => {
      await alicePage.getByLabel("Message", { exact: true }).first().fill(text)
      await alicePage.locator("#project-chat .composer button[type=submit]").click()
    }
    await say("hello Bob")
    await expect.poll(() => projectMessages(bobPage), { timeout: 15_000 }).toEqual([{ seq: "3", body: "hello Bob" }])
    await say("are you there?")
    await bobPage.getByLabel("Message", { exact: true }).first().fill("yes, reading")
    await bobPage.locator("#project-chat .composer button[type=submit]").click()
    await expect.poll(() => projectMessages(alicePage).then((m) => m.length), { timeout: 15_000 }).toBe(3)

    // The server restarts mid-conversation; messages are posted while the pages reconnect.
    server.child.kill("SIGTERM")
    expect((await server.exited).code).toBe(0)
    await expect.poll(() => bobPage.locator("#project-chat .state").textContent(), { timeout: 15_000 }).toMatch(
      /reconnecting/
    )
    await startServer()
    for (const text of ["back again", "did anything get lost?", "nothing should"]) {
      await api("POST", `/api/projects/${project.id}/messages`, alice.token, { body: text })
    }
    const expected = [
      "hello Bob",
      "are you there?",
      "yes, reading",
      "back again",
      "did anything get lost?",
      "nothing should"
    ]
    await expect.poll(() => projectMessages(bobPage).then((m) => m.map((x) => x.body)), { timeout: 20_000 }).toEqual(
      expected
    )
    // Every event exactly once, in seq order, no gap: project.created, member.added, then the messages.
    expect(await projectSeqs(bobPage)).toEqual(Array.from({ length: 8 }, (_, i) => i + 1))
    await expect.poll(() => bobPage.locator("#project-chat .state").textContent(), { timeout: 15_000 }).toMatch(
      /live · caught up at seq 8/
    )

    // The worker space, and analytics with asOf, for the picture.
    await alicePage.getByLabel("Message", { exact: true }).nth(1).fill("summarise the launch thread")
    await alicePage.locator("#workspace-chat .composer button[type=submit]").click()
    await alicePage.getByLabel("as", { exact: true }).selectOption("worker")
    await alicePage.getByLabel("Message", { exact: true }).nth(1).fill("Summary: launch is on track; Bob is reading.")
    await alicePage.locator("#workspace-chat .composer button[type=submit]").click()
    await expect.poll(() => alicePage.locator("#workspace-chat li.message").count(), { timeout: 15_000 }).toBe(2)
    await expect.poll(() => alicePage.locator("#analytics .asof").textContent(), { timeout: 15_000 }).toMatch(/as of/)
    // The panel refreshes every 5 s: it catches up with the six messages (and the worker space's two).
    const figure = (label: string) =>
      alicePage.locator("#analytics .summary div").filter({ hasText: label }).locator("dd").textContent()
    await expect.poll(() => figure("messages"), { timeout: 20_000 }).toBe("6")
    await expect.poll(() => figure("my worker space"), { timeout: 20_000 }).toBe("2")
    await expect.poll(() => alicePage.locator("#workspace-chat .state").textContent(), { timeout: 15_000 }).toMatch(
      /caught up/
    )
    await fs.mkdir(screenshotDir, { recursive: true })
    await alicePage.screenshot({ path: path.join(screenshotDir, "web-client.png"), fullPage: true })
  }, 120_000)
})
