import { Statement } from "@effect/sql"
import { Events, Ids } from "@herald/domain"
import {
  Analytics,
  BackgroundSqlLive,
  clientLayer,
  EventLogStore,
  MATERIALIZE_BATCH,
  materializeOnce
} from "@herald/server"
import { Config, Console, DateTime, Duration, Effect, Layer, Logger, LogLevel, type Redacted } from "effect"
import { createHash, randomBytes, randomUUID } from "node:crypto"
import * as http from "node:http"
import * as os from "node:os"
import type pg from "pg"
import {
  ascending,
  attempt,
  BenchError,
  checkMaterialized,
  connect,
  count,
  embeddedDatabase,
  fixed,
  inProcessServer,
  keepOutbox,
  loadAverage,
  migrate,
  percentile,
  query,
  ranged,
  rawMaterialize,
  request,
  resetOutbox,
  table,
  withinBudget
} from "./support.js"

/**
 * Analytics reads and the materializer, each next to a baseline measured in the same run, on one
 * embedded PostgreSQL with its durable (default) settings:
 *   1. p50/p99 of `GET …/analytics/summary` and `…/analytics/timeseries?bucket=hour|day` over 30
 *      days of one project, through the real server, on an event_log of 10 000 000 events over
 *      100 projects and 60 days; the floor is `GET /health/live` on the same connection. Project
 *      sizes follow Zipf, so two projects are measured: the one nearest an even 1/100 share and the
 *      largest (~17 % of all events). The events are generated straight into event_log (SQL, in
 *      time-ordered chunks) and their hourly rollups built by `herald rollups rebuild`'s code
 *      (EventLogStore.rebuildRollups) — what the materializer would have left. Then the
 *      `EXPLAIN (ANALYZE, BUFFERS)` of the statements behind both endpoints.
 *   1b. `busy`: a project with 100 000 events in the current hour against one with 100, summary
 *      and timeseries for the last 30 days up to a minute from now (what a dashboard asks);
 *      target: the busy project's p99 at most 2x the quiet one's (issue 23).
 *   2. `materializeOnce(5000)` (event_log and its hourly rollups) draining 200 000 outbox rows into
 *      an empty event_log, next to one plain `INSERT … SELECT` + `UPDATE` of the same rows.
 *
 * Environment: BENCH_EVENTS (default 10000000), BENCH_REQUESTS (default 200), BENCH_OUTBOX_ROWS
 * (default 200000), BENCH_PARTS (default analytics,busy,materializer).
 */

const TARGET = { p99Ms: 50, materializerRatio: 0.8, busyRatio: 2 } as const
/** The busy-project case (issue 23): events in the current hour of one project, against a quiet one's. */
const BUSY_EVENTS = 100_000
const QUIET_EVENTS = 100
const PROJECTS = 100
const DAYS = 60
const RANGE_DAYS = 30
/** The measured range ends this many minutes before an hour. */
const OFF_THE_HOUR_MINUTES = 17
/** Share of all events written to workspace streams (the rest go to project streams). */
const WORKSPACE_SHARE = 0.1
/** Workspace streams per project (its first members'). */
const WORKSPACES_PER_PROJECT = 3
const USERS = 1_000
const WARMUP_ROUNDS = 10
const REQUEST_TIMEOUT_MS = 10_000
/** Any one statement of the set-up; the whole bench has its own budget below. */
const STATEMENT_TIMEOUT_MS = 900_000
/** Events generated per statement (time-ordered chunks keep each sort in memory). */
const GENERATE_CHUNK = 500_000
const PARTS = ["analytics", "busy", "materializer"] as const

const Settings = Config.all({
  events: ranged(
    Config.integer("BENCH_EVENTS"),
    10_000_000,
    [10_000, 20_000_000],
    "Expected 10000 to 20000000 events"
  ),
  requests: ranged(Config.integer("BENCH_REQUESTS"), 200, [10, 5_000], "Expected 10 to 5000 requests"),
  outboxRows: ranged(Config.integer("BENCH_OUTBOX_ROWS"), 200_000, [1_000, 2_000_000], "Expected 1000 to 2000000 rows"),
  parts: Config.string("BENCH_PARTS").pipe(
    Config.withDefault(PARTS.join(",")),
    Config.map((s) => new Set(s.split(",").map((p) => p.trim()).filter((p) => p.length > 0))),
    Config.validate({
      message: `Expected a comma-separated subset of ${PARTS.join(",")}`,
      validation: (parts) => parts.size > 0 && [...parts].every((p) => (PARTS as ReadonlyArray<string>).includes(p))
    })
  )
})

// ---------------------------------------------------------------------------------------------
// Synthetic history: users, projects, members, streams and their events

interface ProjectPlan {
  readonly id: string
  readonly ownerId: string
  /** Owner first. */
  readonly members: ReadonlyArray<string>
}

interface StreamPlan {
  readonly streamId: string
  readonly projectId: string
  readonly kind: "project" | "workspace"
  readonly events: number
  /**
   * Who acts: a project stream's members (owner first; the first ones are the most active), a
   * workspace stream's owner alone.
   */
  readonly actors: ReadonlyArray<string>
}

interface World {
  readonly benchUser: { readonly id: string; readonly token: string }
  readonly users: ReadonlyArray<string>
  readonly projects: ReadonlyArray<ProjectPlan>
}

/**
 * 100 projects with 4 to 60 members from a pool of 1 000 users; the bench user owns (and so is a
 * member of) the projects at the given ranks.
 */
