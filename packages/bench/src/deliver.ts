import { ChatService } from "@herald/server/chat/ChatService"
import { asUser } from "@herald/server/chat/Policy"
import { UsersRepo } from "@herald/server/chat/UsersRepo"
import { AppConfig } from "@herald/server/config/AppConfig"
import { clientLayer } from "@herald/server/db/Database"
import { Config, Console, Context, Duration, Effect, Layer, Logger, LogLevel, Option, Redacted } from "effect"
import { type Target, type Verdict, verdictLine } from "./deliver/common.js"
import {
  cpuPerThousand,
  DRAIN_CAP_MS,
  type DrainRun,
  fillGraphile,
  fillOutbox,
  graphileDrain,
  type GraphileMode,
  graphileSetup,
  heraldDrain,
  makeBacklog,
  perSecond,
  rawDrain,
  resetOutbox,
  STREAMS
} from "./deliver/drain.js"
import { type LatencySample, measureCell, sseListener } from "./deliver/latency.js"
import { makeTarget, serverProcess } from "./deliver/serverProcess.js"
import {
  BenchError,
  connect,
  embeddedDatabase,
  fixed,
  inProcessServer,
  migrate,
  percentile,
  ranged,
  ratio,
  secondsSetting,
  table,
  withinBudget
} from "./support.js"

/**
 * Delivery after commit, in two parts, each next to a baseline measured in the same run:
 *   1. commit→SSE latency for one client under open-loop posts at 100 and 1000/s, with the server
 *      in this process (as `write` runs it) and as its own process (floor: GET /health/live);
 *   2. the publisher's drain rate of a backlog written in bulk (baselines: a raw-SQL loop of the
 *      same claim and mark statements; Graphile Worker used as the outbox).
 * SSE memory per connection and fan-out to many clients are `npm run bench -- sse`'s.
 * One embedded PostgreSQL with its durable (default) settings serves every part; everything
 * listens on 127.0.0.1 and is stopped and removed when the bench ends.
 *
 * Environment: BENCH_SECONDS (latency cell, default 5), BENCH_BACKLOG (default 100000),
 * BENCH_GRAPHILE_CONCURRENCY (default 10), BENCH_PARTS (default latency,drain).
 */

const TARGETS = {
  latency: { rate: 100, p50: 3, p99: 15 },
  drain: { vsRaw: 0.9, vsGraphile: 2 }
} as const
const RATES = [100, 1000] as const

const Settings = Config.all({
  seconds: secondsSetting,
  backlog: ranged(
    Config.integer("BENCH_BACKLOG"),
    100_000,
    [1000, 1_000_000],
    "Expected a backlog from 1000 to 1000000 events"
  ),
  graphileConcurrency: ranged(
    Config.integer("BENCH_GRAPHILE_CONCURRENCY"),
    10,
    [1, 50],
    "Expected a concurrency from 1 to 50"
  ),
  parts: Config.string("BENCH_PARTS").pipe(
    Config.withDefault("latency,drain"),
    Config.map((s) => new Set(s.split(",").map((p) => p.trim()).filter((p) => p.length > 0))),
    Config.validate({
      message: "Expected a comma-separated subset of latency,drain",
      validation: (parts) => parts.size > 0 && [...parts].every((p) => ["latency", "drain"].includes(p))
    })
  )
})
type Settings = Config.Config.Success<typeof Settings>

const progress = (line: string) => Console.error(`  ${line}`)

// ---------------------------------------------------------------------------------------------
// Part 1: commit→SSE latency

type Where = "this process" | "own process"

interface LatencyRow {
  readonly where: Where
  readonly rate: number
  readonly floor: LatencySample
  readonly post: LatencySample
}

