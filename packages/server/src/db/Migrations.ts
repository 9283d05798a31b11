import { Migrator, SqlClient } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import { Data, Effect } from "effect"
import { migrations } from "../../../../migrations/index.js"

const TABLE = "herald_migrations"

/**
 * The advisory lock every process that migrates this database takes (the server at start-up,
 * `herald migrate`, the CLI's other commands): a constant of our own ("HRLD").
 */
const LOCK_KEY = 0x48_52_4c_44

/** The newest migration this build knows: `NNNN_name`. */
const newestKnown = Object.keys(migrations).sort().at(-1)!
const newestKnownId = Number(newestKnown.slice(0, 4))

/**
 * The database was migrated by a newer build than this one: its schema may have changed in ways
 * this code does not expect (a node left on the old build during an upgrade), so it must not
 * start on it.
 */
export class SchemaTooNew extends Data.TaggedError("SchemaTooNew")<{
  readonly database: string
  readonly known: string
}> {
  override get message() {
    return `the database's schema is at migration ${this.database}, newer than this build knows ` +
      `(${this.known}): run the newer build, or restore a database of this build's schema`
  }
}

const migrate = PgMigrator.run({ loader: Migrator.fromRecord(migrations), table: TABLE })

/**
 * Applies every migration not yet applied; forward-only. Several processes may run it at once:
 * they take turns on a transaction-scoped advisory lock, so the migrator's own table is created
 * once (its check-then-create is not safe against a concurrent one: a fleet's nodes starting
 * together on an empty database failed) and each migration runs once. Refuses a database migrated past what this build knows (`SchemaTooNew`).
 */
export const runMigrations = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql.withTransaction(Effect.gen(function*() {
    yield* sql`SELECT pg_advisory_xact_lock(${LOCK_KEY})`
    // The migrator's own table, as it would create it: its check (`'…'::regclass`, failing when
    // the table is missing) would abort this transaction.
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(TABLE)} (
      migration_id integer primary key,
      created_at timestamp with time zone not null default now(),
      name text not null
    )`
    const [newest] = yield* sql<{ readonly migrationId: number; readonly name: string }>`
      SELECT migration_id, name FROM ${sql(TABLE)} ORDER BY migration_id DESC LIMIT 1`
    if (newest !== undefined && newest.migrationId > newestKnownId) {
      return yield* new SchemaTooNew({
        database: `${String(newest.migrationId).padStart(4, "0")}_${newest.name}`,
        known: newestKnown
      })
    }
    return yield* migrate
  }))
}).pipe(Effect.withSpan("runMigrations"))
