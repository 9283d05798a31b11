import { describe, expect, it } from "vitest"
import {
  expectOneLineFailure,
  expectSuccess,
  herald,
  heraldAll,
  jsonOf,
  markDead,
  markPublished,
  query,
  seedChat,
  tableRows,
  withDatabase
} from "./support/Cli.js"

/**
 * `herald eventlog partitions` and `herald eventlog drop`, through the real bin against a real
 * database: what the catalog holds, what retention by hand drops, and bad input.
 */

const db = (url: string) => ({ DATABASE_URL: url })
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/
const DAY = 86_400_000
/** Non-TTY progress lines (stderr) of `materialize`. */
const progressLine = /^materialize: \d+\/\d+ \(\d+\/s\)$/

/** The first instant of the UTC month `offset` months from the current one. */
const month = (offset: number) => {
  const now = new Date()
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + offset, 1))
}
const partitionOf = (d: Date) => `event_log_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, "0")}`

/**
 * The seeded chat with its history spread back in time: events 0–2 five months ago, 3–5 two
 * months ago, the rest now; materialized by `herald materialize` (which creates the old months'
 * partitions). Event 1 is pending and event 2 dead (both materialized), event 4 is pending and
 * not yet materialized; the others are published.
 */
const history = async (url: string) => {
  const s = await seedChat(url)
  const ids = s.eventIds
  await query(
    url,
    "UPDATE event_outbox SET occurred_at = occurred_at - interval '5 months' WHERE id = ANY($1::uuid[])",
    [
      ids.slice(0, 3)
    ]
  )
  await query(
    url,
    "UPDATE event_outbox SET occurred_at = occurred_at - interval '2 months' WHERE id = ANY($1::uuid[])",
    [
      ids.slice(3, 6)
    ]
  )
  const delivered = ids.filter((_, i) => i !== 1 && i !== 2 && i !== 4)
  await markPublished(url, delivered)
  await markDead(url, [ids[2]!], "broker unreachable")
  const materialized = jsonOf(await herald(["materialize", "--json"], db(url)), { allowStderr: progressLine })
  expect(materialized.materialized).toBe(13)
  // Event 4 waits: as if it had not been copied yet (the materializer would copy it later).
  await query(url, "DELETE FROM event_log WHERE id = $1", [ids[4]])
  await query(url, "UPDATE event_outbox SET materialized_at = NULL WHERE id = $1", [ids[4]])
  return s
}

const monthOf = async (url: string, id: string) => {
  const [row] = await query<{ at: Date }>(url, "SELECT occurred_at AS at FROM event_outbox WHERE id = $1", [id])
  return new Date(Date.UTC(row!.at.getUTCFullYear(), row!.at.getUTCMonth(), 1))
}