const latencyCells = (target: Target, where: Where, seconds: number) =>
  Effect.gen(function*() {
    const sse = yield* sseListener(target)
    const rows: Array<LatencyRow> = []
    for (const rate of RATES) {
      const floor = yield* measureCell(target, sse, "health", rate, seconds)
      const post = yield* measureCell(target, sse, "post", rate, seconds)
      yield* progress(
        `server in ${where}, ${rate}/s: POST→SSE p50 ${fixed(percentile(post.sendToSse, 50))} ms, ` +
          `p99 ${fixed(percentile(post.sendToSse, 99))} ms; GET /health/live p50 ${
            fixed(percentile(floor.roundTrip, 50))
          } ms`
      )
      rows.push({ where, rate, floor, post })
    }
    return rows
  }).pipe(Effect.scoped)

/**
 * The cells against the server built in this process (as `write` does), then against the same
 * server as its own process: there the load generator and the SSE client no longer share its
 * event loop, and it has a core of its own.
 */
const latencyPart = (url: Redacted.Redacted, settings: Settings) =>
  Effect.gen(function*() {
    yield* Console.error("deliver 1/2: commit→SSE latency…")
    const inProcess = yield* Effect.scoped(Effect.gen(function*() {
      const { app, port } = yield* inProcessServer(url)
      const created = yield* Effect.orDie(Context.get(app, UsersRepo).create("bench latency"))
      const project = yield* Context.get(app, ChatService).createProject("bench latency").pipe(asUser(created.user))
      const target: Target = { port, token: Redacted.value(created.token), projectId: project.id }
      return yield* latencyCells(target, "this process", settings.seconds)
    }))
    const ownProcess = yield* Effect.scoped(Effect.gen(function*() {
      const server = yield* serverProcess(url)
      const target = yield* makeTarget(server, "bench latency")
      return yield* latencyCells(target, "own process", settings.seconds)
    }))
    return [...inProcess, ...ownProcess]
  })

const latencyTable = (rows: ReadonlyArray<LatencyRow>, seconds: number) => {
  const lines: Array<Array<string>> = []
  for (const { floor, post, rate, where } of rows) {
    const f50 = percentile(floor.roundTrip, 50)
    const f99 = percentile(floor.roundTrip, 99)
    const row = (
      what: string,
      sample: LatencySample,
      values: ReadonlyArray<number>,
      target: string,
      vsFloor: boolean
    ) => {
      const p50 = percentile(values, 50)
      const p99 = percentile(values, 99)
      lines.push([
        where,
        String(rate),
        what,
        String(values.length),
        fixed(p50),
        fixed(p99),
        fixed(values.length === 0 ? NaN : values[values.length - 1]!),
        target,
        vsFloor ? ratio(p50, f50) : "",
        vsFloor ? ratio(p99, f99) : "",
        what.includes("→ SSE") ? "" : sample.answeredPerSecond.toFixed(0) + (sample.overloaded ? "*" : ""),
        what.includes("→ SSE") ? "" : fixed(percentile(sample.sendLag, 99))
      ])
    }
    const target = rate === TARGETS.latency.rate ? `p50 <= ${TARGETS.latency.p50}, p99 <= ${TARGETS.latency.p99}` : ""
    row("floor: GET /health/live sent → 200", floor, floor.roundTrip, "", false)
    row("POST sent → 201", post, post.roundTrip, "", true)
    row("POST sent → SSE event (upper bound)", post, post.sendToSse, target, true)
    row("201 → SSE event (lower bound)", post, post.answerToSse, target, false)
    if (post.missing > 0) lines.push([where, String(rate), `events never received: ${post.missing}`])
  }
  return table(
    `deliver 1: commit→SSE latency, one SSE client, open-loop posts over HTTP, ${seconds} s per cell (ms)`,
    [
      "server in",
      "rate/s",
      "measure",
      "n",
      "p50",
      "p99",
      "max",
      "target",
      "p50/floor",
      "p99/floor",
      "answered/s",
      "send lag p99"
    ],
    lines,
    [
      "Open loop: request i is sent at t0 + i/rate whatever the answers do; times run from when it was sent.",
      "The commit happens between the POST being sent and its 201 arriving, so commit→SSE lies between the",
      "two SSE rows: 'POST sent → SSE' includes the write path (durable commit included), '201 → SSE' starts",
      "after the commit (negative when the event reached the SSE client before the 201 reached the poster).",
      "answered/s below the rate: the server could not keep up and requests queued (latency then grows with the run);",
      "* the cell stopped early, with half a second's worth of requests waiting for an answer.",
      "'this process': server, publisher, load and SSE client share one event loop; 'own process': the server",
      "runs as `node --import tsx src/main.ts`. send lag p99 = how late the driver sent against its schedule."
    ]
  )
}

