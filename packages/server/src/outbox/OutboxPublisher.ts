import { Duration, Effect, Exit, Layer, Option, Schedule } from "effect"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { BrokerPublisher } from "../broker/BrokerPublisher.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../http/Metrics.js"
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
 * claim is released so another publisher takes the rows at once. Returns the batch size.
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
      })

    return yield* Effect.acquireUseRelease(
      store.claim({ publisherId, batchSize: config.publishBatchSize, leaseMs: config.claimLeaseMs }),
      (batch) => batch.length === 0 ? Effect.succeed(0) : Effect.as(deliver(batch), batch.length),
      (batch, exit) =>
        Exit.isInterrupted(exit) ? Effect.ignore(store.release(publisherId, batch.map((e) => e.envelope.id))) : Effect.void
    )
  })

/**
 * The outbox publisher: a supervised fiber in the server's scope. It drains the outbox while
 * there is work; when there is none it sleeps until the in-process wake-up (a local commit), the
 * next due retry, or the fallback poll (other processes' rows, expired leases), whichever is first.
 * A database outage pauses it with backoff; it resumes by itself.
 */
export const OutboxPublisherLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const store = yield* OutboxStore
    const wakeup = yield* Wakeup
    const status = yield* PublisherStatus
    const publisherId = makePublisherId()
    const signals = yield* wakeup.subscribe

    const idle = Effect.gen(function*() {
      const due = yield* store.nextDueInMs
      const wait = Math.max(0, Math.min(config.pollIntervalMs, due ?? Infinity))
      if (wait > 0) yield* Effect.race(signals.take, Effect.sleep(Duration.millis(wait)))
    })

    const loop = Effect.gen(function*() {
      yield* status.set({ _tag: "Running" })
      while (true) {
        yield* signals.drain
        const n = yield* publishOnce(publisherId)
        if (n === 0) yield* idle
      }
    })

    yield* loop.pipe(
      Effect.tapError((e) => Effect.zipRight(
        status.set({ _tag: "BackingOff", error: e.message }),
        Effect.logWarning(`publisher paused: ${e.message}`)
      )),
      Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))),
      Effect.ensuring(status.set({ _tag: "Stopped" })),
      Effect.forkScoped
    )
    yield* Effect.logInfo(`outbox publisher ${publisherId} started`)
  })
)
