import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { runCampaign } from "./Campaign.js"
import { formatRun, SHOWN_PER_KIND, summary } from "./Report.js"
import { newSeed, parseSeed } from "./Rng.js"
import type { Broker } from "./Run.js"

/**
 * `npm run chaos [-- --minutes N] [--broker postgres|redis|both] [--nodes 2|3]`: a fault campaign
 * against compiled server processes (see Campaign.ts). `CHAOS_SEED` replays a schedule. Exit code
 * 0 only if the checker found nothing; 1 if it did (or the campaign itself failed); 2 for bad usage.
 */

const USAGE = `usage: npm run chaos [-- --minutes N] [--broker postgres|redis|both] [--nodes 2|3] [--no-faults]

  --minutes N   how long faults and workload run, per broker (default 1; decimals allowed)
  --broker B    postgres, redis or both (default both, one after the other)
  --nodes N     server processes, 2 or 3 (default 3)
  --no-faults   a control run: the same workload and clients, no fault at all
  CHAOS_SEED=S  replay the schedule of seed S (printed at the start and the end)`

interface Args {
  readonly minutes: number
  readonly brokers: ReadonlyArray<Broker>
  readonly nodes: number
  readonly faults: boolean
}

const parseArgs = (argv: ReadonlyArray<string>): Args | string => {
  let minutes = 1
  let brokers: ReadonlyArray<Broker> = ["postgres", "redis"]
  let nodes = 3
  let faults = true
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = argv[i + 1]
    if (flag === "--help" || flag === "-h") return ""
    if (flag === "--no-faults") {
      faults = false
      continue
    }
    if (value === undefined) return `${flag} needs a value`
    i++
    switch (flag) {
      case "--minutes":
        minutes = Number(value)
        if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) return `--minutes: not a duration: ${value}`
        break
      case "--broker":
        if (value === "both") brokers = ["postgres", "redis"]
        else if (value === "postgres" || value === "redis") brokers = [value]
        else return `--broker: postgres, redis or both, not ${value}`
        break
      case "--nodes":
        nodes = Number(value)
        if (nodes !== 2 && nodes !== 3) return `--nodes: 2 or 3, not ${value}`
        break
      default:
        return `unknown option ${flag}`
    }
  }
  return { minutes, brokers, nodes, faults }
}

const args = parseArgs(process.argv.slice(2))
if (typeof args === "string") {
  if (args !== "") console.error(`${args}\n`)
  console.error(USAGE)
  process.exit(args === "" ? 0 : 2)
}

const seedText = process.env.CHAOS_SEED
const seed = seedText !== undefined && seedText.trim() !== "" ? parseSeed(seedText.trim()) : newSeed()
const replay = (broker: string) =>
  `CHAOS_SEED=${seed} npm run chaos -- --minutes ${args.minutes} --broker ${broker} --nodes ${args.nodes}${
    args.faults ? "" : " --no-faults"
  }`

let code = 1
const startedAt = Date.now()

const program = Effect.gen(function*() {
  console.log(
    `chaos: seed ${seed} · ${args.brokers.join(" then ")} · ${args.nodes} nodes · ${args.minutes} min ${
      args.faults ? "of faults" : "without faults (a control run)"
    } per broker`
  )
  const report = yield* runCampaign({
    seed,
    brokers: args.brokers,
    nodes: args.nodes,
    durationMs: Math.round(args.minutes * 60_000),
    faults: args.faults,
    log: (line) => console.log(`chaos: [${((Date.now() - startedAt) / 1000).toFixed(1)}] ${line}`),
    onRun: (run) => {
      console.log(formatRun(run, replay(run.broker)))
      const counts = new Map<string, number>()
      for (const v of run.violations) counts.set(v.kind, (counts.get(v.kind) ?? 0) + 1)
      if ([...counts.values()].some((n) => n > SHOWN_PER_KIND)) {
        const file = path.join(os.tmpdir(), `herald-chaos-${seed}-${run.broker}.txt`)
        fs.writeFileSync(file, formatRun(run, replay(run.broker), Infinity) + "\n")
        console.log(`every violation: ${file}`)
      }
    }
  })
  const found = report.runs.reduce((n, r) => n + r.violations.length, 0)
  console.log(`\n${summary(report)}\nchaos: seed ${seed} · ${found} violation${found === 1 ? "" : "s"}`)
  code = found === 0 ? 0 : 1
})

NodeRuntime.runMain(program, {
  disableErrorReporting: false,
  teardown: (exit, onExit) => {
    if (Exit.isSuccess(exit)) return process.exit(code)
    if (Cause.isInterruptedOnly(exit.cause)) {
      console.error(`chaos: interrupted (seed ${seed})`)
      return process.exit(130)
    }
    console.error(`chaos: the campaign itself failed (seed ${seed})`)
    onExit(1)
  }
})