const latencyVerdicts = (rows: ReadonlyArray<LatencyRow>): Array<Verdict> =>
  rows.filter((r) => r.rate === TARGETS.latency.rate).flatMap((row) => {
    const at = `at ${TARGETS.latency.rate}/s, server in ${row.where}`
    const complete = row.post.missing === 0
    const bounds = (p: number) => {
      const upper = percentile(row.post.sendToSse, p)
      const lower = percentile(row.post.answerToSse, p)
      return {
        upper,
        lower,
        text: `${fixed(lower)} .. ${fixed(upper)} ms (201→SSE .. POST→SSE; floor ${
          fixed(percentile(row.floor.roundTrip, p))
        } ms)`
      }
    }
    const verdict = (p: number, limit: number): Verdict => {
      const b = bounds(p)
      return {
        target: `commit→SSE p${p} <= ${limit} ms ${at}`,
        met: complete && b.upper <= limit ? true : complete && b.lower <= limit ? "open" : false,
        measured: b.text
      }
    }
    return [verdict(50, TARGETS.latency.p50), verdict(99, TARGETS.latency.p99)]
  })

// ---------------------------------------------------------------------------------------------
// Part 2: drain rate

interface DrainResult {
  readonly raw: ReadonlyArray<DrainRun>
  readonly herald: ReadonlyArray<DrainRun>
  readonly graphile: ReadonlyArray<{ readonly mode: GraphileMode; readonly run: DrainRun | string }>
  readonly graphileError: string | undefined
  readonly events: number
}

const drainPart = (url: Redacted.Redacted, settings: Settings) =>
  Effect.gen(function*() {
    yield* Console.error(`deliver 2/2: draining a backlog of ${settings.backlog} events over ${STREAMS} streams…`)
    const base = yield* Layer.build(
      Layer.merge(
        clientLayer({ url, applicationName: "herald-bench-publisher" }),
        AppConfig.layerWith({ databaseUrl: Option.some(url) })
      )
    )
    const config = Context.get(base, AppConfig)
    const setup = yield* connect(url, "herald-bench-setup")
    const poller = yield* connect(url, "herald-bench-poller")
    const backlog = makeBacklog(settings.backlog)
    const raw: Array<DrainRun> = []
    const herald: Array<DrainRun> = []
    const report = (run: DrainRun) =>
      progress(
        `${run.who}: ${run.partial ? `stopped at the cap after ${run.delivered} of` : "all"} ${run.events} events ` +
          `in ${run.seconds.toFixed(2)} s = ${perSecond([run]).toFixed(0)}/s`
      )
    const check = (run: DrainRun) =>
      run.partial || run.delivered >= run.events
        ? Effect.succeed(run)
        : Effect.fail(new BenchError({ message: `${run.who} delivered ${run.delivered} of ${run.events} events` }))

    const rawRun = Effect.zipRight(
      fillOutbox(setup, backlog),
      rawDrain(url, poller, backlog.events, config.publishBatchSize, config.claimLeaseMs)
    ).pipe(Effect.flatMap(check), Effect.tap(report), Effect.tap((r) => raw.push(r)))
    const heraldRun = Effect.zipRight(fillOutbox(setup, backlog), heraldDrain(base, poller, backlog.events)).pipe(
      Effect.flatMap(check),
      Effect.tap(report),
      Effect.tap((r) => herald.push(r))
    )

    // Raw, Herald, …, Herald, raw: drift on a shared machine weighs on both alike.
    yield* rawRun
    yield* heraldRun
    yield* resetOutbox(setup)

    const modes: Array<GraphileMode> = [
      {
        label: `concurrency ${settings.graphileConcurrency}, defaults`,
        concurrency: settings.graphileConcurrency,
        batched: false
      },
      {
        label: `concurrency ${settings.graphileConcurrency}, local queue 500 + batched completion`,
        concurrency: settings.graphileConcurrency,
        batched: true
      }
    ]
    const graphile: Array<{ mode: GraphileMode; run: DrainRun | string }> = []
    const graphileError = yield* Effect.scoped(Effect.gen(function*() {
      const gw = yield* graphileSetup(url, settings.graphileConcurrency)
      for (const mode of modes) {
        const run = yield* fillGraphile(setup, backlog).pipe(
          Effect.zipRight(graphileDrain(gw, poller, backlog.events, mode)),
          Effect.flatMap(check),
          Effect.tap(report),
          Effect.catchAll((e) => Effect.as(progress(`Graphile Worker (${mode.label}) failed: ${e.message}`), e.message))
        )
        graphile.push({ mode, run })
      }
    })).pipe(
      Effect.as(undefined),
      Effect.catchAll((e) => Effect.as(progress(`Graphile Worker could not run: ${e.message}`), e.message))
    )

    yield* heraldRun
    yield* rawRun
    yield* resetOutbox(setup)
    const result: DrainResult = { raw, herald, graphile, graphileError, events: backlog.events }
    return result
  }).pipe(Effect.scoped)

