import { Effect } from "effect"
import type { EventReader } from "./EventReader.js"

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
 * The resets of these resume positions (stream → the last seq the client has): stream → `from`
 * for each that cannot be served, none for the others. `from` is the oldest seq `event_outbox ∪
 * event_log` still holds, or — nothing held at all — the next seq to come (head + 1).
 *
 * One statement reads every stream's head and, for a position behind it, the outbox's oldest seq:
 * a position at the head, or whose next event the outbox still holds, is an ordinary resume, and
 * that is all an ordinary resume costs (no `event_log` read). Only the others — the outbox no
 * longer has the next event, or the position is ahead — ask both tables for the oldest held seq. A
 * position ahead of the head is only judged once the writes in flight on that stream have
 * committed (EventReader.settledHead): a seq whose commit this snapshot did not see yet is not
 * taken for one from before a restore. One stream per wait, each its own statement, so no lock is
 * held while waiting for another.
 */
export const resets = (reader: EventReader, positions: ReadonlyArray<readonly [string, number]>) =>
  Effect.gen(function*() {
    const found = new Map<string, number>()
    if (positions.length === 0) return found
    const outbox = yield* reader.outboxHeld(positions)
    const candidates: Array<readonly [string, number, number]> = []
    for (const [stream, position] of positions) {
      const held = outbox.get(stream) ?? { head: 0, oldest: undefined }
      let head = held.head
      if (position > head) {
        head = yield* reader.settledHead(stream)
        if (position <= head) continue
      } else if (position === head || (held.oldest !== undefined && held.oldest <= position + 1)) {
        continue // the next event is held (or there is none yet): an ordinary resume
      }
      candidates.push([stream, position, head])
    }
    const oldest = yield* reader.oldestHeld(candidates.map(([stream]) => stream))
    for (const [stream, position, head] of candidates) {
      const from = oldest.get(stream) ?? head + 1
      // Ahead of the head, or past retention: the events just after the position are not held.
      if (position > head || position + 1 < from) found.set(stream, from)
    }
    return found
  })
