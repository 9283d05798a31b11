import { Duration, Effect, Layer } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { Wakeup } from "../outbox/Wakeup.js"
import { supervised } from "../Supervised.js"
import { type Batch, EventLogStore } from "./EventLogStore.js"
import { schemaGuard } from "./SchemaGuard.js"

/**
 * One materializer pass: copy every outbox row waiting at the start of the pass into event_log
 * (and its hourly rollups, in the same statement), then — if nothing at or below that point is
 * left — move the `asOf` watermark to the pass's start. An in-flight transaction's row that
 * commits later sits above the pass (or is caught by the `remaining` check), so the watermark
 * never runs ahead of a slow or in-flight transaction.
 */
export const materializeOnce = <E = never>(
  batchSize: number,
  onBatch: (copied: number) => Effect.Effect<void> = () => Effect.void,
  /** Run before each batch; its failure ends the pass (the server's: SchemaGuard). */
  beforeBatch: Effect.Effect<void, E> = Effect.void
) =>
  Effect.gen(function*() {
    const store = yield* EventLogStore
    const { at, upTo } = yield* store.passStart
    if (upTo === null) {
      yield* store.advance(at)
      return 0
    }
    let copied = 0
    let after = 0
    let tolerateCopies = false
    while (true) {
      yield* beforeBatch
      const batch: Batch = yield* store.materializeBatch(after, upTo, batchSize, tolerateCopies)
      tolerateCopies = batch.tolerated
      copied += batch.copied
      yield* onBatch(batch.copied)
      // A short batch, or none: the rest up to `upTo` is taken (or held by another materializer,
      // which `remaining` below sees).
      if (batch.last === null || batch.copied < batchSize) break
      after = batch.last
    }
    if (!(yield* store.remaining(upTo))) yield* store.advance(at)
    return copied
  })

const COALESCE = Duration.millis(50)

/**
 * Rows copied per statement by the background materializer. Live, a pass copies what arrived since
 * the last one (a few rows to a few hundred); this bounds a backlog's statements: 5 000 rows are
 * ~0.15 s of row locks, which the publisher's claims skip meanwhile (docs/benchmarks.md,
 * "analytics": 0.82× a single `INSERT … SELECT` before the rollups, against 0.75× at 1 000; the
 * rollups cost ~6 % more, and 8 000 rows a batch no longer fit `work_mem`).
 */
export const MATERIALIZE_BATCH = 5_000

/**
 * The materializer: a supervised fiber in the server's scope, woken like the publisher (after a
 * local commit, coalesced) with the fallback poll for other processes' rows. Several may run at
 * once (SKIP LOCKED); a database outage pauses it with backoff.
 */
export const MaterializerLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const wakeup = yield* Wakeup
    const signals = yield* wakeup.subscribe
    const guard = yield* schemaGuard
    const loop = Effect.gen(function*() {
      while (true) {
        yield* signals.drain
        yield* materializeOnce(MATERIALIZE_BATCH, undefined, guard)
        yield* Effect.race(signals.take, Effect.sleep(Duration.millis(config.pollIntervalMs)))
        // Freshness is not latency-critical: let a burst of commits gather into one pass.
        yield* Effect.sleep(COALESCE)
      }
    })
    yield* loop.pipe(
      supervised({ message: (e) => `materializer paused: ${e.message}` }),
      Effect.forkScoped
    )
  })
)
