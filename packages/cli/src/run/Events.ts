import { Events } from "@herald/domain"
import {
  AppConfig,
  BrokerPublisher,
  BrokerPublisherLive,
  EventLogStore,
  EventReader,
  materializeOnce,
  OutboxStore
} from "@herald/server"
import { Console, DateTime, Effect, Layer, Option, Schema } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { CliError, json, progress } from "../Render.js"

/** What `herald replay` and `herald materialize` do; `commands/Events.ts` declares them. */

const PAGE = 1_000

/**
 * Re-publishes a stream's range to the broker, page by page, from the database (outbox ∪
 * event_log). SSE clients drop what they already have by seq. Only the `postgres` and `redis` brokers reach
 * running servers; with `memory` the publishes stay inside this process.
 */
export const replay = (o: {
  readonly json: boolean
  readonly stream: string
  readonly fromSeq: Option.Option<number>
  readonly toSeq: Option.Option<number>
  readonly dryRun: boolean
}) =>
  Effect.gen(function*() {
    if (!Schema.is(Events.StreamId)(o.stream)) {
      return yield* new CliError({
        message: `not a stream id: "${o.stream}" (project:<projectId> or workspace:<projectId>:<userId>)`
      })
    }
    const reader = yield* EventReader
    const head = yield* reader.head(o.stream)
    if (head === 0) return yield* new CliError({ message: `unknown stream: ${o.stream} has no events` })
    const from = Option.getOrElse(o.fromSeq, () => 1)
    const to = Option.getOrElse(o.toSeq, () => head)
    if (from < 1 || to < 1) return yield* new CliError({ message: "--from-seq and --to-seq must be at least 1" })
    if (from > to) return yield* new CliError({ message: `reversed range: --from-seq ${from} is after --to-seq ${to}` })
    if (from > head) {
      return yield* new CliError({ message: `--from-seq ${from} is past the last seq of ${o.stream} (${head})` })
    }
    const last = Math.min(to, head)
    const { broker: kind } = yield* AppConfig
    if (kind === "memory" && !o.dryRun) {
      yield* Console.error(
        "note: HERALD_BROKER=memory reaches no running server; use the servers' broker (postgres or redis) to replay to them"
      )
    }
    const broker = yield* BrokerPublisher
    const bar = yield* progress(o.dryRun ? "replay (dry run)" : "replay", last - from + 1)
    let after = from - 1
    let published = 0
    while (after < last) {
      const events = yield* reader.range(o.stream, after, last, PAGE)
      if (events.length === 0) break
      if (!o.dryRun) yield* broker.publish(events)
      published += events.length
      after = events[events.length - 1]!.seq
      bar.update(published)
    }
    const result = { stream: o.stream, fromSeq: from, toSeq: last, events: published, dryRun: o.dryRun, broker: kind }
    if (o.json) return yield* json(result)
    yield* Console.log(
      `${
        o.dryRun ? "would publish" : "published"
      } ${published} event(s) of ${o.stream}, seq ${from}..${last}, via the ${kind} broker`
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(Layer.mergeAll(EventReader.Default, BrokerPublisherLive).pipe(Layer.provideMerge(CliDatabaseLive)))
  )

/** Copies outbox → event_log now, idempotently; `--rebuild` re-derives the log from the outbox. */
export const materialize = (o: { readonly json: boolean; readonly batchSize: number; readonly rebuild: boolean }) =>
  Effect.gen(function*() {
    if (o.batchSize < 1 || o.batchSize > 100_000) {
      return yield* new CliError({ message: "--batch-size must be between 1 and 100000" })
    }
    const outbox = yield* OutboxStore
    const reset = o.rebuild ? yield* outbox.resetMaterialized : 0
    const { unmaterialized } = yield* outbox.stats
    const bar = yield* progress("materialize", unmaterialized)
    const log = yield* EventLogStore
    // Batches of the same pass the server's materializer makes, reported as they go.
    let copied = 0
    while (true) {
      const n = yield* materializeOnce(o.batchSize, (k) => Effect.sync(() => bar.update(copied += k)))
      if (n === 0) break
    }
    const asOf = Option.getOrNull(Option.map(yield* log.asOf, DateTime.formatIso))
    if (o.json) return yield* json({ materialized: copied, rebuild: o.rebuild, reset, asOf })
    yield* Console.log(
      `materialized ${copied} event(s)${o.rebuild ? ` (rebuild: ${reset} re-copied)` : ""}; analytics asOf ${
        asOf ?? "-"
      }`
    )
  }).pipe(
    Effect.scoped,
    Effect.provide(Layer.mergeAll(OutboxStore.Default, EventLogStore.Default).pipe(Layer.provideMerge(CliDatabaseLive)))
  )
