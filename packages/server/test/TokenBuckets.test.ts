/**
 * The token buckets behind the rate limits (limits/TokenBuckets.ts), on their own: burst = 2 s
 * worth, refill at the rate, Retry-After in whole seconds — and memory that follows the busy keys,
 * never every key there ever was.
 */
import { describe, expect, it } from "@effect/vitest"
import { TokenBuckets } from "../src/limits/TokenBuckets.js"

describe("token buckets", () => {
  it("a full bucket takes 2 s worth at once, then refuses until a token is back", () => {
    const buckets = new TokenBuckets(20)
    const taken = Array.from({ length: 50 }, () => buckets.take("alice", 0))
    expect(taken.filter((t) => t.ok)).toHaveLength(40)
    expect(taken.at(-1)).toEqual({ ok: false, retryAfter: 1 })
    // 50 ms later one token is back (20/s), and only one.
    expect(buckets.take("alice", 50).ok).toBe(true)
    expect(buckets.take("alice", 50).ok).toBe(false)
    // Another key has its own bucket.
    expect(buckets.take("bob", 50).ok).toBe(true)
  })

  it("Retry-After is the whole seconds until the next token, at least 1", () => {
    const slow = new TokenBuckets(1 / 60) // 1/m: 2 s worth is less than a token; a bucket holds at least 1
    expect([slow.take("k", 0).ok, slow.take("k", 0).ok]).toEqual([true, false])
    expect(slow.take("k", 0)).toEqual({ ok: false, retryAfter: 60 })
    expect(slow.take("k", 30_000)).toEqual({ ok: false, retryAfter: 30 })
    expect(slow.wait("k", 59_500)).toBe(1)
    expect(slow.wait("k", 60_000)).toBe(0)
  })

  it("a refund gives back a token, never past the burst", () => {
    const buckets = new TokenBuckets(1)
    buckets.take("k", 0)
    buckets.take("k", 0)
    expect(buckets.take("k", 0).ok).toBe(false)
    buckets.refund("k", 0)
    expect(buckets.take("k", 0).ok).toBe(true)
    buckets.refund("k", 0)
    buckets.refund("k", 0)
    buckets.refund("k", 0)
    expect(buckets.size).toBe(0) // full again: nothing to remember
  })

  it("a bucket that has refilled is forgotten; a full one is never stored", () => {
    const buckets = new TokenBuckets(10)
    for (let i = 0; i < 1_000; i++) buckets.take(`user${i}`, 0)
    expect(buckets.size).toBe(1_000)
    buckets.sweep(100) // 0.1 s: one token back of one taken — full again
    expect(buckets.size).toBe(0)
    expect(buckets.wait("user1", 100)).toBe(0)
  })

  it("many keys at once never hold more than maxKeys buckets; the least recently used go first", () => {
    const buckets = new TokenBuckets(10, 2, 1_000)
    for (let i = 0; i < 100_000; i++) buckets.take(`10.0.${i >> 8}.${i & 255}`, i / 1000)
    expect(buckets.size).toBeLessThanOrEqual(1_000)
    // The most recent keys are still limited; the oldest were given a fresh bucket.
    const recent = "10.0.390.159" // i = 99 999
    for (let i = 0; i < 19; i++) buckets.take(recent, 100)
    expect(buckets.take(recent, 100).ok).toBe(false)
  })
})
