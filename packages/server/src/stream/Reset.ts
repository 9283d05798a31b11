import { Effect } from "effect"
import type { EventReader, Held } from "./EventReader.js"

/**
 * `event: reset` (SPEC §5, "Past retention, or ahead of the head"): a resume position the database
 * cannot continue from exactly — older than what `event_outbox ∪ event_log` still holds, or beyond
 * the stream's head (a client from before a restore) — is answered with a reset frame naming the
 * stream and `from`, then the stream goes on from `from`; the client reloads its state over HTTP.
 */

/** The reset frame; `id` makes a reconnect right after it continue from `from` (not reset again). */
export const resetFrame = (id: string, stream: string, from: number) =>
  `id: ${id}\nevent: reset\ndata: ${JSON.stringify({ stream, from })}\n\n`

/**
 * Where a stream whose resume position cannot be served goes on from: the oldest seq still held,
 * or — nothing held at all — the next seq to come (head + 1).
 */
const fromOf = (held: Held) => held.oldest ?? held.head + 1

/**
 * The resets of these resume positions (stream → the last seq the client has): stream → `from`
 * for each that cannot be served, none for the others. One statement reads every stream's head
 * and oldest held seq; a position ahead of the head is only judged once the writes in flight on
 * that stream have committed (EventReader.settledHead), so a seq the client got from a commit this
 * snapshot does not show yet is not taken for one from before a restore. One stream per wait,
 * each its own statement: no lock is held while waiting for another (no deadlock with a writer).
 */
export const resets = (reader: EventReader, positions: ReadonlyArray<readonly [string, number]>) =>
  Effect.gen(function*() {
    const found = new Map<string, number>()
    if (positions.length === 0) return found
    const held = yield* reader.held([...new Set(positions.map(([stream]) => stream))])
    for (const [stream, position] of positions) {
      const h = held.get(stream) ?? { head: 0, oldest: undefined }
      if (position > h.head) {
        const head = yield* reader.settledHead(stream)
        // Still ahead: what was held before the wait is held still (a commit meanwhile only adds after it).
        if (position > head) found.set(stream, fromOf(h))
      } else if (position + 1 < fromOf(h)) {
        // Past retention: the events just after the position are no longer held.
        found.set(stream, fromOf(h))
      }
    }
    return found
  })
