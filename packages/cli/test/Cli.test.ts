import { Command } from "@effect/cli"
import { NodeContext } from "@effect/platform-node"
import { Cause, ConfigProvider, Effect, Exit, Logger, LogLevel, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { migrations } from "../../../migrations/index.js"
import { connectSse } from "../../../test-support/SseClient.js"
import { herald as heraldCommand } from "../src/Commands.js"
import { CliError } from "../src/Render.js"
import {
  api,
  exists,
  expectOneLineFailure,
  expectSuccess,
  herald,
  heraldAll,
  jsonOf,
  listenBroker,
  markDead,
  markMaterialized,
  markPublished,
  migrate,
  processesUsing,
  query,
  seedChat,
  sleep,
  startServer,
  stopServer,
  tableRows,
  withDatabase
} from "./support/Cli.js"

/** Every migration, in order: what `herald migrate` reports applying on an empty database. */
const MIGRATIONS = Object.keys(migrations)
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/
/** Non-TTY progress lines (stderr) of long work. */
const progressLine = /^(materialize|prune|replay|replay \(dry run\)): \d+\/\d+ \(\d+\/s\)$/

const db = (url: string) => ({ DATABASE_URL: url })

describe.concurrent("herald CLI", () => {
  it(
    "without DATABASE_URL: migrate starts the embedded cluster and stops it; while a server runs on the data dir, the CLI attaches",
    async () => {
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "herald-cli-"))
      await fs.chmod(dataDir, 0o755)
      const env = { HERALD_DATA_DIR: dataDir }
      let server: Awaited<ReturnType<typeof startServer>> | undefined
      try {
        const first = expectSuccess(await herald(["migrate"], env, 90_000))
        expect(first.stdout.trim()).toBe(`applied: ${MIGRATIONS.join(", ")}`)
        // The CLI started the cluster for the command's duration only.
        expect(await exists(path.join(dataDir, "pg", "PG_VERSION"))).toBe(true)
        expect(await exists(path.join(dataDir, "pg", "postmaster.pid"))).toBe(false)
        expect(await processesUsing(dataDir)).toEqual([])

        server = await startServer(env)
        const cluster = await processesUsing(dataDir)
        expect(cluster.length).toBeGreaterThan(0)
        const stats = await herald(["outbox", "stats", "--json"], env)
        // The server's demo seed wrote one project.created event; the CLI sees the same database.
        const s = jsonOf(stats)
        expect(s.pending + s.published + s.dead).toBe(1)
        // Attached, not owned: the server and its cluster keep running.
        expect(server.proc.child.exitCode).toBe(null)
        expect((await fetch(`${server.url}/health/ready`)).status).toBe(200)
        expect((await processesUsing(dataDir)).map((p) => p.pid)).toEqual(
          expect.arrayContaining(cluster.map((p) => p.pid))
        )

        expect((await stopServer(server.proc)).code).toBe(0)
        server = undefined
        const deadline = Date.now() + 10_000
        while ((await processesUsing(dataDir)).length > 0 && Date.now() < deadline) await sleep(200)
        expect(await processesUsing(dataDir)).toEqual([])
      } finally {
        if (server) await stopServer(server.proc)
        // Anything left over under our own temporary data dir was started by this test.
        for (const p of await processesUsing(dataDir)) {
          try {
            process.kill(p.pid, "SIGTERM")
          } catch {
            // gone already
          }
        }
        await fs.rm(dataDir, { recursive: true, force: true })
      }
    },
    120_000
  )

  it(
    "users create prints a working token; replay re-publishes a range to a running server (postgres broker), --dry-run publishes nothing",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        // The server's own publishes always fail: what its SSE clients get live comes from `replay`.
        const [server, created] = await Promise.all([
          startServer({ DATABASE_URL: url, HERALD_BROKER: "postgres", HERALD_CHAOS_PUBLISH_FAILURE_RATE: "1" }),
          herald(["users", "create", "alice"], db(url))
        ])
        const broker = await listenBroker(url)
        try {
          expectSuccess(created)
          const userId = /^id:\s+(\S+)$/m.exec(created.stdout)?.[1]
          const token = /^token:\s+(\S+)/m.exec(created.stdout)?.[1]
          expect(created.stdout).toMatch(/^name:\s+alice$/m)
          expect(userId).toMatch(/^[0-9a-f-]{36}$/)
          expect(token).toBeDefined()
          expect(await query(url, "SELECT name FROM users WHERE id = $1", [userId])).toEqual([{ name: "alice" }])
          const me = await api(server.url, "GET", "/api/me", token!)
          expect(me.status).toBe(200)
          expect(me.body.id).toBe(userId)
          expect((await api(server.url, "GET", "/api/me", token! + "x")).status).toBe(401)

          const project = await api(server.url, "POST", "/api/projects", token!, { name: "replayed" })
          expect(project.status).toBe(201)
          const stream = `project:${project.body.id}`
          const post = async (body: string) =>
            expect(
              (await api(server.url, "POST", `/api/projects/${project.body.id}/messages`, token!, { body })).status
            ).toBe(201)
          for (const b of ["one", "two", "three"]) await post(b)
          const client = await connectSse(server.url, `/api/projects/${project.body.id}/stream`, {
            token: token!,
            after: "0"
          })
          try {
            expect((await client.waitForEvents(4)).map((e) => Number(e.data.seq))).toEqual([1, 2, 3, 4])
            // Committed after the client caught up, never published: the client does not have them.
            for (const b of ["four", "five", "six"]) await post(b)

            const dry = await herald(["replay", "--stream", stream, "--from-seq", "5", "--dry-run", "--json"], {
              ...db(url),
              HERALD_BROKER: "postgres"
            })
            expect(jsonOf(dry, { allowStderr: progressLine })).toEqual({
              stream,
              fromSeq: 5,
              toSeq: 7,
              events: 3,
              dryRun: true,
              broker: "postgres"
            })
            await sleep(1_000)
            expect(broker.received).toEqual([])
            expect(client.events).toHaveLength(4)

            // 2..4 the client has, 5..6 it lacks; 7 is outside the range.
            const replayed = expectSuccess(
              await herald(["replay", "--stream", stream, "--from-seq", "2", "--to-seq", "6"], {
                ...db(url),
                HERALD_BROKER: "postgres"
              }),
              { allowStderr: progressLine }
            )
            expect(replayed.stdout.trim()).toBe(`published 5 event(s) of ${stream}, seq 2..6, via the postgres broker`)
            const six = await client.waitForEvents(6)
            const [fifth] = await query(url, "SELECT id FROM event_outbox WHERE stream_id = $1 AND seq = 5", [stream])
            expect(six[4]!.data).toMatchObject({
              id: fifth.id,
              stream,
              seq: 5,
              type: "message.created",
              data: { body: "four" }
            })
            await sleep(1_000)
            expect(broker.received.map((e) => e.seq)).toEqual([2, 3, 4, 5, 6])
            // De-duplicated by seq, nothing the client had comes again, and nothing beyond the range.
            const seen = client.events.map((e) => Number(e.data.seq))
            expect([...new Set(seen)]).toEqual([1, 2, 3, 4, 5, 6])
            expect(seen).toEqual([1, 2, 3, 4, 5, 6])
            expect(server.proc.child.exitCode).toBe(null)
          } finally {
            client.close()
          }
        } finally {
          await broker.close()
          await stopServer(server.proc)
        }
      }),
    120_000
  )

  it(
    "bad input: one clear line on stderr, a non-zero exit, no stack trace, nothing changed",
    () =>
      withDatabase(async (url) => {
        const s = await seedChat(url)
        // A delivered event: a bad prune must not touch it.
        await markPublished(url, [s.eventIds[0]!], "1 minute")
        await markMaterialized(url, [s.eventIds[0]!])
        const snapshot = () =>
          query(url, "SELECT id, status, attempts, materialized_at FROM event_outbox ORDER BY position").then(async (
            rows
          ) => ({
            rows,
            users: await query(url, "SELECT count(*)::int AS n FROM users"),
            log: await query(url, "SELECT count(*)::int AS n FROM event_log")
          }))
        const before = await snapshot()
        const cases: Array<[ReadonlyArray<string>, RegExp]> = [
          [["outbox", "show", "nope"], /^herald: not an event id \(a UUID\): "nope"$/],
          [["outbox", "retry"], /^herald: give event ids or --all-dead/],
          [["outbox", "list", "--limit", "0"], /^herald: --limit must be between 1 and 10000$/],
          [["outbox", "list", "--bogus"], /--bogus/],
          [["outbox", "show"], /eventId/],
          [["outbox", "prune", "--older-than", "banana"], /^herald: not a duration: "banana"/],
          [["replay", "--stream", `project:${randomUUID()}`], /^herald: unknown stream: project:[0-9a-f-]{36}/],
          [["replay", "--stream", s.projectStream, "--from-seq", "5", "--to-seq", "2"], /^herald: reversed range/],
          [["materialize", "--batch-size", "0"], /^herald: --batch-size must be between/],
          [["users", "create", "   "], /^herald: name must not be empty$/],
          [["users", "create", "x".repeat(201)], /^herald: name must be at most 200 characters$/]
        ]
        const results = await heraldAll([
          ...cases.map(([args]) => [args, db(url)] as const),
          [["outbox", "stats"], { ...db(url), HERALD_BROKER: "kafka" }]
        ])
        results.slice(0, cases.length).forEach((r, i) => expectOneLineFailure(r, cases[i]![1]))
        // Invalid configuration: one line naming the variable, as the server says it.
        expectOneLineFailure(results[cases.length]!, /^Invalid configuration: HERALD_BROKER: /)
        expect(await snapshot()).toEqual(before)
      }),
    120_000
  )

  it(
    "text through argv: a NUL cannot be passed at all, a lone surrogate arrives as U+FFFD (well-formed text)",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        // The kernel passes NUL-terminated bytes: Node refuses to spawn with a NUL, as a shell cannot pass one.
        await expect(herald(["users", "create", "a\u0000b"], db(url))).rejects.toMatchObject({
          code: "ERR_INVALID_ARG_VALUE"
        })
        // A string with a lone surrogate is sent as UTF-8, which cannot hold one: the bin reads U+FFFD.
        // (So do the WTF-8 bytes ED A0 80 passed by a shell: Node decodes argv as UTF-8.)
        const [created, listed] = await heraldAll([
          [["users", "create", "x\ud800y", "--json"], db(url)],
          [["outbox", "list", "--stream", "\udc00", "--type", "message.created\ud800", "--json"], db(url)]
        ])
        const user = jsonOf(created)
        expect(user.name).toBe("x\ufffdy")
        expect(await query(url, "SELECT name FROM users WHERE id = $1", [user.id])).toEqual([{ name: "x\ufffdy" }])
        expect(jsonOf(listed)).toEqual([])
      }),
    120_000
  )

  it(
    "every text argument refuses a NUL or a lone surrogate with one clear message, and changes nothing",
    () =>
      withDatabase(async (url) => {
        const s = await seedChat(url)
        // argv cannot carry these (above), so the commands are run in-process, as the bin runs them.
        const run = Command.run(heraldCommand, { name: "herald", version: "test" })
        const failureOf = async (args: ReadonlyArray<string>) => {
          const exit = await Effect.runPromiseExit(
            run(["node", "herald", ...args]).pipe(
              Effect.provide(NodeContext.layer),
              Effect.provide(Logger.minimumLogLevel(LogLevel.Warning)),
              Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["DATABASE_URL", url]])))
            )
          )
          if (Exit.isSuccess(exit)) return `herald ${JSON.stringify(args)} succeeded`
          const failure = Cause.failureOption(exit.cause)
          // What the bin prints for a CliError; anything else (a database error) is a failure of the test.
          return Option.isSome(failure) && failure.value instanceof CliError
            ? `herald: ${failure.value.message}`
            : `herald ${JSON.stringify(args)} failed otherwise: ${Cause.pretty(exit.cause)}`
        }
        const snapshot = async () => ({
          users: await query(url, "SELECT id, name FROM users ORDER BY id"),
          outbox: await query(url, "SELECT id, status, attempts FROM event_outbox ORDER BY position")
        })
        const before = await snapshot()
        const texts = ["\u0000", "a\u0000b", "\ud800", "x\udc00", "\ude00\ud83d"]
        const argumentCases: Array<[(text: string) => ReadonlyArray<string>, RegExp]> = [
          [(t) => ["users", "create", t], /^herald: name must not contain NUL characters or unpaired surrogates$/],
          [
            (t) => ["users", "create", `  ${t}  `],
            /^herald: name must not contain NUL characters or unpaired surrogates$/
          ],
          [
            (t) => ["outbox", "list", "--stream", t],
            /^herald: --stream must not contain NUL characters or unpaired surrogates$/
          ],
          [(t) => ["outbox", "list", "--stream", s.projectStream + t], /^herald: --stream must not contain NUL/],
          [
            (t) => ["outbox", "list", "--type", t],
            /^herald: --type must not contain NUL characters or unpaired surrogates$/
          ],
          [(t) => ["outbox", "list", "--type", `message.created${t}`], /^herald: --type must not contain NUL/],
          [(t) => ["outbox", "show", t], /^herald: not an event id \(a UUID\)/],
          [(t) => ["outbox", "show", s.eventIds[0]! + t], /^herald: not an event id \(a UUID\)/],
          [(t) => ["outbox", "retry", s.eventIds[0]!, t], /^herald: not an event id \(a UUID\)/],
          [(t) => ["replay", "--stream", t], /^herald: not a stream id/],
          [(t) => ["replay", "--stream", s.projectStream + t, "--dry-run"], /^herald: not a stream id/],
          [(t) => ["outbox", "prune", "--older-than", `7d${t}`], /^herald: not a duration/]
        ]
        for (const [args, message] of argumentCases) {
          for (const text of texts) expect(await failureOf(args(text))).toMatch(message)
        }
        // The control: the same filters, well-formed, are accepted (and match nothing: `[]`).
        expect(await failureOf(["outbox", "list", "--stream", s.projectStream, "--type", "member.removed", "--json"]))
          .toMatch(/succeeded$/)
        expect(await snapshot()).toEqual(before)
      }),
    120_000
  )

  it("outbox stats, list and show report what the database holds", () =>
    withDatabase(async (url) => {
      const s = await seedChat(url)
      const ids = s.eventIds
      expect(ids).toHaveLength(13)
      // Delivery states an operator meets: delivered, dead, claimed by a publisher, retrying, waiting.
      await markPublished(url, ids.slice(0, 5))
      await markMaterialized(url, ids.slice(0, 5))
      await markDead(url, [ids[5]!, ids[10]!], "broker unavailable: connect ECONNREFUSED")
      await query(
        url,
        `UPDATE event_outbox SET claimed_by = 'publisher-a', claimed_until = now() + interval '1 minute',
                next_attempt_at = now() + interval '1 minute' WHERE id = $1`,
        [ids[6]]
      )
      await query(
        url,
        `UPDATE event_outbox SET attempts = 3, last_error = 'timeout', next_attempt_at = now() + interval '10 seconds' WHERE id = $1`,
        [ids[7]]
      )
      // The whole history happened an hour ago: ages become measurable.
      await query(url, "UPDATE event_outbox SET occurred_at = occurred_at - interval '1 hour'")
      const [{ before }] = await query<{ before: number }>(
        url,
        "SELECT extract(epoch FROM now() - min(occurred_at) FILTER (WHERE status = 'pending'))::float8 AS before FROM event_outbox"
      ) as [{ before: number }]

      const [statsJson, statsTable, all, filtered, pendingTable, showDead, showPublished] = await heraldAll([
        [["outbox", "stats", "--json"], db(url)],
        [["outbox", "stats"], db(url)],
        [["outbox", "list", "--json"], db(url)],
        [
          ["outbox", "list", "--json", "--stream", s.projectStream, "--type", "message.created", "--limit", "2"],
          db(url)
        ],
        [["outbox", "list", "--status", "pending", "--limit", "3"], db(url)],
        [["outbox", "show", ids[5]!, "--json"], db(url)],
        [["outbox", "show", ids[0]!], db(url)]
      ])
      const [{ after }] = await query<{ after: number }>(
        url,
        "SELECT extract(epoch FROM now() - min(occurred_at) FILTER (WHERE status = 'pending'))::float8 AS after FROM event_outbox"
      ) as [{ after: number }]

      // stats --json: the field names scripts rely on, and counts equal to the database's.
      const stats = jsonOf(statsJson)
      expect(Object.keys(stats).sort()).toEqual(
        ["claimed", "dead", "materializerLagSeconds", "oldestPendingSeconds", "pending", "published", "unmaterialized"]
      )
      const [truth] = await query(
        url,
        `SELECT count(*) FILTER (WHERE status = 'pending')::int AS pending,
                count(*) FILTER (WHERE status = 'published')::int AS published,
                count(*) FILTER (WHERE status = 'dead')::int AS dead,
                count(*) FILTER (WHERE materialized_at IS NULL)::int AS unmaterialized
         FROM event_outbox`
      )
      expect(truth).toEqual({ pending: 6, published: 5, dead: 2, unmaterialized: 8 })
      expect(stats).toMatchObject({ ...truth, claimed: 1 })
      expect(stats.oldestPendingSeconds).toBeGreaterThanOrEqual(before - 1)
      expect(stats.oldestPendingSeconds).toBeLessThanOrEqual(after + 1)
      expect(stats.oldestPendingSeconds).toBeGreaterThan(3_600)
      expect(stats.materializerLagSeconds).toBeGreaterThan(3_600)

      // stats: the same numbers in a table.
      expectSuccess(statsTable)
      const [head, row] = tableRows(statsTable.stdout)
      expect(head).toEqual([
        "pending",
        "claimed",
        "published",
        "dead",
        "oldest pending",
        "unmaterialized",
        "materializer lag"
      ])
      expect(row!.slice(0, 4)).toEqual(["6", "1", "5", "2"])
      expect(row![4]).toMatch(/^1h/)
      expect(row![5]).toBe("8")
      expect(row![6]).toMatch(/^1h/)

      // list --json: every row, newest first, with its delivery state.
      const rows = jsonOf(all)
      expect(rows.map((r: any) => r.id)).toEqual([...ids].reverse())
      for (const r of rows) {
        expect(Object.keys(r).sort()).toEqual([
          "attempts",
          "id",
          "lastError",
          "occurredAt",
          "seq",
          "status",
          "stream",
          "type"
        ])
        expect(r.occurredAt).toMatch(ISO)
      }
      const byId = new Map(rows.map((r: any) => [r.id, r]))
      expect(byId.get(ids[0])).toMatchObject({
        stream: s.projectStream,
        seq: 1,
        type: "project.created",
        status: "published",
        attempts: 1,
        lastError: null
      })
      expect(byId.get(ids[7])).toMatchObject({ status: "pending", attempts: 3, lastError: "timeout" })
      const times = rows.map((r: any) => Date.parse(r.occurredAt))
      expect(times).toEqual([...times].sort((a, b) => b - a))

      expect(byId.get(ids[5])).toMatchObject({
        status: "dead",
        attempts: 25,
        lastError: "broker unavailable: connect ECONNREFUSED"
      })
      // --stream, --type and --limit together: the two newest posts of alice's project.
      const posts = jsonOf(filtered)
      expect(posts).toHaveLength(2)
      expect(posts.every((r: any) => r.stream === s.projectStream && r.type === "message.created")).toBe(true)
      const allPosts = rows.filter((r: any) => r.stream === s.projectStream && r.type === "message.created")
      expect(allPosts).toHaveLength(5)
      expect(posts.map((r: any) => r.id)).toEqual(allPosts.slice(0, 2).map((r: any) => r.id))
      // --status and --limit, as a table: the three newest pending rows.
      expectSuccess(pendingTable)
      const [listHead, ...listRows] = tableRows(pendingTable.stdout)
      expect(listHead).toEqual(["id", "stream", "seq", "type", "status", "attempts", "occurred at", "last error"])
      expect(listRows.map((r) => r[0])).toEqual([ids[12], ids[11], ids[9]])
      expect(listRows.every((r) => r[4] === "pending")).toBe(true)

      // show --json: the envelope and its delivery history fields.
      const shown = jsonOf(showDead)
      const [envelope] = await query(
        url,
        "SELECT id, stream_id, seq::int, type, project_id, actor_id, occurred_at, data, attempts, next_attempt_at FROM event_outbox WHERE id = $1",
        [ids[5]]
      )
      expect(shown.event).toEqual({
        id: envelope.id,
        stream: envelope.stream_id,
        seq: envelope.seq,
        type: envelope.type,
        projectId: envelope.project_id,
        actorId: envelope.actor_id,
        occurredAt: envelope.occurred_at.toISOString(),
        data: envelope.data
      })
      expect(shown.event).toMatchObject({ stream: s.projectStream, seq: 6, type: "message.created" })
      expect(shown.delivery).toEqual({
        status: "dead",
        attempts: 25,
        nextAttemptAt: envelope.next_attempt_at.toISOString(),
        claimedBy: null,
        claimedUntil: null,
        lastError: "broker unavailable: connect ECONNREFUSED",
        publishedAt: null,
        materializedAt: null
      })
      // show: a table of fields.
      expectSuccess(showPublished)
      const fields = new Map(tableRows(showPublished.stdout).slice(1).map(([k, v]) => [k!, v!]))
      expect(fields.get("id")).toBe(ids[0])
      expect(fields.get("stream")).toBe(s.projectStream)
      expect(fields.get("type")).toBe("project.created")
      expect(JSON.parse(fields.get("data")!)).toEqual({ name: "alpha", ownerId: s.alice.id })
      expect(fields.get("status")).toBe("published")
      expect(fields.get("publishedAt")).toMatch(ISO)
      expect(fields.get("materializedAt")).toMatch(ISO)
      expect(fields.get("lastError")).toBe("-")
    }), 120_000)

  it(
    "materialize fills event_log idempotently; --rebuild keeps existing rows and re-copies what the outbox holds",
    () =>
      withDatabase(async (url) => {
        const { eventIds: ids } = await seedChat(url)
        const envelope = "id, stream_id, seq::int, type, project_id, actor_id, occurred_at, data"
        const outbox = () => query(url, `SELECT ${envelope} FROM event_outbox ORDER BY id`)
        const log = () => query(url, `SELECT ${envelope} FROM event_log ORDER BY id`)
        expect(await log()).toEqual([])

        const first = await herald(["materialize", "--batch-size", "2", "--json"], db(url))
        const result = jsonOf(first, { allowStderr: progressLine })
        expect(result).toMatchObject({ materialized: 13, rebuild: false, reset: 0 })
        expect(result.asOf).toMatch(ISO)
        expect(first.stderr).toMatch(/^materialize: 13\/13 /m)
        expect(await log()).toEqual(await outbox())
        expect(await query(url, "SELECT count(*)::int AS n FROM event_outbox WHERE materialized_at IS NULL")).toEqual([{
          n: 0
        }])

        const again = expectSuccess(await herald(["materialize"], db(url)), { allowStderr: progressLine })
        expect(again.stdout.trim()).toMatch(/^materialized 0 event\(s\); analytics asOf \d{4}-/)
        expect(await log()).toHaveLength(13)

        // The outbox lost two rows (pruned), event_log lost three (a bad restore), and one log row
        // differs from the outbox: --rebuild re-copies what is missing and keeps what is there.
        const pruned = [ids[0]!, ids[1]!]
        const lost = [ids[5]!, ids[6]!, ids[7]!]
        const expected = await log()
        await query(url, "DELETE FROM event_outbox WHERE id = ANY($1::uuid[])", [pruned])
        await query(url, "DELETE FROM event_log WHERE id = ANY($1::uuid[])", [lost])
        await query(url, `UPDATE event_log SET data = '{"kept": true}' WHERE id = $1`, [ids[8]])
        const rebuilt = jsonOf(await herald(["materialize", "--rebuild", "--json"], db(url)), {
          allowStderr: progressLine
        })
        expect(rebuilt).toMatchObject({ materialized: 11, rebuild: true, reset: 11 })
        const after = await log()
        expect(after).toHaveLength(13)
        expect(after.filter((r) => r.id !== ids[8])).toEqual(expected.filter((r) => r.id !== ids[8]))
        expect(after.find((r) => r.id === ids[8])!.data).toEqual({ kept: true })
      }),
    120_000
  )

  it(
    "outbox prune deletes only published, materialized rows older than the duration; event_log keeps them",
    () =>
      withDatabase(async (url) => {
        const { eventIds: ids } = await seedChat(url)
        const old = ids.slice(0, 3)
        await markPublished(url, old, "10 days")
        await markMaterialized(url, old)
        await markPublished(url, [ids[3]!], "1 hour") // recent
        await markMaterialized(url, [ids[3]!])
        await markPublished(url, [ids[4]!], "10 days") // old, not materialized
        await markDead(url, [ids[5]!], "x") // dead, materialized
        await markMaterialized(url, [ids[5]!, ids[6]!]) // ids[6]: pending, materialized
        const outboxIds = async () =>
          (await query<{ id: string }>(url, "SELECT id FROM event_outbox")).map((r) => r.id).sort()

        const first = jsonOf(await herald(["outbox", "prune", "--older-than", "1d", "--json"], db(url)), {
          allowStderr: progressLine
        })
        expect(first).toEqual({ deleted: 3 })
        expect(await outboxIds()).toEqual(ids.slice(3).sort())
        const logged = (await query<{ id: string }>(url, "SELECT id FROM event_log")).map((r) => r.id).sort()
        expect(logged).toEqual([...old, ids[3]!, ids[5]!, ids[6]!].sort())

        const [gone, negative] = await heraldAll([
          [["outbox", "show", old[0]!], db(url)],
          [["outbox", "prune", "--older-than", "-5 days"], db(url)]
        ])
        // A pruned event is gone from the outbox, and the operator is told where it lives on.
        expectOneLineFailure(gone, new RegExp(`^herald: no outbox row ${old[0]}.*event_log`))
        // A negative age is no retention: refused as a bad duration, not read as "older than 0".
        expectOneLineFailure(negative, /^herald: .*duration.*"-5 days"/)
        expect(await outboxIds()).toEqual(ids.slice(3).sort())
      }),
    120_000
  )

  it(
    "outbox retry puts dead events back to pending; a non-dead id is reported with a non-zero exit",
    () =>
      withDatabase(async (url) => {
        const { eventIds: ids } = await seedChat(url)
        await markPublished(url, [ids[0]!])
        await markDead(url, [ids[2]!, ids[3]!, ids[10]!], "gave up")
        const unknown = randomUUID()
        const state = async () =>
          new Map(
            (await query<{ id: string; status: string; attempts: number; due: boolean }>(
              url,
              "SELECT id, status, attempts, next_attempt_at <= now() AS due FROM event_outbox"
            )).map((r) => [r.id, r])
          )

        const some = await herald(["outbox", "retry", ids[2]!, ids[0]!, unknown], db(url))
        expect(some.code).not.toBe(0)
        expect(some.stdout.trim()).toBe("1 dead event(s) back to pending")
        expect(some.stderr).toContain(ids[0]!)
        expect(some.stderr).toContain(unknown)
        expect(some.stderr).not.toContain(ids[2]!)
        expect(some.stderr).not.toMatch(/^\s+at |FiberFailure/m)
        let rows = await state()
        expect(rows.get(ids[2]!)).toMatchObject({ status: "pending", attempts: 0, due: true })
        expect(rows.get(ids[3]!)).toMatchObject({ status: "dead" })
        expect(rows.get(ids[10]!)).toMatchObject({ status: "dead" })
        expect(rows.get(ids[0]!)).toMatchObject({ status: "published" })

        const everything = jsonOf(await herald(["outbox", "retry", "--all-dead", "--json"], db(url)))
        expect([...everything.retried].sort()).toEqual([ids[3], ids[10]].sort())
        expect(everything.notDead).toEqual([])
        rows = await state()
        expect([...rows.values()].filter((r) => r.status === "dead")).toEqual([])
        for (const id of [ids[3]!, ids[10]!]) {
          expect(rows.get(id)).toMatchObject({ status: "pending", attempts: 0, due: true })
        }
        expect(rows.get(ids[0]!)).toMatchObject({ status: "published" })
      }),
    120_000
  )

  it(
    "migrate applies every migration once; a second run says the database is up to date",
    () =>
      withDatabase(async (url) => {
        const first = expectSuccess(await herald(["migrate"], db(url)))
        expect(first.stdout.trim()).toBe(`applied: ${MIGRATIONS.join(", ")}`)
        const again = await herald(["migrate"], db(url))
        expect(expectSuccess(again).stdout.trim()).toBe("database is up to date")
        const tables = await query<{ name: string }>(
          url,
          "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        )
        expect(tables.map((t) => t.name)).toEqual(
          expect.arrayContaining(["event_log", "event_outbox", "event_streams", "messages", "users"])
        )
        expect(await query(url, "SELECT count(*)::int AS n FROM herald_migrations")).toEqual([{ n: MIGRATIONS.length }])
      }),
    120_000
  )

  it("--help on the root and on a subcommand prints usage and exits 0", async () => {
    const [root, sub] = await Promise.all([herald(["--help"]), herald(["outbox", "list", "--help"])])
    expectSuccess(root)
    for (
      const cmd of [
        "migrate",
        "users create",
        "outbox stats",
        "outbox list",
        "outbox show",
        "outbox retry",
        "outbox prune",
        "replay",
        "materialize"
      ]
    ) {
      expect(root.stdout).toContain(cmd)
    }
    expect(root.stdout).toMatch(/USAGE/)
    expectSuccess(sub)
    expect(sub.stdout).toMatch(/USAGE/)
    expect(sub.stdout).toMatch(/newest first/)
    for (const flag of ["--status", "--stream", "--type", "--limit", "--json"]) expect(sub.stdout).toContain(flag)
  }, 120_000)

  it(
    "database unreachable or not migrated: one line naming the problem, non-zero exit, no password echoed",
    () =>
      withDatabase(async (fresh) => {
        const started = Date.now()
        const [down, unmigrated] = await Promise.all([
          herald(["outbox", "stats"], { DATABASE_URL: "postgres://herald:s3cret-pw@127.0.0.1:1/x" }),
          herald(["outbox", "stats"], db(fresh))
        ])
        expectOneLineFailure(down, /^herald: .*connect/i)
        expect(down.stderr).not.toContain("s3cret-pw")
        expect(Date.now() - started).toBeLessThan(60_000)
        // An empty database: the operator must learn what is wrong (the schema is missing: run
        // `herald migrate`), not just that "a statement failed".
        expectOneLineFailure(unmigrated, /migrat|event_outbox|does not exist/i)
      }),
    120_000
  )
})
