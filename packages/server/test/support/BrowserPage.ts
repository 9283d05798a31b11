import { expect } from "@effect/vitest"
import type { Page } from "playwright-core"

/**
 * Runs in the page before its own scripts (`context.addInitScript`): records every EventSource
 * the page opens and every `heads` frame they receive, so a test can tell one connection resumed
 * by the browser (one EventSource, one heads frame) from a page that reconnects by hand. Plain
 * JavaScript text, so nothing the test's compiler adds reaches the page.
 */
export const countEventSources = {
  content: `(() => {
    const Native = window.EventSource
    const seen = { opened: [], heads: 0 }
    window.__heraldEventSources = seen
    window.EventSource = class extends Native {
      constructor(url, init) {
        super(url, init)
        seen.opened.push(String(url))
        this.addEventListener("heads", () => { seen.heads += 1 })
      }
    }
  })()`
}

type Seen = { opened: Array<string>; heads: number }
const seen = (page: Page) =>
  page.evaluate(() => (window as unknown as { __heraldEventSources: Seen }).__heraldEventSources)

/** The URLs of the EventSources the page opened, in order. */
export const eventSourcesOpened = (page: Page) => seen(page).then((s) => s.opened)

/** How many `heads` frames (one per fresh, cursorless connection) the page's EventSources received. */
export const headsFramesSeen = (page: Page) => seen(page).then((s) => s.heads)

/** Signs in on the web client at `base` with `token`, and waits until the project chat has caught up. */
export const signIn = async (page: Page, base: string, token: string, timeout: number) => {
  await page.goto(base + "/")
  await page.getByLabel("Token").fill(token)
  await page.getByRole("button", { name: "Sign in" }).click()
  await expect.poll(() => page.locator("#project-chat .state").textContent(), { timeout }).toMatch(/caught up/)
}
