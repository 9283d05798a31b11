/**
 * Migrations run online (issue 23, upgrades): each in its own transaction, 0007's copy in short
 * batches beside the old table, 0008's backfill without a table lock. What they make must not
 * change: a database migrated from 0006 by the released migrations in one transaction (as every
 * database migrated so far was) and one migrated by this build end with the same schema, the same
 * rows and the same rollups. And the copy keeps writers going: an event_log insert during
 * `runMigrations` on a log of some size is never held for long.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Migrator, SqlClient } from "@effect/sql"
import { type PgClient, PgMigrator } from "@effect/sql-pg"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Redacted, Scope } from "effect"
import pg from "pg"
import { migrations } from "../../../migrations/index.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { clientLayer } from "../src/db/Database.js"
import { checkSchemaKnown, runMigrations } from "../src/db/Migrations.js"
import released0007 from "./fixtures/released-migrations/0007_event_log_partitions.js"
import released0008 from "./fixtures/released-migrations/0008_event_log_rollups.js"

let scope: Scope.CloseableScope
beforeAll(() => {
  scope = Effect.runSync(Scope.make())
})
afterAll(() => Effect.runPromise(Scope.close(scope, Exit.void)))

const freshDatabase = () => Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))

const withPool = <A, E>(
  url: string,
  effect: Effect.Effect<A, E, SqlClient.SqlClient | PgClient.PgClient | NodeContext.NodeContext>,
  maxConnections = 2
) =>
  Effect.runPromise(
    effect.pipe(
      Effect.provide(Layer.fresh(clientLayer({ url: Redacted.make(url), maxConnections }))),
      Effect.provide(NodeContext.layer)
    )
  )

const query = async (url: string, text: string, values: Array<unknown> = []) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text, values)).rows
  } finally {
    await client.end()
  }
}

/** The library's migrator over `record`, all in one transaction: what every build before this one ran. */
const migrateAsReleased = (url: string, record: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>) =>
  withPool(
    url,
    Effect.flatMap(SqlClient.SqlClient, (sql) =>
      sql.withTransaction(
        // The migrator's table first: its own check (a failing `::regclass`) would abort the transaction.
        sql`CREATE TABLE IF NOT EXISTS herald_migrations (
          migration_id integer primary key,
          created_at timestamp with time zone not null default now(),
          name text not null
        )`.pipe(
          Effect.zipRight(PgMigrator.run({ loader: Migrator.fromRecord(record), table: "herald_migrations" }))
        )
      ))
  )

const upTo0006 = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < "0007"))
const released = {
  ...migrations,
  "0007_event_log_partitions": released0007,
  "0008_event_log_rollups": released0008
}

/** A database at 0006 holding `events` events of 3 streams over the last 70 days (ids derived from the seq: the same in every database). */
const at0006 = async (events: number) => {
  const url = await freshDatabase()
  await migrateAsReleased(url, upTo0006)
  await query(
    url,
    `
    WITH u AS (INSERT INTO users (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'a') RETURNING id)
    INSERT INTO projects (id, name, owner_id)
    SELECT ('00000000-0000-0000-0000-00000000010' || g)::uuid, 'p' || g, (SELECT id FROM u) FROM generate_series(1, 3) g`
  )
  await query(
    url,
    `
    INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
    SELECT md5(p || ':' || g)::uuid,
      CASE WHEN p = 3 THEN 'workspace:' ELSE 'project:' END || ('00000000-0000-0000-0000-00000000010' || p),
      g, CASE WHEN g % 5 = 0 THEN 'message.edited' ELSE 'message.created' END,
      ('00000000-0000-0000-0000-00000000010' || p)::uuid, '00000000-0000-0000-0000-000000000001',
      date_trunc('hour', now()) - interval '70 days' + (g::float8 / $1) * interval '70 days',
      jsonb_build_object('body', repeat('x', 50))
    FROM generate_series(1, 3) p, generate_series(1, $1::int) g`,
    [Math.ceil(events / 3)]
  )
  return url
}

/** The schema as text lines: relations, columns, constraints, indexes, functions, triggers (the runner's own fence left out). */
const schemaOf = async (url: string) => {
  const parts = await Promise.all([
    query(
      url,
      `SELECT c.relname, c.relkind, pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relname NOT LIKE 'herald_migrations_fence%' ORDER BY 1`
    ),
    query(
      url,
      `SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default, is_identity
       FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'herald_migrations_fence'
       ORDER BY 1, 3`
    ),
    query(
      url,
      `SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         AND conrelid::regclass::text <> 'herald_migrations_fence' ORDER BY 1, 2`
    ),
    query(
      url,
      `SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename <> 'herald_migrations_fence'
       ORDER BY 1`
    ),
    query(
      url,
      `SELECT p.proname, pg_get_functiondef(p.oid) AS def FROM pg_proc p
       WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1, 2`
    ),
    query(url, `SELECT tgname, tgrelid::regclass::text AS rel FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1`),
    query(url, `SELECT migration_id, name FROM herald_migrations ORDER BY 1`)
  ])
  return parts.flatMap((rows) => rows.map((r) => JSON.stringify(r)))
}

