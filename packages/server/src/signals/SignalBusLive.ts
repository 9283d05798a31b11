import type { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import type { RedisUnavailable } from "../broker/RedisBroker.js"
import { AppConfig } from "../config/AppConfig.js"
import { PostgresSignalBusLive } from "./PostgresSignalBus.js"
import { RedisSignalBusLive } from "./RedisSignalBus.js"
import { MemorySignalBusLive, type SignalBus } from "./SignalBus.js"

/** The signal side of the broker chosen by `HERALD_BROKER`. */
export const SignalBusLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config): Layer.Layer<SignalBus, RedisUnavailable, PgClient.PgClient | AppConfig> => {
    switch (config.broker) {
      case "memory":
        return MemorySignalBusLive
      case "postgres":
        return PostgresSignalBusLive
      case "redis":
        return RedisSignalBusLive
    }
  })
)
