import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Context, Duration, Effect, Layer, Option, Redacted, String } from "effect"
import pg from "pg"
import { AppConfig } from "../config/AppConfig.js"
import { acquireEmbedded, EmbeddedCluster } from "./EmbeddedPostgres.js"
import { runMigrations } from "./Migrations.js"

// int8 (seq, positions, counts) as JS numbers: exact up to 2^53, far beyond any stream's length.
const types = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === 20
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as "text")) as pg.CustomTypesConfig["getTypeParser"]
}

export interface ClientOptions {
  readonly url: Redacted.Redacted
  readonly maxConnections?: number
  readonly applicationName?: string
}

/** A PgClient with the naming and type conventions every Herald query relies on. */
export const clientLayer = (options: ClientOptions) =>
  PgClient.layer({
    url: options.url,
    maxConnections: options.maxConnections ?? 20,
    applicationName: options.applicationName ?? "herald",
    connectTimeout: Duration.seconds(10),
    transformResultNames: String.snakeToCamel,
    transformQueryNames: String.camelToSnake,
    types
  })

/** `url` with a session setting for every connection made from it (`options=-c name=value`). */
const withSetting = (url: Redacted.Redacted, name: string, value: string) => {
  const parsed = new URL(Redacted.value(url))
  const options = [parsed.searchParams.get("options"), `-c ${name}=${value}`].filter((o) => o !== null).join(" ")
  parsed.searchParams.set("options", options)
  return Redacted.make(parsed.toString())
}

/**
 * The background pool: the publisher's claims and confirmations and the materializer's copies, on
 * connections of their own with `synchronous_commit = off`, so their commits do not wait for the
 * WAL flush. It is safe there and only there: a lease, a `published` mark or a copy into event_log
 * (with its `materialized_at`) that a database crash loses is only a re-publish or a re-copy, which
 * at-least-once delivery and the materializer already absorb (G3, G6). A chat write never runs here.
 * Built from the main client's own URL; without one (never in Herald) it is the main client.
 */
export const BackgroundSqlLive = Layer.unwrapEffect(
  Effect.map(PgClient.PgClient, (main) =>
    main.config.url === undefined
      ? Layer.succeedContext(Context.make(PgClient.PgClient, main).pipe(Context.add(SqlClient.SqlClient, main)))
      : clientLayer({
        url: withSetting(main.config.url, "synchronous_commit", "off"),
        maxConnections: 3,
        applicationName: `${main.config.applicationName ?? "herald"}-background`
      }))
)

export const embeddedUrl = (c: { user: string; password: string; host: string; port: number; database: string }) =>
  Redacted.make(`postgres://${c.user}:${encodeURIComponent(c.password)}@${c.host}:${c.port}/${c.database}`)

/**
 * The database: `DATABASE_URL`, or the embedded cluster under `HERALD_DATA_DIR` (attached to
 * when another process already runs it, started and owned by this scope otherwise).
 */
export const resolveDatabase = Effect.gen(function*() {
  const config = yield* AppConfig
  if (Option.isSome(config.databaseUrl)) return { url: config.databaseUrl.value, embedded: Option.none() }
  const embedded = yield* acquireEmbedded({ dataDir: config.dataDir })
  yield* Effect.logInfo(
    embedded.owned
      ? `embedded PostgreSQL on 127.0.0.1:${embedded.port} (data in ${config.dataDir})`
      : `using the embedded PostgreSQL already running on 127.0.0.1:${embedded.port}`
  )
  return { url: embeddedUrl(embedded), embedded: Option.some(embedded) }
})

/** SqlClient + PgClient for the configured database, migrated to the latest schema; and the embedded cluster, if any. */
export const DatabaseLive = Layer.unwrapScoped(
  Effect.map(
    resolveDatabase,
    ({ embedded, url }) => Layer.merge(clientLayer({ url }), Layer.succeed(EmbeddedCluster, embedded))
  )
).pipe(Layer.tap((ctx) => runMigrations.pipe(Effect.provide(ctx))))
