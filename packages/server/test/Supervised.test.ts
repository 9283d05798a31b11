import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref, TestClock } from "effect"
import { supervised } from "../src/Supervised.js"

/**
 * The restart schedule of every long-running loop (the publisher, the materializer, the SSE hub's
 * broker subscription): backoff within an outage, and back to a quick restart after a healthy spell.
 */
describe("supervised loops", () => {
  it.effect("restart after 100, 200, 400 ms within an outage, and after 100 ms again once the loop ran 30 s without failing", () =>
    Effect.gen(function*() {
      const starts = yield* Ref.make<Array<number>>([])
      const now = Effect.map(TestClock.currentTimeMillis, (t) => t)
      // Fails at once three times (an outage), then runs a minute (healthy) and fails again, twice.
      const loop = Effect.gen(function*() {
        const t = yield* now
        const n = (yield* Ref.get(starts)).length
        yield* Ref.update(starts, (s) => [...s, t])
        if (n === 3) yield* Effect.sleep("60 seconds")
        if (n < 5) return yield* Effect.fail(new Error("down"))
        return yield* Effect.never
      })
      yield* loop.pipe(supervised({ message: (e) => e.message }), Effect.fork)
      for (let i = 0; i < 20; i++) yield* TestClock.adjust("50 millis")
      yield* TestClock.adjust("60 seconds")
      for (let i = 0; i < 20; i++) yield* TestClock.adjust("50 millis")
      const at = yield* Ref.get(starts)
      const gaps = at.slice(1).map((t, i) => t - at[i]!)
      expect(gaps.slice(0, 3)).toEqual([100, 200, 400])
      // After the healthy minute: the next restart is quick again, not 800 ms.
      expect(gaps[3]! - 60_000).toBe(100)
      expect(at).toHaveLength(6)
    }))
})
