import { Ids } from "@herald/domain"
import { EventLogStore, OutboxStore, toWire } from "@herald/server"
import { Console, Duration, Effect, Layer, Option, Schema } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { age, CliError, json, parseDuration, progress, table } from "../Render.js"
import { storableOptional } from "./Input.js"

/** What `herald outbox …` does; `commands/Outbox.ts` declares the commands. */

const OutboxLive = Layer.mergeAll(OutboxStore.Default, EventLogStore.Default).pipe(Layer.provideMerge(CliDatabaseLive))

const uuid = (id: string) =>
  Schema.decodeUnknown(Ids.EventId)(id).pipe(
    Effect.mapError(() => new CliError({ message: `not an event id (a UUID): "${id}"` }))
  )

const iso = (d: Date | null) => d === null ? null : d.toISOString()

export const stats = (o: { readonly json: boolean; readonly watch: boolean }) =>
  Effect.gen(function*() {
    const store = yield* OutboxStore
    const once = Effect.gen(function*() {
      const s = yield* store.stats
      if (o.json) return yield* json(s)
      if (o.watch) yield* Console.log(`\x1b[2J\x1b[H${new Date().toISOString()}`)
      yield* table(
        ["pending", "claimed", "published", "dead", "oldest pending", "unmaterialized", "materializer lag"],
        [[
          s.pending,
          s.claimed,
          s.published,
          s.dead,
          age(s.oldestPendingSeconds),
          s.unmaterialized,
          age(s.materializerLagSeconds)
        ]]
      )
    })
    yield* o.watch ? Effect.forever(Effect.zipRight(once, Effect.sleep("2 seconds"))) : once
  }).pipe(Effect.provide(OutboxLive))

export const list = (o: {
  readonly json: boolean
  readonly status: Option.Option<"pending" | "published" | "dead">
  readonly stream: Option.Option<string>
  readonly type: Option.Option<string>
  readonly limit: number
}) =>
  Effect.gen(function*() {
    if (o.limit < 1 || o.limit > 10_000) return yield* new CliError({ message: "--limit must be between 1 and 10000" })
    // Free text filters: PostgreSQL would fail on a NUL (a database error, not an answer).
    const stream = yield* storableOptional("--stream", Option.getOrUndefined(o.stream))
    const type = yield* storableOptional("--type", Option.getOrUndefined(o.type))
    const rows = yield* (yield* OutboxStore).list({
      status: Option.getOrUndefined(o.status),
      stream,
      type,
      limit: o.limit
    })
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
      rows.map((
        r
      ) => [r.id, r.streamId, r.seq, r.type, r.status, r.attempts, r.occurredAt.toISOString(), r.lastError ?? ""])
    )
  }).pipe(Effect.provide(OutboxLive))

export const show = (o: { readonly json: boolean; readonly eventId: string }) =>
  Effect.gen(function*() {
    const id = yield* uuid(o.eventId)
    const row = yield* (yield* OutboxStore).show(id)
    if (row === undefined) {
      return yield* new CliError({ message: `no outbox row ${id} (pruned rows live on in event_log)` })
    }
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
    if (o.json) return yield* json({ event, delivery })
    yield* table(["field", "value"], [
      ...Object.entries(event).filter(([k]) => k !== "data").map(([k, v]) => [k, String(v)]),
      ["data", JSON.stringify(event.data)],
      ...Object.entries(delivery).map(([k, v]) => [k, v === null ? "-" : String(v)])
    ])
  }).pipe(Effect.provide(OutboxLive))

export const retry = (o: { readonly json: boolean; readonly ids: ReadonlyArray<string>; readonly allDead: boolean }) =>
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
  }).pipe(Effect.provide(OutboxLive))

const PRUNE_BATCH = 5_000

export const prune = (o: { readonly json: boolean; readonly olderThan: string }) =>
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
    yield* Console.log(
      `deleted ${deleted} published and materialized outbox row(s) older than ${Duration.format(cutoff)}`
    )
  }).pipe(Effect.scoped, Effect.provide(OutboxLive))
