import type { Events } from "@herald/domain"
import { Context, Data, type Effect, type Stream } from "effect"

export class BrokerError extends Data.TaggedError("BrokerError")<{ readonly message: string; readonly cause?: unknown }> {}

/**
 * The publishing side of the broker. Only the outbox publisher and the CLI's `replay` are given
 * it; the request path's layers never are, so wiring it there does not type-check (G2).
 */
export class BrokerPublisher extends Context.Tag("Herald/BrokerPublisher")<BrokerPublisher, {
  readonly publish: (events: ReadonlyArray<Events.Event>) => Effect.Effect<void, BrokerError>
}>() {}

/** The subscribing side: one subscription per process, fanned out by the SSE hub. */
export class BrokerSubscriber extends Context.Tag("Herald/BrokerSubscriber")<BrokerSubscriber, {
  readonly events: Stream.Stream<Events.Event, BrokerError>
}>() {}
