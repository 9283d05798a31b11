import type { Events } from "@herald/domain"
import { Context, Effect, Layer, PubSub, Stream } from "effect"
import { SubscriberStatus } from "../observability/SubscriberStatus.js"
import { BrokerPublisher } from "./BrokerPublisher.js"
import { BrokerDelivery, BrokerSubscriber } from "./BrokerSubscriber.js"

/** The in-process hub both sides of the memory broker share: deliveries, made once for every subscriber. */
class MemoryHub extends Context.Tag("Herald/MemoryHub")<MemoryHub, PubSub.PubSub<BrokerDelivery>>() {}

const MemoryHubLive = Layer.scoped(
  MemoryHub,
  Effect.acquireRelease(PubSub.unbounded<BrokerDelivery>(), PubSub.shutdown)
)

const deliveries = (events: ReadonlyArray<Events.EventWire>, traceparents?: ReadonlyArray<string | undefined>) =>
  traceparents === undefined
    ? events.map((event) => BrokerDelivery.Envelope({ event }))
    : events.map((event, i) => BrokerDelivery.Envelope({ event, traceparent: traceparents[i] }))

const MemoryPublisher = Layer.effect(
  BrokerPublisher,
  Effect.map(MemoryHub, (hub) => ({
    publish: (events, traceparents) => PubSub.publishAll(hub, deliveries(events, traceparents)).pipe(Effect.asVoid)
  }))
)

/** In-process, so always live. */
const MemorySubscriber = Layer.effect(
  BrokerSubscriber,
  Effect.gen(function*() {
    const hub = yield* MemoryHub
    yield* SubscriberStatus.pipe(Effect.flatMap((status) => status.set({ _tag: "Live" })))
    return { events: Stream.fromPubSub(hub) }
  })
)

/**
 * A single-process broker: publishes go to every subscriber of this process. `wrapPublisher`
 * decorates the publishing side (e.g. the chaos drill) while both sides share one hub.
 */
export const memoryBroker = <E, R>(
  wrapPublisher: (publisher: Layer.Layer<BrokerPublisher, never, MemoryHub>) => Layer.Layer<BrokerPublisher, E, R>
) => Layer.merge(wrapPublisher(MemoryPublisher), MemorySubscriber).pipe(Layer.provide(MemoryHubLive))

/** The memory broker's publishing side alone (the CLI's replay, which has no subscribers). */
export const MemoryBrokerPublisherLive = MemoryPublisher.pipe(Layer.provide(MemoryHubLive))
