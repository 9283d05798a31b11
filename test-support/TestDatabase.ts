import { SqlClient } from "@effect/sql"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import { randomBytes } from "node:crypto"
import pg from "pg"
import { inject } from "vitest"
import { clientLayer } from "../packages/server/src/db/Database.js"
import { runMigrations } from "../packages/server/src/db/Migrations.js"

const adminQuery = async (text: string) => {
  const client = new pg.Client({ connectionString: inject("databaseAdminUrl") })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

/** A URL to a fresh, empty database on the test cluster, dropped when the scope closes. */
export const freshDatabaseUrl = Effect.acquireRelease(
  Effect.promise(async () => {
    const name = `herald_test_${randomBytes(6).toString("hex")}`
    await adminQuery(`CREATE DATABASE ${name}`)
    const url = new URL(inject("databaseAdminUrl"))
    url.pathname = `/${name}`
    return { name, url: url.toString() }
  }),
  ({ name }) => Effect.promise(() => adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).pipe(Effect.ignore)
).pipe(Effect.map(({ url }) => url))

/**
 * A real PostgreSQL database of its own for one test file (or one `it.layer` block): created
 * fresh, migrated, and dropped at the end.
 */
export const TestDatabaseLive = Layer.unwrapScoped(
  Effect.map(
    freshDatabaseUrl,
    (url) =>
      Layer.tap(
        clientLayer({ url: Redacted.make(url), maxConnections: 40 }),
        (ctx) => Effect.provide(runMigrations, ctx)
      )
  )
)

/** Empties every table between tests that need a clean slate. */
export const truncateAll = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`TRUNCATE users, api_tokens, projects, project_members, messages, event_streams, event_outbox, event_log, event_log_hourly, event_log_hourly_actors CASCADE`
})

/** Runs `f` with the URL of a fresh database on the test cluster (for tests that spawn server processes), dropped after. */
export const withFreshDatabase = async <A>(f: (url: string) => Promise<A>): Promise<A> => {
  const scope = Effect.runSync(Scope.make())
  try {
    return await f(await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope)))
  } finally {
    await Effect.runPromise(Scope.close(scope, Exit.void))
  }
}

declare module "vitest" {
  export interface ProvidedContext {
    /** Set by test-support/globalSetup.ts: a superuser URL of the test cluster. */
    databaseAdminUrl: string
  }
}
