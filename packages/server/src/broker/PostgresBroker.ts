import { PgClient } from "@effect/sql-pg"
import { Events } from "@herald/domain"
import { Duration, Effect, Exit, Layer, Mailbox, Option, Redacted, Schema, Stream } from "effect"
import pg from "pg"
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
 * An envelope with its publish span's `traceparent` (tracing on): `{"tp", "e"}`, exactly these two
 * keys — the envelope itself stays as clients get it. A node from before traces skips such a
 * payload as unreadable and reads the event from the database (its gap fill).
 */
const Traced = Schema.Struct({ tp: Schema.String, e: Schema.Unknown })
const isTraced = Schema.is(Traced, { onExcessProperty: "error" })

/** The NOTIFY payload of an event: the envelope (traced or not), or a reference when too large. */
const payloadOf = (event: Events.EventWire, traceparent: string | undefined) => {
  const json = traceparent === undefined ? JSON.stringify(event) : JSON.stringify({ tp: traceparent, e: event })
  return Buffer.byteLength(json) <= MAX_PAYLOAD_BYTES ? json : JSON.stringify({ stream: event.stream, seq: event.seq })
}

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
      publish: (events, traceparents) => {
        const payloads = events.map((e, i) => payloadOf(e, traceparents?.[i]))
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
    if (isTraced(parsed)) {
      return BrokerDelivery.Envelope({ event: yield* Events.validateWire(parsed.e), traceparent: parsed.tp })
    }
    return BrokerDelivery.Envelope({ event: yield* Events.validateWire(parsed) })
  })

/** How often the LISTEN connection must prove it is alive, and how long it has to answer. */
const PROBE_INTERVAL = Duration.seconds(5)
const PROBE_TIMEOUT = Duration.seconds(5)
/** How long connecting may take, and closing before the socket is destroyed. */
const CONNECT_TIMEOUT_MS = 10_000
const CLOSE_TIMEOUT = Duration.seconds(1)

const reasonOf = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

/**
 * The LISTEN connection's settings: the main client's database, under a name of its own in
 * pg_stat_activity, with TCP keepalive.
 */
export const listenerConfig = (config: PgClient.PgClientConfig): pg.ClientConfig => ({
  ...(config.url === undefined
    ? {
      host: config.host,
      port: config.port,
      database: config.database,
      user: config.username,
      password: config.password === undefined ? undefined : Redacted.value(config.password)
    }
    : { connectionString: Redacted.value(config.url) }),
  ...(config.ssl === undefined ? {} : { ssl: config.ssl }),
  application_name: `${config.applicationName ?? "herald"}-listener`,
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000,
  connectionTimeoutMillis: CONNECT_TIMEOUT_MS
})

const LISTEN = `LISTEN ${CHANNEL}`

/**
 * One subscription on a connection of its own (`@effect/sql-pg`'s `listen` swallows its
 * connection's errors: a node whose LISTEN connection died would never know). The connection's
 * `error` and `end` fail the stream, and so does a liveness probe that gets no answer (a silently
 * dead connection: a proxy's idle timeout, a frozen server), so the SSE hub subscribes again with
 * backoff. Each subscription starts with a `Resync` once it listens: whatever was published while
 * this node did not listen is read from the database. The probe re-issues the LISTEN (a no-op for
 * a session that listens): a round trip like `SELECT 1` that leaves the connection showing what it
 * is for in pg_stat_activity.
 */
const subscribe = (options: pg.ClientConfig, status: SubscriberStatus, again: boolean) =>
  Effect.gen(function*() {
    const heard = yield* Effect.acquireRelease(Mailbox.make<string, BrokerError>(), (mailbox) => mailbox.shutdown)
    const lost = (error: BrokerError) => void heard.unsafeDone(Exit.fail(error))
    // Made (and closed) outside the connect, so that connecting stays interruptible (a shutdown
    // does not wait for a database that does not answer).
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new pg.Client(options)
        client.on("error", (cause) =>
          lost(new BrokerError({ message: `LISTEN connection lost: ${cause.message}`, cause })))
        client.on("end", () =>
          lost(new BrokerError({ message: "LISTEN connection closed" })))
        client.on("notification", (n) => {
          if (n.channel === CHANNEL && n.payload !== undefined) heard.unsafeOffer(n.payload)
        })
        return client
      }),
      (client) =>
        Effect.promise(() => client.end()).pipe(
          Effect.interruptible,
          Effect.timeoutOption(CLOSE_TIMEOUT),
          // A dead peer never acknowledges the end: the socket goes anyway.
          Effect.ensuring(Effect.sync(() => client.connection.stream.destroy()))
        )
    )
    yield* Effect.tryPromise({
      try: () => client.connect(),
      catch: (cause) => new BrokerError({ message: `cannot connect to LISTEN: ${reasonOf(cause)}`, cause })
    })
    /** The LISTEN statement, within PROBE_TIMEOUT: at the start, then as the liveness probe. */
    const listen = (what: string) =>
      Effect.tryPromise({
        try: () => client.query(LISTEN),
        catch: (cause) => new BrokerError({ message: `${what} failed: ${reasonOf(cause)}`, cause })
      }).pipe(
        Effect.timeoutFail({
          duration: PROBE_TIMEOUT,
          onTimeout: () => new BrokerError({ message: `${what}: no answer within ${Duration.format(PROBE_TIMEOUT)}` })
        })
      )
    yield* listen("LISTEN")
    yield* status.set({ _tag: "Live" })
    if (again) yield* Effect.logInfo("postgres broker: listening again; catching up from the database")
    yield* listen("LISTEN connection's liveness probe").pipe(
      Effect.delay(PROBE_INTERVAL),
      Effect.forever,
      Effect.catchAll((error) => Effect.sync(() => lost(error))),
      Effect.forkScoped
    )
    return Stream.concat(
      Stream.make(BrokerDelivery.Resync()),
      Mailbox.toStream(heard).pipe(
        Stream.mapEffect((payload) =>
          decode(payload).pipe(
            Effect.map(Option.some),
            // A payload we cannot read is logged and skipped: SSE gap filling reads the event from the database.
            Effect.catchAll((e) =>
              Effect.as(Effect.logWarning("postgres broker: unreadable payload", e), Option.none())
            )
          )
        ),
        Stream.filterMap((delivery) => delivery)
      )
    )
  })

/** The subscribing side: live in SubscriberStatus while it listens, down with the reason when it fails. */
export const PostgresBrokerSubscriberLive = Layer.effect(
  BrokerSubscriber,
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const status = yield* SubscriberStatus
    const options = listenerConfig(sql.config)
    let runs = 0
    return {
      events: Stream.suspend(() => Stream.unwrapScoped(subscribe(options, status, runs++ > 0))).pipe(
        Stream.tapError((error) => status.set({ _tag: "Down", reason: error.message }))
      )
    }
  })
)
