import type { Events } from "@herald/domain"
import { Context, Data, type Stream } from "effect"
import type { BrokerError } from "./BrokerError.js"

/**
 * What the broker delivers: an envelope, or a reference `{stream, seq}` to a committed event
 * that travelled without its body (too large for the channel) — the subscriber reads that one
 * from the database, as it reads any gap. `Resync` says the broker may have lost deliveries it
 * cannot name (it reconnected to a server that may have lost or trimmed them): every live stream
 * is checked against the database's heads, so a stream whose last events were lost catches up
 * without waiting for its next event to show the gap.
 */
export type BrokerDelivery = Data.TaggedEnum<{
  /** `traceparent`: the event's publish span, when the publishing node traces (observability/Tracing.ts). */
  Envelope: { readonly event: Events.EventWire; readonly traceparent?: string | undefined }
  Reference: { readonly stream: string; readonly seq: number }
  Resync: {}
}>
export const BrokerDelivery = Data.taggedEnum<BrokerDelivery>()

/**
 * The subscribing side: every event published by any publisher (of any process, for the
 * postgres broker). One subscription per process, fanned out by the SSE hub. Delivery may
 * duplicate, reorder or miss events; SSE connections repair all three from the database.
 */
export class BrokerSubscriber extends Context.Tag("Herald/BrokerSubscriber")<BrokerSubscriber, {
  readonly events: Stream.Stream<BrokerDelivery, BrokerError>
}>() {}
