import { describe, expect, it } from "vitest"
import {
  ADMIN,
  api,
  expectOneLineFailure,
  herald,
  jsonOf,
  query,
  seedChat,
  startServer,
  stopServer,
  tableRows,
  withDatabase
} from "./support/Cli.js"

/**
 * `herald rollups rebuild [--since]`, through the real bin against a real database: rollups lost
 * or corrupted by hand come back equal to a recount of event_log; `--since` touches only its hours;
 * bad input changes nothing; and a rebuild while a server posts and materializes neither loses nor
 * doubles a count.
 */

const db = (url: string) => ({ DATABASE_URL: url })
const HOUR = 3_600_000
/** Non-TTY progress lines (stderr) of `rollups rebuild` and `materialize`. */
const progressLine = /^(rollups rebuild \(months\)|materialize): \d+\/\d+ \(\d+\/s\)$/

/** Both rollup tables, as text rows in key order (bounds included). */
const rollups = (url: string) =>
  query<{ row: string }>(
    url,
    `SELECT row FROM (
       SELECT concat_ws(' ', 'type', stream_id, (extract(epoch FROM hour) * 1000)::bigint, project_id, type, n, first_at, last_at, span_n) AS row
       FROM event_log_hourly
       UNION ALL
       SELECT concat_ws(' ', 'actor', stream_id, (extract(epoch FROM hour) * 1000)::bigint, project_id, actor_id, messages) FROM event_log_hourly_actors
     ) r ORDER BY row`
  ).then((rows) => rows.map((r) => r.row))

/** The rollups as they should be: a recount of everything event_log holds. */
const recount = (url: string) =>
  query<{ row: string }>(
    url,
    `SELECT row FROM (
       SELECT concat_ws(' ', 'type', stream_id, (extract(epoch FROM date_trunc('hour', occurred_at, 'UTC')) * 1000)::bigint, project_id, type, count(*),
         min(occurred_at), max(occurred_at), count(*)) AS row
       FROM event_log GROUP BY stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, type
       UNION ALL
       SELECT concat_ws(' ', 'actor', stream_id, (extract(epoch FROM date_trunc('hour', occurred_at, 'UTC')) * 1000)::bigint, project_id, actor_id,
         count(*) FILTER (WHERE type = 'message.created'))
       FROM event_log WHERE stream_id NOT LIKE 'workspace:%'
       GROUP BY stream_id, date_trunc('hour', occurred_at, 'UTC'), project_id, actor_id
     ) r ORDER BY row`
  ).then((rows) => rows.map((r) => r.row))

/** The seeded chat, half of it moved 30 hours back, all materialized by `herald materialize`. */
const history = async (url: string) => {
  const s = await seedChat(url)
  await query(
    url,
    "UPDATE event_outbox SET occurred_at = occurred_at - interval '30 hours' WHERE id = ANY($1::uuid[])",
    [s.eventIds.slice(0, 7)]
  )
  jsonOf(await herald(["materialize", "--json"], db(url)), { allowStderr: progressLine })
  expect(await rollups(url)).toEqual(await recount(url))
  return s
}

