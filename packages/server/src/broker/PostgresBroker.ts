import { PgClient } from "@effect/sql-pg"
import { Events } from "@herald/domain"
import { Effect, Layer, Option, Schema, Stream } from "effect"
import { SubscriberStatus } from "../observability/SubscriberStatus.js"
import { BrokerError } from "./BrokerError.js"
import { BrokerPublisher } from "./BrokerPublisher.js"
import { BrokerDelivery, BrokerSubscriber } from "./BrokerSubscriber.js"

const CHANNEL = "herald_events"
// PostgreSQL's NOTIFY payload limit is 8000 bytes; keep a margin.
const MAX_PAYLOAD_BYTES = 7_900

/** What travels instead of an envelope too large for a NOTIFY payload: exactly these two keys. */
const Reference = Schema.Struct({ stream: Events.StreamId, seq: Events.Seq })
const isReference = Schema.is(Reference, { onExcessProperty: "error" })

/**
 * NOTIFY/LISTEN fan-out between server processes that share one database: every process's
 * subscriber sees every publish. An envelope too large for a NOTIFY payload travels as a
 * reference `{"stream", "seq"}`, delivered as such: the SSE hub reads it from the database.
 */
export const PostgresBrokerPublisherLive = Layer.effect(
  BrokerPublisher,
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    return {
      publish: (events) => {
        const payloads = events.map((e) => {
          const json = JSON.stringify(e)
          return Buffer.byteLength(json) <= MAX_PAYLOAD_BYTES ? json : JSON.stringify({ stream: e.stream, seq: e.seq })
        })
        // One statement: the batch is delivered in order, as one transaction's notifications.
        return sql`SELECT pg_notify(${CHANNEL}, p) FROM unnest(${payloads}::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`
          .pipe(
            Effect.asVoid,
            Effect.mapError((cause) => new BrokerError({ message: `NOTIFY failed: ${cause.message}`, cause }))
          )
      }
    }
  })
)

const decode = (payload: string) =>
  Effect.gen(function*() {
    const parsed = yield* Schema.decodeUnknown(Schema.parseJson())(payload)
    if (isReference(parsed)) return BrokerDelivery.Reference({ stream: parsed.stream, seq: parsed.seq })
    return BrokerDelivery.Envelope({ event: yield* Events.validateWire(parsed) })
  })

/** The subscribing side: live in SubscriberStatus from its start, down with the reason when it fails. */
export const PostgresBrokerSubscriberLive = Layer.effect(
  BrokerSubscriber,
  Effect.all([PgClient.PgClient, SubscriberStatus]).pipe(Effect.map(([sql, status]) => ({
    events: sql.listen(CHANNEL).pipe(
      Stream.onStart(status.set({ _tag: "Live" })),
      Stream.mapError((cause) => new BrokerError({ message: `LISTEN failed: ${cause.message}`, cause })),
      Stream.tapError((error) => status.set({ _tag: "Down", reason: error.message })),
      Stream.mapEffect((payload) =>
        decode(payload).pipe(
          Effect.map(Option.some),
          // A payload we cannot read is logged and skipped: SSE gap filling reads the event from the database.
          Effect.catchAll((e) => Effect.as(Effect.logWarning("postgres broker: unreadable payload", e), Option.none()))
        )
      ),
      Stream.filterMap((delivery) => delivery)
    )
  })))
)
