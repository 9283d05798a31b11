import { NodeContext } from "@effect/platform-node"
import { Migrator } from "@effect/sql"
import { PgMigrator } from "@effect/sql-pg"
import { clientLayer } from "@herald/server"
import { Config, Console, Effect, Redacted } from "effect"
import { randomUUID } from "node:crypto"
import * as path from "node:path"
import pg from "pg"
import { migrations } from "../../../migrations/index.js"
import { runProcess, withoutHeraldSettings } from "../../../test-support/Process.js"
import { BenchError, connect, count, describe, embeddedDatabase, query, ranged, repoRoot, sleep } from "./support.js"

/**
 * `herald migrate` from migration 0006 (before partitions and rollups) to the newest, on a log of
 * BENCH_EVENTS (1 000 000) events, while writers keep going — measured from the outside:
 *   - posters: 4 connections calling `herald_post_message` (an old node's post, its 11-argument
 *     call) back to back; the longest a post waited is the figure against the 1 s target;
 *   - an old node's materializer: the 0006-era copy (outbox → event_log, no rollups) every 100 ms;
 *   - an old node's publisher: claims and marks pending outbox rows every 100 ms;
 *   - a history reader: one stream's latest events every 50 ms.
 * The compiled `herald migrate` (packages/cli/dist: `npm run build` first) is the process under test.
 */

const TARGET_MS = 1_000
const POSTERS = 4
const PROJECTS = 100
const SETTLE_MS = 3_000

const Settings = Config.all({
  events: ranged(Config.integer("BENCH_EVENTS"), 1_000_000, [10_000, 5_000_000], "Expected 10000 to 5000000 events")
})

const upTo0006 = Object.fromEntries(Object.entries(migrations).filter(([name]) => name < "0007"))

/** A database at 0006: users, projects, and `events` events spread over the last 60 days. */
const seed = (client: pg.Client, events: number) =>
  Effect.gen(function*() {
    const userId = randomUUID()
    yield* query(client, "user", `INSERT INTO users (id, name) VALUES ($1, 'bench')`, [userId])
    yield* query(
      client,
      "projects",
      `
      WITH p AS (
        INSERT INTO projects (id, name, owner_id)
        SELECT gen_random_uuid(), 'bench ' || g, $1 FROM generate_series(1, $2::int) g RETURNING id
      ), m AS (
        INSERT INTO project_members (project_id, user_id, role) SELECT id, $1, 'owner' FROM p RETURNING project_id
      )
      SELECT count(*) FROM m`,
      [userId, PROJECTS]
    )
    const projects = (yield* query(client, "projects", `SELECT id FROM projects ORDER BY id`)).rows.map((r) =>
      String(r.id)
    )
    const per = Math.ceil(events / PROJECTS)
    yield* Console.error(`  seeding ${count(per * PROJECTS)} events in ${PROJECTS} streams …`)
    const started = performance.now()
    yield* query(
      client,
      "event_log",
      `
      INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
      SELECT gen_random_uuid(), 'project:' || p.id, g,
        CASE WHEN g = 1 THEN 'project.created' ELSE 'message.created' END, p.id, $1,
        now() - interval '60 days' + (g::float8 / $2) * interval '60 days' + (p.n * interval '1 millisecond'),
        jsonb_build_object('messageId', gen_random_uuid(), 'authorId', $1::uuid, 'role', 'user',
                           'body', left(repeat(md5(g::text), 4), 20 + (g * 7919) % 100))
      FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM projects) p, generate_series(1, $2::int) g`,
      [userId, per]
    )
    yield* query(
      client,
      "streams",
      `INSERT INTO event_streams (stream_id, last_seq) SELECT 'project:' || id, $1 FROM projects`,
      [per]
    )
    yield* query(client, "analyze", `VACUUM ANALYZE event_log`)
    yield* Console.error(`  seeded in ${((performance.now() - started) / 1000).toFixed(1)} s`)
    return { userId, projects }
  })

