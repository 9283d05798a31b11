import { Args, Command, Options } from "@effect/cli"
import { OutboxStore, toWire } from "@herald/server/outbox/OutboxStore"
import { EventLogStore } from "@herald/server/eventlog/EventLogStore"
import { Console, Duration, Effect, Option, Schema } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { age, CliError, json, parseDuration, progress, table } from "../Render.js"
import { storableOptional } from "./Input.js"

export const jsonOption = Options.boolean("json").pipe(Options.withDescription("print JSON for scripts instead of a table"))

const uuid = (id: string) =>
  Schema.is(Schema.UUID)(id) ? Effect.succeed(id) : Effect.fail(new CliError({ message: `not an event id (a UUID): "${id}"` }))

const iso = (d: Date | null) => d === null ? null : d.toISOString()

// ----------------------------------------------------------------------------------------------

const watch = Options.boolean("watch").pipe(Options.withDescription("refresh every 2 seconds until interrupted"))

const stats = Command.make("stats", { json: jsonOption, watch }, ({ json: asJson, watch }) =>
  Effect.gen(function*() {
    const store = yield* OutboxStore
    const once = Effect.gen(function*() {
      const s = yield* store.stats
      if (asJson) return yield* json(s)
      if (watch) yield* Console.log(`\x1b[2J\x1b[H${new Date().toISOString()}`)
      yield* table(
        ["pending", "claimed", "published", "dead", "oldest pending", "unmaterialized", "materializer lag"],
        [[s.pending, s.claimed, s.published, s.dead, age(s.oldestPendingSeconds), s.unmaterialized, age(s.materializerLagSeconds)]]
      )
    })
    yield* watch ? Effect.forever(Effect.zipRight(once, Effect.sleep("2 seconds"))) : once
  })).pipe(Command.withDescription("counts by status, oldest pending age, materializer lag, dead count"))

// ----------------------------------------------------------------------------------------------

const status = Options.choice("status", ["pending", "published", "dead"]).pipe(Options.optional)
const streamFilter = Options.text("stream").pipe(Options.optional, Options.withDescription("e.g. project:<projectId>"))
const typeFilter = Options.text("type").pipe(Options.optional, Options.withDescription("e.g. message.created"))
const limit = Options.integer("limit").pipe(Options.withDefault(50))

const list = Command.make(
  "list",
  { json: jsonOption, status, stream: streamFilter, type: typeFilter, limit },
  (o) =>
    Effect.gen(function*() {
      if (o.limit < 1 || o.limit > 10_000) return yield* new CliError({ message: "--limit must be between 1 and 10000" })
      // Free text filters: PostgreSQL would fail on a NUL (a database error, not an answer).
      const stream = yield* storableOptional("--stream", Option.getOrUndefined(o.stream))
      const type = yield* storableOptional("--type", Option.getOrUndefined(o.type))
      const rows = yield* (yield* OutboxStore).list({ status: Option.getOrUndefined(o.status), stream, type, limit: o.limit })
      if (o.json) {
        return yield* json(rows.map((r) => ({
          id: r.id,
          stream: r.streamId,
          seq: r.seq,
          type: r.type,
          status: r.status,
          attempts: r.attempts,
          occurredAt: iso(r.occurredAt),
          lastError: r.lastError
        })))
      }
      yield* table(
        ["id", "stream", "seq", "type", "status", "attempts", "occurred at", "last error"],
        rows.map((r) => [r.id, r.streamId, r.seq, r.type, r.status, r.attempts, r.occurredAt.toISOString(), r.lastError ?? ""])
      )
    })
).pipe(Command.withDescription("outbox rows, newest first"))

// ----------------------------------------------------------------------------------------------

const eventId = Args.text({ name: "eventId" })

const show = Command.make("show", { json: jsonOption, eventId }, ({ eventId, json: asJson }) =>
  Effect.gen(function*() {
    const id = yield* uuid(eventId)
    const row = yield* (yield* OutboxStore).show(id)
    if (row === undefined) return yield* new CliError({ message: `no outbox row ${id} (pruned rows live on in event_log)` })
    const delivery = {
      status: row.status,
      attempts: row.attempts,
      nextAttemptAt: iso(row.nextAttemptAt),
      claimedBy: row.claimedBy,
      claimedUntil: iso(row.claimedUntil),
      lastError: row.lastError,
      publishedAt: iso(row.publishedAt),
      materializedAt: iso(row.materializedAt)
    }
    const event = toWire(row)
    if (asJson) return yield* json({ event, delivery })
    yield* table(["field", "value"], [
      ...Object.entries(event).filter(([k]) => k !== "data").map(([k, v]) => [k, String(v)]),
      ["data", JSON.stringify(event.data)],
      ...Object.entries(delivery).map(([k, v]) => [k, v === null ? "-" : String(v)])
    ])
  })).pipe(Command.withDescription("one event with its delivery history fields"))

// ----------------------------------------------------------------------------------------------

const ids = Args.text({ name: "eventId" }).pipe(Args.repeated)
const allDead = Options.boolean("all-dead").pipe(Options.withDescription("retry every dead event"))

const retry = Command.make("retry", { json: jsonOption, ids, allDead }, (o) =>
  Effect.gen(function*() {
    if (o.allDead === (o.ids.length > 0)) {
      return yield* new CliError({ message: "give event ids or --all-dead (one of the two)" })
    }
    const wanted = yield* Effect.forEach(o.ids, uuid)
    const retried = yield* (yield* OutboxStore).retryDead(o.allDead ? "all" : wanted)
    const notDead = wanted.filter((id) => !retried.includes(id))
    if (o.json) return yield* json({ retried, notDead })
    yield* Console.log(`${retried.length} dead event(s) back to pending`)
    if (notDead.length > 0) yield* Console.error(`not dead (unknown, pending or published): ${notDead.join(", ")}`)
    if (notDead.length > 0) return yield* new CliError({ message: `${notDead.length} id(s) were not dead events` })
  })).pipe(Command.withDescription("put dead events back to pending (a fresh attempt budget, due now)"))

// ----------------------------------------------------------------------------------------------

const olderThan = Options.text("older-than").pipe(Options.withDescription("e.g. 7d, 12h, 30m"))
const PRUNE_BATCH = 5_000

const prune = Command.make("prune", { json: jsonOption, olderThan }, (o) =>
  Effect.gen(function*() {
    const cutoff = yield* parseDuration(o.olderThan)
    const log = yield* EventLogStore
    const { published } = yield* (yield* OutboxStore).stats
    const bar = yield* progress("prune", published)
    let deleted = 0
    while (true) {
      const n = yield* log.prune(Duration.toMillis(cutoff), PRUNE_BATCH)
      deleted += n
      bar.update(deleted)
      if (n < PRUNE_BATCH) break
    }
    if (o.json) return yield* json({ deleted })
    yield* Console.log(`deleted ${deleted} published and materialized outbox row(s) older than ${Duration.format(cutoff)}`)
  }).pipe(Effect.scoped)).pipe(Command.withDescription("delete outbox rows that are published, materialized and older than a duration"))

export const outbox = Command.make("outbox").pipe(
  Command.withDescription("inspect and repair the delivery queue"),
  Command.withSubcommands([stats, list, show, retry, prune]),
  Command.provide(OutboxStore.Default),
  Command.provide(EventLogStore.Default),
  Command.provide(CliDatabaseLive)
)