const makeWorld = (ownedRanks: ReadonlyArray<number>): World => {
  const benchUser = { id: randomUUID(), token: `hrld_${randomBytes(32).toString("base64url")}` }
  const users = Array.from({ length: USERS }, () => randomUUID())
  const projects = Array.from({ length: PROJECTS }, (_, rank): ProjectPlan => {
    const ownerId = ownedRanks.includes(rank) ? benchUser.id : users[(rank * 7) % USERS]!
    const size = Math.max(4, Math.round(60 / Math.sqrt(rank + 1)))
    const members = [ownerId]
    for (let k = 0; members.length < size; k++) {
      const user = users[(rank * 37 + k) % USERS]!
      if (!members.includes(user)) members.push(user)
    }
    return { id: randomUUID(), ownerId, members }
  })
  return { benchUser, users, projects }
}

/** Events per project by rank (Zipf, exponent 1), summing to `total`. */
const projectTotals = (total: number) => {
  const weights = Array.from({ length: PROJECTS }, (_, rank) => 1 / (rank + 1))
  const sum = weights.reduce((a, b) => a + b, 0)
  const perProject = weights.map((w) => Math.floor((total * w) / sum))
  perProject[0]! += total - perProject.reduce((a, b) => a + b, 0)
  return perProject
}

/** The rank of the project whose size is closest to an even split (total / PROJECTS). */
const meanSizedRank = (total: number) => {
  const totals = projectTotals(total)
  const even = total / PROJECTS
  return totals.reduce((best, n, rank) => Math.abs(n - even) < Math.abs(totals[best]! - even) ? rank : best, 0)
}

/**
 * `total` events over the projects, Zipf-distributed by rank (project k gets a share ∝ 1/(k+1):
 * the largest about 19 %, the median about 0.4 %), each project's split 90/10 between its project
 * stream and its first members' workspace streams.
 */
const planStreams = (world: World, total: number): Array<StreamPlan> => {
  const perProject = projectTotals(total)
  return world.projects.flatMap((project, rank) => {
    const all = perProject[rank]!
    const owners = project.members.slice(0, WORKSPACES_PER_PROJECT)
    const workspaceEach = Math.floor((all * WORKSPACE_SHARE) / owners.length)
    const workspaces = owners.map((userId): StreamPlan => ({
      streamId: `workspace:${project.id}:${userId}`,
      projectId: project.id,
      kind: "workspace",
      events: workspaceEach,
      actors: [userId]
    }))
    const main: StreamPlan = {
      streamId: `project:${project.id}`,
      projectId: project.id,
      kind: "project",
      events: all - workspaceEach * owners.length,
      actors: project.members
    }
    return [main, ...workspaces].filter((s) => s.events > 0)
  })
}

/** Users (with the bench user's token), projects and memberships, as the chat side has them. */
const insertWorld = (client: pg.Client, world: World, createdAt: Date) =>
  Effect.gen(function*() {
    const hash = createHash("sha256").update(world.benchUser.token).digest()
    yield* query(
      client,
      "insert users",
      `
      INSERT INTO users (id, name, created_at)
      SELECT id, 'user ' || n, $2 FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)`,
      [[world.benchUser.id, ...world.users], createdAt]
    )
    yield* query(client, "insert token", `INSERT INTO api_tokens (token_hash, user_id) VALUES ($1, $2)`, [
      hash,
      world.benchUser.id
    ])
    yield* query(
      client,
      "insert projects",
      `
      INSERT INTO projects (id, name, owner_id, created_at)
      SELECT id, 'project ' || n, owner_id, $3 FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS p(id, owner_id, n)`,
      [world.projects.map((p) => p.id), world.projects.map((p) => p.ownerId), createdAt]
    )
    const memberships = world.projects.flatMap((p) =>
      p.members.map((m, i) => [p.id, m, i === 0 ? "owner" : "member"] as const)
    )
    yield* query(
      client,
      "insert members",
      `
      INSERT INTO project_members (project_id, user_id, role, created_at)
      SELECT project_id, user_id, role, $4 FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS m(project_id, user_id, role)`,
      [memberships.map((m) => m[0]), memberships.map((m) => m[1]), memberships.map((m) => m[2]), createdAt]
    )
  })

/**
 * Generates every planned stream's events with `INSERT … SELECT generate_series …` into `table`,
 * in chunks of about GENERATE_CHUNK events (each a slice of every stream's seqs, so a slice of
 * time), each in `occurred_at` order (as commits interleave streams in a real log), with contiguous
 * seqs from 1 per stream and times spread evenly over `[start, start + span)`, monotonic in seq.
 * A project stream opens with `project.created` and a `member.added` per member; then about 86 %
 * `message.created`, 8 % edited, 4 % deleted, 1 % member added, 1 % removed, by members skewed
 * toward the first ones. Workspace streams hold `message.created` by their owner (user or worker
 * role). Bodies are 20–300 characters. The per-stream counters go to `event_streams`.
 */
