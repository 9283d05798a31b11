import { Effect, Layer } from "effect"
import { connection } from "../broker/RedisBroker.js"
import { incoming, outgoing, SignalBus } from "./SignalBus.js"

/** The signal side's own pub/sub channel: never the events' stream (`herald:events`). */
export const SIGNAL_CHANNEL = "herald:signals"

const PUBLISH_TIMEOUT_MS = 3_000

/**
 * The redis broker's signal side: Redis pub/sub on two connections of its own (a subscribing
 * connection can do nothing else), apart from the events' stream. ioredis subscribes again after
 * it reconnects; what was published meanwhile is lost (best-effort, G10).
 */
export const RedisSignalBusLive = Layer.scoped(
  SignalBus,
  Effect.gen(function*() {
    const { heard, signals } = yield* incoming
    const subscriber = yield* connection("signals-subscriber", 0)
    subscriber.on("message", (channel: string, message: string) => {
      if (channel === SIGNAL_CHANNEL) heard(message)
    })
    yield* Effect.tryPromise(() => subscriber.subscribe(SIGNAL_CHANNEL)).pipe(Effect.orDie)
    const publisher = yield* connection("signals-publisher", PUBLISH_TIMEOUT_MS)
    const publish = yield* outgoing("redis signals", (payloads) =>
      Effect.tryPromise(() => {
        const batch = publisher.pipeline()
        for (const payload of payloads) batch.publish(SIGNAL_CHANNEL, payload)
        return batch.exec()
      }))
    return { publish, signals }
  })
)
