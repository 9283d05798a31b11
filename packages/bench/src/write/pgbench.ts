import { Effect, Redacted } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import type pg from "pg"
import { runProcess } from "../../../../test-support/Process.js"
import { attempt, BenchError, query } from "../support.js"
import { MESSAGE_BODY } from "../wrk.js"

/**
 * The baseline: `pgbench` running the bare message-post transaction — seq bump, message insert,
 * outbox insert, in BEGIN/COMMIT — over 100 streams, on the same PostgreSQL as Herald, against
 * tables of Herald's own shape in a schema of their own (`bench.*`: `LIKE public.… INCLUDING ALL`,
 * and Herald's foreign keys re-created between them, so the message insert checks its project
 * and author as Herald's does). Not in it: Herald's membership check (`WHERE EXISTS`) and
 * `RETURNING` of the message row, the token lookup, and everything after commit.
 */

/**
 * Streams the posts go to, round-robin (wrk) or at random (pgbench): 100 by default;
 * `BENCH_STREAMS=1` measures one hot stream, whose posts queue on its seq row's lock and commit one
 * at a time (docs/deploy.md, "What limits each part").
 */
export const STREAMS = (() => {
  const raw = process.env.BENCH_STREAMS ?? "100"
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new Error(`BENCH_STREAMS: expected an integer from 1 to 1000, got ${JSON.stringify(raw)}`)
  }
  return n
})()

/** The tables `bench.*` copies, referenced ones first. */
const TABLES = ["users", "projects", "event_streams", "messages", "event_outbox"] as const

const USER_ID = "00000000-0000-4000-8000-000000000000"
/** Project n (1..100) of the baseline, as SQL on pgbench's `:p`. */
const PROJECT_ID = `('00000000-0000-4000-8000-' || lpad(:p::text, 12, '0'))`
const STREAM_ID = `('project:' || ${PROJECT_ID})`

export const setUpBaselineTables = (client: pg.Client) =>
  Effect.gen(function*() {
    // Herald's foreign keys among these tables, as PostgreSQL prints them (unqualified names).
    const { rows: fks } = yield* query(
      client,
      "reading Herald's foreign keys",
      `SELECT conrelid::regclass::text AS tbl, pg_get_constraintdef(oid) AS def
       FROM pg_constraint
       WHERE contype = 'f' AND connamespace = 'public'::regnamespace AND conrelid::regclass::text = ANY($1)`,
      [TABLES]
    )
    yield* query(client, "creating bench.*", "BEGIN")
    yield* query(client, "creating bench.*", "CREATE SCHEMA bench")
    for (const t of TABLES) {
      yield* query(client, `creating bench.${t}`, `CREATE TABLE bench.${t} (LIKE public.${t} INCLUDING ALL)`)
    }
    // Under search_path = bench, `REFERENCES projects(id)` names bench.projects.
    yield* query(client, "creating bench.*", "SET LOCAL search_path = bench, pg_catalog")
    for (const fk of fks as Array<{ tbl: string; def: string }>) {
      yield* query(client, `re-creating ${fk.def} on bench.${fk.tbl}`, `ALTER TABLE ${fk.tbl} ADD ${fk.def}`)
    }
    yield* query(client, "creating bench.*", "COMMIT")
    yield* query(client, "seeding bench.users", `INSERT INTO bench.users (id, name) VALUES ($1, 'bench')`, [USER_ID])
    yield* query(
      client,
      "seeding bench.projects",
      `INSERT INTO bench.projects (id, name, owner_id)
       SELECT ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, 'bench ' || n, $1
       FROM generate_series(1, ${STREAMS}) AS n`,
      [USER_ID]
    )
    yield* query(client, "analyzing bench.*", "ANALYZE bench.users, bench.projects")
    return fks.length
  })

/**
 * The transaction, as Herald's post path sends it (OutboxWriter.reserve, MessagesRepo's insert,
 * OutboxWriter.insert), with the ids drawn by the database instead of the client.
 */
