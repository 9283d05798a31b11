import { randomUUID } from "node:crypto"
import { describe, expect, it } from "vitest"
import {
  expectOneLineFailure,
  expectSuccess,
  herald,
  heraldAll,
  jsonOf,
  migrate,
  query,
  withDatabase
} from "./support/Cli.js"

/**
 * `herald cursors prune [--older-than <duration>]` through the real bin against a real database:
 * it deletes the cursor bases of `GET /api/stream` unused for that long (by default
 * `HERALD_CURSOR_RETENTION`, 30d), says how many, and refuses bad input without touching a row.
 */

const db = (url: string) => ({ DATABASE_URL: url })

/** Cursor bases of a fresh user, each last used `ago` (a PostgreSQL interval). */
const bases = async (url: string, ages: ReadonlyArray<string>) => {
  const [user] = await query<{ id: string }>(
    url,
    "INSERT INTO users (id, name) VALUES ($1, 'cursors') RETURNING id",
    [randomUUID()]
  )
  const ids: Array<string> = []
  for (const [i, ago] of ages.entries()) {
    const id = randomUUID()
    await query(
      url,
      `INSERT INTO stream_cursors (id, user_id, key, positions, digest, last_used_at)
       VALUES ($1, $2, 'k', $3::jsonb, $4, now() - $5::interval)`,
      [id, user!.id, JSON.stringify([[`project:${randomUUID()}`, i, null]]), `digest-${i}`, ago]
    )
    ids.push(id)
  }
  return ids
}

const remaining = async (url: string) =>
  new Set((await query<{ id: string }>(url, "SELECT id FROM stream_cursors")).map((r) => r.id))

describe.concurrent("herald cursors prune", () => {
  it(
    "deletes the bases unused for longer than --older-than, or than HERALD_CURSOR_RETENTION (default 30d); says how many",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        const [, , d29, h3, m1] = await bases(url, ["40 days", "31 days", "29 days", "3 hours", "1 minute"])

        // The default: 30 days.
        const byDefault = expectSuccess(await herald(["cursors", "prune"], db(url)))
        expect(byDefault.stdout.trim()).toBe("deleted 2 cursor base(s) unused for 30d")
        expect(await remaining(url)).toEqual(new Set([d29, h3, m1]))

        // HERALD_CURSOR_RETENTION is the default when set.
        const byConfig = jsonOf(
          await herald(["cursors", "prune", "--json"], {
            ...db(url),
            HERALD_CURSOR_RETENTION: "1d"
          })
        )
        expect(byConfig).toEqual({ olderThan: "1d", deleted: 1 })
        expect(await remaining(url)).toEqual(new Set([h3, m1]))

        // --older-than wins, in any of the CLI's duration spellings.
        const byFlag = jsonOf(await herald(["cursors", "prune", "--older-than", "2h", "--json"], db(url)))
        expect(byFlag).toEqual({ olderThan: "2h", deleted: 1 })
        expect(await remaining(url)).toEqual(new Set([m1]))

        // Nothing that old: zero, not an error.
        const none = expectSuccess(await herald(["cursors", "prune", "--older-than", "7 days"], db(url)))
        expect(none.stdout.trim()).toBe("deleted 0 cursor base(s) unused for 7d")
        expect(await remaining(url)).toEqual(new Set([m1]))
      }),
    120_000
  )

  it(
    "bad input: one clear line on stderr, a non-zero exit, nothing deleted",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        await bases(url, ["40 days", "1 minute"])
        const cases: Array<[ReadonlyArray<string>, Record<string, string>, RegExp]> = [
          [["cursors", "prune", "--older-than", "banana"], {}, /^herald: not a duration: "banana"/],
          [["cursors", "prune", "--older-than", "-5d"], {}, /^herald: a duration cannot be negative/],
          [["cursors", "prune", "--older-than", "0s"], {}, /^herald: --older-than must be greater than 0/],
          [["cursors", "prune", "--older-than", "0"], {}, /^herald: not a duration: "0"/],
          [
            ["cursors", "prune"],
            { HERALD_CURSOR_RETENTION: "whenever" },
            /^Invalid configuration: HERALD_CURSOR_RETENTION: /
          ]
        ]
        const results = await heraldAll(cases.map(([args, env]) => [args, { ...db(url), ...env }] as const))
        results.forEach((r, i) => expectOneLineFailure(r, cases[i]![2]))
        expect((await remaining(url)).size).toBe(2)

        const usage = await herald(["cursors", "prune", "--older-than"], db(url))
        expect(usage.code).not.toBe(0)
        expect((await remaining(url)).size).toBe(2)
      }),
    120_000
  )
})
