/**
 * What the server package offers other packages: its configuration, the database, and the stores
 * and services an operator's commands work with (the `herald` CLI); the embedded cluster, the
 * limits a load must not meet and the publisher's layers (the benches, chaos). The server itself
 * starts from `main.ts`. Other packages import from here, never a module path inside.
 */
export { BrokerPublisherLive } from "./broker/BrokerLive.js"
export { BrokerPublisher } from "./broker/BrokerPublisher.js"
export { parseExpiresIn, refusalMessage, TokensRepo } from "./chat/TokensRepo.js"
export { UsersRepo } from "./chat/UsersRepo.js"
export { AppConfig, formatConfigError } from "./config/AppConfig.js"
export { parseDurationText } from "./config/DurationText.js"
export { BackgroundSqlLive, clientLayer, DatabaseLive, embeddedUrl, resolveDatabase } from "./db/Database.js"
export { acquireEmbedded } from "./db/EmbeddedPostgres.js"
export { runMigrations, SchemaTooNew } from "./db/Migrations.js"
export { Analytics } from "./eventlog/Analytics.js"
export { EventLogStore, type RebuildChunk } from "./eventlog/EventLogStore.js"
export { MATERIALIZE_BATCH, materializeOnce } from "./eventlog/Materializer.js"
export { toWire } from "./events/EventRow.js"
export { NodeServerLive } from "./http/HttpApp.js"
export { ROOMY_LIMITS, ROOMY_LIMITS_ENV } from "./limits/Limits.js"
export { OutboxStore } from "./outbox/OutboxStore.js"
export { BackgroundPublisherLive, serverLayer, SharedLive } from "./Server.js"
export { CursorStore } from "./stream/CursorStore.js"
export { EventReader } from "./stream/EventReader.js"