describe.concurrent("herald rollups rebuild", () => {
  it("--help lists it, with --since and --json", async () => {
    const top = await herald(["--help"], { NO_COLOR: "1" })
    expect(top.code).toBe(0)
    expect(top.stdout).toMatch(/rollups/)
    const page = await herald(["rollups", "rebuild", "--help"], { NO_COLOR: "1" })
    expect(page.code).toBe(0)
    expect(page.stdout).toContain("$ herald rollups rebuild [--json] [--since text]")
    expect(page.stdout).toMatch(/duration back from now/)
  })

  it(
    "rollups deleted and corrupted by hand come back equal to a recount (table, then --json)",
    () =>
      withDatabase(async (url) => {
        await history(url)
        const good = await rollups(url)
        await query(url, "DELETE FROM event_log_hourly_actors WHERE messages > 0")
        await query(url, "UPDATE event_log_hourly SET n = n + 5, first_at = NULL")
        await query(
          url,
          `INSERT INTO event_log_hourly (stream_id, hour, project_id, type, n, first_at, last_at, span_n)
         VALUES ('project:00000000-0000-0000-0000-000000000000', '2020-01-01', gen_random_uuid(), 'message.created', 9,
           '2020-01-01', '2020-01-01', 9)`
        )
        expect(await rollups(url)).not.toEqual(good)
        const human = await herald(["rollups", "rebuild"], db(url))
        expect(human.code, human.stderr).toBe(0)
        expect(human.stderr.split("\n").filter((l) => l !== "" && !progressLine.test(l))).toEqual([])
        expect(human.stderr.trim()).toMatch(progressLine)
        expect(tableRows(human.stdout)[0]).toEqual(["from", "to", "hours", "events", "rollup rows replaced"])
        expect(human.stdout).toMatch(
          /rebuilt the rollups of \d+ hour\(s\) with events \(13 events\) over the whole log/
        )
        expect(await rollups(url)).toEqual(good)

        await query(url, "TRUNCATE event_log_hourly, event_log_hourly_actors")
        const out = jsonOf(await herald(["rollups", "rebuild", "--json"], db(url)), { allowStderr: progressLine })
        expect(out).toMatchObject({ since: null, events: 13, removed: 0 })
        expect(out.hours).toBeGreaterThanOrEqual(2)
        expect(out.chunks.length).toBeGreaterThan(0)
        expect(await rollups(url)).toEqual(good)
      }),
    120_000
  )

  it(
    "--since rebuilds only the hours from its own on (a duration back from now, or an ISO time)",
    () =>
      withDatabase(async (url) => {
        await history(url)
        const good = await rollups(url)
        // Corrupt every hour; only the recent ones (the last 24 hours) are rebuilt.
        await query(url, "UPDATE event_log_hourly SET n = n + 100")
        const cut = Date.now() - 24 * HOUR
        const corrupted = await rollups(url)
        const out = jsonOf(await herald(["rollups", "rebuild", "--since", "24h", "--json"], db(url)), {
          allowStderr: progressLine
        })
        const since = new Date(out.since).getTime()
        expect(since % HOUR).toBe(0)
        expect(Math.abs(since - (Math.floor(cut / HOUR) * HOUR))).toBeLessThanOrEqual(HOUR)
        expect(out.events).toBe(6)
        const after = await rollups(url)
        const old = (rows: ReadonlyArray<string>) => rows.filter((r) => Number(r.split(" ")[2]) < since)
        // The 30-hour-old hours are untouched (still corrupted); the recent ones are right again.
        expect(old(after)).toEqual(old(corrupted))
        expect(after.filter((r) => !old(after).includes(r))).toEqual(good.filter((r) => !old(good).includes(r)))
        // An ISO time reaching back before them fixes the rest.
        const iso = new Date(Date.now() - 48 * HOUR).toISOString()
        jsonOf(await herald(["rollups", "rebuild", "--since", iso, "--json"], db(url)), { allowStderr: progressLine })
        expect(await rollups(url)).toEqual(good)
      }),
    120_000
  )

  it(
    "bad --since (not a time, in the future) is one clear line and changes nothing",
    () =>
      withDatabase(async (url) => {
        await history(url)
        await query(url, "UPDATE event_log_hourly SET n = n + 1")
        const before = await rollups(url)
        expectOneLineFailure(
          await herald(["rollups", "rebuild", "--since", "banana"], db(url)),
          /--since: expected an ISO-8601 time/
        )
        expectOneLineFailure(
          await herald(["rollups", "rebuild", "--since", new Date(Date.now() + 2 * HOUR).toISOString()], db(url)),
          /--since .* is in the future/
        )
        expectOneLineFailure(
          await herald(["rollups", "rebuild", "--since", "2026-13-45"], db(url)),
          /--since: expected/
        )
        expect(await rollups(url)).toEqual(before)
      }),
    120_000
  )

  it("a rebuild while a server posts and materializes loses and doubles nothing", () =>
    withDatabase(async (url) => {
      await history(url)
      const server = await startServer({ DATABASE_URL: url })
      try {
        const user = (await api(server.url, "POST", "/api/admin/users", ADMIN, { name: "writer" })).body as {
          token: string
        }
        const project = (await api(server.url, "POST", "/api/projects", user.token, { name: "busy" })).body as {
          id: string
        }
        let posting = true
        let posted = 0
        const writer = (async () => {
          while (posting) {
            const r = await api(server.url, "POST", `/api/projects/${project.id}/messages`, user.token, {
              body: `m ${posted}`
            })
            expect(r.status).toBe(201)
            posted++
          }
        })()
        for (let i = 0; i < 3; i++) {
          const r = await herald(["rollups", "rebuild", ...(i === 1 ? ["--since", "1h"] : [])], db(url))
          expect(r.code, r.stderr).toBe(0)
        }
        posting = false
        await writer
        expect(posted).toBeGreaterThan(0)
        // The server's materializer copies the last posts; then rollups must equal a recount.
        const deadline = Date.now() + 20_000
        while (Date.now() < deadline) {
          const [row] = await query<{ n: number }>(
            url,
            "SELECT count(*)::int AS n FROM event_outbox WHERE materialized_at IS NULL"
          )
          if (row!.n === 0) break
          await new Promise((r) => setTimeout(r, 100))
        }
        expect(await rollups(url)).toEqual(await recount(url))
        const [logged] = await query<{ n: number }>(url, "SELECT count(*)::int AS n FROM event_log")
        expect(logged!.n).toBe(13 + 1 + posted)
      } finally {
        await stopServer(server.proc)
      }
    }), 180_000)
})