const contentsOf = async (url: string) => ({
  log: await query(url, `SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM event_log`),
  hourly: await query(url, `SELECT stream_id, hour, project_id, type, n::int FROM event_log_hourly ORDER BY 1, 2, 4`),
  actors: await query(
    url,
    `SELECT stream_id, hour, project_id, actor_id, messages::int FROM event_log_hourly_actors ORDER BY 1, 2, 4`
  )
})

describe("migrations online", () => {
  it(
    "from 0006, the released migrations in one transaction and this build's end with the same schema and rows",
    async () => {
      const [asReleased, online] = await Promise.all([at0006(3_000), at0006(3_000)])
      await migrateAsReleased(asReleased, released)
      await withPool(online, runMigrations)
      const [a, b] = await Promise.all([schemaOf(asReleased), schemaOf(online)])
      expect(b).toEqual(a)
      // Several monthly partitions, each with its keys and indexes, compared above.
      expect(a.filter((line) => line.includes(`"relkind":"r"`) && line.includes("event_log_y")).length)
        .toBeGreaterThanOrEqual(3)
      const [ca, cb] = await Promise.all([contentsOf(asReleased), contentsOf(online)])
      expect(cb).toEqual(ca)
      expect(ca.log).toEqual([{ n: 3_000, ids: 3_000 }])
    },
    120_000
  )

  it("an empty database: the same schema either way", async () => {
    const [asReleased, online] = await Promise.all([freshDatabase(), freshDatabase()])
    await migrateAsReleased(asReleased, released)
    await withPool(online, runMigrations)
    expect(await schemaOf(online)).toEqual(await schemaOf(asReleased))
  }, 120_000)

  it("from 0006 on a log of 150 000 events, an event_log insert is never held a second, and none is lost", async () => {
    const url = await at0006(150_000)
    const inserted: Array<string> = []
    let longestMs = 0
    let migrating = true
    // An old node's materializer, as far as event_log can tell: one insert at a time, back to back.
    const writer = (async () => {
      const client = new pg.Client({ connectionString: url })
      await client.connect()
      try {
        for (let i = 0; migrating; i++) {
          const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`
          const started = performance.now()
          await client.query(
            `INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
             VALUES ($1, 'project:live', $2, 'message.created', '00000000-0000-0000-0000-000000000101',
                     '00000000-0000-0000-0000-000000000001', now(), '{}') ON CONFLICT DO NOTHING`,
            [id, i + 1]
          )
          longestMs = Math.max(longestMs, performance.now() - started)
          inserted.push(id)
          await new Promise((r) => setTimeout(r, 5))
        }
      } finally {
        await client.end()
      }
    })()
    await new Promise((r) => setTimeout(r, 200))
    try {
      await withPool(url, runMigrations)
    } finally {
      migrating = false
      await writer
    }
    expect(inserted.length).toBeGreaterThan(10)
    const [row] = await query(
      url,
      `SELECT count(*)::int AS n FROM event_log WHERE id = ANY($1::uuid[])`,
      [inserted]
    )
    expect({ longestUnderASecond: longestMs < 1_000, found: row.n }).toEqual({
      longestUnderASecond: true,
      found: inserted.length
    })
    expect((await query(url, `SELECT count(*)::int AS n FROM event_log`))[0].n).toBe(150_000 + inserted.length)
  }, 180_000)

  it(
    "one connection is enough; a migration being applied (the fence) is newer for the running nodes' check, not for start-up",
    async () => {
      const url = await freshDatabase()
      const applied = await withPool(url, runMigrations, 1)
      expect(applied.length).toBe(Object.keys(migrations).length)
      expect((await withPool(url, Effect.either(checkSchemaKnown)))._tag).toBe("Right")
      await query(url, `UPDATE herald_migrations_fence SET migration_id = 99, name = 'being_applied'`)
      const refused = await withPool(url, Effect.flip(checkSchemaKnown))
      expect(refused.message).toContain("migration 0099_being_applied, newer than this build knows")
      // Start-up goes by what is applied: a node of this build may start while a newer one migrates.
      expect(await withPool(url, runMigrations, 1)).toEqual([])
    },
    60_000
  )
})
