import * as NodeContext from "@effect/platform-node/NodeContext"
import { AppConfig, clientLayer, resolveDatabase } from "@herald/server"
import { Effect, Layer } from "effect"

/**
 * The CLI works directly against the database: `DATABASE_URL`, or the embedded cluster under
 * `HERALD_DATA_DIR` — attached to while the server runs, started for the command's duration if not.
 */
export const CliDatabaseLive = Layer.unwrapScoped(
  Effect.map(resolveDatabase, ({ url }) => clientLayer({ url, maxConnections: 4, applicationName: "herald-cli" }))
).pipe(Layer.provideMerge(AppConfig.layer), Layer.provideMerge(NodeContext.layer))
