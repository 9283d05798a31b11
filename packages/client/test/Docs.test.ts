/**
 * docs/client.md as a user reads it: its plain Node script run as it stands with `node` (the
 * library resolved by name, as any script in the workspace does) against the compiled server,
 * and its Effect example's calls through `HeraldClient.layer`.
 */
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createClient, HeraldClient } from "@herald/client"
import { Effect, Exit, Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { repoRoot, runProcess } from "../../../test-support/Process.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { type Herald, startHerald } from "./support/Herald.js"

const docs = path.join(repoRoot, "docs/client.md")

/** The first fenced block in `language` after `heading`. */
const blockAfter = async (heading: string, language: string) => {
  const text = await fs.readFile(docs, "utf8")
  const from = text.indexOf(heading)
  const match = text.slice(from).match(new RegExp("```" + language + "\\n([\\s\\S]*?)```"))
  if (from < 0 || match === null) throw new Error(`docs/client.md: no ${language} block after ${heading}`)
  return match[1]!
}

let scope: Scope.CloseableScope
let server: Herald
let user: { id: string; token: string }
let projectId: string

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  server = await startHerald(await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope)))
  user = await server.user("doc reader")
  const herald = createClient({ baseUrl: server.baseUrl, token: user.token })
  projectId = (await herald.projects.create({ payload: { name: "from the docs" } })).id
})

afterAll(async () => {
  await server?.stop()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

describe("docs/client.md", () => {
  it(
    "its plain Node script runs as written: heads, its own presence, its message as an event, then closed",
    async () => {
      const script = path.join(repoRoot, "packages/client", `.docs-example-${randomBytes(4).toString("hex")}.mjs`)
      await fs.writeFile(script, await blockAfter("## From a plain Node script", "js"))
      try {
        const { finished } = runProcess(process.execPath, [script], {
          HERALD_URL: server.baseUrl,
          HERALD_TOKEN: user.token
        })
        const result = await finished
        expect(result.stderr).toBe("")
        expect(result.code).toBe(0)
        expect(result.stdout).toContain("streams and their heads:")
        expect(result.stdout).toContain(`project:${projectId} #2 message.created hello from a plain Node script`)
        expect(result.stdout).toMatch(/presence \{[\s\S]*users/)
        expect(result.stdout).toMatch(/resume later from cursor [A-Za-z0-9_-]+/)
        expect(result.stdout.trim().split("\n").at(-1)).toBe("status: closed")
      } finally {
        await fs.rm(script, { force: true })
      }
    },
    60_000
  )

  it.live(
    "the Effect face: the typed API and a Stream of frames, as its example uses them",
    () =>
      Effect.gen(function*() {
        const herald = yield* HeraldClient
        const { items } = yield* herald.api.projects.list()
        expect(items.map((p) => p.id)).toContain(projectId)
        const frames = yield* herald.subscribe({ streams: [`project:${projectId}`] }).pipe(
          Stream.tap((frame) =>
            frame._tag === "Heads"
              ? herald.api.messages.post({ path: { projectId: projectId as never }, payload: { body: "from Effect" } })
              : Effect.void
          ),
          Stream.takeUntil((frame) => frame._tag === "Event"),
          Stream.runCollect
        )
        const tags = [...frames].map((f) => f._tag)
        expect(tags.slice(0, 3)).toEqual(["Status", "Status", "Heads"])
        const last = [...frames].at(-1)!
        expect(last._tag === "Event" && last.event.type === "message.created" && last.event.data.body).toBe(
          "from Effect"
        )
        // The decoded event beside its wire form: an instant, and the same instant as JSON text.
        expect(last._tag === "Event" && typeof last.envelope.occurredAt).toBe("string")
      }).pipe(
        Effect.provide(HeraldClient.layer({ baseUrl: server.baseUrl, token: Effect.sync(() => user.token) })),
        Effect.provide(FetchHttpClient.layer)
      ),
    30_000
  )
})
