/**
 * What the server package offers other packages (the `herald` CLI): its configuration, the
 * database, and the stores and services an operator's commands work with. The server itself
 * starts from `main.ts`.
 */
export { BrokerPublisherLive } from "./broker/BrokerLive.js"
export { BrokerPublisher } from "./broker/BrokerPublisher.js"
export { parseExpiresIn, refusalMessage, TokensRepo } from "./chat/TokensRepo.js"
export { UsersRepo } from "./chat/UsersRepo.js"
export { AppConfig, formatConfigError } from "./config/AppConfig.js"
export { clientLayer, resolveDatabase } from "./db/Database.js"
export { runMigrations, SchemaTooNew } from "./db/Migrations.js"
export { EventLogStore } from "./eventlog/EventLogStore.js"
export { materializeOnce } from "./eventlog/Materializer.js"
export { toWire } from "./events/EventRow.js"
export { ROOMY_LIMITS_ENV } from "./limits/Limits.js"
export { OutboxStore } from "./outbox/OutboxStore.js"
export { CursorStore } from "./stream/CursorStore.js"
export { EventReader } from "./stream/EventReader.js"