describe.concurrent("herald eventlog", () => {
  it(
    "partitions lists every month's partition with its range, rows and size (table and --json); drop --dry-run drops nothing; drop drops whole old months and says heldFrom",
    () =>
      withDatabase(async (url) => {
        const s = await history(url)
        const ids = s.eventIds
        const [fiveAgo, twoAgo] = [await monthOf(url, ids[0]!), await monthOf(url, ids[3]!)]
        const logRows = async () =>
          (await query<{ id: string }>(url, "SELECT id FROM event_log")).map((r) => r.id).sort()
        const outboxBefore = await query(url, "SELECT * FROM event_outbox ORDER BY position")

        const [listed, listedTable] = await heraldAll([
          [["eventlog", "partitions", "--json"], db(url)],
          [["eventlog", "partitions"], db(url)]
        ])
        const before = jsonOf(listed)
        expect(before.heldFrom).toBe(null)
        const names = before.partitions.map((p: any) => p.name)
        // Every month from the oldest event's through next month: `materialize` created the old
        // events' months (and those between), the migration this month and the next.
        const months: Array<Date> = []
        for (let m = fiveAgo; m <= month(1); m = new Date(Date.UTC(m.getUTCFullYear(), m.getUTCMonth() + 1, 1))) {
          months.push(m)
        }
        expect(months.length).toBeGreaterThanOrEqual(6)
        expect(names).toEqual(months.map(partitionOf))
        const byName = new Map(before.partitions.map((p: any) => [p.name, p]))
        expect(byName.get(partitionOf(fiveAgo))).toMatchObject({
          from: fiveAgo.toISOString(),
          to: new Date(Date.UTC(fiveAgo.getUTCFullYear(), fiveAgo.getUTCMonth() + 1, 1)).toISOString(),
          rows: 3
        })
        expect((byName.get(partitionOf(twoAgo)) as any).rows).toBe(2) // event 4 is not materialized
        expect((byName.get(partitionOf(month(0))) as any).rows).toBe(7)
        expect(before.partitions.reduce((n: number, p: any) => n + p.rows, 0)).toBe(12)
        for (const p of before.partitions) {
          expect(Object.keys(p).sort()).toEqual(["bytes", "from", "name", "rows", "to"])
          expect(p.from).toMatch(ISO)
          expect(p.to).toMatch(ISO)
          expect(p.bytes).toBeGreaterThan(0)
        }
        // The same as a table, then where the log is held from.
        expectSuccess(listedTable)
        const [head, ...rows] = tableRows(listedTable.stdout)
        expect(head).toEqual(["partition", "from", "to", "rows", "size"])
        expect(rows.map((r) => [r[0], r[1], r[2], Number(r[3])])).toEqual(
          before.partitions.map((p: any) => [p.name, p.from, p.to, p.rows])
        )
        for (const r of rows) expect(r[4]).toMatch(/^\d+(\.\d)? (B|kB|MB)$/)
        expect(listedTable.stdout.trim().split("\n").at(-1)).toBe(
          "held from: the beginning (no partition was ever dropped)"
        )

        // 40 days: the month of five months ago is wholly older; the month of two months ago is
        // wholly older only if it ended 40 days ago — computed from the bounds, as the command does.
        const olderThan = 40 * DAY
        const wanted = before.partitions.filter((p: any) => Date.parse(p.to) <= Date.now() - olderThan)
        expect(wanted.map((p: any) => p.name)).toContain(partitionOf(fiveAgo))
        const dry = jsonOf(await herald(["eventlog", "drop", "--older-than", "40d", "--dry-run", "--json"], db(url)))
        expect(dry).toMatchObject({ olderThan: "40d", dryRun: true, heldFrom: null })
        expect(Math.abs(Date.parse(dry.cutoff) - (Date.now() - olderThan))).toBeLessThan(30_000)
        expect(dry.dropped).toEqual(wanted)
        expect(jsonOf(await herald(["eventlog", "partitions", "--json"], db(url)))).toEqual(before)

        const dropped = expectSuccess(await herald(["eventlog", "drop", "--older-than", "40d"], db(url)))
        const lines = dropped.stdout.trim().split("\n")
        expect(lines[0]).toMatch(
          new RegExp(`^dropped ${wanted.length} partition\\(s\\) wholly older than 40d \\(ending by \\d{4}-.*Z\\):$`)
        )
        expect(tableRows(dropped.stdout).slice(1).map((r) => r[0])).toEqual(wanted.map((p: any) => p.name))
        const heldFrom = wanted.at(-1).to
        expect(lines.at(-1)).toBe(`held from: ${heldFrom} (retention dropped the months before)`)

        const after = jsonOf(await herald(["eventlog", "partitions", "--json"], db(url)))
        expect(after.heldFrom).toBe(heldFrom)
        expect(after.partitions).toEqual(
          before.partitions.filter((p: any) => !wanted.includes(p)).map((p: any) => ({
            ...p,
            bytes: expect.any(Number)
          }))
        )
        // event_log lost exactly the dropped months' rows; the outbox lost nothing (pending, dead,
        // unmaterialized and published rows alike), and `outbox show` still finds the old events.
        const gone = new Set(
          ids.filter((_, i) => i < 3 || (i < 6 && wanted.some((p: any) => p.name === partitionOf(twoAgo))))
        )
        expect(await logRows()).toEqual(ids.filter((id, i) => !gone.has(id) && i !== 4).sort())
        expect(await query(url, "SELECT * FROM event_outbox ORDER BY position")).toEqual(outboxBefore)
        const shown = jsonOf(await herald(["outbox", "show", ids[2]!, "--json"], db(url)))
        expect(shown.delivery.status).toBe("dead")

        // Again: nothing more to drop, the floor stays.
        const again = jsonOf(await herald(["eventlog", "drop", "--older-than", "40d", "--json"], db(url)))
        expect(again).toMatchObject({ dryRun: false, dropped: [], heldFrom })
        const quiet = expectSuccess(await herald(["eventlog", "drop", "--older-than", "400d"], db(url)))
        expect(quiet.stdout.trim().split("\n")).toEqual([
          expect.stringMatching(/^no partition wholly older than 400d \(ending by \d{4}-.*Z\)$/),
          `held from: ${heldFrom} (retention dropped the months before)`
        ])
      }),
    120_000
  )

  it(
    "bad input: one clear line on stderr, a non-zero exit, nothing dropped",
    () =>
      withDatabase(async (url) => {
        await history(url)
        const partitions = () =>
          query(
            url,
            "SELECT inhrelid::regclass::text AS name FROM pg_inherits WHERE inhparent = 'event_log'::regclass ORDER BY 1"
          )
        const before = await partitions()
        const cases: Array<[ReadonlyArray<string>, RegExp]> = [
          [["eventlog", "drop", "--older-than", "banana"], /^herald: not a duration: "banana"/],
          [["eventlog", "drop", "--older-than", "-5d"], /^herald: a duration cannot be negative: "-5d"$/],
          [["eventlog", "drop", "--older-than", "0d", "--dry-run"], /^herald: --older-than must be greater than 0/],
          [["eventlog", "drop", "--older-than", "0ms"], /^herald: --older-than must be greater than 0/],
          [["eventlog", "drop", "--dry-run"], /older-than/],
          [["eventlog", "drop", "--older-than"], /older-than/],
          [["eventlog", "partitions", "--bogus"], /--bogus/],
          [["eventlog", "prune"], /Invalid subcommand/]
        ]
        const results = await heraldAll(cases.map(([args]) => [args, db(url)] as const))
        results.forEach((r, i) => expectOneLineFailure(r, cases[i]![1]))
        expect(await partitions()).toEqual(before)
      }),
    120_000
  )

  it(
    "an unmigrated database: one line naming the problem",
    () =>
      withDatabase(async (url) => {
        const [listed, dropped] = await heraldAll([
          [["eventlog", "partitions"], db(url)],
          [["eventlog", "drop", "--older-than", "90d"], db(url)]
        ])
        expectOneLineFailure(listed, /migrat|event_log|does not exist/i)
        expectOneLineFailure(dropped, /migrat|does not exist/i)
      }),
    120_000
  )

  it("help lists both commands and their options", async () => {
    const [root, drop] = await heraldAll([[["--help"], {}], [["eventlog", "drop", "--help"], {}]])
    expectSuccess(root!)
    expect(root!.stdout).toContain("eventlog partitions")
    expect(root!.stdout).toContain("eventlog drop")
    expectSuccess(drop!)
    expect(drop!.stdout).toMatch(/^\$ herald eventlog drop \[--json\] --older-than text \[--dry-run\]$/m)
    expect(drop!.stdout).toContain("wholly older")
  }, 120_000)
})
