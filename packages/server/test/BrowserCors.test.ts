import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { type Browser, chromium, type Page } from "playwright-core"
import { api, freePort, repoRoot, type Spawned, spawnServer } from "../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { chromiumArgs, ensureChromium } from "./support/Browser.js"

/**
 * HERALD_CORS_ORIGINS in a real browser: a page served by another HTTP server (another port,
 * so another origin) calls Herald with fetch and opens an EventSource on it, as a web app hosted
 * elsewhere would. Two such page servers: one whose origin Herald lists, one whose origin it does
 * not. The test asserts on what the page itself observed.
 */

const ADMIN = "browser-cors-admin"
const LIVE = { timeout: 20_000 }

/**
 * The page: calls GET /api/me, opens the multiplexed stream, posts a message once the stream has
 * opened (or failed), and records every outcome in `window.observed` — a fetch the browser
 * blocked is the TypeError it threw.
 */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>a web app on another origin</title>
<script type="module">
  const q = new URLSearchParams(location.search)
  const herald = q.get("herald")
  const token = q.get("token")
  const projectId = q.get("project")
  const observed = { me: null, ticket: null, post: null, stream: { opened: false, errors: 0, readyState: null, bodies: [] } }
  window.observed = observed
  const call = async (method, path, body) => {
    try {
      const headers = { authorization: "Bearer " + token }
      if (body !== undefined) headers["content-type"] = "application/json"
      const res = await fetch(herald + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
      return { status: res.status, body: await res.json() }
    } catch (e) {
      return { error: e.name + ": " + e.message }
    }
  }

  observed.me = await call("GET", "/api/me")
  // A stream ticket, fetched cross-origin, opens the EventSource: the long-lived token never goes into a URL.
  observed.ticket = await call("POST", "/api/stream-tickets")
  const streamCredential = "ticket=" + encodeURIComponent(observed.ticket.body?.ticket)
  const source = new EventSource(herald + "/api/stream?" + streamCredential)
  source.addEventListener("message.created", (e) => observed.stream.bodies.push(JSON.parse(e.data).data.body))
  await new Promise((settled) => {
    source.onopen = () => {
      observed.stream.opened = true
      settled()
    }
    source.onerror = () => {
      observed.stream.errors += 1
      observed.stream.readyState = source.readyState
      settled()
    }
  })
  observed.post = await call("POST", "/api/projects/" + projectId + "/messages", { body: "from " + location.origin })
</script>`

/**
 * The same web app written with @herald/client: its browser bundle (the file docs/client.md gives
 * the size of), loaded from the page's own origin, with the browser's native EventSource.
 */
const LIBRARY_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>a web app on another origin, on @herald/client</title>
<script type="module">
  import { createClient } from "/herald-client.js"
  const q = new URLSearchParams(location.search)
  const observed = { statuses: [], heads: null, bodies: [], errors: [], posted: null }
  window.observed = observed
  const herald = createClient({ baseUrl: q.get("herald"), token: q.get("token") })
  herald.subscribe({}, {
    onHeads: (heads) => observed.heads = heads.streams,
    onEvent: (envelope) => observed.bodies.push(envelope.data.body),
    onStatus: (status) => observed.statuses.push(status),
    onError: (error) => observed.errors.push(error.message)
  })
  while (observed.heads === null) await new Promise((r) => setTimeout(r, 20))
  try {
    const answer = await herald.messages.post({ path: { projectId: q.get("project") }, payload: { body: "from the library at " + location.origin } })
    observed.posted = answer.event.seq
  } catch (e) {
    observed.posted = String(e)
  }
</script>`

const bundle = path.join(repoRoot, "packages/client/dist/herald-client.browser.js")

let browser: Browser
let scope: Scope.CloseableScope
let herald: Spawned
let heraldUrl: string
const pageServers: Array<http.Server> = []
let listedOrigin: string
let unlistedOrigin: string

const servePage = async () => {
  const port = await freePort()
  const server = http.createServer((req, res) => {
    if (req.url === "/herald-client.js") {
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(fs.readFileSync(bundle))
      return
    }
    if (req.url?.startsWith("/library?") === true) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(LIBRARY_PAGE)
      return
    }
    if (req.url?.startsWith("/?") !== true) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE)
  })
  await new Promise<void>((listening) => server.listen(port, "127.0.0.1", listening))
  pageServers.push(server)
  return `http://127.0.0.1:${port}`
}

beforeAll(async () => {
  const executablePath = ensureChromium()
  scope = Effect.runSync(Scope.make())
  const databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
  listedOrigin = await servePage()
  unlistedOrigin = await servePage()
  const port = await freePort()
  heraldUrl = `http://127.0.0.1:${port}`
  herald = spawnServer({
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HERALD_ADMIN_TOKEN: ADMIN,
    HERALD_POLL_INTERVAL_MS: "200",
    HERALD_CORS_ORIGINS: `https://elsewhere.example,${listedOrigin}`
  })
  await herald.waitFor(/API docs at/)
  browser = await chromium.launch({ executablePath, args: chromiumArgs })
}, 600_000)

