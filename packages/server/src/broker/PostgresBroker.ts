import { PgClient } from "@effect/sql-pg"
import { Events } from "@herald/domain"
import { Effect, Layer, Schema, Stream } from "effect"
import { EventReader } from "../stream/EventReader.js"
import { BrokerError } from "./BrokerError.js"
import { BrokerPublisher } from "./BrokerPublisher.js"
import { BrokerSubscriber } from "./BrokerSubscriber.js"

const CHANNEL = "herald_events"
// PostgreSQL's NOTIFY payload limit is 8000 bytes; keep a margin.
const MAX_PAYLOAD_BYTES = 7_900

const Reference = Schema.Struct({ ref: Schema.UUID })

/**
 * NOTIFY/LISTEN fan-out between server processes that share one database: every process's
 * subscriber sees every publish. An envelope too large for a NOTIFY payload travels as
 * `{"ref": id}` and is read back from the database by the receiver.
 */
export const PostgresBrokerPublisherLive = Layer.effect(
  BrokerPublisher,
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    return {
      publish: (events) => {
        const payloads = events.map((e) => {
          const json = JSON.stringify(e)
          return Buffer.byteLength(json) <= MAX_PAYLOAD_BYTES ? json : JSON.stringify({ ref: e.id })
        })
        // One statement: the batch is delivered in order, as one transaction's notifications.
        return sql`SELECT pg_notify(${CHANNEL}, p) FROM unnest(${payloads}::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`.pipe(
          Effect.asVoid,
          Effect.mapError((cause) => new BrokerError({ message: `NOTIFY failed: ${cause.message}`, cause }))
        )
      }
    }
  })
)

export const PostgresBrokerSubscriberLive = Layer.effect(
  BrokerSubscriber,
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const reader = yield* EventReader
    const decode = (payload: string) =>
      Effect.gen(function*() {
        const parsed = yield* Schema.decodeUnknown(Schema.parseJson())(payload)
        if (Schema.is(Reference)(parsed)) return yield* reader.byId(parsed.ref)
        return [yield* Events.validateWire(parsed)]
      })
    return {
      events: sql.listen(CHANNEL).pipe(
        Stream.mapError((cause) => new BrokerError({ message: `LISTEN failed: ${cause.message}`, cause })),
        Stream.mapEffect((payload) =>
          decode(payload).pipe(
            // A payload we cannot read is logged and skipped: SSE gap filling reads the event from the database.
            Effect.catchAll((e) => Effect.as(Effect.logWarning("postgres broker: unreadable payload", e), []))
          )
        ),
        Stream.flattenIterables
      )
    }
  })
)

export const PostgresBrokerLive = Layer.merge(PostgresBrokerPublisherLive, PostgresBrokerSubscriberLive)
