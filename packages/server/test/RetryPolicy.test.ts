import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import {
  Clock,
  ConfigProvider,
  Duration,
  Effect,
  FastCheck,
  Fiber,
  Layer,
  Option,
  Random,
  Schedule,
  TestClock
} from "effect"
import { ChatService } from "../src/chat/ChatService.js"
import { asUser } from "../src/chat/Policy.js"
import { AppConfig } from "../src/config/AppConfig.js"
import { publishOnce } from "../src/outbox/OutboxPublisher.js"
import { OutboxStore } from "../src/outbox/OutboxStore.js"
import { nextRetryDelay, retrySchedule } from "../src/outbox/RetryPolicy.js"
import { newUser } from "./support/ChatHarness.js"
import {
  deliveryRows,
  publisherServerLayer,
  RecordingBroker,
  untilAllDue,
  withoutLogs
} from "./support/PublisherHarness.js"

/** The delay after the `failures`-th failure, in ms, with the jitter drawn from `seed`. */
const delayMs = (options: { baseMs: number; maxMs: number; maxAttempts?: number }, failures: number, seed: number) =>
  nextRetryDelay(retrySchedule(options.baseMs, options.maxMs), failures, options.maxAttempts ?? 1_000).pipe(
    Effect.map(Option.map(Duration.toMillis)),
    Effect.withRandom(Random.make(seed))
  )

const within = (ms: number, low: number, high: number) => {
  expect(ms).toBeGreaterThanOrEqual(low - 1e-9)
  expect(ms).toBeLessThanOrEqual(high + 1e-9)
}

describe("retry policy", () => {
  it.effect.prop(
    "the wait after the n-th failure is base·2^(n−1), jittered within 0.8–1.2×, and longer than the one before",
    [FastCheck.integer(), FastCheck.integer({ min: 1, max: 15 })],
    ([seed, n]) =>
      Effect.gen(function*() {
        const options = { baseMs: 100, maxMs: 1e12 }
        const nominal = 100 * 2 ** (n - 1)
        const delay = Option.getOrThrow(yield* delayMs(options, n, seed))
        within(delay, 0.8 * nominal, 1.2 * nominal)
        // Growth (×2) outruns jitter (±20 %): whatever the draws, backing off never shortens the wait.
        const next = Option.getOrThrow(yield* delayMs(options, n + 1, seed ^ 0x5bd1e995))
        expect(next).toBeGreaterThan(delay)
      })
  )

  it.effect("the jitter really spreads retries: failures at the same moment do not all retry at the same moment", () =>
    Effect.gen(function*() {
      const first = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, seed) => seed),
        (seed) => Effect.map(delayMs({ baseMs: 100, maxMs: 1e12 }, 1, seed), Option.getOrThrow)
      )
      expect(new Set(first).size).toBeGreaterThan(50)
      expect(first.some((ms) => ms < 95)).toBe(true)
      expect(first.some((ms) => ms > 105)).toBe(true)
    }))

  it.effect.prop(
    "no wait exceeds the cap, and once the nominal delay passes it the wait is the cap",
    [FastCheck.integer(), FastCheck.integer({ min: 1, max: 60 })],
    ([seed, n]) =>
      Effect.gen(function*() {
        const delay = Option.getOrThrow(yield* delayMs({ baseMs: 100, maxMs: 1_000 }, n, seed))
        expect(delay).toBeLessThanOrEqual(1_000)
        // 100·2^4 = 1600, jittered ≥ 1280 > 1000: from the 5th failure on the wait is exactly the cap.
        if (n >= 5) expect(delay).toBe(1_000)
        else within(delay, 0.8 * 100 * 2 ** (n - 1), 1.2 * 100 * 2 ** (n - 1))
      })
  )

  it.effect("after maxAttempts failures there is no next attempt (the row becomes dead)", () =>
    Effect.gen(function*() {
      const options = { baseMs: 100, maxMs: 1_000, maxAttempts: 3 }
      expect(Option.isSome(yield* delayMs(options, 1, 1))).toBe(true)
      expect(Option.isSome(yield* delayMs(options, 2, 1))).toBe(true)
      expect(yield* delayMs(options, 3, 1)).toEqual(Option.none())
      expect(yield* delayMs(options, 4, 1)).toEqual(Option.none())
      // One attempt allowed: the first failure is final.
      expect(yield* delayMs({ ...options, maxAttempts: 1 }, 1, 1)).toEqual(Option.none())
    }))

  it.effect("slept on (TestClock), the schedule waits exactly the delays nextRetryDelay reads off it", () =>
    Effect.gen(function*() {
      const seed = 20240601
      const schedule = retrySchedule(100, 1_000)
      const attemptsAt: Array<number> = []
      const attempt = Effect.flatMap(Clock.currentTimeMillis, (t) => {
        attemptsAt.push(t)
        return Effect.fail("broker down")
      })
      const fiber = yield* attempt.pipe(
        Effect.retry(Schedule.intersect(schedule, Schedule.recurs(7))),
        Effect.withRandom(Random.make(seed)),
        Effect.fork
      )
      yield* TestClock.adjust("1 minute")
      expect(yield* Effect.flip(Fiber.join(fiber))).toBe("broker down")
      expect(attemptsAt).toHaveLength(8)

      const waits = attemptsAt.slice(1).map((t, i) => t - attemptsAt[i]!)
      const nominal = [100, 200, 400, 800, 1_000, 1_000, 1_000]
      waits.forEach((w, i) => i < 4 ? within(w, 0.8 * nominal[i]!, 1.2 * nominal[i]!) : expect(w).toBeCloseTo(1_000, 6))
      // The publisher never sleeps on the schedule; it steps it per row. Both readings must agree.
      for (let n = 1; n <= 7; n++) {
        expect(waits[n - 1]).toBeCloseTo(Option.getOrThrow(yield* delayMs({ baseMs: 100, maxMs: 1_000 }, n, seed)), 6)
      }
    }))
})