export const pgbenchScript = () => {
  const body = `'${MESSAGE_BODY.replace(/'/g, "''")}'`
  return `-- written by packages/bench/src/write/pgbench.ts for one run of \`npm run bench -- write\`
\\set p random(1, ${STREAMS})
BEGIN;
INSERT INTO bench.event_streams (stream_id, last_seq) VALUES (${STREAM_ID}, 1)
  ON CONFLICT (stream_id) DO UPDATE SET last_seq = bench.event_streams.last_seq + 1
  RETURNING last_seq AS seq, clock_timestamp() AS at, gen_random_uuid() AS message_id, gen_random_uuid() AS event_id \\gset
INSERT INTO bench.messages (id, project_id, author_id, scope, role, body, client_message_id,
                            created_event_id, created_event_seq, created_at)
  VALUES (:message_id, ${PROJECT_ID}::uuid, '${USER_ID}', 'project', 'user', ${body}, NULL,
          :event_id, :seq, :at);
INSERT INTO bench.event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data)
  VALUES (:event_id, ${STREAM_ID}, :seq, 'message.created', ${PROJECT_ID}::uuid, '${USER_ID}', :at,
          jsonb_build_object('messageId', :message_id::text, 'authorId', '${USER_ID}', 'role', 'user', 'body', ${body}));
COMMIT;
`
}

export const writePgbenchScript = (dir: string) =>
  attempt("writing the pgbench script", async () => {
    const file = path.join(dir, "post.sql")
    await fs.writeFile(file, pgbenchScript())
    return file
  })

export interface PgbenchResult {
  readonly clients: number
  readonly transactions: number
  readonly failed: number
  readonly tps: number
  readonly latencyMs: number
  readonly output: string
}

const connectionEnv = (url: Redacted.Redacted) => {
  const u = new URL(Redacted.value(url))
  return {
    PGHOST: u.hostname,
    PGPORT: u.port,
    PGUSER: decodeURIComponent(u.username),
    PGPASSWORD: decodeURIComponent(u.password),
    PGDATABASE: u.pathname.slice(1),
    PGAPPNAME: "pgbench"
  }
}

/** `pgbench -n -M prepared -c n -j min(n,2) -T seconds -f script`; fails on any failed transaction. */
export const runPgbench = (options: {
  readonly url: Redacted.Redacted
  readonly script: string
  readonly clients: number
  readonly seconds: number
}) =>
  Effect.gen(function*() {
    const args = [
      "-n",
      "-M",
      "prepared",
      "-c",
      String(options.clients),
      "-j",
      String(Math.min(options.clients, 2)),
      "-T",
      String(options.seconds),
      "-f",
      options.script
    ]
    const r = yield* attempt(
      "pgbench",
      () =>
        runProcess("pgbench", args, connectionEnv(options.url), { timeoutMs: (options.seconds + 30) * 1000 }).finished
    )
    const out = `${r.stdout}${r.stderr}`
    const num = (re: RegExp) => {
      const m = re.exec(out)
      return m === null ? NaN : Number(m[1])
    }
    const result: PgbenchResult = {
      clients: options.clients,
      transactions: num(/number of transactions actually processed: (\d+)/),
      failed: num(/number of failed transactions: (\d+)/) || 0,
      tps: num(/tps = ([\d.]+)/),
      latencyMs: num(/latency average = ([\d.]+) ms/),
      output: out
    }
    if (r.code !== 0 || !Number.isFinite(result.transactions) || !Number.isFinite(result.tps)) {
      return yield* new BenchError({ message: `pgbench ${args.join(" ")} exited ${r.code}:\n${out}` })
    }
    if (result.failed > 0) {
      return yield* new BenchError({ message: `pgbench: ${result.failed} failed transactions:\n${out}` })
    }
    return result
  })
