import type { Events } from "@herald/domain"
import { Context, type Effect } from "effect"
import type { BrokerError } from "./BrokerError.js"

/**
 * The publishing side of the broker. Only the outbox publisher and the CLI's `replay` are given
 * it; the request path's layers never are, so wiring it there does not type-check (G2).
 * `publish` is all-or-nothing for the batch, in order. `traceparents` (tracing on only): the W3C
 * trace context of each event's publish span, by index, carried to every node's fan-out beside the
 * envelope — never in it (SPEC §5's wire format is what clients get).
 */
export class BrokerPublisher extends Context.Tag("Herald/BrokerPublisher")<BrokerPublisher, {
  readonly publish: (
    events: ReadonlyArray<Events.EventWire>,
    traceparents?: ReadonlyArray<string | undefined>
  ) => Effect.Effect<void, BrokerError>
}>() {}
