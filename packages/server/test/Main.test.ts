import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as fs from "node:fs/promises"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { freePort, spawnServer } from "../../../test-support/Process.js"
import { acquireEmbedded } from "../src/db/EmbeddedPostgres.js"

describe("the server process", () => {
  it.each([
    ["PORT", "abc"],
    ["HERALD_BROKER", "kafka"],
    ["HERALD_CHAOS_PUBLISH_FAILURE_RATE", "2"],
    ["HERALD_PUBLISH_BATCH_SIZE", "0"],
    ["LOG_LEVEL", "loud"],
    ["HERALD_CORS_ORIGINS", "*"]
  ])("an invalid %s stops start-up with one line naming it", async (name, value) => {
    const proc = spawnServer({ [name]: value, HERALD_DATA_DIR: "/nonexistent/never-created" })
    const { code } = await proc.exited
    expect(code).toBe(1)
    const lines = proc.output().trim().split("\n")
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(new RegExp(`^Invalid configuration: ${name}: `))
  })

  it("an unreachable DATABASE_URL, or a port already in use, stops start-up with one clear line", async () => {
    const unreachable = spawnServer({ DATABASE_URL: "postgres://herald:secret@127.0.0.1:1/herald" })
    expect((await unreachable.exited).code).toBe(1)
    expect(unreachable.output().trim().split("\n").at(-1)).toMatch(
      /^Cannot use the database: .*ECONNREFUSED 127\.0\.0\.1:1$/
    )
    expect(unreachable.output()).not.toContain("secret")

    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "herald-port-"))
    await fs.chmod(dataDir, 0o755)
    const blocker = net.createServer()
    const port = await freePort()
    await new Promise<void>((resolve) => blocker.listen(port, "127.0.0.1", resolve))
    try {
      const busy = spawnServer({ HERALD_DATA_DIR: dataDir, PORT: String(port) })
      expect((await busy.exited).code).toBe(1)
      expect(busy.output().trim().split("\n").at(-1)).toBe(
        `Cannot serve HTTP: listen EADDRINUSE: address already in use 127.0.0.1:${port}`
      )
    } finally {
      blocker.close()
      await fs.rm(dataDir, { recursive: true, force: true })
    }
  }, 60_000)

  it(
    "the production command on an empty data dir: embedded PostgreSQL, demo user and project, docs URL; a second process attaches; SIGTERM exits 0; a restart keeps the data",
    async () => {
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "herald-main-"))
      await fs.chmod(dataDir, 0o755)
      const port = await freePort()
      const env = { HERALD_DATA_DIR: dataDir, PORT: String(port) }
      try {
        const first = spawnServer(env)
        const [, token] = await first.waitFor(/demo token:\s+(\S+)/)
        await first.waitFor(new RegExp(`API docs at http://127\\.0\\.0\\.1:${port}/docs`))
        const projects = await fetch(`http://127.0.0.1:${port}/api/projects`, {
          headers: { authorization: `Bearer ${token}` }
        })
        expect(projects.status).toBe(200)
        expect((await projects.json()).items.map((p: { name: string }) => p.name)).toEqual(["Demo project"])

        // Another process on the same data dir finds the running cluster instead of starting one.
        const scope = Effect.runSync(Scope.make())
        const attached = await Effect.runPromise(Scope.extend(acquireEmbedded({ dataDir }), scope))
        expect(attached.owned).toBe(false)
        await Effect.runPromise(Scope.close(scope, Exit.void))

        first.child.kill("SIGTERM")
        expect((await first.exited).code).toBe(0)

        const second = spawnServer(env)
        await second.waitFor(/API docs at/)
        expect(second.output()).not.toMatch(/demo token/)
        const again = await fetch(`http://127.0.0.1:${port}/api/projects`, {
          headers: { authorization: `Bearer ${token}` }
        })
        expect((await again.json()).items).toHaveLength(1)
        second.child.kill("SIGTERM")
        expect((await second.exited).code).toBe(0)
      } finally {
        await fs.rm(dataDir, { recursive: true, force: true })
      }
    },
    120_000
  )
})
