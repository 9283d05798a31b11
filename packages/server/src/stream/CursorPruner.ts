import { Duration, Effect, Layer } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { supervised } from "../Supervised.js"
import { CursorStore, touchInterval } from "./CursorStore.js"

/** One round: the bases unused for the retention deleted, and said so when there were any. */
export const pruneOnce = (retention: Duration.Duration) =>
  Effect.gen(function*() {
    const deleted = yield* (yield* CursorStore).prune(retention)
    if (deleted > 0) {
      yield* Effect.logInfo(
        `cursor retention (${Duration.format(retention)}): deleted ${deleted} unused cursor base(s)`
      )
    }
  })

/**
 * `HERALD_CURSOR_RETENTION`, applied by the server itself: a supervised fiber in the server's
 * scope deletes the cursor bases unused that long, every tenth of the retention (at most hourly,
 * as often as a base's `last_used_at` may lag). Several servers may do it at once: a base is
 * deleted by whichever gets there first.
 */
export const CursorPrunerLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const { cursorRetention } = yield* AppConfig
    const store = yield* CursorStore
    yield* pruneOnce(cursorRetention).pipe(
      Effect.zipRight(Effect.sleep(touchInterval(cursorRetention))),
      Effect.forever,
      supervised({ message: (e) => `cursor base pruning paused: ${e.message}` }),
      Effect.provideService(CursorStore, store),
      Effect.forkScoped
    )
  })
)
