import type { Events } from "@herald/domain"
import { Context, type Stream } from "effect"
import type { BrokerError } from "./BrokerError.js"

/**
 * The subscribing side: every event published by any publisher (of any process, for the
 * postgres broker). One subscription per process, fanned out by the SSE hub. Delivery may
 * duplicate, reorder or miss events; SSE connections repair all three from the database.
 */
export class BrokerSubscriber extends Context.Tag("Herald/BrokerSubscriber")<BrokerSubscriber, {
  readonly events: Stream.Stream<Events.EventWire, BrokerError>
}>() {}
