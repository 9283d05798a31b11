import { Migrator } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import { Effect } from "effect"
import { migrations } from "../../../../migrations/index.js"

/** Applies every migration not yet applied; forward-only, safe to run from several processes. */
export const runMigrations = PgMigrator.run({
  loader: Migrator.fromRecord(migrations),
  table: "herald_migrations"
}).pipe(Effect.withSpan("runMigrations"))
