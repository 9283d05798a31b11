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

export interface SpawnedUser {
  readonly id: string
  readonly name: string
  readonly token: string
}

/**
 * Plain fetch calls to a spawned server at `base()` (the browser tests set up with them what the
 * page then shows): the parsed answer (undefined for a 204), or an error saying what came back.
 */
export const spawnedApi = (base: () => string, adminToken: string) => {
  const call = async (method: string, urlPath: string, token: string, body?: unknown) => {
    const res = await fetch(base() + urlPath, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) })
    })
    const text = await res.text()
    if (!res.ok) throw new Error(`${method} ${urlPath} → ${res.status} ${text}`)
    return (text === "" ? undefined : JSON.parse(text)) as any
  }
  const createUser = (name: string): Promise<SpawnedUser> => call("POST", "/api/admin/users", adminToken, { name })
  return { call, createUser }
}
