import type { Events } from "@herald/domain"
import { Effect, Queue, type Scope, type Tracer } from "effect"

/**
 * How long a handed-off event's outbox row is not due for claims: the publisher it was handed to
 * publishes and confirms it well within that, so no other publisher claims it meanwhile (a
 * duplicate). Should this process die first, any publisher claims the row once it is due.
 */
export const HAND_OFF_GRACE_MS = 2_000

/** Events waiting in the hand-off, past which new ones are left to the claims (a stuck publisher). */
const MAX_HANDED_OFF = 10_000

/** A committed event handed to the publisher, with the span of the request that wrote it (tracing on). */
export interface HandedOff {
  readonly event: Events.EventWire
  readonly parent: Tracer.AnySpan | undefined
}

/**
 * The in-process signal the request path gives after a successful commit: "there is new work".
 * The publisher and the materializer each subscribe; signals coalesce: a burst of commits wakes a
 * sleeping subscriber once. Each subscriber has its own one-slot queue: a signal while one is
 * pending there adds nothing. (A `PubSub.sliding(1)` shared by the subscribers is what this used to
 * be, and Effect 3's capacity-one PubSub lets a subscriber that lagged behind a slide take the
 * retained signal twice, so the other one never saw it: the publisher then slept until its fallback
 * poll. Effect-TS/effect#7601, fixed in 4.x only.)
 *
 * The hand-off: with the signal, the request path hands the committed event itself to this
 * process's publisher, which publishes it without claiming its row first (the row was written
 * not due for `HAND_OFF_GRACE_MS`) and then confirms it. It reaches no broker from here (G2): only
 * the publisher publishes.
 */
export class Wakeup extends Effect.Service<Wakeup>()("Herald/Wakeup", {
  effect: Effect.sync(() => {
    const subscribers = new Set<Queue.Queue<void>>()
    const handedOff: Array<HandedOff & { readonly at: number }> = []
    let takers = 0
    /** A commit arrived that was not handed off: the publisher should claim. */
    let claimWanted = false
    const wake = () => {
      for (const queue of subscribers) queue.unsafeOffer(undefined)
    }
    return {
      /** Wakes every subscriber; the publisher claims. */
      signal: Effect.sync(() => {
        claimWanted = true
        wake()
      }),
      /**
       * Wakes every subscriber and hands `event` (committed) to the publisher, if one takes
       * hand-offs; `parent`: the span of the request that wrote it, when tracing is on.
       */
      handOff: (event: Events.EventWire, parent?: Tracer.AnySpan) =>
        Effect.sync(() => {
          if (takers > 0 && handedOff.length < MAX_HANDED_OFF) handedOff.push({ event, parent, at: Date.now() })
          else claimWanted = true
          wake()
        }),
      /** How long the row of an event about to be written and handed off is not due for claims. */
      handOffGraceMs: Effect.sync(() => takers > 0 ? HAND_OFF_GRACE_MS : 0),
      /** A scoped subscription: `take` waits for the next signal after any already pending. */
      subscribe: Effect.acquireRelease(
        Effect.tap(Queue.dropping<void>(1), (queue) => Effect.sync(() => subscribers.add(queue))),
        (queue) => Effect.zipRight(Effect.sync(() => subscribers.delete(queue)), Queue.shutdown(queue))
      ).pipe(
        Effect.map((queue) => ({
          take: Queue.take(queue),
          drain: Queue.takeAll(queue).pipe(Effect.asVoid)
        }))
      ) satisfies Effect.Effect<unknown, never, Scope.Scope>,
      /** The publisher's side of the hand-off, while its scope lasts. */
      takeHandOffs: Effect.acquireRelease(
        Effect.sync(() => {
          takers++
        }),
        () =>
          Effect.sync(() => {
            takers--
          })
      ).pipe(Effect.as({
        /**
         * The events handed off since the last call, in the order they were handed — but none
         * older than half the grace (the publisher was away: their rows are the claims' now).
         */
        events: (): Array<HandedOff> => {
          const fresh = Date.now() - HAND_OFF_GRACE_MS / 2
          return handedOff.splice(0).filter((h) => h.at >= fresh)
        },
        /** Every event still waiting, stale or not (the publisher is stopping: they go back to the claims). */
        rest: () => handedOff.splice(0).map((h) => h.event),
        /** Whether a commit that was not handed off arrived since the last call. */
        claimWanted: () => {
          const wanted = claimWanted
          claimWanted = false
          return wanted
        }
      }))
    }
  })
}) {}
