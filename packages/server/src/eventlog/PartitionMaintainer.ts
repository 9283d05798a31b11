import { Duration, Effect, Layer, Option } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { supervised } from "../Supervised.js"
import { EventLogStore } from "./EventLogStore.js"

/** How often a server makes sure next month's partition exists and applies the retention. */
export const MAINTENANCE_INTERVAL = Duration.hours(1)

/**
 * One round: this month's and next month's partitions exist, and with a retention set, the
 * partitions wholly older than it are dropped (with the floor moved, in one transaction).
 */
export const maintainOnce = (retention: Option.Option<Duration.Duration>) =>
  Effect.gen(function*() {
    const store = yield* EventLogStore
    yield* store.ensureAhead
    if (Option.isNone(retention)) return
    const result = yield* store.dropOlderThan(Duration.toMillis(retention.value), { dryRun: false })
    if (result.dropped.length > 0) {
      yield* Effect.logInfo(
        `event_log retention (${Duration.format(retention.value)}): dropped ${
          result.dropped.map((p) => `${p.name} (${p.rows} rows)`).join(", ")
        }; held from ${Option.getOrElse(Option.map(result.heldFrom, String), () => "-")}`
      )
    }
  })

/**
 * event_log's partitions, kept ahead of need by the server and never by hand: created for this
 * month and the next at start-up (before the server serves), then checked every hour by a
 * supervised fiber in the server's scope, which also applies `HERALD_EVENT_LOG_RETENTION`. Several
 * servers may do this at once (the partition lock serialises them).
 */
export const PartitionMaintainerLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const store = yield* EventLogStore
    yield* store.ensureAhead
    yield* maintainOnce(config.eventLogRetention).pipe(
      Effect.zipRight(Effect.sleep(MAINTENANCE_INTERVAL)),
      Effect.forever,
      supervised({ message: (e) => `event_log partition maintenance paused: ${e.message}` }),
      Effect.forkScoped
    )
  })
)
