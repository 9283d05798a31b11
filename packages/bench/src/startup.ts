import { Config, Duration, Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { freePort, runProcess, SERVER, spawnProcess, spawnServer } from "../../../test-support/Process.js"
import {
  ascending,
  attempt,
  fixed,
  loadAverage,
  percentile,
  ranged,
  repoRoot,
  sleep,
  table,
  tempDir,
  withinBudget
} from "./support.js"

/**
 * What an operator waits for and what an idle server costs, as a user runs them: the compiled
 * server (`node packages/server/dist/main.js`) and the `herald` bin, each next to `node -e 0`
 * timed in the same run, interleaved so that other load on the machine hits every command alike.
 *
 *   idle RSS                 the server's resident memory 5 s after it is ready, no requests made
 *   herald --help            wall time, spawn to exit
 *   herald outbox stats      wall time with --json, attaching to the running server's embedded cluster
 */

const HERALD = path.join(repoRoot, "packages/cli/bin/herald.mjs")

const runsSetting = ranged(Config.integer("BENCH_RUNS"), 15, [3, 200], "Expected a whole number of runs from 3 to 200")

/** Wall time of one command, spawn to exit, in ms; fails on a non-zero exit. */
const timed = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  attempt(`node ${args.join(" ")}`, async () => {
    const { code, ms, stderr } = await runProcess(process.execPath, args, env).finished
    if (code !== 0) throw new Error(`exit ${code}: ${stderr.trim()}`)
    return ms
  })

const rssKb = (pid: number) =>
  attempt("read the server's RSS", async () => {
    const status = await fs.readFile(`/proc/${pid}/status`, "utf8")
    return Number(status.match(/VmRSS:\s+(\d+) kB/)![1])
  })

/** The compiled server on an embedded cluster of its own, ready; stopped with the scope. */
const server = (dataDir: string) =>
  Effect.acquireRelease(
    attempt("start the server", async () => {
      const port = await freePort()
      const spawned = spawnServer({ HERALD_DATA_DIR: dataDir, PORT: String(port), DATABASE_URL: "" })
      const deadline = Date.now() + 60_000
      while (Date.now() < deadline) {
        if (spawned.child.exitCode !== null) {
          throw new Error(`the server exited with ${spawned.child.exitCode}:\n${spawned.output()}`)
        }
        const ready = await fetch(`http://127.0.0.1:${port}/health/ready`).then((r) => r.ok, () => false)
        if (ready) return spawned
        await sleep(100)
      }
      spawned.child.kill("SIGKILL")
      throw new Error(`the server was not ready within 60 s:\n${spawned.output()}`)
    }),
    (spawned) => Effect.promise(() => spawned.stop())
  )

const bench = Effect.gen(function*() {
  for (const file of [path.join(repoRoot, ...SERVER), path.join(repoRoot, "packages/cli/dist/bin.js")]) {
    yield* attempt(`${path.relative(repoRoot, file)} (run \`npm run build\` first)`, () => fs.access(file))
  }
  const runs = yield* runsSetting
  const dataDir = yield* tempDir
  const env = { HERALD_DATA_DIR: dataDir }

  const { child } = yield* server(dataDir)
  yield* Effect.promise(() => sleep(5_000))
  const idleKb = yield* rssKb(child.pid!)

  // A baseline process: node idling with nothing loaded.
  const idleNode = spawnProcess(process.execPath, ["-e", "setInterval(() => {}, 1000)"], {})
  yield* Effect.promise(() => sleep(1_000))
  const nodeKb = yield* rssKb(idleNode.child.pid!)
  idleNode.child.kill()

  const commands = [
    { label: "node -e 0", args: ["-e", "0"], target: undefined },
    { label: "herald --help", args: [HERALD, "--help"], target: 5 },
    { label: "herald outbox stats --json", args: [HERALD, "outbox", "stats", "--json"], target: 8 }
  ] as const
  const times: Array<Array<number>> = commands.map(() => [])
  yield* timed(commands[2].args, env) // warm-up (page cache), not counted
  for (let i = 0; i < runs; i++) {
    for (const [c, command] of commands.entries()) times[c]!.push(yield* timed(command.args, env))
  }
  const medians = times.map((t) => percentile(ascending(t), 50))
  const base = medians[0]!

  const idleMb = idleKb / 1024
  const rows = [
    [
      "idle server RSS",
      `${fixed(idleMb, 1)} MB`,
      `${fixed(nodeKb / 1024, 1)} MB idle node`,
      "≤ 150 MB",
      idleMb <= 150 ? "met" : "NOT met"
    ],
    ...commands.map((command, c) => {
      const x = medians[c]! / base
      return [
        `${command.label} (median of ${runs})`,
        `${fixed(medians[c]!, 1)} ms`,
        c === 0 ? "1.00x" : `${fixed(x)}x`,
        command.target === undefined ? "baseline" : `≤ ${command.target}x`,
        command.target === undefined ? "" : x <= command.target ? "met" : "NOT met"
      ]
    })
  ]
  console.log(table(
    [`startup — the compiled server and the herald bin next to plain node (load average ${loadAverage()})`],
    ["figure", "value", "against node", "target", ""],
    rows,
    [
      "p90: " +
      commands.map((command, c) => `${command.label} ${fixed(percentile(ascending(times[c]!), 90), 1)} ms`).join(" · "),
      "outbox stats attaches to the running server's embedded PostgreSQL (HERALD_DATA_DIR), as an operator's would."
    ]
  ))
}).pipe(
  Effect.scoped,
  // Every step has its own timeout; this is the backstop.
  withinBudget(Duration.minutes(5))
)

export default bench
