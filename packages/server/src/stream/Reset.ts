import { Effect } from "effect"
import type { EventReader } from "./EventReader.js"
import { type Position, tagOf } from "./Position.js"

/**
 * `event: reset` (SPEC §5, "Past retention, ahead of the head, or diverged"): a resume position the
 * database cannot continue from exactly — older than what `event_outbox ∪ event_log` still holds,
 * beyond the stream's head (a client from before a restore), or whose event is no longer the one at
 * its seq (G9) — is answered with a reset frame naming the
 * stream and `from`, then the stream goes on from `from`; the client reloads its state over HTTP.
 */

/** The reset frame; `id` makes a reconnect right after it continue from `from` (not reset again). */
export const resetFrame = (id: string, stream: string, from: number) =>
  `id: ${id}\nevent: reset\ndata: ${JSON.stringify({ stream, from })}\n\n`

/**
 * The resets of these resume positions (stream → where the client is): stream → `from` for each
 * that cannot be served, none for the others. `from` is the oldest seq `event_outbox ∪ event_log`
 * still holds, or — nothing held at all — the next seq to come (head + 1).
 *
 * A position cannot be served when it is ahead of the head (a client from before a restore), when
 * the events just after it are no longer held (past retention), or when its tag names another event
 * than the one held at its seq now (G9: a restore or a failover lost commits and new events took
 * those seqs). A position without a tag, or whose event is no longer held, cannot be checked that way.
 *
 * One statement reads every stream's head, the outbox's oldest seq for a position behind it, and
 * the id at a tagged position: a position at the head, or whose next event the outbox still holds,
 * is an ordinary resume, and that is all an ordinary resume costs. Only the others ask both tables
 * for the oldest held seq. A position ahead of the head is only judged once the writes in flight on
 * that stream have committed (EventReader.settledHead): a seq whose commit this snapshot did not see
 * yet is not taken for one from before a restore. One stream per wait, each its own statement, so no
 * lock is held while waiting for another.
 */
export const resets = (reader: EventReader, positions: ReadonlyArray<readonly [string, Position]>) =>
  Effect.gen(function*() {
    const found = new Map<string, number>()
    if (positions.length === 0) return found
    const outbox = yield* reader.outboxHeld(positions)
    // Tagged positions within the head whose event the outbox no longer has: is it in the log?
    const logged = yield* reader.logIdsAt(positions.flatMap(([stream, { seq, tag }]) => {
      const held = outbox.get(stream)
      return tag !== undefined && held !== undefined && held.idAt === undefined && seq > 0 && seq <= held.head
        ? [[stream, seq] as const]
        : []
    }))
    const candidates: Array<readonly [string, number, number, boolean]> = []
    for (const [stream, { seq: position, tag }] of positions) {
      const held = outbox.get(stream) ?? { head: 0, oldest: undefined, idAt: undefined }
      let head = held.head
      let idAt = held.idAt ?? logged.get(stream)
      if (position > head) {
        head = yield* reader.settledHead(stream)
        if (position > head) {
          candidates.push([stream, position, head, false])
          continue
        }
        // Just committed: the event the client saw, or one that took its seq.
        if (tag !== undefined) idAt = yield* reader.idAt(stream, position)
      }
      const diverged = tag !== undefined && idAt !== undefined && tagOf(idAt) !== tag
      if (!diverged && (position >= head || (held.oldest !== undefined && held.oldest <= position + 1))) {
        continue // the next event is held (or there is none yet): an ordinary resume
      }
      candidates.push([stream, position, head, diverged])
    }
    const oldest = yield* reader.oldestHeld(candidates.map(([stream]) => stream))
    for (const [stream, position, head, diverged] of candidates) {
      const from = oldest.get(stream) ?? head + 1
      // Diverged, ahead of the head, or past retention: the events just after the position are not the client's.
      if (diverged || position > head || position + 1 < from) found.set(stream, from)
    }
    return found
  })
