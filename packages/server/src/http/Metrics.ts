import { SqlClient } from "@effect/sql"
import { Effect } from "effect"
import { Counter, Gauge, Histogram, Registry } from "prom-client"

/**
 * Prometheus metrics (prom-client), one registry per server. Counters and histograms are fed by
 * the publisher and the SSE hub as things happen; outbox gauges are read from the database at
 * scrape time, so they are true for every process sharing it.
 */
export class Metrics extends Effect.Service<Metrics>()("Herald/Metrics", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const registry = new Registry()
    const registers = [registry]

    const published = new Counter({ name: "herald_outbox_published_total", help: "Events published to the broker", registers })
    const publishFailures = new Counter({
      name: "herald_outbox_publish_failures_total",
      help: "Events whose publish attempt failed (each failed attempt counts)",
      registers
    })
    const commitToPublish = new Histogram({
      name: "herald_commit_to_publish_seconds",
      help: "Time from an event's commit to its confirmed publish",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers
    })
    const sseConnections = new Gauge({ name: "herald_sse_connections", help: "Open SSE connections", registers })
    const sseEventsSent = new Counter({ name: "herald_sse_events_sent_total", help: "Events written to SSE clients", registers })
    const pending = new Gauge({ name: "herald_outbox_pending", help: "Outbox rows waiting to be published", registers })
    const dead = new Gauge({ name: "herald_outbox_dead", help: "Outbox rows out of attempts (retry with herald outbox retry)", registers })
    const oldestPending = new Gauge({
      name: "herald_outbox_oldest_pending_age_seconds",
      help: "Age of the oldest pending outbox row",
      registers
    })
    const materializerLag = new Gauge({
      name: "herald_materializer_lag_seconds",
      help: "Age of the oldest committed event not yet copied into event_log (0 when none)",
      registers
    })

    const refreshGauges = Effect.gen(function*() {
      const [row] = yield* sql<{ pending: number; dead: number; oldestAge: number | null; lag: number | null }>`
        SELECT
          (SELECT count(*)::int FROM event_outbox WHERE status = 'pending') AS pending,
          (SELECT count(*)::int FROM event_outbox WHERE status = 'dead') AS dead,
          (SELECT extract(epoch FROM now() - min(occurred_at))::float8 FROM event_outbox WHERE status = 'pending') AS oldest_age,
          (SELECT extract(epoch FROM now() - min(occurred_at))::float8 FROM event_outbox WHERE materialized_at IS NULL) AS lag`
      pending.set(row!.pending)
      dead.set(row!.dead)
      oldestPending.set(Math.max(0, row!.oldestAge ?? 0))
      materializerLag.set(Math.max(0, row!.lag ?? 0))
    })

    /** The Prometheus text exposition. */
    const render = Effect.zipRight(
      refreshGauges,
      Effect.promise(() => registry.metrics())
    )

    return {
      contentType: registry.contentType,
      render,
      published,
      publishFailures,
      commitToPublish,
      sseConnections,
      sseEventsSent
    } as const
  })
}) {}
