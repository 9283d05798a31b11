import { EventLogStore } from "@herald/server"
import { Console, Duration, Effect, Layer, Option } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { CliError, json, parseDuration, progress, table } from "../Render.js"

/** What `herald rollups …` does; `commands/Rollups.ts` declares the commands. */

const RollupsLive = EventLogStore.Default.pipe(Layer.provideMerge(CliDatabaseLive))

/** An ISO-8601 time with a zone, or a bare date (read as UTC midnight), as analytics take them. */
const ISO_TIME = /^\d{4}-\d\d-\d\d(?:T\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d))?$/

/** `--since`: an ISO time or a duration back from now; never in the future. */
export const parseSince = (text: string, now: number): Effect.Effect<Date, CliError> =>
  Effect.gen(function*() {
    const trimmed = text.trim()
    const at = ISO_TIME.test(trimmed) && !Number.isNaN(Date.parse(trimmed)) ? new Date(Date.parse(trimmed)) : null
    const since = at ?? new Date(
      now - Duration.toMillis(
        yield* parseDuration(trimmed).pipe(
          Effect.mapError(() =>
            new CliError({
              message:
                `--since: expected an ISO-8601 time (2026-12-01T13:00Z, 2026-12-01) or a duration back from now ` +
                `(24h, 7d), got ${JSON.stringify(text)}`
            })
          )
        )
      )
    )
    if (since.getTime() > now) {
      return yield* new CliError({
        message: `--since ${text} is in the future (${since.toISOString()}): nothing to rebuild`
      })
    }
    return since
  })

const iso = (d: Date | null) => d === null ? null : d.toISOString()

export const rebuild = (o: { readonly json: boolean; readonly since: Option.Option<string> }) =>
  Effect.gen(function*() {
    // Checked before the database is touched: bad input changes nothing.
    const since = Option.isSome(o.since) ? yield* parseSince(o.since.value, Date.now()) : null
    return yield* Effect.gen(function*() {
      const store = yield* EventLogStore
      // One step a month partition (a transaction each); the count is known once the first is done.
      let bar: { readonly update: (done: number) => void } | undefined
      let done = 0
      const result = yield* store.rebuildRollups(since, (_, of) =>
        Effect.gen(function*() {
          bar ??= yield* progress("rollups rebuild (months)", of)
          bar.update(done += 1)
        }))
      const chunks = result.chunks
      const total = {
        since: iso(result.since),
        hours: chunks.reduce((n, c) => n + c.hours, 0),
        events: chunks.reduce((n, c) => n + c.events, 0),
        removed: chunks.reduce((n, c) => n + c.removed, 0)
      }
      if (o.json) {
        return yield* json({
          ...total,
          chunks: chunks.map((c) => ({
            from: iso(c.from),
            to: iso(c.to),
            hours: c.hours,
            events: c.events,
            removed: c.removed
          }))
        })
      }
      yield* table(
        ["from", "to", "hours", "events", "rollup rows replaced"],
        chunks.map((c) => [iso(c.from) ?? "the beginning", iso(c.to) ?? "on", c.hours, c.events, c.removed])
      )
      yield* Console.log(
        `rebuilt the rollups of ${total.hours} hour(s) with events (${total.events} events) ` +
          `${total.since === null ? "over the whole log" : `from ${total.since}`}`
      )
    }).pipe(Effect.scoped)
  }).pipe(Effect.provide(RollupsLive))