/** AppConfig read from environment variables, as the server reads it at start-up. */
const configFromEnv = (env: Record<string, string>) =>
  AppConfig.layer.pipe(Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))))

describe("retry policy in the publisher", () => {
  it.live(
    "with HERALD_PUBLISH_MAX_ATTEMPTS=3 a failing broker backs rows off, then kills them; an operator retry gets them published",
    () =>
      Effect.gen(function*() {
        const config = yield* AppConfig
        expect(config.publishMaxAttempts).toBe(3)
        const chat = yield* ChatService
        const store = yield* OutboxStore
        const broker = yield* RecordingBroker
        const sql = yield* SqlClient.SqlClient
        const alice = yield* newUser("alice")
        const project = yield* chat.createProject("unlucky").pipe(asUser(alice))
        yield* chat.postMessage(project.id, { body: "hello?" }).pipe(asUser(alice))
        const ids = (yield* deliveryRows).map((r) => r.id)
        expect(ids).toHaveLength(2)

        yield* broker.failWith(Option.some("broker unreachable"))
        const publish = publishOnce("publisher-1").pipe(
          Effect.map((r) => r.claimed),
          Effect.provide(broker.layerAs("publisher-1"))
        )
        const dbNow = Effect.map(sql<{ now: Date }>`SELECT clock_timestamp() AS now`, ([r]) => r!.now.getTime())
        const nextAttemptAt = Effect.map(
          sql<{ id: string; nextAttemptAt: Date }>`SELECT id, next_attempt_at FROM event_outbox`,
          (rows) => rows.map((r) => r.nextAttemptAt.getTime())
        )

        for (const [failure, nominal] of [[1, 400], [2, 800]] as const) {
          yield* untilAllDue
          const before = yield* dbNow
          expect(yield* publish).toBe(2)
          const after = yield* dbNow
          for (const row of yield* deliveryRows) {
            expect(row).toMatchObject({
              status: "pending",
              attempts: failure,
              claimedBy: null,
              lastError: "broker unreachable"
            })
          }
          const retryAt = yield* nextAttemptAt
          for (const at of retryAt) {
            expect(at - before).toBeGreaterThanOrEqual(0.8 * nominal - 1)
            expect(at - after).toBeLessThanOrEqual(1.2 * nominal + 1)
          }
          // Jitter: rows that failed together do not all come back at the same instant.
          expect(new Set(retryAt).size).toBe(retryAt.length)
          // Backing off: until then (≥ 320 ms, wide enough for a loaded machine) a publisher finds
          // nothing due and does not call the broker.
          const calls = yield* broker.failedCalls
          expect(yield* publish).toBe(0)
          expect(yield* broker.failedCalls).toBe(calls)
        }

        yield* untilAllDue
        expect(yield* publish).toBe(2)
        for (const row of yield* deliveryRows) {
          expect(row).toMatchObject({ status: "dead", attempts: 3, claimedBy: null, lastError: "broker unreachable" })
        }
        // Dead rows are kept and left alone: however long one waits, nothing more is attempted.
        yield* Effect.sleep("600 millis")
        expect(yield* publish).toBe(0)
        expect(yield* broker.failedCalls).toBe(3)
        expect(yield* broker.deliveries).toEqual([])

        // The operator retries them once the broker is back.
        yield* broker.failWith(Option.none())
        expect([...(yield* store.retryDead(ids))].sort()).toEqual([...ids].sort())
        for (const row of yield* deliveryRows) expect(row).toMatchObject({ status: "pending", attempts: 0 })
        expect(yield* publish).toBe(2)
        for (const row of yield* deliveryRows) {
          expect(row).toMatchObject({ status: "published", attempts: 1, claimedBy: null, lastError: null })
        }
        const deliveries = yield* broker.deliveries
        expect(deliveries).toHaveLength(1)
        expect(deliveries[0]!.by).toBe("publisher-1")
        expect(deliveries[0]!.events.map((e) => [e.stream, e.seq, e.type])).toEqual([
          [`project:${project.id}`, 1, "project.created"],
          [`project:${project.id}`, 2, "message.created"]
        ])
      }).pipe(
        Effect.provide(publisherServerLayer({
          appConfig: configFromEnv({
            HERALD_PUBLISH_MAX_ATTEMPTS: "3",
            HERALD_PUBLISH_BACKOFF_BASE_MS: "400",
            HERALD_PUBLISH_BACKOFF_MAX_MS: "4000"
          })
        })),
        withoutLogs
      )
  )
})
