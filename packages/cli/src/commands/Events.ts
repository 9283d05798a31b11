import { Command, Options } from "@effect/cli"
import { Events } from "@herald/domain"
import { BrokerPublisherLive } from "@herald/server/broker/BrokerLive"
import { BrokerPublisher } from "@herald/server/broker/BrokerPublisher"
import { AppConfig } from "@herald/server/config/AppConfig"
import { materializeOnce } from "@herald/server/eventlog/Materializer"
import { EventLogStore } from "@herald/server/eventlog/EventLogStore"
import { OutboxStore } from "@herald/server/outbox/OutboxStore"
import { EventReader } from "@herald/server/stream/EventReader"
import { Console, DateTime, Effect, Layer, Option, Schema } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { CliError, json, progress } from "../Render.js"
import { jsonOption } from "./Outbox.js"

const PAGE = 1_000

const stream = Options.text("stream").pipe(Options.withDescription("project:<projectId> or workspace:<projectId>:<userId>"))
const fromSeq = Options.integer("from-seq").pipe(Options.optional)
const toSeq = Options.integer("to-seq").pipe(Options.optional)
const dryRun = Options.boolean("dry-run").pipe(Options.withDescription("show what would be published, publish nothing"))

/**
 * Re-publishes a stream's range to the broker, page by page, from the database (outbox ∪
 * event_log). SSE clients drop what they already have by seq. Only the `postgres` broker reaches
 * running servers; with `memory` the publishes stay inside this process.
 */
const replay = Command.make("replay", { json: jsonOption, stream, fromSeq, toSeq, dryRun }, (o) =>
  Effect.gen(function*() {
    if (!Schema.is(Events.StreamId)(o.stream)) {
      return yield* new CliError({ message: `not a stream id: "${o.stream}" (project:<projectId> or workspace:<projectId>:<userId>)` })
    }
    const reader = yield* EventReader
    const head = yield* reader.head(o.stream)
    if (head === 0) return yield* new CliError({ message: `unknown stream: ${o.stream} has no events` })
    const from = Option.getOrElse(o.fromSeq, () => 1)
    const to = Option.getOrElse(o.toSeq, () => head)
    if (from < 1 || to < 1) return yield* new CliError({ message: "--from-seq and --to-seq must be at least 1" })
    if (from > to) return yield* new CliError({ message: `reversed range: --from-seq ${from} is after --to-seq ${to}` })
    if (from > head) return yield* new CliError({ message: `--from-seq ${from} is past the last seq of ${o.stream} (${head})` })
    const last = Math.min(to, head)
    const { broker: kind } = yield* AppConfig
    if (kind === "memory" && !o.dryRun) {
      yield* Console.error("note: HERALD_BROKER=memory reaches no running server; use HERALD_BROKER=postgres to replay to them")
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
    yield* Console.log(`${o.dryRun ? "would publish" : "published"} ${published} event(s) of ${o.stream}, seq ${from}..${last}, via the ${kind} broker`)
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription("re-publish a range of a stream to the broker (clients de-duplicate by seq)"),
    Command.provide(Layer.mergeAll(EventReader.Default, BrokerPublisherLive)),
    Command.provide(CliDatabaseLive)
  )

const batchSize = Options.integer("batch-size").pipe(Options.withDefault(1_000))
const rebuild = Options.boolean("rebuild").pipe(
  Options.withDescription("copy everything the outbox still holds again (rows already in event_log are kept)")
)

/** Copies outbox → event_log now, idempotently; `--rebuild` re-derives the log from the outbox. */
const materialize = Command.make("materialize", { json: jsonOption, batchSize, rebuild }, (o) =>
  Effect.gen(function*() {
    if (o.batchSize < 1 || o.batchSize > 100_000) return yield* new CliError({ message: "--batch-size must be between 1 and 100000" })
    const outbox = yield* OutboxStore
    const reset = o.rebuild ? yield* outbox.resetMaterialized : 0
    const { unmaterialized } = yield* outbox.stats
    const bar = yield* progress("materialize", unmaterialized)
    const log = yield* EventLogStore
    // Batches of the same pass the server's materializer makes, reported as they go.
    let copied = 0
    while (true) {
      const n = yield* materializeOnce(o.batchSize, (k) => Effect.sync(() => bar.update((copied += k))))
      if (n === 0) break
    }
    const asOf = Option.getOrNull(Option.map(yield* log.asOf, DateTime.formatIso))
    if (o.json) return yield* json({ materialized: copied, rebuild: o.rebuild, reset, asOf })
    yield* Console.log(`materialized ${copied} event(s)${o.rebuild ? ` (rebuild: ${reset} re-copied)` : ""}; analytics asOf ${asOf ?? "-"}`)
  }).pipe(Effect.scoped)).pipe(
    Command.withDescription("copy outbox rows into event_log now (idempotent)"),
    Command.provide(Layer.mergeAll(OutboxStore.Default, EventLogStore.Default)),
    Command.provide(CliDatabaseLive)
  )

export const eventCommands = [replay, materialize] as const
