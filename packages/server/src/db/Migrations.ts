import { SqlClient, type SqlError } from "@effect/sql"
import { Data, Duration, Effect, Schedule } from "effect"
import { migrations, online } from "../../../../migrations/index.js"

const TABLE = "herald_migrations"

/**
 * Where a migrating process says, before a migration's work starts, which migration it is
 * applying (one row). Nodes read it with `herald_migrations` (`newestSchema`): a node whose build
 * does not know that migration stops materializing at once (eventlog/SchemaGuard.ts), not only
 * once the migration has committed. The runner's own, like `herald_migrations`: no migration
 * makes it.
 */
const FENCE = "herald_migrations_fence"

/**
 * The advisory lock every process that migrates this database takes (the server at start-up,
 * `herald migrate`, the CLI's other commands): a constant of our own ("HRLD"). Builds before this
 * one take it per transaction (`pg_advisory_xact_lock`), this one per session: the two exclude
 * each other all the same.
 */
const LOCK_KEY = 0x48_52_4c_44

/**
 * How long a migration's statement may wait for a table lock before its transaction gives up and
 * is tried again. A DDL statement waiting for a lock makes every later statement on that table
 * queue behind it: a migration must never keep writers waiting longer than this (issue 23, "no
 * migration blocks writers for more than a second").
 */
const LOCK_TIMEOUT = "300ms"

/** Tries again after a lock wait timed out or a deadlock: a short pause, for up to about ten minutes. */
const lockRetry = Schedule.exponential("50 millis").pipe(
  Schedule.union(Schedule.spaced("1 second")),
  Schedule.upTo(Duration.minutes(10))
)

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

const pad = (id: number) => String(id).padStart(4, "0")

/** The newest migration applied or being applied on this database: its id and `NNNN_name` (none on an empty database). */
export const newestSchema = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ readonly migrationId: number | null; readonly name: string | null }>`
    SELECT migration_id, name FROM (
      SELECT migration_id, name FROM ${sql(TABLE)}
      UNION ALL
      SELECT migration_id, name FROM ${sql(FENCE)}
    ) m ORDER BY migration_id DESC LIMIT 1`
  return row === undefined || row.migrationId === null
    ? undefined
    : { id: row.migrationId, label: `${pad(row.migrationId)}_${row.name}` }
})

/** Fails with `SchemaTooNew` when the database's schema is (or is becoming) newer than this build knows. */
export const checkSchemaKnown = Effect.flatMap(
  newestSchema,
  (newest) =>
    newest !== undefined && newest.id > newestKnownId
      ? Effect.fail(new SchemaTooNew({ database: newest.label, known: newestKnown }))
      : Effect.void
)

const sqlState = (error: SqlError.SqlError) => (error.cause as { code?: unknown } | undefined)?.code

/** A lock wait that timed out (`lock_timeout`) or a deadlock: nothing was changed, try again. */
const isLockConflict = (error: unknown) =>
  typeof error === "object" && error !== null && (error as { _tag?: unknown })._tag === "SqlError" &&
  ["55P03", "40P01"].includes(String(sqlState(error as SqlError.SqlError)))

/**
 * One pending migration: its online part first (`online` in migrations/index.ts: long copies done
 * in short transactions while writers go on), then the migration itself and its row in
 * `herald_migrations`, in one short transaction whose lock waits are bounded by `LOCK_TIMEOUT` and
 * tried again.
 */
const applyOne = (id: number, name: string, migration: Effect.Effect<void, unknown, SqlClient.SqlClient>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const key = `${pad(id)}_${name}`
    yield* sql`
      INSERT INTO ${sql(FENCE)} (only_row, migration_id, name) VALUES (true, ${id}, ${name})
      ON CONFLICT (only_row) DO UPDATE SET migration_id = EXCLUDED.migration_id, name = EXCLUDED.name`
    const before = online[key]
    if (before !== undefined) {
      yield* before.pipe(Effect.mapError((cause) => new MigrationFailed({ migration: key, cause })))
    }
    yield* sql.withTransaction(Effect.gen(function*() {
      yield* sql`SELECT set_config('lock_timeout', ${LOCK_TIMEOUT}, true)`
      yield* migration
      yield* sql`INSERT INTO ${sql(TABLE)} (migration_id, name) VALUES (${id}, ${name})`
    })).pipe(
      Effect.retry({ while: isLockConflict, schedule: lockRetry }),
      Effect.mapError((cause) => new MigrationFailed({ migration: key, cause }))
    )
  }).pipe(Effect.annotateLogs("migration", `${pad(id)}_${name}`))

/** A migration failed: nothing of its transaction was applied. */
export class MigrationFailed extends Data.TaggedError("MigrationFailed")<{
  readonly migration: string
  readonly cause: unknown
}> {
  override get message() {
    const cause = this.cause as { message?: unknown } | undefined
    return `migration ${this.migration} failed: ${String(cause?.message ?? this.cause)}`
  }
}

/**
 * Applies every migration not yet applied, in order; forward-only. Each migration runs in a
 * transaction of its own, so that no lock one takes is held through the next one's work; several
 * processes may run this at once: they take turns on a session-level advisory lock, held on one
 * reserved connection for the whole run (the migrator's own table is created once, each migration
 * runs once). Every statement runs on that connection, so one connection is enough. Refuses a
 * database migrated past what this build knows (`SchemaTooNew`). Returns what it applied.
 */
export const runMigrations = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const conn = yield* sql.reserve
  const pinned = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    // Statements run on `conn`; depth -1 makes `withTransaction` open a transaction (BEGIN) on
    // it, as at depth 0 it would open a savepoint (@effect/sql's makeWithTransaction).
    Effect.provideService(effect, SqlClient.TransactionConnection, [conn, -1])
  return yield* pinned(Effect.gen(function*() {
    yield* Effect.acquireRelease(
      sql`SELECT pg_advisory_lock(${LOCK_KEY})`,
      () => pinned(sql`SELECT pg_advisory_unlock(${LOCK_KEY})`).pipe(Effect.ignore)
    )
    // The migrator's own table, as @effect/sql's migrator creates it (builds before this one ran it).
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(TABLE)} (
      migration_id integer primary key,
      created_at timestamp with time zone not null default now(),
      name text not null
    )`
    yield* sql`CREATE TABLE IF NOT EXISTS ${sql(FENCE)} (
      only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
      migration_id integer NOT NULL,
      name text NOT NULL
    )`
    const [latest] = yield* sql<{ readonly migrationId: number | null }>`
      SELECT max(migration_id) AS migration_id FROM ${sql(TABLE)}`
    const latestId = latest?.migrationId ?? 0
    if (latestId > newestKnownId) {
      // The fence may name a migration a newer build is applying right now; what is applied counts here.
      const [row] = yield* sql<{ readonly name: string }>`
        SELECT name FROM ${sql(TABLE)} WHERE migration_id = ${latestId}`
      return yield* new SchemaTooNew({ database: `${pad(latestId)}_${row!.name}`, known: newestKnown })
    }
    const pending = Object.keys(migrations).sort().map((key) => {
      const [, id, name] = key.match(/^(\d+)_(.+)$/)!
      return { id: Number(id), name: name!, migration: migrations[key as keyof typeof migrations] }
    }).filter((m) => m.id > latestId)
    for (const m of pending) yield* applyOne(m.id, m.name, m.migration)
    return pending.map((m) => [m.id, m.name] as const)
  }))
}).pipe(Effect.scoped, Effect.withSpan("runMigrations"))
