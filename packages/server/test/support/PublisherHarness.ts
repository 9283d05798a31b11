import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import type { Events } from "@herald/domain"
import {
  type ConfigError,
  type Context,
  Duration,
  Effect,
  Layer,
  Logger,
  Option,
  Redacted,
  Ref,
  Schedule
} from "effect"
import { connectSse, type SseConnection, type SseOptions } from "../../../../test-support/SseClient.js"
import { TestDatabaseLive } from "../../../../test-support/TestDatabase.js"
import { BrokerError } from "../../src/broker/BrokerError.js"
import { BrokerPublisher } from "../../src/broker/BrokerPublisher.js"
import { BrokerSubscriber } from "../../src/broker/BrokerSubscriber.js"
import { memoryBroker } from "../../src/broker/MemoryBroker.js"
import { RequestPathLive } from "../../src/chat/RequestPath.js"
import { UsersRepo } from "../../src/chat/UsersRepo.js"
import { AppConfig, type AppConfigShape } from "../../src/config/AppConfig.js"
import { nodeServerLayer, serveOn } from "../../src/http/HttpApp.js"
import { ROOMY_LIMITS } from "../../src/limits/Limits.js"
import { OutboxPublisherLive } from "../../src/outbox/OutboxPublisher.js"
import { SharedLive, SignalsLive } from "../../src/Server.js"
import { SseHub } from "../../src/stream/SseHub.js"
import { makeTestServer, TestServer } from "./TestServer.js"

/** One publish call that reached the broker, and which publisher made it. */
export interface Delivery {
  readonly by: string
  readonly events: ReadonlyArray<Events.EventWire>
}

/**
 * The broker's publishing side as the tests see it: it records every publish that reached the
 * broker (labelled with the publisher that made it), can be told to fail, and forwards to the
 * in-memory broker so SSE clients of the same process receive what was published.
 */
export class RecordingBroker extends Effect.Service<RecordingBroker>()("test/RecordingBroker", {
  effect: Effect.gen(function*() {
    const inner = yield* BrokerPublisher
    const failing = yield* Ref.make(Option.none<string>())
    const delivered: Array<Delivery> = []
    let failedCalls = 0

    const publisherAs = (by: string): Context.Tag.Service<typeof BrokerPublisher> => ({
      publish: (events) =>
        Effect.flatMap(Ref.get(failing), (failure) =>
          Option.match(failure, {
            onSome: (message) =>
              Effect.zipRight(Effect.sync(() => failedCalls++), Effect.fail(new BrokerError({ message }))),
            onNone: () =>
              Effect.tap(inner.publish(events), () => Effect.sync(() => delivered.push({ by, events: [...events] })))
          }))
    })

    return {
      publisherAs,
      /** The BrokerPublisher layer of a publisher called `by`. */
      layerAs: (by: string) => Layer.succeed(BrokerPublisher, publisherAs(by)),
      /** From now on every publish fails with `message` (None: publishes succeed again). */
      failWith: (message: Option.Option<string>) => Ref.set(failing, message),
      deliveries: Effect.sync((): ReadonlyArray<Delivery> => [...delivered]),
      failedCalls: Effect.sync(() => failedCalls),
      /** How many times each event id reached the broker, whoever published it. */
      timesPublished: Effect.sync(() => {
        const counts = new Map<string, number>()
        for (const d of delivered) for (const e of d.events) counts.set(e.id, (counts.get(e.id) ?? 0) + 1)
        return counts
      })
    } as const
  })
}) {}

/**
 * A real outbox publisher (the loop of OutboxPublisherLive) whose broker is the recording one,
 * labelled `by`. `Layer.fresh`: two of them in one graph are two publishers, not one memoized.
 */
export const publisherAs = (by: string) =>
  Layer.fresh(OutboxPublisherLive).pipe(
    Layer.provide(Layer.unwrapEffect(Effect.map(RecordingBroker, (broker) => broker.layerAs(by))))
  )

const makeClient = makeTestServer

export interface PublisherServerOptions {
  /** Config overrides of the defaults … */
  readonly config?: Partial<AppConfigShape>
  /** … or a whole AppConfig layer (e.g. read from environment variables). */
  readonly appConfig?: Layer.Layer<AppConfig, ConfigError.ConfigError>
  /** Real publisher loops to run, by label; none → the test drives `publishOnce` itself. */
  readonly publishers?: ReadonlyArray<string>
}

