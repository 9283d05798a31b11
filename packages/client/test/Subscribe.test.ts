/**
 * `@herald/client` against the compiled server on real PostgreSQL, through its Promise face as an
 * application uses it: `subscribe` delivers every event once, in order per stream, across cut
 * connections and server restarts; a restore reaches `onReset`; an expired stream ticket and an
 * expired cursor are got over by themselves; a revoked token ends the subscription.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { createClient, type HeraldPromiseClient } from "@herald/client"
import type { Events, Signals } from "@herald/domain"
import { Effect, Exit, FastCheck, Scope } from "effect"
import pg from "pg"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { type Herald, startHerald, until, within } from "./support/Herald.js"

/** Everything a subscription told its handlers, in order. */
const recorder = () => {
  const events: Array<Events.EventWire> = []
  const log: Array<string> = []
  const heads: Array<Readonly<Record<string, number>>> = []
  const resets: Array<{ stream: string; from: number }> = []
  const signals: Array<Signals.PresenceFrame | Signals.TypingFrame | Signals.DraftFrame> = []
  const statuses: Array<string> = []
  const errors: Array<{ status: number; message: string }> = []
  return {
    events,
    log,
    heads,
    resets,
    signals,
    statuses,
    errors,
    /** The events of `stream`, as `seq`s. */
    seqs: (stream: string) => events.filter((e) => e.stream === stream).map((e) => e.seq),
    handlers: {
      onEvent: (e: Events.EventWire) => {
        events.push(e)
        log.push(`${e.stream}#${e.seq}`)
      },
      onHeads: (h: { readonly streams: Readonly<Record<string, number>> }) => {
        heads.push(h.streams)
        log.push("heads")
      },
      onReset: (r: { readonly stream: string; readonly from: number }) => {
        resets.push(r)
        log.push(`reset:${r.stream}:${r.from}`)
      },
      onPresence: (f: Signals.PresenceFrame) => signals.push(f),
      onTyping: (f: Signals.TypingFrame) => signals.push(f),
      onDraft: (f: Signals.DraftFrame) => signals.push(f),
      onStatus: (s: string) => statuses.push(s),
      onError: (e: { status: number; message: string }) => errors.push(e)
    }
  }
}

const projectStream = (projectId: string) => `project:${projectId}`
const workspaceStream = (projectId: string, userId: string) => `workspace:${projectId}:${userId}`

/** The stream's events after `after`, from the server's history (event_log, which trails a moment). */
const history = async (
  herald: HeraldPromiseClient,
  projectId: string,
  stream: "project" | "workspace",
  after: number
) => {
  const page = await herald.history[stream]({ path: { projectId: projectId as never }, urlParams: { after } })
  return page.items.map((e) => ({ id: e.id, seq: e.seq }))
}

let scope: Scope.CloseableScope
let databaseUrl: string
let server: Herald
let sql: pg.Client

beforeAll(async () => {
  scope = Effect.runSync(Scope.make())
  databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
  server = await startHerald(databaseUrl, { HERALD_TICKET_TTL: "3s" })
  sql = new pg.Client({ connectionString: databaseUrl })
  await sql.connect()
})

afterAll(async () => {
  await sql?.end()
  await server?.stop()
  await Effect.runPromise(Scope.close(scope, Exit.void))
})

/** A user with a project, a client for them, and a subscription recorded from the start (after its heads). */
const subscribed = async (name: string, options: { cursor?: string } = {}) => {
  const user = await server.user(name)
  const herald = createClient({ baseUrl: server.baseUrl, token: user.token })
  const project = await herald.projects.create({ payload: { name: `${name}'s project` } })
  const seen = recorder()
  const sub = herald.subscribe(options, seen.handlers)
  await until("the subscription to be live", () => seen.statuses.includes("live") && seen.heads.length > 0)
  return { user, herald, projectId: project.id as string, seen, sub }
}

