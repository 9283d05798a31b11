import { Effect } from "effect"
import * as fs from "node:fs/promises"
import type pg from "pg"
import { attempt, query, sleep } from "../support.js"

/**
 * SQL statements per post, counted by PostgreSQL itself: `log_statement = 'all'` for a moment
 * (ALTER SYSTEM + reload), `posts` sequential posts, and the statements the cluster logged
 * meanwhile — the request path's and the publisher's and materializer's reactions to each commit
 * alike — less what an idle window of the same length logs (the fallback polls). Before the
 * measured runs, so the logging costs them nothing.
 */

/**
 * How a statement was sent: a simple query, an unnamed extended-protocol statement (parsed and
 * planned for each execution) or a named prepared one (`execute <name>`).
 */
export type Protocol = "simple" | "unnamed" | "prepared"

export interface StatementCount {
  readonly perPost: number
  /** Statements logged per second with nothing posted. */
  readonly idlePerSecond: number
  /** The statements of the posting window by their start (whitespace folded), most frequent first. */
  readonly kinds: ReadonlyArray<readonly [string, number]>
  /** The posting window's statements by protocol (idle ones not subtracted). */
  readonly protocols: Readonly<Record<Protocol, number>>
}

// An entry starts with the default log_line_prefix, '%m [%p] ': "2026-12-01 10:00:00.000 UTC [123] ".
const ENTRY_START = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/m
const STATEMENT = /^\S+ \S+ \S+ \[\d+\] LOG:\s+(statement|execute [^:]*):\s*([\s\S]*)$/

const statementsSince = async (log: string, offset: number) => {
  const handle = await fs.open(log, "r")
  try {
    const { size } = await handle.stat()
    const buffer = Buffer.alloc(size - offset)
    await handle.read(buffer, 0, buffer.length, offset)
    const text = buffer.toString("utf8")
    const entries = text.split(new RegExp(`(?=${ENTRY_START.source})`, "m"))
    const statements: Array<{ readonly protocol: Protocol; readonly sql: string }> = []
    for (const e of entries) {
      const m = STATEMENT.exec(e.trimEnd())
      if (m === null) continue
      const protocol = m[1] === "statement" ? "simple" : m[1] === "execute <unnamed>" ? "unnamed" : "prepared"
      statements.push({ protocol, sql: m[2]!.replace(/\s+/g, " ").trim() })
    }
    return { statements, size }
  } finally {
    await handle.close()
  }
}

const logSize = (log: string) => fs.stat(log).then((s) => s.size)

/** What a statement is, for the tally: its first words, up to the first table named. */
const kindOf = (sql: string) => {
  const m = /^(.*?\b(?:INTO|FROM|UPDATE|JOIN)\s+[\w."]+)/i.exec(sql)
  const head = m === null ? sql : m[1]!
  return head.length > 70 ? `${head.slice(0, 67)}…` : head
}

export const countStatements = (options: {
  readonly client: pg.Client
  readonly log: string
  readonly posts: number
  readonly post: (i: number) => Promise<unknown>
}) =>
  Effect.gen(function*() {
    const { client, log } = options
    yield* query(client, "log_statement on", "ALTER SYSTEM SET log_statement = 'all'")
    yield* query(client, "log_statement on", "SELECT pg_reload_conf()")
    return yield* attempt("counting statements per post", async () => {
      await sleep(500)
      // Idle window.
      const idleStart = await logSize(log)
      const idleMs = 1_000
      await sleep(idleMs)
      const idle = await statementsSince(log, idleStart)
      // Posting window, then time for the publisher and the materializer to react to the last.
      const started = performance.now()
      for (let i = 0; i < options.posts; i++) await options.post(i)
      await sleep(300)
      const windowMs = performance.now() - started
      const busy = await statementsSince(log, idle.size)
      const idlePerSecond = (idle.statements.length * 1000) / idleMs
      const tally = new Map<string, number>()
      const protocols = { simple: 0, unnamed: 0, prepared: 0 }
      for (const s of busy.statements) {
        tally.set(kindOf(s.sql), (tally.get(kindOf(s.sql)) ?? 0) + 1)
        protocols[s.protocol]++
      }
      return {
        perPost: (busy.statements.length - (idlePerSecond * windowMs) / 1000) / options.posts,
        idlePerSecond,
        kinds: [...tally].sort((a, b) => b[1] - a[1]),
        protocols
      } satisfies StatementCount
    })
  }).pipe(
    Effect.ensuring(Effect.ignore(Effect.zipRight(
      query(options.client, "log_statement off", "ALTER SYSTEM RESET log_statement"),
      query(options.client, "log_statement off", "SELECT pg_reload_conf()")
    )))
  )
