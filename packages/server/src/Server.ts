import { Layer } from "effect"
import { BrokerLive } from "./broker/BrokerLive.js"
import { RequestPathLive } from "./chat/RequestPath.js"
import { BackgroundSqlLive } from "./db/Database.js"
import { Analytics } from "./eventlog/Analytics.js"
import { EventHistory } from "./eventlog/EventHistory.js"
import { EventLogStore } from "./eventlog/EventLogStore.js"
import { MaterializerLive } from "./eventlog/Materializer.js"
import { PartitionMaintainerLive } from "./eventlog/PartitionMaintainer.js"
import { serveOn } from "./http/HttpApp.js"
import { Limits } from "./limits/Limits.js"
import { Metrics } from "./observability/Metrics.js"
import { SubscriberStatus } from "./observability/SubscriberStatus.js"
import { OutboxPublisherLive } from "./outbox/OutboxPublisher.js"
import { OutboxStore } from "./outbox/OutboxStore.js"
import { PublisherStatus } from "./outbox/PublisherStatus.js"
import { Wakeup } from "./outbox/Wakeup.js"
import { SignalBusLive } from "./signals/SignalBusLive.js"
import { Signals } from "./signals/Signals.js"
import { CursorPrunerLive } from "./stream/CursorPruner.js"
import { CursorStore } from "./stream/CursorStore.js"
import { EventReader } from "./stream/EventReader.js"
import { SseHub } from "./stream/SseHub.js"

/** Services shared by the request path, the publisher and the SSE side. */
export const SharedLive = Layer.mergeAll(
  Metrics.Default,
  PublisherStatus.Default,
  SubscriberStatus.Default,
  OutboxStore.Default,
  EventReader.Default,
  CursorStore.Default,
  EventHistory.Default,
  Analytics.Default,
  Wakeup.Default,
  Limits.layer.pipe(Layer.provide(Metrics.Default))
).pipe(Layer.provideMerge(EventLogStore.Default))

/** The outbox publisher as the server runs it: its own OutboxStore, on the background pool. */
export const BackgroundPublisherLive = OutboxPublisherLive.pipe(
  Layer.provide(Layer.fresh(OutboxStore.Default)),
  Layer.provide(BackgroundSqlLive)
)

/** The materializer as the server runs it: its own EventLogStore, on the background pool. */
export const BackgroundMaterializerLive = MaterializerLive.pipe(
  Layer.provide(Layer.fresh(EventLogStore.Default)),
  Layer.provide(BackgroundSqlLive)
)

/** event_log's partitions ahead of need and its retention: its own EventLogStore, on the background pool. */
export const BackgroundPartitionsLive = PartitionMaintainerLive.pipe(
  Layer.provide(Layer.fresh(EventLogStore.Default)),
  Layer.provide(BackgroundSqlLive)
)

/** Cursor bases unused for HERALD_CURSOR_RETENTION deleted: its own CursorStore, on the background pool. */
export const BackgroundCursorPrunerLive = CursorPrunerLive.pipe(
  Layer.provide(Layer.fresh(CursorStore.Default)),
  Layer.provide(BackgroundSqlLive)
)

/**
 * Live signals (G10) on the broker's signal side: given to the SSE hub and to the request path
 * (typing, drafts) — a port that cannot carry an event envelope, so G2 holds.
 */
export const SignalsLive = Signals.Default.pipe(Layer.provide(SignalBusLive))

/**
 * Everything after commit: the outbox publisher (the only holder of the broker's publishing side),
 * the SSE hub (its subscribing side) and the materializer; the publisher's and the materializer's
 * statements go through the background pool (BackgroundSqlLive: commits that need no WAL flush). The broker is provided *into* these and
 * not passed on, so nothing built on top — the HTTP API — is ever given it (G2).
 */
export const RealtimeLive = Layer.mergeAll(
  Layer.mergeAll(SseHub.Default, BackgroundPublisherLive).pipe(Layer.provide(BrokerLive)),
  BackgroundMaterializerLive,
  BackgroundPartitionsLive,
  BackgroundCursorPrunerLive
).pipe(Layer.provideMerge(SignalsLive), Layer.provideMerge(SharedLive))

/** The whole server on the given HTTP server: API, SSE, publisher. Needs the database and config. */
export const serverLayer = <ROut, E, R>(http: Layer.Layer<ROut, E, R>) =>
  serveOn(http).pipe(
    Layer.provideMerge(RequestPathLive),
    Layer.provideMerge(RealtimeLive)
  )
