import { Config, Console, Duration, Effect, Logger, LogLevel, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import * as os from "node:os"
import * as path from "node:path"
import type pg from "pg"
import { runProcess, spawnProcess, withoutHeraldSettings } from "../../../test-support/Process.js"
import {
  ascending,
  attempt,
  BenchError,
  checkMaterialized,
  connect,
  count,
  describe,
  embeddedDatabase,
  keepOutbox,
  loadAverage,
  migrate,
  percentile,
  query,
  ranged,
  rawMaterialize,
  repoRoot,
  resetOutbox,
  sleep,
  table,
  withinBudget
} from "./support.js"

/**
 * The operator CLI's bulk commands, each next to raw SQL doing the same work in the same run, on
 * one embedded PostgreSQL with its durable (default) settings and one stream of 100 000 events:
 *   a. `herald materialize --json`, the real compiled bin spawned end to end (node, @effect/cli,
 *      connect, work, exit), against one `INSERT … SELECT` + `UPDATE` of the same rows; the
 *      bin's own start-up is timed apart with `herald --help`.
 *   b. `herald replay --stream <id> --json` with `HERALD_BROKER=postgres` (a NOTIFY per event),
 *      against a loop that reads the same range in pages of 1000 and NOTIFYs each page with one
 *      `SELECT pg_notify(…) FROM unnest(…)`. A LISTEN connection, standing in for a server,
 *      counts what each run delivered.
 */

const PAGE = 1_000
const CHANNEL = "herald_events"
const HELP_RUNS = 3
const STATEMENT_TIMEOUT_MS = 120_000
const PROCESS_TIMEOUT_MS = 120_000
const BUDGET = Duration.minutes(6)

const Settings = Config.all({
  events: ranged(Config.integer("BENCH_EVENTS"), 100_000, [1_000, 1_000_000], "Expected 1000 to 1000000 events")
})

// ---------------------------------------------------------------------------------------------
// The bin

const bin = path.join(repoRoot, "packages/cli/bin/herald.mjs")

interface Ran {
  readonly seconds: number
  readonly stdout: string
}

/**
 * Runs the real bin as an operator would (`node packages/cli/bin/herald.mjs …` from the
 * repository root), with this environment minus anything Herald reads, plus `env`. Timed from
 * spawn to exit; a non-zero exit fails the bench. The child is killed if the bench is interrupted.
 */
const herald = (args: ReadonlyArray<string>, env: Record<string, string>) =>
  Effect.async<Ran, BenchError>((resume) => {
    const { finished, spawned } = runProcess(process.execPath, [bin, ...args], { ...withoutHeraldSettings(), ...env }, {
      timeoutMs: PROCESS_TIMEOUT_MS
    })
    finished.then(
      ({ code, ms, signal, stderr, stdout }) =>
        resume(
          code === 0
            ? Effect.succeed({ seconds: ms / 1000, stdout })
            : Effect.fail(new BenchError({ message: `herald ${args.join(" ")} → ${code ?? signal}\n${stderr.trim()}` }))
        ),
      (e) => resume(Effect.fail(new BenchError({ message: `herald ${args.join(" ")}: ${describe(e)}` })))
    )
    return Effect.sync(() => spawned.child.kill("SIGKILL"))
  })

const jsonOf = <A>(what: string, out: Ran) =>
  Effect.try({
    try: () => JSON.parse(out.stdout) as A,
    catch: () => new BenchError({ message: `${what}: stdout is not JSON: ${out.stdout.slice(0, 500)}` })
  })

// ---------------------------------------------------------------------------------------------
// The stream

/**
 * One project (owner, membership, stream counter) and its stream of `events` events in the
 * outbox, already published, as an operator finds it: `project.created`, then message.created
 * with 20–300-character bodies, one per 10 ms of the last hours. A copy is kept to reset from.
 */
const seed = (client: pg.Client, events: number) =>
  Effect.gen(function*() {
    const userId = randomUUID()
    const projectId = randomUUID()
    const stream = `project:${projectId}`
    const start = new Date(Date.now() - events * 10)
    yield* query(client, "user", `INSERT INTO users (id, name) VALUES ($1, 'bench')`, [userId])
    yield* query(
      client,
      "project",
      `
      WITH p AS (INSERT INTO projects (id, name, owner_id) VALUES ($1, 'bench', $2) RETURNING id, owner_id)
      INSERT INTO project_members (project_id, user_id, role) SELECT id, owner_id, 'owner' FROM p`,
      [projectId, userId]
    )
    yield* query(client, "stream", `INSERT INTO event_streams (stream_id, last_seq) VALUES ($1, $2)`, [stream, events])
    yield* query(
      client,
      "outbox",
      `
      INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data, status, published_at, attempts)
      SELECT gen_random_uuid(), $1, g, CASE WHEN g = 1 THEN 'project.created' ELSE 'message.created' END, $2, $3,
        $4::timestamptz + g * interval '10 milliseconds',
        CASE WHEN g = 1 THEN jsonb_build_object('name', 'bench', 'ownerId', $3::uuid)
             ELSE jsonb_build_object('messageId', gen_random_uuid(), 'authorId', $3::uuid, 'role', 'user',
                                     'body', left(repeat(md5(g::text), 10), 20 + (g * 7919) % 281)) END,
        'published', $4::timestamptz + g * interval '10 milliseconds' + interval '2 milliseconds', 1
      FROM generate_series(1, $5::int) AS g`,
      [stream, projectId, userId, start, events]
    )
    yield* keepOutbox(client)
    return stream
  })

interface Run {
  readonly kind: "cli" | "raw"
  readonly seconds: number
}

const rateOf = (runs: ReadonlyArray<Run>, kind: Run["kind"], events: number, minus = 0) => {
  const mine = runs.filter((r) => r.kind === kind)
  return (events * mine.length) / mine.reduce((n, r) => n + r.seconds - minus, 0)
}
const secondsOf = (runs: ReadonlyArray<Run>, kind: Run["kind"]) =>
  runs.filter((r) => r.kind === kind).map((r) => r.seconds.toFixed(2)).join(", ")

// ---------------------------------------------------------------------------------------------
// a. materialize

const materialize = (client: pg.Client, env: Record<string, string>, events: number) =>
  Effect.gen(function*() {
    const run = (kind: Run["kind"]) =>
      Effect.gen(function*() {
        yield* resetOutbox(client)
        let seconds: number
        if (kind === "cli") {
          const out = yield* herald(["materialize", "--json"], env)
          const result = yield* jsonOf<{ materialized: number }>("materialize", out)
          if (result.materialized !== events) {
            return yield* new BenchError({ message: `herald materialize copied ${result.materialized} of ${events}` })
          }
          seconds = out.seconds
        } else {
          const started = performance.now()
          yield* rawMaterialize(client)
          seconds = (performance.now() - started) / 1000
        }
        yield* checkMaterialized(client, kind, events)
        yield* Console.error(`  materialize ${kind}: ${count(events)} events in ${seconds.toFixed(2)} s`)
        return { kind, seconds } satisfies Run
      })
    const runs: Array<Run> = []
    // raw, cli, cli, raw: drift weighs on both alike. The last run (raw) leaves every event in
    // both the outbox and event_log, the state replay then reads.
    for (const kind of ["raw", "cli", "cli", "raw"] as const) runs.push(yield* run(kind))
    return runs
  })

// ---------------------------------------------------------------------------------------------
// b. replay

/**
 * Counts the notifications on the channel, as a listening server would receive them — in a
 * process of its own, so that receiving 100 000 notifications weighs on neither the CLI's process
 * nor the raw loop's (this one).
 */
const LISTENER = `
  const pg = require("pg")
  const client = new pg.Client({ connectionString: process.env.BENCH_LISTEN_URL, application_name: "herald-bench-listener" })
  let n = 0
  client.on("notification", (m) => { if (m.channel === ${JSON.stringify(CHANNEL)}) n++ })
  client.on("error", () => process.exit(1))
  process.on("message", () => process.send(n))
  process.on("disconnect", () => process.exit(0))
  client.connect().then(() => client.query("LISTEN ${CHANNEL}")).then(() => process.send("ready"), () => process.exit(1))
`

const listener = (url: Redacted.Redacted) =>
  Effect.gen(function*() {
    const child = yield* Effect.acquireRelease(
      Effect.sync(() =>
        spawnProcess(process.execPath, ["-e", LISTENER], { BENCH_LISTEN_URL: Redacted.value(url) }, { ipc: true }).child
      ),
      (child) => Effect.sync(() => child.kill("SIGKILL"))
    )
    const next = () =>
      new Promise<unknown>((resolve, reject) => {
        const onExit = (code: number | null) => reject(new Error(`the listener exited (${code})`))
        child.once("exit", onExit)
        child.once("message", (m) => {
          child.off("exit", onExit)
          resolve(m)
        })
      })
    const ready = yield* attempt("listener", () => next())
    if (ready !== "ready") return yield* new BenchError({ message: `listener: unexpected ${String(ready)}` })
    const received = () =>
      attempt("listener", async () => {
        const answer = next()
        child.send("count")
        return Number(await answer)
      })
    /** Waits until `n` notifications have arrived since `from` (or fails after a while). */
    const awaitCount = (from: number, n: number) =>
      attempt("notifications", async () => {
        const deadline = performance.now() + 60_000
        while (true) {
          const got = (await Effect.runPromise(received())) - from
          if (got >= n) return got
          if (performance.now() > deadline) throw new Error(`received ${got} of ${n} notifications`)
          await sleep(50)
        }
      })
    return { received, await: awaitCount }
  })

const ENVELOPE = `SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox
  WHERE stream_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT ${PAGE}`
const NOTIFY = `SELECT pg_notify('${CHANNEL}', p) FROM unnest($1::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n`

interface EnvelopeRow {
  id: string
  stream_id: string
  seq: string
  type: string
  project_id: string
  actor_id: string
  occurred_at: Date
  data: unknown
}

/** The baseline: page through the stream, NOTIFY each page's envelopes in one statement. */
const rawReplay = (client: pg.Client, stream: string, last: number) =>
  Effect.gen(function*() {
    let after = 0
    let published = 0
    while (after < last) {
      const { rows } = yield* query(client, "page", ENVELOPE, [stream, after, last])
      if (rows.length === 0) break
      const payloads = (rows as Array<EnvelopeRow>).map((r) =>
        JSON.stringify({
          id: r.id,
          stream: r.stream_id,
          seq: Number(r.seq),
          type: r.type,
          projectId: r.project_id,
          actorId: r.actor_id,
          occurredAt: r.occurred_at.toISOString(),
          data: r.data
        })
      )
      yield* query(client, "notify", NOTIFY, [payloads])
      published += rows.length
      after = Number((rows[rows.length - 1] as EnvelopeRow).seq)
    }
    return published
  })

const replay = (
  client: pg.Client,
  url: Redacted.Redacted,
  env: Record<string, string>,
  stream: string,
  events: number
) =>
  Effect.gen(function*() {
    const listening = yield* listener(url)
    const run = (kind: Run["kind"]) =>
      Effect.gen(function*() {
        const before = yield* listening.received()
        let seconds: number
        if (kind === "cli") {
          const out = yield* herald(["replay", "--stream", stream, "--json"], { ...env, HERALD_BROKER: "postgres" })
          const result = yield* jsonOf<{ events: number }>("replay", out)
          if (result.events !== events) {
            return yield* new BenchError({ message: `herald replay published ${result.events} of ${events}` })
          }
          seconds = out.seconds
        } else {
          const started = performance.now()
          const published = yield* rawReplay(client, stream, events)
          if (published !== events) {
            return yield* new BenchError({ message: `raw replay published ${published} of ${events}` })
          }
          seconds = (performance.now() - started) / 1000
        }
        // Not timed: every event reached the listener, exactly once.
        const delivered = yield* listening.await(before, events)
        if (delivered !== events) {
          return yield* new BenchError({ message: `${kind}: ${delivered} notifications for ${events} events` })
        }
        yield* Console.error(`  replay ${kind}: ${count(events)} events in ${seconds.toFixed(2)} s`)
        return { kind, seconds } satisfies Run
      })
    const runs: Array<Run> = []
    for (const kind of ["raw", "cli", "cli", "raw"] as const) runs.push(yield* run(kind))
    return runs
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------

const bench = Effect.gen(function*() {
  const { events } = yield* Settings
  yield* Console.error("cli: starting an embedded PostgreSQL (durable settings)…")
  const url = yield* embeddedDatabase
  yield* migrate(url)
  const client = yield* connect(url, "herald-bench-raw", STATEMENT_TIMEOUT_MS)
  yield* Console.error(`cli: seeding ${count(events)} outbox events in one stream…`)
  const stream = yield* seed(client, events)
  const env = { DATABASE_URL: Redacted.value(url) }

  const help: Array<number> = []
  for (let i = 0; i < HELP_RUNS; i++) help.push((yield* herald(["--help"], env)).seconds)
  // The median (of an odd count: the middle run).
  const startup = percentile(ascending(help), 50)
  yield* Console.error(`  herald --help: ${help.map((s) => s.toFixed(2)).join(", ")} s`)

  const mat = yield* materialize(client, env, events)
  const rep = yield* replay(client, url, env, stream, events)

  const rows = (name: string, runs: ReadonlyArray<Run>, cliLabel: string, rawLabel: string) => {
    const cli = rateOf(runs, "cli", events)
    const cliWork = rateOf(runs, "cli", events, startup)
    const raw = rateOf(runs, "raw", events)
    return [
      [
        `${name}: ${cliLabel}`,
        count(cli),
        secondsOf(runs, "cli"),
        `${(cli / raw).toFixed(2)}x`,
        count(cliWork),
        `${(cliWork / raw).toFixed(2)}x`
      ],
      [`${name}: ${rawLabel}`, count(raw), secondsOf(runs, "raw"), "1.00x", "-", "-"]
    ]
  }
  yield* Console.log([
    table(
      [
        `cli: ${
          count(events)
        } events of one stream, durable commits; runs raw, cli, cli, raw; the bin spawned from the repository root`,
        `herald start-up (\`herald --help\`, median of ${HELP_RUNS}): ${startup.toFixed(2)} s (${
          help.map((s) => s.toFixed(2)).join(", ")
        })`
      ],
      ["command", "events/s", "seconds per run", "vs raw", "events/s w/o start-up", "vs raw"],
      [
        ...rows("materialize", mat, "herald materialize --json", "raw INSERT … SELECT + UPDATE, one transaction"),
        ...rows("replay", rep, "herald replay --json (postgres broker)", `raw pages of ${PAGE} + pg_notify … unnest`)
      ]
    ),
    "",
    `load average (1 min) at the end: ${loadAverage()} on ${os.availableParallelism()} CPUs`,
    "w/o start-up: the bin's time minus the median `herald --help` (node + the bundle + @effect/cli loading).",
    "materialize: the CLI counts the backlog, then runs materializeOnce(1000) passes until one copies nothing:",
    `  ${
      Math.ceil(events / 1_000)
    }+ INSERT…SELECT/UPDATE statements, each its own commit. The raw baseline is one transaction.`,
    "replay: the CLI reads each page from outbox ∪ event_log (DISTINCT ON seq; both hold every event here, as",
    "  after materialize and before prune); the raw loop reads the outbox alone. Both NOTIFY one page per statement;",
    `  a LISTEN connection received all ${count(events)} notifications of every run (checked, not timed).`
  ].join("\n"))
}).pipe(
  Effect.scoped,
  // Every statement and process has its own timeout; this is the backstop.
  withinBudget(BUDGET),
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

export default bench
