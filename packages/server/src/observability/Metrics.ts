import { Effect } from "effect"
import { Counter, Gauge, Histogram, Registry } from "prom-client"

/** What the outbox gauges show; the `/metrics` handler reads it from `OutboxStore.stats` at scrape time. */
export interface OutboxGauges {
  readonly pending: number
  readonly dead: number
  readonly oldestPendingSeconds: number | null
  readonly materializerLagSeconds: number | null
}

/**
 * Prometheus metrics (prom-client), one registry per server. Counters and histograms are fed by
 * the publisher and the SSE hub as things happen; outbox gauges are set from the database at
 * scrape time, so they are true for every process sharing it. Depends on nothing of Herald's, so
 * every part may report here.
 */
export class Metrics extends Effect.Service<Metrics>()("Herald/Metrics", {
  sync: () => {
    const registry = new Registry()
    const registers = [registry]

    const published = new Counter({
      name: "herald_outbox_published_total",
      help: "Events published to the broker",
      registers
    })
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
    const sseEventsSent = new Counter({
      name: "herald_sse_events_sent_total",
      help: "Events written to SSE clients",
      registers
    })
    const signalsSent = new Counter({
      name: "herald_signals_sent_total",
      help: "Live signal frames (no id:) written to SSE clients, by kind: presence, typing, draft",
      labelNames: ["kind"] as const,
      registers
    })
    const limitRefusals = new Counter({
      name: "herald_limit_refusals_total",
      help: "Requests refused by a limit (429, or 431 for headers), by limit",
      labelNames: ["limit"] as const,
      registers
    })
    const tokenLookups = new Counter({
      name: "herald_token_lookups_total",
      help: "Bearer tokens looked up in the database (a cache miss), by result: a flood of unknown tokens shows here",
      labelNames: ["result"] as const,
      registers
    })
    const pending = new Gauge({ name: "herald_outbox_pending", help: "Outbox rows waiting to be published", registers })
    const dead = new Gauge({
      name: "herald_outbox_dead",
      help: "Outbox rows out of attempts (retry with herald outbox retry)",
      registers
    })
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

    /** The Prometheus text exposition, with the outbox gauges as given. */
    const render = (outbox: OutboxGauges) =>
      Effect.promise(() => {
        pending.set(outbox.pending)
        dead.set(outbox.dead)
        oldestPending.set(Math.max(0, outbox.oldestPendingSeconds ?? 0))
        materializerLag.set(Math.max(0, outbox.materializerLagSeconds ?? 0))
        return registry.metrics()
      })

    return {
      render,
      published,
      publishFailures,
      commitToPublish,
      sseConnections,
      sseEventsSent,
      signalsSent,
      limitRefusals,
      tokenLookups
    } as const
  }
}) {}
