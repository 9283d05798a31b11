/**
 * Migrating from several processes, and a build older than its database (issue 23, upgrades):
 * eight migrators started at once on an empty database all succeed and apply each migration once
 * (a fleet's nodes starting together; before the advisory lock, the migrator's own table was
 * created twice and some failed); a database migrated past what this build knows is refused —
 * by the migrator, by `herald migrate` and by the compiled server, naming both versions — and
 * left untouched.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import pg from "pg"
import { migrations } from "../../../migrations/index.js"
import { freePort, runProcess, spawnServer } from "../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { clientLayer } from "../src/db/Database.js"
import { runMigrations } from "../src/db/Migrations.js"

const KNOWN = Object.keys(migrations).length
/** The newest migration this build knows, as the refusals name it. */
const NEWEST = Object.keys(migrations).sort().at(-1)!

let scope: Scope.CloseableScope
beforeAll(() => {
  scope = Effect.runSync(Scope.make())
})
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

const freshDatabase = () => Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))

/** `runMigrations` on a pool of its own (another process, as far as PostgreSQL can tell). */
const migrateWithOwnPool = (url: string) =>
  Effect.runPromise(
    runMigrations.pipe(
      Effect.provide(Layer.fresh(clientLayer({ url: Redacted.make(url), maxConnections: 2 }))),
      Effect.provide(NodeContext.layer),
      Effect.either
    )
  )

const query = async (url: string, text: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

describe("migrations", () => {
  it("eight migrators at once on an empty database: all succeed, each migration applied once", async () => {
    for (let round = 0; round < 3; round++) {
      const url = await freshDatabase()
      const results = await Promise.all(Array.from({ length: 8 }, () => migrateWithOwnPool(url)))
      expect(results.filter((r) => r._tag === "Left").map((r) => String(r.left))).toEqual([])
      // One of them applied everything, the others found nothing left to do.
      const applied = results.map((r) => (r._tag === "Right" ? r.right.length : -1)).sort((a, b) => b - a)
      expect(applied).toEqual([KNOWN, 0, 0, 0, 0, 0, 0, 0])
      expect(await query(url, "SELECT count(*)::int AS n FROM herald_migrations")).toEqual([{ n: KNOWN }])
    }
  }, 120_000)

  describe("a database migrated by a newer build", () => {
    const future = async () => {
      const url = await freshDatabase()
      expect((await migrateWithOwnPool(url))._tag).toBe("Right")
      await query(url, "INSERT INTO herald_migrations (migration_id, name) VALUES (99, 'from_the_future')")
      return url
    }

    it.effect("the migrator refuses it, naming both versions, and changes nothing", () =>
      Effect.gen(function*() {
        const url = yield* Effect.promise(future)
        const exit = yield* runMigrations.pipe(
          Effect.provide(Layer.fresh(clientLayer({ url: Redacted.make(url), maxConnections: 2 }))),
          Effect.provide(NodeContext.layer),
          Effect.exit
        )
        expect(Exit.isFailure(exit)).toBe(true)
        expect(String(Exit.isFailure(exit) && exit.cause)).toContain(
          `migration 0099_from_the_future, newer than this build knows (${NEWEST})`
        )
        const rows = yield* Effect.promise(() => query(url, "SELECT count(*)::int AS n FROM herald_migrations"))
        expect(rows).toEqual([{ n: KNOWN + 1 }])
      }), 60_000)

    it("the compiled server refuses to start on it: one line naming both versions, exit 1", async () => {
      const url = await future()
      const server = spawnServer({ DATABASE_URL: url, PORT: String(await freePort()) })
      const { code } = await server.exited
      expect(code).toBe(1)
      expect(server.stderr().trim()).toBe(
        "Cannot use the database: the database's schema is at migration 0099_from_the_future, newer than this " +
          `build knows (${NEWEST}): run the newer build, or restore a database of this build's schema`
      )
    }, 60_000)

    it("`herald migrate` refuses it the same way", async () => {
      const url = await future()
      const { finished } = runProcess(process.execPath, ["packages/cli/bin/herald.mjs", "migrate"], {
        DATABASE_URL: url
      })
      const result = await finished
      expect(result.code).not.toBe(0)
      expect(result.stderr).toContain(
        `herald: the database's schema is at migration 0099_from_the_future, newer than this build knows (${NEWEST})`
      )
    }, 60_000)
  })
})
