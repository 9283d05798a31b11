import type { Events } from "@herald/domain"
import { Effect, Layer, PubSub, Stream } from "effect"
import { BrokerPublisher } from "./BrokerPublisher.js"
import { BrokerSubscriber } from "./BrokerSubscriber.js"

/** A single-process broker: publishes go to every subscriber of this process. */
export const MemoryBrokerLive = Layer.unwrapScoped(
  Effect.gen(function*() {
    const hub = yield* Effect.acquireRelease(PubSub.unbounded<Events.EventWire>(), PubSub.shutdown)
    return Layer.mergeAll(
      Layer.succeed(BrokerPublisher, {
        publish: (events) => PubSub.publishAll(hub, events).pipe(Effect.asVoid)
      }),
      Layer.succeed(BrokerSubscriber, { events: Stream.fromPubSub(hub) })
    )
  })
)
