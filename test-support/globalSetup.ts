import { Effect, Exit, Redacted, Scope } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import type {} from "vitest"
import type { TestProject } from "vitest/node"
import { embeddedUrl } from "../packages/server/src/db/Database.js"
import { acquireEmbedded } from "../packages/server/src/db/EmbeddedPostgres.js"

/**
 * One PostgreSQL for the whole test run: `DATABASE_URL` when set (any PostgreSQL 14+ on which the
 * tests may create databases), otherwise a throw-away embedded cluster. Each test file then
 * creates its own database on it (test-support/TestDatabase.ts).
 * Every workspace project runs this setup; they share one cluster through globalThis.
 */
interface Shared {
  readonly url: Promise<string>
  users: number
  readonly stop: () => Promise<void>
}
const key = Symbol.for("herald.test.postgres")
const g = globalThis as unknown as { [key]?: Shared }

const start = (): Shared => {
  if (process.env.DATABASE_URL) {
    return { url: Promise.resolve(process.env.DATABASE_URL), users: 0, stop: async () => {} }
  }
  const scope = Effect.runSync(Scope.make())
  const dir = fs.mkdtemp(path.join(os.tmpdir(), "herald-test-"))
  const url = dir.then(async (dataDir) => {
    await fs.chmod(dataDir, 0o755)
    const c = await Effect.runPromise(
      Scope.extend(acquireEmbedded({ dataDir, unsafeFast: true, maxConnections: 500 }), scope)
    )
    return Redacted.value(embeddedUrl({ ...c, database: "postgres" }))
  })
  return {
    url,
    users: 0,
    stop: async () => {
      await Effect.runPromise(Scope.close(scope, Exit.void))
      await fs.rm(await dir, { recursive: true, force: true })
    }
  }
}

export default async function setup(project: TestProject) {
  const shared = (g[key] ??= start())
  shared.users++
  project.provide("databaseAdminUrl", await shared.url)
  return async () => {
    if (--shared.users === 0) {
      delete g[key]
      await shared.stop()
    }
  }
}

declare module "vitest" {
  export interface ProvidedContext {
    databaseAdminUrl: string
  }
}
