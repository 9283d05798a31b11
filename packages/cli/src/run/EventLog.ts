import { EventLogStore } from "@herald/server"
import { Console, DateTime, Duration, Effect, Layer, Option } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { CliError, json, parseDuration, table } from "../Render.js"

/** What `herald eventlog …` does; `commands/EventLog.ts` declares the commands. */

const EventLogLive = EventLogStore.Default.pipe(Layer.provideMerge(CliDatabaseLive))

const iso = (d: Date | null) => d === null ? null : d.toISOString()
const heldFromIso = (held: Option.Option<DateTime.Utc>) => Option.getOrNull(Option.map(held, DateTime.formatIso))

/** Bytes as people read them: 8.0 kB, 1.3 MB, 12 GB (powers of 1024, as pg_size_pretty). */
const size = (bytes: number) => {
  const units = ["B", "kB", "MB", "GB", "TB"]
  let n = bytes
  let unit = 0
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024
    unit++
  }
  return `${unit === 0 || n >= 10 ? Math.round(n) : n.toFixed(1)} ${units[unit]}`
}

interface Partition {
  readonly name: string
  readonly from: Date | null
  readonly to: Date | null
  readonly rows: number
  readonly bytes: number
}

const partitionJson = (p: Partition) => ({
  name: p.name,
  from: iso(p.from),
  to: iso(p.to),
  rows: p.rows,
  bytes: p.bytes
})

const heldLine = (held: Option.Option<DateTime.Utc>) =>
  Option.match(held, {
    onNone: () => "held from: the beginning (no partition was ever dropped)",
    onSome: (d) => `held from: ${DateTime.formatIso(d)} (retention dropped the months before)`
  })

export const partitions = (o: { readonly json: boolean }) =>
  Effect.gen(function*() {
    const store = yield* EventLogStore
    const all = yield* store.partitions
    const held = yield* store.heldFrom
    if (o.json) return yield* json({ heldFrom: heldFromIso(held), partitions: all.map(partitionJson) })
    yield* table(
      ["partition", "from", "to", "rows", "size"],
      all.map((p) => [p.name, iso(p.from) ?? "-", iso(p.to) ?? "-", p.rows, size(p.bytes)])
    )
    yield* Console.log(heldLine(held))
  }).pipe(Effect.provide(EventLogLive))

export const drop = (o: { readonly json: boolean; readonly olderThan: string; readonly dryRun: boolean }) =>
  Effect.gen(function*() {
    const age = yield* parseDuration(o.olderThan)
    if (!Duration.greaterThan(age, Duration.zero)) {
      return yield* new CliError({ message: "--older-than must be greater than 0 (0 would drop every past month)" })
    }
    const store = yield* EventLogStore
    const result = yield* store.dropOlderThan(Duration.toMillis(age), { dryRun: o.dryRun })
    if (o.json) {
      return yield* json({
        olderThan: Duration.format(age),
        cutoff: result.cutoff.toISOString(),
        dryRun: o.dryRun,
        dropped: result.dropped.map(partitionJson),
        heldFrom: heldFromIso(result.heldFrom)
      })
    }
    const what = `wholly older than ${Duration.format(age)} (ending by ${result.cutoff.toISOString()})`
    if (result.dropped.length === 0) {
      yield* Console.log(`no partition ${what}`)
    } else {
      yield* Console.log(`${o.dryRun ? "would drop" : "dropped"} ${result.dropped.length} partition(s) ${what}:`)
      yield* table(
        ["partition", "from", "to", "rows", "size"],
        result.dropped.map((p) => [p.name, iso(p.from) ?? "-", iso(p.to) ?? "-", p.rows, size(p.bytes)])
      )
    }
    yield* Console.log(heldLine(result.heldFrom))
  }).pipe(Effect.provide(EventLogLive))