/**
 * The server as `serverLayer` wires it (HTTP API, SSE hub, in-memory broker), over a fresh
 * database, except that its publishers are the ones named here and publish through the
 * RecordingBroker — so a test can see exactly what reached the broker, and from whom.
 */
export const publisherServerLayer = (options: PublisherServerOptions = {}) => {
  const config = options.appConfig ?? AppConfig.layerWith({ ...ROOMY_LIMITS, ...options.config })
  const brokerSide = Layer.merge(RecordingBroker.Default, Layer.effect(BrokerSubscriber, BrokerSubscriber)).pipe(
    Layer.provide(memoryBroker((publisher) => publisher))
  )
  const publishers = Layer.mergeAll(Layer.empty, ...(options.publishers ?? []).map(publisherAs))
  const realtime = Layer.mergeAll(SseHub.Default, publishers).pipe(
    Layer.provideMerge(brokerSide),
    Layer.provideMerge(SignalsLive),
    Layer.provideMerge(SharedLive)
  )
  return Layer.effect(TestServer, makeClient).pipe(
    Layer.provideMerge(serveOn(nodeServerLayer({ port: 0, host: "127.0.0.1" }))),
    Layer.provideMerge(RequestPathLive),
    Layer.provideMerge(realtime),
    Layer.provideMerge(TestDatabaseLive),
    Layer.provideMerge(config),
    Layer.provide(NodeContext.layer)
  )
}

/** A new user (for ChatService calls) and its bearer token (for HTTP and SSE). */
export const userWithToken = (name: string) =>
  Effect.flatMap(
    UsersRepo,
    (users) =>
      Effect.map(Effect.orDie(users.create(name)), ({ token, user }) => ({ user, token: Redacted.value(token) }))
  )

/** Polls `check` (real time) until it holds; dies with `what` if it does not within `timeout`. */
export const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  timeout: Duration.DurationInput = "15 seconds"
) =>
  check.pipe(
    Effect.repeat({ schedule: Schedule.spaced("20 millis"), until: (ok) => ok }),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting until ${what}`) }),
    Effect.orDie,
    Effect.asVoid
  )

/** An SSE connection closed with the scope. */
export const sse = (baseUrl: string, path: string, options: SseOptions) =>
  Effect.acquireRelease(
    Effect.promise(() => connectSse(baseUrl, path, options)),
    (connection) => Effect.sync(() => connection.close())
  )

/** Waits for `n` SSE events (real time). */
export const sseEvents = (connection: SseConnection, n: number, timeoutMs?: number) =>
  Effect.promise(() => connection.waitForEvents(n, timeoutMs))

export interface OutboxDelivery {
  readonly id: string
  readonly streamId: string
  readonly seq: number
  readonly status: string
  readonly attempts: number
  readonly claimedBy: string | null
  readonly lastError: string | null
}

/** Every outbox row's delivery state, in stream and seq order. */
export const deliveryRows = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.orDie(sql<OutboxDelivery>`
    SELECT id, stream_id, seq, status, attempts, claimed_by, last_error
    FROM event_outbox ORDER BY stream_id, seq`))

/** Sleeps (real time) until every pending outbox row is due; at once when none is pending. */
export const untilAllDue = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.orDie(sql<{ ms: number | null }>`
    SELECT (extract(epoch FROM max(next_attempt_at) - clock_timestamp()) * 1000)::float8 AS ms
    FROM event_outbox WHERE status = 'pending'`)).pipe(
    Effect.flatMap(([row]) => Effect.sleep(Duration.millis(Math.max(0, row?.ms ?? 0) + 5)))
  )

/** Outbox row counts by status. */
export const statusCounts = Effect.map(deliveryRows, (rows) => {
  const counts: Record<string, number> = {}
  for (const r of rows) counts[r.status] = (counts[r.status] ?? 0) + 1
  return counts
})

/** As `it.effect` does, without the default logger: the server's access log would drown the report. */
export const withoutLogs = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provide(self, Logger.remove(Logger.defaultLogger))
