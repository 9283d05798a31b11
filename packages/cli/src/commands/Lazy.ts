import { Effect } from "effect"

/**
 * A command's work, loaded when it runs: `herald --help` and usage errors load only the command
 * declarations (effect and @effect/cli), never the database client or the server's modules —
 * that is most of the bin's start-up time. The bundle keeps each `run/` module in a chunk of its own.
 */
export const lazy = <M>(load: () => Promise<M>) => <A, E, R>(f: (module: M) => Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.promise(load), f)