/** Where the raw loop's time went, per batch of 500: the claim, the mark, and the rest. */
const rawSplit = (runs: ReadonlyArray<DrainRun>) => {
  const splits = runs.flatMap((r) => (r.split === undefined ? [] : [r.split]))
  const batches = splits.reduce((n, s) => n + s.batches, 0)
  if (batches === 0) return ""
  const claim = splits.reduce((n, s) => n + s.claimMs, 0) / batches
  const mark = splits.reduce((n, s) => n + s.markMs, 0) / batches
  return ` Raw loop per batch of 500: claim ${claim.toFixed(1)} ms, mark ${mark.toFixed(1)} ms.`
}

const drainTable = (d: DrainResult) => {
  const heraldRate = perSecond(d.herald)
  const rawRate = perSecond(d.raw)
  const row = (who: string, runs: ReadonlyArray<DrainRun>, target: string) => {
    const rate = perSecond(runs)
    return [
      who,
      String(runs.length),
      (runs.reduce((n, r) => n + r.seconds, 0) / runs.length).toFixed(2) + (runs.some((r) => r.partial) ? "*" : ""),
      rate.toFixed(0),
      cpuPerThousand(runs).toFixed(1),
      ratio(heraldRate, rate),
      target
    ]
  }
  const lines = [
    row("raw SQL claim+mark loop (1 pg client)", d.raw, `Herald >= ${TARGETS.drain.vsRaw}x`),
    row("Herald publisher (OutboxPublisherLive)", d.herald, "")
  ]
  for (const { mode, run } of d.graphile) {
    lines.push(
      typeof run === "string"
        ? [`Graphile Worker, ${mode.label}`, "0", "-", "-", "-", "-", `failed: ${run}`]
        : row(
          `Graphile Worker, ${mode.label}`,
          [run],
          mode.batched ? "(tuned, for reference)" : `Herald >= ${TARGETS.drain.vsGraphile}x`
        )
    )
  }
  if (d.graphileError !== undefined) {
    lines.push(["Graphile Worker", "0", "-", "-", "-", "-", `could not run: ${d.graphileError}`])
  }
  return table(
    `deliver 2: drain of a ${d.events}-event backlog (${STREAMS} streams, contiguous seqs), until none is pending`,
    ["drainer", "runs", "s/run", "events/s", "CPU ms/1000 ev", "Herald/this", "target"],
    lines,
    [
      `Herald and raw SQL: the same claim (FOR UPDATE SKIP LOCKED, batch 500, 30 s lease) and mark statements, one`,
      `at a time; runs in the order raw, Herald, Graphile…, Herald, raw. Herald's broker only counts; Graphile Worker's`,
      `task only counts (its jobs carry the same envelope, enqueued with add_jobs, ${5000} per transaction; no queue_name,`,
      `so no per-stream order). CPU ms: this process's CPU per 1000 events (drainer plus a 20 ms "done yet?" poll).`,
      `* stopped at the ${
        DRAIN_CAP_MS / 1000
      } s cap before the backlog was gone: events/s over what it delivered by then.`,
      `Herald/raw SQL: ${ratio(heraldRate, rawRate)}.${rawSplit(d.raw)}`
    ]
  )
}