describe("subscribe, against a real server", () => {
  it("starts with heads, then every new event once, in order, with presence, typing and drafts as typed callbacks", async () => {
    const { herald, projectId, seen, sub, user } = await subscribed("ada")
    const stream = projectStream(projectId)
    expect(seen.heads[0]).toEqual({ [stream]: 1, [workspaceStream(projectId, user.id)]: 0 })
    expect(seen.statuses.slice(0, 2)).toEqual(["connecting", "live"])

    for (let i = 1; i <= 5; i++) {
      await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: `m${i}` } })
    }
    await herald.signals.putDraft({
      path: { projectId: projectId as never, draftId: "d1" as never },
      payload: { body: "half a reply", role: "worker" }
    })
    await until("five events", () => seen.events.length >= 5)
    expect(seen.seqs(stream)).toEqual([2, 3, 4, 5, 6])
    expect(seen.events.map((e) => (e.data as { body?: string }).body)).toEqual(["m1", "m2", "m3", "m4", "m5"])
    await until("the draft", () => seen.signals.some((s) => "draftId" in s && "body" in s && s.body === "half a reply"))
    // The caller is present in their own project (the presence snapshot of the connection).
    expect(seen.signals).toContainEqual(
      expect.objectContaining({ stream, users: [expect.objectContaining({ userId: user.id })] })
    )
    sub.close()
    await until("closed", () => seen.statuses.at(-1) === "closed")
  })

  it("a later session resumes from `sub.cursor` with exactly the events it missed", async () => {
    const { herald, projectId, seen, sub } = await subscribed("bea")
    const stream = projectStream(projectId)
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "seen" } })
    await until("the first event", () => seen.events.length === 1)
    const cursor = sub.cursor
    expect(cursor).toEqual(expect.any(String))
    sub.close()
    for (let i = 0; i < 3; i++) {
      await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: `missed ${i}` } })
    }

    const later = recorder()
    const again = herald.subscribe({ cursor }, later.handlers)
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "live" } })
    await until("the missed events and the live one", () => later.events.length >= 4)
    expect(later.heads).toEqual([]) // a resume, not a fresh start
    expect(later.seqs(stream)).toEqual([3, 4, 5, 6])
    again.close()
  })

  it("random posts, cut connections and server restarts: every event once, in seq order, none missing", async () => {
    const steps = FastCheck.array(
      FastCheck.oneof(
        FastCheck.record({ post: FastCheck.integer({ min: 1, max: 6 }), workspace: FastCheck.boolean() }),
        FastCheck.constant({ cut: true } as const),
        FastCheck.constant({ restart: true } as const)
      ),
      { minLength: 2, maxLength: 7 }
    )
    await FastCheck.assert(
      FastCheck.asyncProperty(steps, async (steps) => {
        const { projectId, seen, sub, user } = await subscribed(`prop-${Math.random().toString(36).slice(2, 8)}`)
        const streams = { project: projectStream(projectId), workspace: workspaceStream(projectId, user.id) }
        const heads = seen.heads[0]!
        // Posts go straight to the server while the proxy cuts or the server restarts: a post never waits for a stream.
        const direct = createClient({ baseUrl: server.serverUrl, token: user.token })
        const posted = { project: 0, workspace: 0 }
        for (const step of steps) {
          if ("post" in step) {
            for (let i = 0; i < step.post; i++) {
              const which = step.workspace ? "workspace" : "project"
              const body = `${which} ${++posted[which]}`
              await within(
                10_000,
                `a post (steps ${JSON.stringify(steps)})`,
                which === "workspace"
                  ? direct.workspace.post({ path: { projectId: projectId as never }, payload: { body } })
                  : direct.messages.post({ path: { projectId: projectId as never }, payload: { body } })
              )
            }
          } else if ("cut" in step) {
            server.cut()
          } else {
            await within(40_000, `a restart (steps ${JSON.stringify(steps)})`, server.restart())
          }
        }
        for (const which of ["project", "workspace"] as const) {
          const stream = streams[which]
          const head = heads[stream]!
          const expected = Array.from({ length: posted[which] }, (_, i) => head + 1 + i)
          await until(
            `${stream}: ${expected.length} events`,
            () => seen.seqs(stream).length >= expected.length,
            30_000,
            () => ({ got: seen.seqs(stream), expected, steps })
          )
          expect(seen.seqs(stream)).toEqual(expected)
          // And they are the events the server holds at those seqs (history trails the outbox by a moment).
          let held: Array<{ id: string; seq: number }> = []
          for (let tries = 0; held.length < expected.length && tries < 100; tries++) {
            held = await history(direct, projectId, which, head)
            if (held.length < expected.length) await new Promise((r) => setTimeout(r, 100))
          }
          expect(seen.events.filter((e) => e.stream === stream).map((e) => e.id)).toEqual(held.map((e) => e.id))
        }
        expect(seen.errors).toEqual([])
        sub.close()
      }),
      { numRuns: 4, endOnFailure: true }
    )
  }, 300_000)

  it("a stream ticket that expired while the connection was open: the reconnect gets a new one and resumes", async () => {
    const { herald, projectId, seen, sub } = await subscribed("cai")
    const stream = projectStream(projectId)
    // HERALD_TICKET_TTL is 3 s here: the ticket this connection was opened with is dead by now.
    await new Promise((r) => setTimeout(r, 3_500))
    server.cut()
    await herald.messages.post({
      path: { projectId: projectId as never },
      payload: { body: "after the ticket expired" }
    })
    await until("the event after the reconnect", () => seen.events.length === 1, 20_000, () => seen.statuses)
    expect(seen.seqs(stream)).toEqual([2])
    expect(seen.statuses).toEqual(["connecting", "live", "connecting", "live"])
    expect(seen.errors).toEqual([])
    sub.close()
  })

  it("after a database restore the stream is reset: onReset, then the stream again from the oldest seq held", async () => {
    const { herald, projectId, seen, sub, user } = await subscribed("dee")
    const stream = projectStream(projectId)
    for (let i = 1; i <= 4; i++) {
      await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: `before ${i}` } })
    }
    await until("four events", () => seen.events.length === 4)
    // The server stops; the database goes back to a backup taken at seq 3; the server starts again.
    await server.restart(async () => {
      await sql.query("BEGIN")
      await sql.query(
        `DELETE FROM messages WHERE id IN (SELECT (data->>'messageId')::uuid FROM event_outbox
         WHERE stream_id = $1 AND seq > 3 AND type = 'message.created')`,
        [stream]
      )
      await sql.query("DELETE FROM event_log WHERE stream_id = $1 AND seq > 3", [stream])
      await sql.query("DELETE FROM event_outbox WHERE stream_id = $1 AND seq > 3", [stream])
      await sql.query("UPDATE event_streams SET last_seq = 3 WHERE stream_id = $1", [stream])
      await sql.query("COMMIT")
    })
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "after the restore" } })
    const afterReset = () => seen.log.slice(Math.max(0, seen.log.indexOf(`reset:${stream}:1`)))
    await until(
      "the reset and the stream again",
      () => seen.resets.length > 0 && afterReset().includes(`${stream}#4`),
      20_000,
      () => seen.log
    )
    expect(seen.resets).toEqual([{ stream, from: 1 }])
    // What the client saw: the old 2–5, the reset, then 1–4 of the restored stream (4 the new post), each once.
    expect(afterReset().filter((f) => f.startsWith(stream) || f.startsWith("reset"))).toEqual([
      `reset:${stream}:1`,
      `${stream}#1`,
      `${stream}#2`,
      `${stream}#3`,
      `${stream}#4`
    ])
    expect(seen.events.at(-1)?.data).toMatchObject({ body: "after the restore" })
    // The workspace stream was not touched: no reset for it.
    expect(seen.resets.some((r) => r.stream === workspaceStream(projectId, user.id))).toBe(false)
    sub.close()
  })

  it("a cursor whose base expired (CursorExpired) starts over without it: onHeads again, no error", async () => {
    const { herald, projectId, seen, sub } = await subscribed("eve")
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "one" } })
    await until("the event", () => seen.events.length === 1)
    const cursor = sub.cursor
    sub.close()
    await sql.query("DELETE FROM stream_cursors")

    const later = recorder()
    const again = herald.subscribe({ cursor }, later.handlers)
    await until("a fresh start", () => later.heads.length === 1 && later.statuses.includes("live"), 20_000, () => later)
    expect(later.heads[0]![projectStream(projectId)]).toBe(2)
    expect(later.errors).toEqual([])
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "two" } })
    await until("the next event", () => later.events.length === 1)
    expect(later.seqs(projectStream(projectId))).toEqual([3])
    expect(again.cursor).not.toBe(cursor)
    again.close()
  })

  it("a cursor that expires while the subscription is away (restart) starts it over: the refusal is asked about with that cursor", async () => {
    const { herald, projectId, seen, sub } = await subscribed("gus")
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "one" } })
    await until("the event", () => seen.events.length === 1)
    await server.restart(async () => {
      await sql.query("DELETE FROM stream_cursors")
    })
    await until("a fresh start", () => seen.heads.length === 2, 20_000, () => seen)
    expect(seen.heads[1]![projectStream(projectId)]).toBe(2)
    await herald.messages.post({ path: { projectId: projectId as never }, payload: { body: "two" } })
    await until("the next event", () => seen.events.length === 2)
    expect(seen.seqs(projectStream(projectId))).toEqual([2, 3])
    expect(seen.errors).toEqual([])
    sub.close()
  })

  it("a revoked token ends the subscription: onError with the 401, then closed; no retrying forever", async () => {
    const { herald } = await subscribed("fay")
    const created = await herald.tokens.create({ payload: { label: "to revoke" } })
    const second = createClient({ baseUrl: server.baseUrl, token: created.token })
    const seen = recorder()
    second.subscribe({}, seen.handlers)
    await until("live", () => seen.statuses.includes("live"))
    await herald.tokens.revoke({ path: { tokenId: created.id } })
    await until("the subscription to end", () => seen.statuses.at(-1) === "closed", 20_000, () => seen)
    expect(seen.errors).toEqual([expect.objectContaining({ status: 401 })])
    // Calls with it are refused with the API's own error.
    await expect(second.me.me()).rejects.toMatchObject({ _tag: "Unauthorized" })
  })
})
