/**
 * A node on an older build, already running when a newer build's migration lands (issue 23,
 * upgrades). The start-up check (`SchemaTooNew`) cannot stop it: it keeps serving, and must not
 * go on copying events with its own idea of what materializing means. Here the "newer migration"
 * adds a rollup the old build does not keep (events per stream and day, backfilled) with its row
 * 0099 in `herald_migrations`; posts continue on the old node. A newer build's analytics would read
 * that rollup: it must never hold less than event_log does, and the old node must say why it
 * stopped. The posts are not lost: they wait in the outbox for a newer build's materializer.
 */
import { describe, expect, it } from "@effect/vitest"
import pg from "pg"
import { api, pollUntil, startServerNode, stopServerNodes } from "../../../test-support/Process.js"
import { withFreshDatabase } from "../../../test-support/TestDatabase.js"

const ADMIN = "old-node-admin"

const query = async (url: string, text: string) => {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(text)).rows
  } finally {
    await client.end()
  }
}

const counts = async (url: string) =>
  (await query(
    url,
    `SELECT (SELECT count(*)::int FROM event_log) AS logged,
            (SELECT count(*)::int FROM event_outbox WHERE materialized_at IS NULL) AS waiting,
            (SELECT coalesce(sum(n), 0)::int FROM event_log_daily) AS daily`
  ))[0] as { logged: number; waiting: number; daily: number }

describe("a node older than a migration that lands while it runs", () => {
  it("stops materializing and says so; a newer build's rollup never holds less than event_log", async () => {
    await withFreshDatabase(async (url) => {
      const node = await startServerNode({ DATABASE_URL: url, HERALD_ADMIN_TOKEN: ADMIN })
      try {
        const user = await api(node.url, "POST", "/api/admin/users", ADMIN, { name: "ana" })
        const token = user.body.token as string
        const project = await api(node.url, "POST", "/api/projects", token, { name: "upgrade" })
        const post = (body: string) =>
          api(node.url, "POST", `/api/projects/${project.body.id}/messages`, token, { body })
        for (const i of [1, 2, 3]) expect((await post(`before ${i}`)).status).toBe(201)
        await pollUntil("the first posts materialized", async () => {
          const [row] = await query(url, `SELECT count(*)::int AS n FROM event_log`)
          return row.n === 4 ? { done: true } : { seen: row }
        }, 10_000)

        // The newer build's migration, as its runner applies it: in one transaction with its row.
        await query(
          url,
          `BEGIN;
           CREATE TABLE event_log_daily AS
             SELECT stream_id, date_trunc('day', occurred_at, 'UTC') AS day, count(*) AS n FROM event_log GROUP BY 1, 2;
           INSERT INTO herald_migrations (migration_id, name) VALUES (99, 'daily_rollups');
           COMMIT`
        )
        expect(await counts(url)).toEqual({ logged: 4, waiting: 0, daily: 4 })

        // Posts continue on the old node: it answers them, and copies none of them.
        for (const i of [1, 2, 3, 4, 5]) expect((await post(`after ${i}`)).status).toBe(201)
        // Past a few of its passes (it is woken by each post, and polls every second).
        await new Promise((r) => setTimeout(r, 2_500))
        expect(await counts(url)).toEqual({ logged: 4, waiting: 5, daily: 4 })
        await pollUntil(
          "the old node to say it stopped materializing",
          async () =>
            /materializer stopped: the database's schema is at migration 0099_daily_rollups, newer than this build knows/
                .test(node.proc.output())
              ? { done: true }
              : { seen: node.proc.output().slice(-400) },
          10_000
        )
      } finally {
        await stopServerNodes([node])
      }
    })
  }, 90_000)
})