interface Waits {
  readonly name: string
  done: number
  failed: number
  longestMs: number
  longestDuringMs: number
  errors: Set<string>
}

const waits = (name: string): Waits => ({
  name,
  done: 0,
  failed: 0,
  longestMs: 0,
  longestDuringMs: 0,
  errors: new Set()
})

/** Runs `step` on its own connection until `stop()`; records each step's duration. */
const loop = (
  url: string,
  w: Waits,
  during: () => boolean,
  stop: () => boolean,
  pauseMs: number,
  step: (client: pg.Client, i: number) => Promise<unknown>
) =>
  (async () => {
    const client = new pg.Client({ connectionString: url, application_name: `herald-bench-${w.name}` })
    client.on("error", () => undefined)
    await client.connect()
    try {
      for (let i = 0; !stop(); i++) {
        const inside = during()
        const started = performance.now()
        try {
          await step(client, i)
          w.done++
        } catch (e) {
          w.failed++
          w.errors.add(describe(e).slice(0, 160))
        }
        const ms = performance.now() - started
        w.longestMs = Math.max(w.longestMs, ms)
        if (inside || during()) w.longestDuringMs = Math.max(w.longestDuringMs, ms)
        if (pauseMs > 0) await sleep(pauseMs)
      }
    } finally {
      await client.end().catch(() => undefined)
    }
  })()

const OLD_MATERIALIZE = `
  WITH batch AS (
    SELECT position, id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM event_outbox
    WHERE materialized_at IS NULL ORDER BY position LIMIT 5000 FOR UPDATE SKIP LOCKED
  ), copied AS (
    INSERT INTO event_log (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
    SELECT id, stream_id, seq, type, project_id, actor_id, occurred_at, data FROM batch
    ON CONFLICT DO NOTHING
  )
  UPDATE event_outbox o SET materialized_at = now() FROM batch WHERE o.position = batch.position`

const OLD_PUBLISH = `
  WITH due AS (
    SELECT id FROM event_outbox WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at, position LIMIT 500 FOR UPDATE SKIP LOCKED
  )
  UPDATE event_outbox o SET status = 'published', published_at = now(), attempts = attempts + 1
  FROM due WHERE o.id = due.id`

const bin = path.join(repoRoot, "packages/cli/bin/herald.mjs")

