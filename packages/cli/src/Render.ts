import cliProgress from "cli-progress"
import Table from "cli-table3"
// A deep import: the package entry would bring the database client into every command.
import { parseDurationText } from "@herald/server"
import { Console, Data, Duration, Effect, Either } from "effect"

/** A failure the CLI reports as one line on stderr, exit code 1. */
export class CliError extends Data.TaggedError("CliError")<{ readonly message: string }> {}

/** A human table (cli-table3). */
export const table = (head: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string | number>>) => {
  const t = new Table({ head: [...head], style: { head: [], border: [] } })
  for (const row of rows) t.push(row.map(String))
  return Console.log(t.toString())
}

export const json = (value: unknown) => Console.log(JSON.stringify(value, null, 2))

export const age = (seconds: number | null) =>
  seconds === null ? "-" : Duration.format(Duration.millis(Math.round(seconds) * 1000)) || "0"

/**
 * Progress of long work: a bar with rate and ETA on a terminal (cli-progress), otherwise a plain
 * line at most every two seconds and at the end — so logs of scripted runs stay readable.
 */
export const progress = (label: string, total: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      if (process.stderr.isTTY) {
        const bar = new cliProgress.SingleBar({
          format: `${label} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`,
          stream: process.stderr,
          hideCursor: true
        }, cliProgress.Presets.shades_classic)
        bar.start(total, 0, { rate: "0" })
        const started = Date.now()
        return {
          update: (done: number) =>
            bar.update(done, { rate: Math.round(done / Math.max(0.001, (Date.now() - started) / 1000)) }),
          stop: () => bar.stop()
        }
      }
      const started = Date.now()
      let last = started
      let current = 0
      const line = () => {
        const secs = (Date.now() - started) / 1000
        process.stderr.write(`${label}: ${current}/${total} (${Math.round(current / Math.max(0.001, secs))}/s)\n`)
      }
      return {
        update: (done: number) => {
          current = done
          if (Date.now() - last >= 2_000) {
            last = Date.now()
            line()
          }
        },
        stop: line
      }
    }),
    (p) => Effect.sync(() => p.stop())
  )

/** `7d`, `12h`, `30m`, `90s`, `500ms`, `2w`, or anything Effect's Duration reads (`7 days`): the server's one reader. */
export const parseDuration = (text: string): Effect.Effect<Duration.Duration, CliError> =>
  Either.match(parseDurationText(text), {
    onLeft: (message) => Effect.fail(new CliError({ message })),
    onRight: Effect.succeed
  })
