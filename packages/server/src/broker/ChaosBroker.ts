import { Effect, Layer, Random } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { BrokerError } from "./BrokerError.js"
import { BrokerPublisher } from "./BrokerPublisher.js"

/**
 * Wraps whichever publisher is below it and fails `HERALD_CHAOS_PUBLISH_FAILURE_RATE` of the
 * publish calls (whole batches), for staging drills and tests. A rate of 0 leaves it untouched.
 */
export const withChaos = <E, R>(publisher: Layer.Layer<BrokerPublisher, E, R>) =>
  Layer.effect(
    BrokerPublisher,
    Effect.gen(function*() {
      const { chaosPublishFailureRate: rate } = yield* AppConfig
      const inner = yield* BrokerPublisher
      if (rate <= 0) return inner
      return {
        publish: (events, traceparents) =>
          Effect.flatMap(Random.next, (r) =>
            r < rate
              ? Effect.fail(new BrokerError({ message: `chaos: publish failed on purpose (rate ${rate})` }))
              : inner.publish(events, traceparents))
      }
    })
  ).pipe(Layer.provide(publisher))