afterAll(async () => {
  await browser?.close()
  for (const server of pageServers) server.close()
  if (herald !== undefined && herald.child.exitCode === null) await herald.stop()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

interface Observed {
  readonly me: { status?: number; body?: any; error?: string } | null
  readonly ticket: { status?: number; body?: any; error?: string } | null
  readonly post: { status?: number; body?: any; error?: string } | null
  readonly stream: { opened: boolean; errors: number; readyState: number | null; bodies: Array<string> }
}
const observed = (page: Page) => page.evaluate(() => (window as unknown as { observed: Observed }).observed)

/** A user with a project of its own, and the page at `origin` opened as that user. */
const openPageAs = async (name: string, origin: string, page_ = "/") => {
  const user = (await api(heraldUrl, "POST", "/api/admin/users", ADMIN, { name })).body
  const project = (await api(heraldUrl, "POST", "/api/projects", user.token, { name: `${name}'s` })).body
  const context = await browser.newContext()
  const page = await context.newPage()
  const console: Array<string> = []
  page.on("console", (message) => console.push(message.text()))
  const query = new URLSearchParams({ herald: heraldUrl, token: user.token, project: project.id })
  await page.goto(`${origin}${page_}?${query}`)
  return { user, project, page, console, close: () => context.close() }
}

const messagesIn = async (token: string, projectId: string) =>
  (await api(heraldUrl, "GET", `/api/projects/${projectId}/messages`, token)).body.items.map((m: any) => m.body)

describe("a page on another origin, in Chromium", () => {
  it(
    "with its origin in HERALD_CORS_ORIGINS: fetch with a bearer token, a post, and an EventSource that receives it",
    async () => {
      const { close, page, project, user } = await openPageAs("alice", listedOrigin)
      await expect.poll(() => observed(page).then((o) => o.post), LIVE).not.toBeNull()
      const seen = await observed(page)
      expect(seen.me).toEqual({ status: 200, body: expect.objectContaining({ id: user.id, name: "alice" }) })
      // The EventSource was opened with a stream ticket fetched cross-origin, not with the token.
      expect(seen.ticket).toEqual({ status: 201, body: { ticket: expect.any(String), expiresAt: expect.any(String) } })
      expect(seen.ticket?.body.ticket).not.toContain(user.token)
      expect(seen.stream.opened).toBe(true)
      expect(seen.post).toEqual({ status: 201, body: expect.objectContaining({ event: expect.anything() }) })
      await expect.poll(() => observed(page).then((o) => o.stream.bodies), LIVE).toEqual([`from ${listedOrigin}`])
      expect((await observed(page)).stream.errors).toBe(0)
      expect(await messagesIn(user.token, project.id)).toEqual([`from ${listedOrigin}`])
      await close()
    },
    60_000
  )

  it(
    "with its origin not listed: the browser blocks fetch (a TypeError), the EventSource errors and closes, and the post never reaches Herald",
    async () => {
      const { close, console, page, project, user } = await openPageAs("bob", unlistedOrigin)
      await expect.poll(() => observed(page).then((o) => o.post), LIVE).not.toBeNull()
      const seen = await observed(page)
      expect(seen.me).toEqual({ error: expect.stringMatching(/^TypeError: /) })
      expect(seen.ticket).toEqual({ error: expect.stringMatching(/^TypeError: /) })
      expect(seen.post).toEqual({ error: expect.stringMatching(/^TypeError: /) })
      expect(seen.stream).toEqual({ opened: false, errors: 1, readyState: 2, bodies: [] })
      // It was CORS that stopped them, by Chromium's own account, not an unreachable server.
      expect(console.join("\n")).toMatch(/blocked by CORS policy/)
      // The post's preflight was refused, so the post itself was never sent.
      expect(await messagesIn(user.token, project.id)).toEqual([])
      await close()
    },
    60_000
  )

  it(
    "with its origin listed, on @herald/client's browser bundle and the native EventSource: a ticket, heads, a post and its event, cross-origin",
    async () => {
      const { close, page, project } = await openPageAs("carol", listedOrigin, "/library")
      await expect.poll(() => page.evaluate(() => (window as any).observed.posted), LIVE).toBe(2)
      await expect.poll(() => page.evaluate(() => (window as any).observed.bodies), LIVE).toEqual([
        `from the library at ${listedOrigin}`
      ])
      const seen = await page.evaluate(() => (window as any).observed)
      expect(seen.heads).toEqual(expect.objectContaining({ [`project:${project.id}`]: 1 }))
      expect(seen.statuses).toEqual(["connecting", "live"])
      expect(seen.errors).toEqual([])
      await close()
    },
    60_000
  )
})
