import { AppConfig, CursorStore } from "@herald/server"
import { Console, Duration, Effect, Layer, Option } from "effect"
import { CliDatabaseLive } from "../Database.js"
import { CliError, json, parseDuration } from "../Render.js"

/** What `herald cursors …` does; `commands/Cursors.ts` declares the commands. */

const CursorsLive = CursorStore.Default.pipe(Layer.provideMerge(CliDatabaseLive))

export const prune = (o: { readonly json: boolean; readonly olderThan: Option.Option<string> }) =>
  Effect.gen(function*() {
    const age = Option.isSome(o.olderThan)
      ? yield* parseDuration(o.olderThan.value)
      : (yield* AppConfig).cursorRetention
    if (!Duration.greaterThan(age, Duration.zero)) {
      return yield* new CliError({ message: "--older-than must be greater than 0 (0 would delete every cursor base)" })
    }
    const deleted = yield* (yield* CursorStore).prune(age)
    if (o.json) return yield* json({ olderThan: Duration.format(age), deleted })
    yield* Console.log(`deleted ${deleted} cursor base(s) unused for ${Duration.format(age)}`)
  }).pipe(Effect.provide(CursorsLive))