const generateEvents = (
  client: pg.Client,
  table: "event_log" | "event_outbox",
  streams: ReadonlyArray<StreamPlan>,
  start: Date,
  spanSeconds: number
) =>
  Effect.gen(function*() {
    yield* query(
      client,
      "plan table",
      `
      CREATE TEMP TABLE IF NOT EXISTS bench_streams (
        stream_id text, project_id uuid, kind text, events int, actors uuid[]
      )`
    )
    yield* query(client, "plan", `TRUNCATE bench_streams`)
    yield* query(
      client,
      "plan",
      `
      INSERT INTO bench_streams
      SELECT * FROM jsonb_to_recordset($1::jsonb)
        AS s(stream_id text, project_id uuid, kind text, events int, actors uuid[])`,
      [JSON.stringify(streams.map((s) => ({
        stream_id: s.streamId,
        project_id: s.projectId,
        kind: s.kind,
        events: s.events,
        actors: s.actors
      })))]
    )
    // The sort of a chunk of wide rows stays in memory.
    yield* query(client, "work_mem", `SET work_mem = '1GB'`)
    const total = streams.reduce((n, s) => n + s.events, 0)
    const chunks = Math.max(1, Math.ceil(total / GENERATE_CHUNK))
    let inserted = 0
    for (let chunk = 0; chunk < chunks; chunk++) {
      const result = yield* query(
        client,
        `generate ${table} (${chunk + 1}/${chunks})`,
        `
      INSERT INTO ${table} (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
      SELECT gen_random_uuid(), stream_id, seq, type, project_id, actor_id, occurred_at,
        CASE type
          WHEN 'project.created' THEN jsonb_build_object('name', 'bench project', 'ownerId', actor_id)
          WHEN 'member.added' THEN jsonb_build_object('userId', subject, 'role', 'member')
          WHEN 'member.removed' THEN jsonb_build_object('userId', subject)
          WHEN 'message.created' THEN
            jsonb_build_object('messageId', gen_random_uuid(), 'authorId', actor_id, 'role', role, 'body', body)
          WHEN 'message.edited' THEN jsonb_build_object('messageId', gen_random_uuid(), 'body', body)
          ELSE jsonb_build_object('messageId', gen_random_uuid())
        END
      FROM (
        SELECT s.stream_id, e.seq, s.project_id,
          CASE
            WHEN s.kind = 'workspace' THEN 'message.created'
            WHEN e.seq = 1 THEN 'project.created'
            WHEN e.seq <= cardinality(s.actors) THEN 'member.added'
            WHEN e.x < 0.86 THEN 'message.created'
            WHEN e.x < 0.94 THEN 'message.edited'
            WHEN e.x < 0.98 THEN 'message.deleted'
            WHEN e.x < 0.99 THEN 'member.added'
            ELSE 'member.removed'
          END AS type,
          CASE WHEN e.seq = 1 THEN s.actors[1]
               ELSE s.actors[1 + floor(cardinality(s.actors) * e.a * e.a)::int] END AS actor_id,
          CASE WHEN e.seq <= cardinality(s.actors) THEN s.actors[e.seq]
               ELSE s.actors[1 + floor(cardinality(s.actors) * e.b)::int] END AS subject,
          CASE WHEN s.kind = 'workspace' AND e.b < 0.3 THEN 'worker' ELSE 'user' END AS role,
          left(repeat(md5(e.j::text), 10), 20 + floor(e.b * 280)::int) AS body,
          $1::timestamptz + (((e.seq - 1) + e.j) * $2::float8 / s.events) * interval '1 second' AS occurred_at
        FROM bench_streams s
        CROSS JOIN LATERAL (
          SELECT g AS seq, random() AS x, random() AS a, random() AS b, random() AS j
          FROM generate_series(
            1 + floor(s.events::bigint * $3 / $4)::int,
            floor(s.events::bigint * ($3 + 1) / $4)::int
          ) AS g
        ) e
      ) ev
      ORDER BY occurred_at`,
        [start, spanSeconds, chunk, chunks]
      )
      inserted += result.rowCount ?? 0
    }
    yield* query(client, "work_mem", `RESET work_mem`)
    yield* query(
      client,
      "event_streams",
      `
      INSERT INTO event_streams (stream_id, last_seq) SELECT stream_id, events FROM bench_streams
      ON CONFLICT (stream_id) DO UPDATE SET last_seq = EXCLUDED.last_seq`
    )
    return inserted
  })

// ---------------------------------------------------------------------------------------------
// Part 1: analytics over HTTP

/** One GET on a keep-alive connection; resolves with its latency once the whole body is read. */
const get = (agent: http.Agent, port: number, token: string, target: string) =>
  request({ port, method: "GET", path: target, token, agent, timeoutMs: REQUEST_TIMEOUT_MS, expected: 200 }).then(
    (answer) => ({ ms: answer.answeredAt - answer.sentAt, body: answer.body })
  )

interface Probe {
  readonly label: string
  readonly target: string
  /** Events counted by this endpoint in the range (from the response), for the table. */
  readonly counted: (body: string) => number
  readonly isFloor?: boolean
}

