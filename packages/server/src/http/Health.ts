import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { SqlClient } from "@effect/sql"
import { Api, Errors } from "@herald/domain"
import { Effect } from "effect"
import { Metrics } from "../observability/Metrics.js"
import { SubscriberStatus } from "../observability/SubscriberStatus.js"
import { OutboxStore } from "../outbox/OutboxStore.js"
import { PublisherStatus } from "../outbox/PublisherStatus.js"

/**
 * live: the process answers. ready: the database answers, this process's publisher runs and its
 * broker subscription is live (a node that cannot hear its broker serves no live events).
 */
export const HealthLive = HttpApiBuilder.group(Api.HeraldApi, "health", (handlers) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const publisher = yield* PublisherStatus
    const subscriber = yield* SubscriberStatus
    const metrics = yield* Metrics
    const outbox = yield* OutboxStore
    const database = sql`SELECT 1`.pipe(
      Effect.timeout("2 seconds"),
      Effect.as("ok"),
      Effect.catchAll((e) => Effect.succeed(`unreachable: ${e.message}`))
    )
    const publisherCheck = Effect.map(publisher.get, (state) => {
      switch (state._tag) {
        case "Running":
          return "ok"
        case "BackingOff":
          return `backing off: ${state.error}`
        case "Stopped":
          return "not running"
      }
    })
    const brokerCheck = Effect.map(subscriber.get, (state) => {
      switch (state._tag) {
        case "Live":
          return "ok"
        case "Starting":
          return "not listening: not subscribed yet"
        case "Down":
          return `not listening: ${state.reason}`
      }
    })
    return handlers
      .handle("live", () => Effect.succeed({ status: "ok" as const, checks: {} }))
      .handle("ready", () =>
        Effect.gen(function*() {
          const checks = { database: yield* database, publisher: yield* publisherCheck, broker: yield* brokerCheck }
          return Object.values(checks).every((c) => c === "ok")
            ? { status: "ok" as const, checks }
            : yield* new Errors.ServiceUnavailable({ message: "not ready", checks })
        }))
      .handle("metrics", () => outbox.stats.pipe(Effect.flatMap(metrics.render), Effect.orDie))
  }))
