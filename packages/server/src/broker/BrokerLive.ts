import { Effect, Layer } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { withChaos } from "./ChaosBroker.js"
import { memoryBroker, MemoryBrokerPublisherLive } from "./MemoryBroker.js"
import { PostgresBrokerPublisherLive, PostgresBrokerSubscriberLive } from "./PostgresBroker.js"
import { RedisBrokerPublisherLive, RedisBrokerSubscriberLive } from "./RedisBroker.js"

/** The broker chosen by `HERALD_BROKER`, its publishing side wrapped in the chaos drill. */
export const BrokerLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => {
    switch (config.broker) {
      case "memory":
        return memoryBroker(withChaos)
      case "postgres":
        return Layer.merge(withChaos(PostgresBrokerPublisherLive), PostgresBrokerSubscriberLive)
      case "redis":
        return Layer.merge(withChaos(RedisBrokerPublisherLive), RedisBrokerSubscriberLive)
    }
  })
)

/** Only the publishing side, as chosen by `HERALD_BROKER` (for the CLI's `replay`). */
export const BrokerPublisherLive = Layer.unwrapEffect(
  Effect.map(AppConfig, (config) => {
    switch (config.broker) {
      case "memory":
        return withChaos(MemoryBrokerPublisherLive)
      case "postgres":
        return withChaos(PostgresBrokerPublisherLive)
      case "redis":
        return withChaos(RedisBrokerPublisherLive)
    }
  })
)
