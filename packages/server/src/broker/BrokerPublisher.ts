import type { Events } from "@herald/domain"
import { Context, type Effect } from "effect"
import type { BrokerError } from "./BrokerError.js"

/**
 * The publishing side of the broker. Only the outbox publisher and the CLI's `replay` are given
 * it; the request path's layers never are, so wiring it there does not type-check (G2).
 * `publish` is all-or-nothing for the batch, in order.
 */
export class BrokerPublisher extends Context.Tag("Herald/BrokerPublisher")<BrokerPublisher, {
  readonly publish: (events: ReadonlyArray<Events.EventWire>) => Effect.Effect<void, BrokerError>
}>() {}