const probesFor = (projectId: string, label: string, from: Date, to: Date): Array<Probe> => {
  const range = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`
  const base = `/api/projects/${projectId}/analytics`
  const pointsTotal = (body: string) =>
    (JSON.parse(body) as { points: Array<{ count: number }> }).points.reduce((n, p) => n + p.count, 0)
  return [
    {
      label: `summary, ${label}`,
      target: `${base}/summary?${range}`,
      counted: (body) => (JSON.parse(body) as { events: { total: number } }).events.total
    },
    { label: `timeseries hour, ${label}`, target: `${base}/timeseries?bucket=hour&${range}`, counted: pointsTotal },
    { label: `timeseries day, ${label}`, target: `${base}/timeseries?bucket=day&${range}`, counted: pointsTotal }
  ]
}

interface Latencies {
  readonly probe: Probe
  readonly sorted: ReadonlyArray<number>
  readonly counted: number
}

/**
 * Warm-up rounds, then `rounds` measured rounds; each round sends every probe once, in order, on
 * one keep-alive connection, so drift on the machine weighs on the floor and the endpoints alike.
 */
const measure = (port: number, token: string, probes: ReadonlyArray<Probe>, rounds: number) =>
  Effect.acquireRelease(
    Effect.sync(() => new http.Agent({ keepAlive: true, maxSockets: 1 })),
    (agent) => Effect.sync(() => agent.destroy())
  ).pipe(
    Effect.flatMap((agent) =>
      attempt("requests", async (): Promise<Array<Latencies>> => {
        const samples = probes.map(() => [] as Array<number>)
        const counted = probes.map(() => 0)
        for (let round = -WARMUP_ROUNDS; round < rounds; round++) {
          for (const [i, probe] of probes.entries()) {
            const { body, ms } = await get(agent, port, token, probe.target)
            if (round >= 0) samples[i]!.push(ms)
            if (round === 0) counted[i] = probe.counted(body)
          }
        }
        return probes.map((probe, i) => ({ probe, sorted: ascending(samples[i]!), counted: counted[i]! }))
      })
    ),
    Effect.scoped
  )

const latencyTable = (results: ReadonlyArray<Latencies>, title: ReadonlyArray<string>) => {
  const floor = results.find((r) => r.probe.isFloor === true)!
  const f50 = percentile(floor.sorted, 50)
  const f99 = percentile(floor.sorted, 99)
  return table(
    title,
    ["request", "events counted", "p50 ms", "p99 ms", "max ms", "p50 - floor", "p99 - floor", "p99 target"],
    results.map((r) => {
      const p50 = percentile(r.sorted, 50)
      const p99 = percentile(r.sorted, 99)
      return [
        r.probe.label,
        r.probe.isFloor === true ? "-" : count(r.counted),
        fixed(p50),
        fixed(p99),
        fixed(r.sorted[r.sorted.length - 1]!),
        r.probe.isFloor === true ? "-" : fixed(p50 - f50),
        r.probe.isFloor === true ? "-" : fixed(p99 - f99),
        r.probe.isFloor === true ? "-" : `<= ${TARGET.p99Ms}: ${p99 <= TARGET.p99Ms ? "met" : "NOT met"}`
      ]
    })
  )
}

// ---------------------------------------------------------------------------------------------
// The statements behind the endpoints, for EXPLAIN: Analytics.ts's own, captured as they run

/** A parameter written into a statement as a literal of its type. */
const literal = (value: unknown): string =>
  value instanceof Date
    ? `'${value.toISOString()}'::timestamptz`
    : typeof value === "number" || typeof value === "bigint"
    ? String(value)
    : `'${String(value).replaceAll("'", "''")}'`

/** The compiled text with `$1`, `$2`, … replaced by their values, and its indentation removed. */
const withLiterals = (text: string, params: ReadonlyArray<unknown>) => {
  const lines = text.replace(/\$(\d+)/g, (_, n: string) => literal(params[Number(n) - 1])).split("\n")
  const indent = Math.min(...lines.filter((l) => l.trim() !== "").map((l) => l.length - l.trimStart().length))
  return "\n" + lines.map((l) => l.slice(indent)).join("\n").trim()
}

/** What each statement of a summary is for, told by what it reads. */
const SUMMARY_PARTS: ReadonlyArray<readonly [string, (sql: string) => boolean]> = [
  ["events by type", (sql) => /GROUP BY type/.test(sql)],
  ["active users", (sql) => /DISTINCT actor_id/.test(sql)],
  ["top authors", (sql) => sql.includes("'message.created'")],
  ["the caller's workspace", (sql) => sql.includes("'workspace:")]
]

/**
 * The statements on event_log that `effect` runs, as a Statement transformer sees them compiled
 * (the same text and parameters the server sends), parameters written in as literals.
 */
const capture = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const captured: Array<string> = []
    yield* Statement.withTransformer(effect, (statement) =>
      Effect.sync(() => {
        const [text, params] = statement.compile()
        if (/\bevent_log\b/.test(text)) captured.push(withLiterals(text, params))
        return statement
      }))
    return captured
  })

/**
 * The statements behind `summary` and `timeseries?bucket=hour|day` for one project and caller,
 * taken from the real Analytics service (no hand copy to drift from it).
 */
const analyticsStatements = (projectId: string, userId: string, from: Date, to: Date) =>
  Effect.gen(function*() {
    const analytics = yield* Analytics
    const project = Ids.ProjectId.make(projectId)
    const range = { from: DateTime.unsafeFromDate(from), to: DateTime.unsafeFromDate(to) }
    const summary = yield* capture(
      analytics.summary(project, Events.workspaceStream(project, Ids.UserId.make(userId)), range)
    )
    const named = summary
      .map((sql) => ({ sql, part: SUMMARY_PARTS.findIndex(([, matches]) => matches(sql)) }))
      .sort((a, b) => (a.part < 0 ? Infinity : a.part) - (b.part < 0 ? Infinity : b.part))
      .map(({ part, sql }, i) => ({
        name: `summary ${i + 1}/${summary.length}: ${part < 0 ? "another statement" : SUMMARY_PARTS[part]![0]}`,
        sql
      }))
    const timeseries = (bucket: "hour" | "day") =>
      Effect.map(
        capture(analytics.timeseries(project, bucket, range, undefined)),
        (statements) => statements.map((sql) => ({ name: `timeseries, bucket=${bucket}`, sql }))
      )
    return [...named, ...(yield* timeseries("hour")), ...(yield* timeseries("day"))]
  })

/** The indexes a plan reads, from its text. */
const indexesIn = (plan: string) => {
  const names = new Set<string>()
  for (
    const m of plan.matchAll(/(?:Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)?(?: using)? on (\S+)/g)
  ) {
    names.add(m[1]!)
  }
  for (const m of plan.matchAll(/Index (?:Only )?Scan(?: Backward)? using (\S+)/g)) names.add(m[1]!)
  const scans = [
    ...plan.matchAll(/(Parallel )?(Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan|Bitmap Index Scan)/g)
  ]
    .map((m) => m[0])
  return { names: [...names], scans: [...new Set(scans)] }
}

/** `EXPLAIN (ANALYZE, BUFFERS)` of each statement, run twice so the second (warm) plan counts. */
const explainAll = (client: pg.Client, statements: ReadonlyArray<{ name: string; sql: string }>) =>
  Effect.forEach(statements, (st) =>
    Effect.gen(function*() {
      yield* query(client, `warm ${st.name}`, st.sql)
      const result = yield* query(client, `explain ${st.name}`, `EXPLAIN (ANALYZE, BUFFERS) ${st.sql}`)
      const plan = (result.rows as Array<Record<string, string>>).map((r) => r["QUERY PLAN"]!).join("\n")
      return { ...st, plan }
    }))