export default Effect.gen(function*() {
  const settings = yield* Settings
  const url = yield* embeddedDatabase
  const plain = Redacted.value(url)
  const client = yield* connect(url, "herald-bench-setup")

  yield* Console.error(`migrate: ${count(settings.events)} events at 0006, then \`herald migrate\` under writers`)
  yield* PgMigrator.run({ loader: Migrator.fromRecord(upTo0006), table: "herald_migrations" }).pipe(
    // What a build of that time ran: the library's migrator over 0001–0006.
    Effect.provide(clientLayer({ url, maxConnections: 2 })),
    Effect.mapError((e) => new BenchError({ message: `migrate to 0006: ${describe(e)}` }))
  )
  const { projects, userId } = yield* seed(client, settings.events)

  let migrating = false
  let stopping = false
  const during = () => migrating
  const stop = () => stopping
  const post = waits("post")
  const materialize = waits("materializer")
  const publish = waits("publisher")
  const read = waits("reader")
  const loops = [
    ...Array.from({ length: POSTERS }, (_, k) =>
      loop(plain, post, during, stop, 0, (c, i) => {
        const project = projects[(k * 31 + i) % projects.length]!
        const eventId = randomUUID()
        const messageId = randomUUID()
        return c.query(
          `SELECT id FROM herald_post_message($1, $2, $3, $4, $5, 'project', 'user', $6, NULL, $7, 0)`,
          [`project:${project}`, eventId, messageId, project, userId, `post ${i}`, {
            messageId,
            authorId: userId,
            role: "user",
            body: `post ${i}`
          }]
        )
      })),
    loop(plain, materialize, during, stop, 100, (c) => c.query(OLD_MATERIALIZE)),
    loop(plain, publish, during, stop, 100, (c) => c.query(OLD_PUBLISH)),
    loop(plain, read, during, stop, 50, (c, i) =>
      c.query(
        `SELECT id, seq FROM event_log WHERE stream_id = $1 ORDER BY occurred_at DESC LIMIT 50`,
        [`project:${projects[i % projects.length]!}`]
      ))
  ]

  yield* Effect.promise(() => sleep(SETTLE_MS))
  migrating = true
  const started = performance.now()
  const result = yield* Effect.promise(() =>
    runProcess(process.execPath, [bin, "migrate"], { ...withoutHeraldSettings(), DATABASE_URL: plain }, {
      timeoutMs: 30 * 60_000
    }).finished
  )
  const migrateSeconds = (performance.now() - started) / 1000
  migrating = false
  yield* Effect.promise(() => sleep(SETTLE_MS))
  stopping = true
  yield* Effect.promise(() => Promise.all(loops))
  const failure = result.code === 0
    ? []
    : [
      `herald migrate FAILED (exit ${result.code}): ${
        (result.stdout + result.stderr).split("\n").filter((l) => /Error|error:/.test(l)).map((l) => l.trim()).join(
          " / "
        )
      }`
    ]

  const logRows = Number((yield* query(client, "count", `SELECT count(*) AS n FROM event_log`)).rows[0].n)
  const copied = Number(
    (yield* query(client, "copied", `SELECT count(*) AS n FROM event_outbox WHERE materialized_at IS NOT NULL`))
      .rows[0].n
  )
  const seeded = Math.ceil(settings.events / PROJECTS) * PROJECTS
  const rolled = Number(
      (yield* query(
        client,
        "rollups",
        `SELECT CASE WHEN to_regclass('event_log_hourly') IS NULL THEN 0 ELSE 1 END AS present`
      )).rows[0].present
    ) === 1
    ? Number((yield* query(client, "rollups", `SELECT coalesce(sum(n), 0) AS n FROM event_log_hourly`)).rows[0].n)
    : 0
  const lines = [
    "",
    `migrate: herald migrate 0006 → newest on ${count(settings.events)} events took ${migrateSeconds.toFixed(1)} s`,
    ...failure,
    "",
    "| writer | done | failed | longest wait during migrate | longest overall |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...[post, materialize, publish, read].map((w) =>
      `| ${w.name} | ${count(w.done)} | ${w.failed} | ${w.longestDuringMs.toFixed(0)} ms | ${
        w.longestMs.toFixed(0)
      } ms |`
    ),
    "",
    `longest post wait: ${post.longestDuringMs.toFixed(0)} ms against the ${TARGET_MS} ms target: ` +
    (post.longestDuringMs <= TARGET_MS ? "met" : "MISSED"),
    `longest materializer wait: ${materialize.longestDuringMs.toFixed(0)} ms (${
      materialize.longestDuringMs <= TARGET_MS ? "met" : "MISSED"
    }); reader: ${read.longestDuringMs.toFixed(0)} ms`,
    `event_log rows ${count(logRows)}, in the hourly rollups ${count(rolled)}` +
    (rolled < logRows ? ` (${count(logRows - rolled)} copied by the old materializer without rollups)` : ""),
    `events materialized during the run ${count(copied)}: event_log holds ${count(logRows - seeded)} beyond the ` +
    `${count(seeded)} seeded (${logRows - seeded === copied ? "none lost" : "MISMATCH"})`,
    ...[post, materialize, publish, read].flatMap((w) => [...w.errors].map((e) => `  ${w.name} error: ${e}`))
  ]
  yield* Console.log(lines.join("\n"))
}).pipe(Effect.scoped, Effect.provide(NodeContext.layer))
