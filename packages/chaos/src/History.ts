import { Effect } from "effect"
import { envelopeOf } from "./Envelope.js"
import { field, num, request } from "./Http.js"
import type { HistoryRecord, User } from "./Records.js"
import type { Rng } from "./Rng.js"
import { now, type Run } from "./Run.js"

/**
 * History readers: a member following a stream's history near its head page by page, with
 * `GET …/events?after=<seq>` and small random limits, through random nodes. `nextAfter` is the
 * next page's `after`; null means nothing more for now: the reader comes back later from the last
 * seq it got. Every page is recorded; the checker wants them contiguous (G6).
 */

export interface HistoryReader {
  readonly record: HistoryRecord
  readonly user: User
  /** The last seq read. */
  after: number
}

export const makeHistoryReader = (
  run: Run,
  name: string,
  user: User,
  projectId: string,
  scope: "project" | "workspace"
): HistoryReader => {
  const record: HistoryRecord = { name, user: user.index, projectId, scope, pages: [] }
  run.histories.push(record)
  return { record, user, after: 0 }
}

export const runHistoryReader = (run: Run, reader: HistoryReader, rng: Rng) =>
  Effect.gen(function*() {
    const { record, user } = reader
    const path = record.scope === "project"
      ? `/api/projects/${record.projectId}/events`
      : `/api/projects/${record.projectId}/workspace/events`
    for (;;) {
      const node = rng.pick(run.fleet.nodes)
      const after = reader.after
      const limit = rng.int(1, 20)
      const answer = yield* request(node.url, "GET", `${path}?after=${after}&limit=${limit}`, user.token)
      const items = answer.status === 200 ? field(answer.body, "items") : undefined
      const nextAfter = field(answer.body, "nextAfter")
      record.pages.push({
        at: now(run),
        node: node.name,
        after,
        status: answer.status,
        items: Array.isArray(items) ? items.flatMap((item) => envelopeOf(item) ?? []) : [],
        nextAfter: nextAfter === null ? null : num(nextAfter)
      })
      let more = false
      if (Array.isArray(items) && items.length > 0) {
        const last = num(field(items[items.length - 1], "seq"))
        if (last !== undefined && last > reader.after) reader.after = last
        more = nextAfter !== null
      }
      const calm = run.phase !== "run"
      yield* Effect.sleep(more ? (calm ? 20 : rng.int(50, 300)) : calm ? 200 : rng.int(50, 400))
    }
  })
