import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { checkSchemaKnown } from "../db/Migrations.js"

/**
 * The check the server's materializer runs before each batch (built once from its SqlClient): a node whose build is older than the database's
 * schema — a newer build migrated it, or is migrating it right now, while this node kept running —
 * must not copy another event. A newer migration may change what materializing means (0008 added
 * the hourly rollups: a node from before it copied events without them, and analytics undercounted
 * for good); this build cannot know how, so it stops, says so as an error, and leaves the outbox
 * rows to the nodes of the newer build (the outbox is shared: they copy them with their logic).
 * The analytics `asOf` watermark stops moving meanwhile, so nothing claims to be counted that is
 * not. The node goes on serving everything else. One short read per batch (two one-row tables),
 * never per row. The start-up check (`SchemaTooNew` in db/Migrations.ts) keeps such a build from
 * starting at all; this is for the node already running when the migration lands.
 */
export const schemaGuard = Effect.map(SqlClient.SqlClient, (sql) =>
  checkSchemaKnown.pipe(
    Effect.provideService(SqlClient.SqlClient, sql),
    Effect.tapErrorTag("SchemaTooNew", (error) =>
      Effect.logError(
        `materializer stopped: ${error.message}; this node copies no more events into event_log ` +
          `(nodes of the newer build do)`
      ))
  ))
