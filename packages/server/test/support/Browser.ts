import { execSync } from "node:child_process"
import * as fs from "node:fs"

export const CHROMIUM = "/usr/bin/chromium"

/**
 * Debian's Chromium drives the browser tests (never a downloaded browser build). On a machine
 * without it, as root, install it with apt-get; otherwise say in one line how to.
 */
export const ensureChromium = () => {
  if (fs.existsSync(CHROMIUM)) return CHROMIUM
  if (process.getuid?.() !== 0) {
    throw new Error("browser tests need Debian's chromium: run `sudo apt-get install -y chromium`")
  }
  execSync("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium", {
    stdio: "ignore",
    timeout: 600_000
  })
  if (!fs.existsSync(CHROMIUM)) throw new Error("apt-get install chromium did not provide /usr/bin/chromium")
  return CHROMIUM
}

/** Flags for a headless Chromium on a machine with no network but loopback. */
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-dev-shm-usage"
]
