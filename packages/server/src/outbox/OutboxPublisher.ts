import { Duration, Effect, Exit, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { BrokerPublisher } from "../broker/BrokerPublisher.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../observability/Metrics.js"
import { supervised } from "../Supervised.js"
import { type ClaimedEvent, OutboxStore } from "./OutboxStore.js"
import { PublisherStatus } from "./PublisherStatus.js"
import { nextRetryDelay, retrySchedule } from "./RetryPolicy.js"
import { Wakeup } from "./Wakeup.js"

/** Identifies this publisher in `claimed_by`, so an operator can tell who holds a lease. */
export const makePublisherId = () => `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`

/**
 * One pass of the publisher: claim a batch of due rows (leased), publish it outside any
 * transaction, then confirm. A failed publish schedules each row's next attempt from the retry
 * Schedule, or marks it dead. If the pass is interrupted (shutdown) before it confirmed, the
 * claim is released so another publisher takes the rows at once. Returns the batch size and,
 * after a failure, when the earliest retry is due.
 */
export const publishOnce = (publisherId: string) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const store = yield* OutboxStore
    const broker = yield* BrokerPublisher
    const metrics = yield* Metrics
    const schedule = retrySchedule(config.publishBackoffBaseMs, config.publishBackoffMaxMs)

    const deliver = (batch: ReadonlyArray<ClaimedEvent>) =>
      Effect.gen(function*() {
        const ids = batch.map((e) => e.envelope.id)
        const published = yield* Effect.either(broker.publish(batch.map((e) => e.envelope)))
        if (published._tag === "Right") {
          const latencies = yield* store.markPublished(publisherId, ids)
          metrics.published.inc(latencies.length)
          for (const ms of latencies) metrics.commitToPublish.observe(ms / 1000)
          return
        }
        const decisions = yield* Effect.forEach(batch, (e) =>
          Effect.map(nextRetryDelay(schedule, e.attempts + 1, config.publishMaxAttempts), (delay) => ({
            id: e.envelope.id,
            delayMs: Option.match(delay, { onNone: () => null, onSome: Duration.toMillis })
          })))
        metrics.publishFailures.inc(batch.length)
        yield* store.markFailed(publisherId, decisions, published.left.message)
        yield* Effect.logWarning(`publish of ${batch.length} events failed: ${published.left.message}`)
        const delays = decisions.flatMap((d) =>
          d.delayMs === null ? [] : [d.delayMs]
        )
        return delays.length === 0 ? undefined : Math.min(...delays)
      })

    return yield* Effect.acquireUseRelease(
      store.claim({ publisherId, batchSize: config.publishBatchSize, leaseMs: config.claimLeaseMs }),
      (batch) =>
        batch.length === 0
          ? Effect.succeed({ claimed: 0, retryInMs: undefined })
          : Effect.map(deliver(batch), (retryInMs) => ({ claimed: batch.length, retryInMs })),
      (batch, exit) =>
        Exit.isInterrupted(exit)
          ? Effect.ignore(store.release(publisherId, batch.map((e) => e.envelope.id)))
          : Effect.void
    )
  })

/**
 * The outbox publisher: a supervised fiber in the server's scope. It drains the outbox while
 * batches come back full; otherwise it sleeps until the in-process wake-up (a local commit), its
 * own next due retry, or the fallback poll (other processes' rows, expired leases).
 * A database outage pauses it with backoff; it resumes by itself.
 */
export const OutboxPublisherLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const wakeup = yield* Wakeup
    const status = yield* PublisherStatus
    const publisherId = makePublisherId()
    const signals = yield* wakeup.subscribe

    // Sleeps until a local commit, this publisher's own earliest retry, or the fallback poll
    // (which also finds other processes' rows, their retries and expired leases).
    const idle = (retryAt: number | undefined) =>
      Effect.gen(function*() {
        const wait = Math.min(config.pollIntervalMs, retryAt === undefined ? Infinity : retryAt - Date.now())
        if (wait > 0) yield* Effect.race(signals.take, Effect.sleep(Duration.millis(wait)))
      })

    const loop = Effect.gen(function*() {
      yield* status.set({ _tag: "Running" })
      let retryAt: number | undefined
      while (true) {
        yield* signals.drain
        const { claimed, retryInMs } = yield* publishOnce(publisherId)
        if (retryInMs !== undefined) retryAt = Math.min(retryAt ?? Infinity, Date.now() + retryInMs)
        if (retryAt !== undefined && retryAt <= Date.now()) retryAt = undefined
        // A full batch means there may be more: claim again at once. Otherwise wait for news.
        if (claimed < config.publishBatchSize) yield* idle(retryAt)
      }
    })

    yield* loop.pipe(
      supervised({
        message: (e) => `publisher paused: ${e.message}`,
        onFailure: (e) => status.set({ _tag: "BackingOff", error: e.message })
      }),
      Effect.ensuring(status.set({ _tag: "Stopped" })),
      Effect.forkScoped
    )
    yield* Effect.logInfo(`outbox publisher ${publisherId} started`)
  })
)