const drainVerdicts = (d: DrainResult): Array<Verdict> => {
  const heraldRate = perSecond(d.herald)
  const rawRate = perSecond(d.raw)
  const plain = d.graphile.find((g) => !g.mode.batched)
  const tuned = d.graphile.find((g) => g.mode.batched)
  const vs = (g: typeof plain, label: string): Verdict => {
    if (g === undefined || typeof g.run === "string") {
      return {
        target: `Herald drain >= ${TARGETS.drain.vsGraphile}x Graphile Worker (${label})`,
        met: "not measured",
        measured: g === undefined ? d.graphileError ?? "not run" : String(g.run)
      }
    }
    const r = heraldRate / perSecond([g.run])
    return {
      target: `Herald drain >= ${TARGETS.drain.vsGraphile}x Graphile Worker (${label})`,
      met: r >= TARGETS.drain.vsGraphile,
      measured: `${r.toFixed(3)}x (${heraldRate.toFixed(0)}/s vs ${perSecond([g.run]).toFixed(0)}/s)`
    }
  }
  return [
    {
      target: `Herald drain >= ${TARGETS.drain.vsRaw}x raw SQL`,
      met: heraldRate / rawRate >= TARGETS.drain.vsRaw,
      measured: `${(heraldRate / rawRate).toFixed(3)}x (${heraldRate.toFixed(0)}/s vs ${rawRate.toFixed(0)}/s)`
    },
    vs(plain, "its defaults"),
    { ...vs(tuned, "tuned: local queue + batched completion"), target: `(reference) Herald vs Graphile Worker tuned` }
  ]
}

// ---------------------------------------------------------------------------------------------

const bench = Effect.gen(function*() {
  const settings = yield* Settings
  yield* Console.error("deliver: starting an embedded PostgreSQL (durable settings)…")
  const started = performance.now()
  const url = yield* embeddedDatabase
  yield* migrate(url)

  const verdicts: Array<Verdict> = []
  if (settings.parts.has("latency")) {
    const rows = yield* latencyPart(url, settings)
    yield* Console.log(latencyTable(rows, settings.seconds))
    verdicts.push(...latencyVerdicts(rows))
  }
  if (settings.parts.has("drain")) {
    const d = yield* drainPart(url, settings)
    yield* Console.log(drainTable(d))
    verdicts.push(...drainVerdicts(d))
  }
  yield* Console.log(
    [
      "",
      `deliver: targets (${
        ((performance.now() - started) / 1000).toFixed(0)
      } s in all; shared 2-core machine, so compare ratios)`,
      ...verdicts.map(verdictLine),
      "  (open: the target lies between the lower and the upper bound of the figure)"
    ].join("\n")
  )
}).pipe(
  // Every step is bounded by its own timeout; this is the backstop.
  withinBudget(Duration.minutes(10)),
  Effect.scoped,
  // Per-request access logs would measure the terminal; warnings and errors still show.
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

export default bench
