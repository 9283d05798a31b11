import type { SqlError } from "@effect/sql"
import { Duration, Effect, Exit, Fiber, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { BrokerPublisher } from "../broker/BrokerPublisher.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../observability/Metrics.js"
import { parentOf, publishSpans } from "../observability/Tracing.js"
import { supervised } from "../Supervised.js"
import { type ClaimedEvent, OutboxStore } from "./OutboxStore.js"
import { PublisherStatus } from "./PublisherStatus.js"
import { nextRetryDelay, retrySchedule } from "./RetryPolicy.js"
import { type HandedOff, Wakeup } from "./Wakeup.js"

/** Identifies this publisher in `claimed_by`, so an operator can tell who holds a lease. */
export const makePublisherId = () => `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`

/** What a pass claimed and, when its publish succeeded, the confirmation still to run. */
export interface Pass {
  readonly claimed: number
  /** After a failure: when the earliest retry is due. */
  readonly retryInMs: number | undefined
  /** Marks the published batch `published` (only rows this publisher still holds). */
  readonly confirm: Effect.Effect<void, SqlError.SqlError> | undefined
}

/**
 * One pass of the publisher up to its confirmation: claim a batch of due rows (leased), publish it
 * outside any transaction; a failed publish schedules each row's next attempt from the retry
 * Schedule, or marks it dead. If the pass is interrupted (shutdown) before the publish returned,
 * the claim is released so another publisher takes the rows at once. A successful publish returns
 * its confirmation to run: the loop runs it while it claims and publishes the next batch.
 */
export const claimAndPublish = (publisherId: string) =>
  Effect.gen(function*() {
    const config = yield* AppConfig
    const store = yield* OutboxStore
    const broker = yield* BrokerPublisher
    const metrics = yield* Metrics
    const schedule = retrySchedule(config.publishBackoffBaseMs, config.publishBackoffMaxMs)
    const traced = Option.isSome(config.tracing)

    const deliver = (batch: ReadonlyArray<ClaimedEvent>) =>
      Effect.gen(function*() {
        const ids = batch.map((e) => e.envelope.id)
        const events = batch.map((e) => e.envelope)
        const publish = traced
          ? publishSpans(
            events,
            batch.map((e) => parentOf(e.traceContext)),
            config.broker,
            "claim",
            (traceparents) => broker.publish(events, traceparents)
          )
          : broker.publish(events)
        const published = yield* Effect.either(publish)
        if (published._tag === "Right") {
          const confirm = Effect.map(store.markPublished(publisherId, ids), (latencies) => {
            metrics.published.inc(latencies.length)
            for (const ms of latencies) metrics.commitToPublish.observe(ms / 1000)
          })
          return { claimed: batch.length, retryInMs: undefined, confirm } satisfies Pass
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
        return {
          claimed: batch.length,
          retryInMs: delays.length === 0 ? undefined : Math.min(...delays),
          confirm: undefined
        } satisfies Pass
      })

    return yield* Effect.acquireUseRelease(
      store.claim({
        publisherId,
        batchSize: config.publishBatchSize,
        leaseMs: config.claimLeaseMs,
        traceContext: traced
      }),
      (batch): Effect.Effect<Pass, SqlError.SqlError> =>
        batch.length === 0 ? Effect.succeed({ claimed: 0, retryInMs: undefined, confirm: undefined }) : deliver(batch),
      (batch, exit) =>
        Exit.isInterrupted(exit)
          ? Effect.ignore(store.release(publisherId, batch.map((e) => e.envelope.id)))
          : Effect.void
    )
  })

/**
 * One whole pass: claim, publish, confirm. Returns the batch size and, after a failure, when the
 * earliest retry is due.
 */
export const publishOnce = (publisherId: string) =>
  Effect.gen(function*() {
    const { claimed, confirm, retryInMs } = yield* claimAndPublish(publisherId)
    if (confirm !== undefined) yield* confirm
    return { claimed, retryInMs }
  })

/**
 * The outbox publisher: a supervised fiber in the server's scope. It publishes what this
 * process's commits hand it (Wakeup) as they come, and claims — draining the outbox while batches
 * come back full, confirming each batch while it claims and publishes the next — when the clock
 * says so: its own next due retry, or the fallback poll (other processes' rows, expired leases,
 * anything not handed off). A database outage pauses it with backoff; it resumes by itself.
 */
export const OutboxPublisherLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const config = yield* AppConfig
    const wakeup = yield* Wakeup
    const status = yield* PublisherStatus
    const store = yield* OutboxStore
    const broker = yield* BrokerPublisher
    const metrics = yield* Metrics
    const publisherId = makePublisherId()
    const signals = yield* wakeup.subscribe
    const handOffs = yield* wakeup.takeHandOffs
    const traced = Option.isSome(config.tracing)

    // Sleeps until a local commit, this publisher's own earliest retry, or the fallback poll
    // (which also finds other processes' rows, their retries and expired leases). True when it
    // was the clock that woke it: then it claims.
    const idle = (retryAt: number | undefined) =>
      Effect.suspend(() => {
        const wait = Math.min(config.pollIntervalMs, retryAt === undefined ? Infinity : retryAt - Date.now())
        return wait > 0
          ? Effect.race(Effect.as(signals.take, false), Effect.as(Effect.sleep(Duration.millis(wait)), true))
          : Effect.succeed(true)
      })

    // The confirmation of the batch published last, running while the loop claims and publishes
    // the next one (or sleeps): a mark never delays the next claim, and at most one is in flight
    // (the next pass waits for it, and a failed one fails the loop there). It is never interrupted
    // half-way; the loop waits for it when it stops.
    let confirming: Fiber.RuntimeFiber<void, SqlError.SqlError> | undefined
    const settle = Effect.suspend(() => {
      const fiber = confirming
      confirming = undefined
      return fiber === undefined ? Effect.void : Fiber.join(fiber)
    })
    const confirmLater = (confirm: Effect.Effect<void, SqlError.SqlError>) =>
      Effect.flatMap(Effect.forkDaemon(Effect.uninterruptible(confirm)), (fiber) =>
        Effect.sync(() => {
          confirming = fiber
        }))

    /**
     * Events this process committed, handed over after their commit (Wakeup): published at once,
     * in stream and seq order within the batch, without a claim — their rows are not due for
     * claims meanwhile — then confirmed. A failed publish makes the rows due now, for the claims.
     */
    const publishHandedOff = (handed: ReadonlyArray<HandedOff>) =>
      Effect.gen(function*() {
        const sorted = [...handed].sort((a, b) =>
          a.event.stream < b.event.stream ? -1 : a.event.stream > b.event.stream ? 1 : a.event.seq - b.event.seq
        )
        const batch = sorted.map((h) => h.event)
        const ids = batch.map((e) => e.id)
        const publish = traced
          ? publishSpans(
            batch,
            sorted.map((h) => h.parent),
            config.broker,
            "hand-off",
            (traceparents) => broker.publish(batch, traceparents)
          )
          : broker.publish(batch)
        // Interrupted (shutdown) before the publish returned: the rows are due at once, as a claim's would be.
        const published = yield* Effect.either(publish).pipe(
          Effect.onInterrupt(() => Effect.ignore(store.releaseHandedOff(ids)))
        )
        yield* settle
        if (published._tag === "Right") {
          yield* confirmLater(Effect.map(store.markHandedOff(ids), (latencies) => {
            metrics.published.inc(latencies.length)
            for (const ms of latencies) metrics.commitToPublish.observe(ms / 1000)
          }))
          return true
        }
        metrics.publishFailures.inc(batch.length)
        yield* Effect.logWarning(`publish of ${batch.length} events failed: ${published.left.message}`)
        yield* store.releaseHandedOff(ids)
        return false
      })

    const loop = Effect.gen(function*() {
      yield* status.set({ _tag: "Running" })
      let retryAt: number | undefined
      let claimNow = true
      while (true) {
        yield* signals.drain
        const handed = handOffs.events()
        if (handed.length > 0 && !(yield* publishHandedOff(handed))) claimNow = true
        if (handOffs.claimWanted()) claimNow = true
        let full = false
        if (claimNow) {
          const { claimed, confirm, retryInMs } = yield* claimAndPublish(publisherId)
          yield* settle
          if (confirm !== undefined) yield* confirmLater(confirm)
          if (retryInMs !== undefined) retryAt = Math.min(retryAt ?? Infinity, Date.now() + retryInMs)
          full = claimed >= config.publishBatchSize
        }
        if (retryAt !== undefined && retryAt <= Date.now()) retryAt = undefined
        // A full batch means there may be more: claim again at once. Otherwise wait for news:
        // hand-offs are published as they come; the clock (poll, retry) and unhanded commits claim.
        claimNow = full || (yield* idle(retryAt))
      }
    }).pipe(
      // Stopping (or failing, to be restarted): the confirmation in flight is waited for, and what is
      // still waiting in the hand-off goes back to the claims, due at once (G8: released, not left).
      Effect.onExit(() =>
        Effect.ignore(Effect.zipRight(
          settle,
          Effect.suspend(() => {
            const rest = handOffs.rest()
            return rest.length === 0 ? Effect.void : store.releaseHandedOff(rest.map((e) => e.id))
          })
        ))
      )
    )

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