const analyticsPart = (url: Redacted.Redacted, settings: { events: number; requests: number }) =>
  Effect.gen(function*() {
    const client = yield* connect(url, "herald-bench-setup", STATEMENT_TIMEOUT_MS)
    // The server first: it migrates the database. Nothing of the generated history passes
    // through its outbox, so its publisher and materializer stay idle.
    yield* Console.error("analytics: starting the server…")
    const { port } = yield* inProcessServer(url)

    const end = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000)
    const start = new Date(end.getTime() - DAYS * 86_400_000)
    // The project sizes measured: the one closest to an even 1/100 share, and the largest.
    const subjects = [
      { name: "mean-sized", rank: meanSizedRank(settings.events) },
      { name: "largest", rank: 0 }
    ] as const
    const world = makeWorld(subjects.map((s) => s.rank))
    const streams = planStreams(world, settings.events)
    yield* insertWorld(client, world, start)
    // The history reaches back before the months the server created: their partitions first.
    yield* query(client, "partitions", `SELECT herald_event_log_ensure_partitions($1, $2)`, [start, end])
    yield* Console.error(`analytics: generating ${count(settings.events)} events in ${count(streams.length)} streams…`)
    const t0 = performance.now()
    const generated = yield* generateEvents(client, "event_log", streams, start, DAYS * 86_400)
    if (generated !== settings.events) {
      return yield* new BenchError({ message: `generated ${generated} events, expected ${settings.events}` })
    }
    const generateSeconds = (performance.now() - t0) / 1000
    yield* Console.error(`analytics: generated in ${generateSeconds.toFixed(1)} s; building the hourly rollups…`)
    const t1 = performance.now()
    // What `herald rollups rebuild` does: the rollups the materializer would have kept.
    yield* rebuildRollups(url, null)
    const rollupSeconds = (performance.now() - t1) / 1000
    // An append-only table's steady state: autovacuum's insert threshold has run (visibility map
    // set) and statistics are current.
    yield* Console.error(`analytics: rollups in ${rollupSeconds.toFixed(1)} s; VACUUM (ANALYZE)…`)
    yield* query(client, "vacuum", `VACUUM (ANALYZE) event_log, event_log_hourly, event_log_hourly_actors`)
    yield* query(
      client,
      "watermark",
      `
      INSERT INTO event_log_watermark (id, as_of) VALUES (true, now())
      ON CONFLICT (id) DO UPDATE SET as_of = GREATEST(event_log_watermark.as_of, EXCLUDED.as_of)`
    )
    const sizes = (yield* query(
      client,
      "sizes",
      `
      SELECT pg_size_pretty((SELECT sum(pg_table_size(relid)) FROM pg_partition_tree('event_log'))) AS heap,
             pg_size_pretty((SELECT sum(pg_indexes_size(relid)) FROM pg_partition_tree('event_log'))) AS indexes,
             pg_size_pretty(pg_total_relation_size('event_log_hourly')) AS rollups,
             (SELECT count(*) FROM event_log_hourly)::text AS rollup_rows,
             pg_size_pretty(pg_total_relation_size('event_log_hourly_actors')) AS actor_rollups,
             (SELECT count(*) FROM event_log_hourly_actors)::text AS actor_rollup_rows,
             current_setting('shared_buffers') AS shared_buffers,
             current_setting('server_version') AS version`
    )).rows[0] as Record<string, string>
    yield* Console.error(`analytics: measuring ${settings.requests} rounds…`)

    // Off the hour at both ends, as a range ending "now" is: the whole hours come from the
    // rollups, the partial first and last hours (17 and 43 minutes of them) from event_log.
    const to = new Date(end.getTime() - OFF_THE_HOUR_MINUTES * 60_000)
    const from = new Date(to.getTime() - RANGE_DAYS * 86_400_000)
    const projects = subjects.map((subject) => {
      const project = world.projects[subject.rank]!
      const events = streams.find((s) => s.streamId === `project:${project.id}`)!.events
      return { ...subject, project, events, label: `${subject.name} project` }
    })
    const probes: Array<Probe> = [
      { label: "GET /health/live (floor)", target: "/health/live", counted: () => 0, isFloor: true },
      ...projects.flatMap((p) => probesFor(p.project.id, p.label, from, to))
    ]
    const loadBefore = loadAverage()
    const results = yield* measure(port, world.benchUser.token, probes, settings.requests)
    // A fast wrong answer would measure nothing: every endpoint's total must match the log.
    for (const p of projects) {
      const { rows: [row] } = yield* query(
        client,
        "check",
        `
        SELECT count(*)::int AS n FROM event_log WHERE stream_id = $1 AND occurred_at >= $2 AND occurred_at < $3`,
        [`project:${p.project.id}`, from, to]
      )
      const expected = (row as { n: number }).n
      for (const r of results.filter((r) => r.probe.label.endsWith(`, ${p.label}`))) {
        if (r.counted !== expected) {
          return yield* new BenchError({
            message: `${r.probe.label}: counted ${r.counted} events, event_log holds ${expected}`
          })
        }
      }
    }
    // The real Analytics service on a pool of its own, only to capture the statements it sends.
    const analytics = yield* Layer.build(Analytics.Default.pipe(
      Layer.provide(EventLogStore.Default),
      Layer.provide(clientLayer({ url, maxConnections: 4, applicationName: "herald-bench-explain" }))
    ))
    const plans = yield* Effect.forEach(projects, (p) =>
      Effect.flatMap(
        Effect.provide(analyticsStatements(p.project.id, world.benchUser.id, from, to), analytics),
        (statements) => explainAll(client, statements)
      ))

    const verdicts = projects.map((p) => {
      const worst = Math.max(
        ...results.filter((r) => r.probe.label.endsWith(`, ${p.label}`)).map((r) => percentile(r.sorted, 99))
      )
      return `${p.name} ${worst <= TARGET.p99Ms ? "met" : "NOT met"} (worst p99 ${fixed(worst)} ms)`
    })
    const topLine = (plan: string, pattern: RegExp) => pattern.exec(plan)?.[1] ?? "?"
    const out = [
      latencyTable(results, [
        `analytics: GET latency over HTTP (server in this process), one keep-alive connection, sequential; ` +
        `${settings.requests} measured rounds after ${WARMUP_ROUNDS} warm-up rounds, every request of a round in turn`,
        `event_log: ${count(settings.events)} events, ${PROJECTS} projects (Zipf by rank), ${
          count(streams.length)
        } streams, ` +
        `${DAYS} days; heap ${sizes["heap"]}, indexes ${sizes["indexes"]}; shared_buffers ${
          sizes["shared_buffers"]
        }; ` +
        `PostgreSQL ${sizes["version"]}`,
        `event_log_hourly: ${count(Number(sizes["rollup_rows"]))} rows, ${sizes["rollups"]} with its index; ` +
        `event_log_hourly_actors: ${count(Number(sizes["actor_rollup_rows"]))} rows, ${sizes["actor_rollups"]}; ` +
        `generated in ${generateSeconds.toFixed(0)} s (SQL), rollups built in ${
          rollupSeconds.toFixed(0)
        } s (herald rollups rebuild's code)`,
        `range: [${from.toISOString()}, ${to.toISOString()}) (${RANGE_DAYS} days); project-stream events over all ${DAYS} days: ` +
        projects.map((p) =>
          `${p.name} (rank ${p.rank}) ${count(p.events)} = ${((100 * p.events) / settings.events).toFixed(1)} %`
        ).join(", ")
      ]),
      "",
      `floor: /health/live on the same connection (no auth, no SQL); "- floor" is what an analytics request adds.`,
      `load average (1 min) before/after the requests: ${loadBefore} / ${loadAverage()} on ${os.availableParallelism()} CPUs`,
      `target: p99 <= ${TARGET.p99Ms} ms for summary and timeseries: ${verdicts.join("; ")}`,
      table(
        ["the statements behind them, as Analytics.ts sends them (EXPLAIN ANALYZE, warm, literal parameters; buffers of the whole statement):"],
        ["project", "statement", "ms", "rows", "buffers", "indexes"],
        projects.flatMap((p, i) =>
          plans[i]!.map((plan) => [
            p.name,
            plan.name,
            topLine(plan.plan, /Execution Time: ([\d.]+) ms/),
            topLine(plan.plan, /\(actual time=[\d.]+\.\.[\d.]+ rows=(\d+)/),
            topLine(plan.plan, /Buffers: ([^\n]+)/),
            indexesIn(plan.plan).names.join(" + ")
          ])
        )
      ),
      ...projects.flatMap((p, i) => [
        "",
        `EXPLAIN (ANALYZE, BUFFERS), ${p.label} (rank ${p.rank}, ${p.project.id}), warm, literal parameters:`,
        ...plans[i]!.flatMap((plan) => [
          "",
          `-- ${plan.name}${plan.sql}`,
          plan.plan,
          `-- indexes: ${indexesIn(plan.plan).names.join(", ") || "none"}; scans: ${
            indexesIn(plan.plan).scans.join(", ")
          }`
        ])
      ])
    ]
    yield* Console.log(out.join("\n"))
  }).pipe(Effect.scoped)

