import { describe, expect, it } from "vitest"
import { connectSse } from "../../../test-support/SseClient.js"
import {
  expectOneLineFailure,
  herald,
  jsonOf,
  migrate,
  query,
  startServer,
  stopServer,
  tableRows,
  withDatabase
} from "./support/Cli.js"

/**
 * `herald tokens list|create|revoke` through the real bin against a real database: a user's
 * tokens without their secrets, a new one (shown once), revocation effective on a running server
 * within 1 s, and bad input.
 */

const db = (url: string) => ({ DATABASE_URL: url })

describe("herald tokens", () => {
  it(
    "create, list and revoke a user's tokens; a running server refuses a revoked token and ends its stream within 1 s",
    () =>
      withDatabase(async (url) => {
        await migrate(url)
        const user = jsonOf(await herald(["users", "create", "dana", "--json"], db(url)))
        const created = jsonOf(
          await herald(["tokens", "create", user.id, "--label", "ci", "--expires-in", "7d", "--json"], db(url))
        )
        expect(created).toEqual({
          id: expect.stringMatching(/^[0-9a-f-]{36}$/),
          token: expect.stringMatching(/^hrld_/),
          expiresAt: expect.any(String)
        })
        const days = (Date.parse(created.expiresAt) - Date.now()) / 86_400_000
        expect(days).toBeGreaterThan(6.9)
        expect(days).toBeLessThan(7.1)
        // The secret is stored only as a hash.
        expect(await query(url, "SELECT 1 FROM api_tokens WHERE token_hash::text LIKE $1", [`%${created.token}%`]))
          .toEqual([])

        const listed = jsonOf(await herald(["tokens", "list", user.id, "--json"], db(url)))
        expect(listed.items).toHaveLength(2)
        expect(listed.items.find((t: any) => t.id === created.id)).toEqual({
          id: created.id,
          label: "ci",
          createdAt: expect.any(String),
          lastUsedAt: null,
          expiresAt: created.expiresAt
        })
        expect(JSON.stringify(listed)).not.toMatch(/hrld_/)
        const table = await herald(["tokens", "list", user.id], db(url))
        expect(table.code).toBe(0)
        const rows = tableRows(table.stdout)
        expect(rows[0]).toEqual(["id", "label", "created", "last used", "expires"])
        expect(rows.find((r) => r[0] === created.id)?.[1]).toBe("ci")
        expect(table.stdout).not.toMatch(/hrld_/)

        const human = await herald(["tokens", "create", user.id], db(url))
        expect(human.code).toBe(0)
        expect(human.stdout).toMatch(/token:\s+hrld_\S+\s+\(shown once/)
        expect(human.stdout).toMatch(/expires: never/)

        const { proc, url: server } = await startServer({ DATABASE_URL: url })
        try {
          const me = await fetch(`${server}/api/me`, { headers: { authorization: `Bearer ${created.token}` } })
          expect(me.status).toBe(200)
          const sse = await connectSse(server, "/api/stream", { token: created.token })
          expect(sse.status).toBe(200)
          const revoked = await herald(["tokens", "revoke", created.id], db(url))
          expect(revoked.code).toBe(0)
          expect(revoked.stdout).toMatch(new RegExp(`revoked ${created.id}`))
          const at = Date.now()
          await Promise.race([
            sse.ended,
            new Promise((_, fail) => setTimeout(() => fail(new Error("stream not ended")), 1_000))
          ])
          const ms = Date.now() - at
          const after = await fetch(`${server}/api/me`, { headers: { authorization: `Bearer ${created.token}` } })
          expect(after.status).toBe(401)
          console.log(
            `herald tokens revoke → the running server ended the token's stream within ${ms} ms of the command's exit`
          )
        } finally {
          await stopServer(proc)
        }
        const left = jsonOf(await herald(["tokens", "list", user.id, "--json"], db(url)))
        expect(left.items.map((t: any) => t.id)).not.toContain(created.id)
        expect(left.items).toHaveLength(2)
      }),
    120_000
  )

  it("bad input: one clear line, a non-zero exit, nothing created", () =>
    withDatabase(async (url) => {
      await migrate(url)
      const user = jsonOf(await herald(["users", "create", "erin", "--json"], db(url)))
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, RegExp]> = [
        [["tokens", "list", "not-a-user"], /not a user id: "not-a-user"/],
        [["tokens", "list", "6f1c2d3e-0000-4000-8000-000000000000"], /no user has the id/],
        [["tokens", "create", "6f1c2d3e-0000-4000-8000-000000000000"], /no user has the id/],
        [["tokens", "create", user.id, "--expires-in", "soon"], /--expires-in must be a duration/],
        [["tokens", "create", user.id, "--expires-in", "10s"], /--expires-in must be between 1 minute and 3650 days/],
        [["tokens", "create", user.id, "--label", "x".repeat(201)], /label must be at most 200 characters/],
        [["tokens", "revoke", "nope"], /not a token id: "nope"/],
        [["tokens", "revoke", "6f1c2d3e-0000-4000-8000-000000000000"], /no live token has the id/]
      ]
      for (const [args, message] of cases) expectOneLineFailure(await herald(args, db(url)), message)
      const listed = jsonOf(await herald(["tokens", "list", user.id, "--json"], db(url)))
      expect(listed.items).toHaveLength(1)
      // Revoking twice: the second says there is no live token.
      const id = listed.items[0].id
      expect((await herald(["tokens", "revoke", id], db(url))).code).toBe(0)
      expectOneLineFailure(await herald(["tokens", "revoke", id], db(url)), /no live token has the id/)
    }), 120_000)
})