/**
 * The rollups of every hour from `since` (null: all) re-derived from event_log by the code behind
 * `herald rollups rebuild` (EventLogStore.rebuildRollups), on a pool of its own.
 */
const rebuildRollups = (url: Redacted.Redacted, since: Date | null) =>
  Effect.flatMap(EventLogStore, (store) => store.rebuildRollups(since)).pipe(
    Effect.provide(EventLogStore.Default.pipe(
      Layer.provide(clientLayer({ url, maxConnections: 2, applicationName: "herald-bench-rollups" }))
    )),
    Effect.mapError((e) => new BenchError({ message: `rollups rebuild: ${e.message}` }))
  )

// ---------------------------------------------------------------------------------------------
// Part 1b: a busy project against a quiet one, for a range ending now (issue 23)

/**
 * Two projects of the bench user: one with BUSY_EVENTS events in the current hour (a burst up to
 * now), one with QUIET_EVENTS in the same span; summary and timeseries for the last 30 days up to a
 * minute from now, as a dashboard asks. The rollups are what the materializer would have left.
 * Target: the busy project's p99 at most TARGET.busyRatio times the quiet one's, per endpoint.
 */
const busyPart = (url: Redacted.Redacted, settings: { requests: number }) =>
  Effect.gen(function*() {
    const client = yield* connect(url, "herald-bench-busy", STATEMENT_TIMEOUT_MS)
    yield* Console.error("busy: starting the server…")
    const { port } = yield* inProcessServer(url)
    const now = new Date()
    const hour = new Date(Math.floor(now.getTime() / 3_600_000) * 3_600_000)
    const world = makeWorld([0, 1])
    const plan = (rank: number, events: number): StreamPlan => {
      const project = world.projects[rank]!
      return {
        streamId: `project:${project.id}`,
        projectId: project.id,
        kind: "project",
        events,
        actors: project.members
      }
    }
    const busy = plan(0, BUSY_EVENTS)
    const quiet = plan(1, QUIET_EVENTS)
    yield* insertWorld(client, world, new Date(hour.getTime() - 86_400_000))
    yield* query(client, "partitions", `SELECT herald_event_log_ensure_partitions($1, $2)`, [hour, now])
    // Up to a second ago, from the hour's start (at least a second of it).
    const span = Math.max(1, (now.getTime() - hour.getTime()) / 1000 - 1)
    yield* Console.error(`busy: generating ${count(BUSY_EVENTS)} + ${count(QUIET_EVENTS)} events in the current hour…`)
    yield* generateEvents(client, "event_log", [busy, quiet], hour, span)
    yield* rebuildRollups(url, hour)
    yield* query(client, "vacuum", `VACUUM (ANALYZE) event_log, event_log_hourly, event_log_hourly_actors`)
    yield* query(
      client,
      "watermark",
      `
      INSERT INTO event_log_watermark (id, as_of) VALUES (true, now())
      ON CONFLICT (id) DO UPDATE SET as_of = GREATEST(event_log_watermark.as_of, EXCLUDED.as_of)`
    )
    // The last 30 days up to a minute from now.
    const to = new Date(now.getTime() + 60_000)
    const from = new Date(to.getTime() - RANGE_DAYS * 86_400_000)
    const subjects = [
      { label: `busy project (${count(BUSY_EVENTS)} events this hour)`, stream: busy },
      { label: `quiet project (${count(QUIET_EVENTS)} events this hour)`, stream: quiet }
    ]
    const probes: Array<Probe> = [
      { label: "GET /health/live (floor)", target: "/health/live", counted: () => 0, isFloor: true },
      ...subjects.flatMap((s) => probesFor(s.stream.projectId, s.label, from, to))
    ]
    yield* Console.error(`busy: measuring ${settings.requests} rounds…`)
    const loadBefore = loadAverage()
    const results = yield* measure(port, world.benchUser.token, probes, settings.requests)
    for (const s of subjects) {
      for (const r of results.filter((r) => r.probe.label.endsWith(`, ${s.label}`))) {
        if (r.counted !== s.stream.events) {
          return yield* new BenchError({
            message: `${r.probe.label}: counted ${r.counted} events, expected ${s.stream.events}`
          })
        }
      }
    }
    const p99 = (label: string) => percentile(results.find((r) => r.probe.label === label)!.sorted, 99)
    const verdicts = ["summary", "timeseries hour", "timeseries day"].map((endpoint) => {
      const ratio = p99(`${endpoint}, ${subjects[0]!.label}`) / p99(`${endpoint}, ${subjects[1]!.label}`)
      return [
        endpoint,
        fixed(p99(`${endpoint}, ${subjects[0]!.label}`)),
        fixed(p99(`${endpoint}, ${subjects[1]!.label}`)),
        `${ratio.toFixed(2)}x`,
        `<= ${TARGET.busyRatio}x: ${ratio <= TARGET.busyRatio ? "met" : "NOT met"}`
      ]
    })
    yield* Console.log([
      latencyTable(results, [
        `busy: GET latency over HTTP (server in this process), one keep-alive connection, sequential; ` +
        `${settings.requests} measured rounds after ${WARMUP_ROUNDS} warm-up rounds`,
        `range: [${from.toISOString()}, ${to.toISOString()}) (the last ${RANGE_DAYS} days up to a minute from now); ` +
        `events generated over [${hour.toISOString()}, +${span.toFixed(0)} s)`
      ]),
      `load average (1 min) before/after the requests: ${loadBefore} / ${loadAverage()} on ${os.availableParallelism()} CPUs`,
      "",
      table(
        ["busy project against quiet project, p99 (target: busy <= 2x quiet, for a range ending now)"],
        ["endpoint", "busy p99 ms", "quiet p99 ms", "ratio", "target"],
        verdicts
      )
    ].join("\n"))
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------
// Part 2: the materializer's throughput

interface Drain {
  readonly kind: "herald" | "raw" | "raw+rollups"
  readonly rows: number
  readonly seconds: number
}

/**
 * The like-for-like baseline: `rawMaterialize` plus both rollups built by one `INSERT … SELECT …
 * GROUP BY` each over the same rows, in the same transaction.
 */
const rawWithRollups = (client: pg.Client) =>
  rawMaterialize(client, [
    {
      what: "raw rollups by type",
      sql: `
      INSERT INTO event_log_hourly (stream_id, hour, project_id, type, n)
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*)
      FROM event_outbox WHERE materialized_at IS NULL GROUP BY 1, 2, 3, 4`
    },
    {
      what: "raw rollups by actor",
      sql: `
      INSERT INTO event_log_hourly_actors (stream_id, hour, project_id, actor_id, messages)
      SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id,
        count(*) FILTER (WHERE type = 'message.created')
      FROM event_outbox WHERE materialized_at IS NULL AND stream_id NOT LIKE 'workspace:%' GROUP BY 1, 2, 3, 4`
    }
  ])

/** Fails unless the hourly rollups count every event once: equal to a recount of event_log. */
const checkRollups = (client: pg.Client, rows: number) =>
  Effect.gen(function*() {
    const { rows: [row] } = yield* query(
      client,
      "check rollups",
      `
      SELECT (SELECT coalesce(sum(n), 0) FROM event_log_hourly)::int AS rolled,
             (SELECT count(*) FROM (
                SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type, count(*)
                FROM event_log GROUP BY 1, 2, 3, 4
                EXCEPT SELECT stream_id, hour, project_id, type, n FROM event_log_hourly
              ) d)::int
             + (SELECT count(*) FROM (
                SELECT stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id,
                  count(*) FILTER (WHERE type = 'message.created')
                FROM event_log WHERE stream_id NOT LIKE 'workspace:%' GROUP BY 1, 2, 3, 4
                EXCEPT SELECT stream_id, hour, project_id, actor_id, messages FROM event_log_hourly_actors
              ) d)::int AS differing`
    )
    const { differing, rolled } = row as { rolled: number; differing: number }
    if (rolled !== rows || differing !== 0) {
      return yield* new BenchError({
        message: `herald: event_log_hourly counts ${rolled} of ${rows} events, ${differing} rollup rows differ`
      })
    }
  })

const materializerPart = (url: Redacted.Redacted, rows: number) =>
  Effect.gen(function*() {
    const client = yield* connect(url, "herald-bench-raw", STATEMENT_TIMEOUT_MS)
    // As the server runs it: on the background pool (synchronous_commit=off), BackgroundSqlLive.
    const store = yield* Layer.build(EventLogStore.Default.pipe(
      Layer.provide(BackgroundSqlLive),
      Layer.provide(clientLayer({ url, maxConnections: 2, applicationName: "herald-bench-materializer" }))
    ))
    yield* Console.error(`materializer: generating ${count(rows)} outbox rows…`)
    yield* query(client, "empty", `TRUNCATE event_log, event_outbox, event_streams, event_log_watermark`)
    // Recent activity of the same 100 projects over the last hour, as a backlog would hold it.
    const world = makeWorld([])
    yield* insertWorld(client, world, new Date(Date.now() - 86_400_000))
    yield* query(client, "partitions", `SELECT herald_event_log_ensure_partitions(now() - interval '1 hour', now())`)
    const generated = yield* generateEvents(
      client,
      "event_outbox",
      planStreams(world, rows),
      new Date(Date.now() - 3_600_000),
      3_600
    )
    if (generated !== rows) {
      return yield* new BenchError({ message: `generated ${generated} outbox rows, expected ${rows}` })
    }
    yield* keepOutbox(client)

    const run = (kind: Drain["kind"]) =>
      Effect.gen(function*() {
        // Same rows, same positions, empty log, fresh statistics, nothing dirty in the buffers.
        yield* resetOutbox(client)
        const started = performance.now()
        if (kind === "herald") {
          const copied = yield* materializeOnce(MATERIALIZE_BATCH).pipe(
            Effect.provide(store),
            Effect.mapError((e) => new BenchError({ message: `materializeOnce: ${e.message}` }))
          )
          if (copied !== rows) return yield* new BenchError({ message: `materializeOnce copied ${copied} of ${rows}` })
        } else if (kind === "raw") {
          yield* rawMaterialize(client)
        } else {
          yield* rawWithRollups(client)
        }
        const seconds = (performance.now() - started) / 1000
        yield* checkMaterialized(client, kind, rows)
        if (kind !== "raw") yield* checkRollups(client, rows)
        yield* Console.error(`  ${kind}: ${count(rows)} rows in ${seconds.toFixed(2)} s`)
        return { kind, rows, seconds } satisfies Drain
      })

    // Drift weighs on all alike: each kind runs early and late.
    const runs: Array<Drain> = []
    const order = ["raw", "herald", "raw+rollups", "raw+rollups", "herald", "raw"] as const
    for (const kind of order) runs.push(yield* run(kind))
    const rate = (kind: Drain["kind"]) => {
      const mine = runs.filter((r) => r.kind === kind)
      return mine.reduce((n, r) => n + r.rows, 0) / mine.reduce((n, r) => n + r.seconds, 0)
    }
    const herald = rate("herald")
    const load = loadAverage()
    const raw = rate("raw")
    const rawRollups = rate("raw+rollups")
    const ratio = herald / raw
    const seconds = (kind: Drain["kind"]) =>
      runs.filter((r) => r.kind === kind).map((r) => r.seconds.toFixed(2)).join(", ")
    yield* Console.log([
      table(
        [
          `materializer: ${count(rows)} unmaterialized outbox rows (${PROJECTS} projects) into an empty event_log ` +
          `(herald: with its hourly rollups, checked against a recount; raw: event_log alone), ` +
          `durable commits; runs ${order.join(", ")}, each from the same reset state`
        ],
        ["drain", "rows/s", "seconds per run", "vs raw", "vs raw+rollups"],
        [
          [
            `materializeOnce(${MATERIALIZE_BATCH}) + rollups: ${
              Math.ceil(rows / MATERIALIZE_BATCH)
            }+ statements, one commit each`,
            count(Math.round(herald)),
            seconds("herald"),
            `${ratio.toFixed(2)}x`,
            `${(herald / rawRollups).toFixed(2)}x`
          ],
          [
            "raw SQL: INSERT … SELECT + UPDATE, one transaction",
            count(Math.round(raw)),
            seconds("raw"),
            "1.00x",
            `${(raw / rawRollups).toFixed(2)}x`
          ],
          [
            "raw SQL + both rollups by INSERT … SELECT … GROUP BY, one transaction",
            count(Math.round(rawRollups)),
            seconds("raw+rollups"),
            `${(rawRollups / raw).toFixed(2)}x`,
            "1.00x"
          ]
        ]
      ),
      "",
      `load average (1 min) at the end: ${load} on ${os.availableParallelism()} CPUs`,
      `target: materializer (with its rollups) >= ${TARGET.materializerRatio}x raw (without): ${
        ratio >= TARGET.materializerRatio ? "met" : "NOT met"
      } ` +
      `(${ratio.toFixed(2)}x)`
    ].join("\n"))
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------

/** Generating, indexing and vacuuming the log dominates: ten minutes plus four per million events. */
const budget = (events: number) => Duration.minutes(10 + Math.ceil((4 * events) / 1_000_000))

const bench = Effect.gen(function*() {
  const settings = yield* Settings
  yield* Console.error("analytics: starting an embedded PostgreSQL (durable settings)…")
  const url = yield* embeddedDatabase
  // The server would migrate too; part 2 may run without it.
  yield* migrate(url)
  // The server (its publisher and materializer) is stopped before part 2 starts.
  if (settings.parts.has("analytics")) yield* analyticsPart(url, settings)
  if (settings.parts.has("busy")) yield* busyPart(url, settings)
  if (settings.parts.has("materializer")) yield* materializerPart(url, settings.outboxRows)
}).pipe(
  Effect.scoped,
  // Every statement and request has its own timeout; this is the backstop.
  (effect) => Effect.flatMap(Settings, (settings) => withinBudget(budget(settings.events))(effect)),
  // Per-request access logs would measure the terminal; warnings and errors still show.
  Effect.provide(Logger.minimumLogLevel(LogLevel.Warning))
)

export default bench
