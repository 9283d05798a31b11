/**
 * Token buckets by key (a user, a client address): each holds up to `burst` tokens and refills at
 * `perSecond`; a request takes one or is refused with the seconds until one is back. A bucket that
 * has refilled carries no information, so it is forgotten (`sweep`), and the map never holds more
 * than `maxKeys` buckets — many users or addresses cost memory only while they are busy.
 */
export interface Taken {
  readonly ok: boolean
  /** When refused: whole seconds until a token is back (at least 1). */
  readonly retryAfter: number
}

interface Bucket {
  tokens: number
  at: number
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>()
  readonly burst: number

  constructor(
    readonly perSecond: number,
    /** Seconds' worth of tokens a bucket holds (SPEC: burst = 2 s worth). */
    burstSeconds = 2,
    private readonly maxKeys = 100_000
  ) {
    this.burst = Math.max(1, perSecond * burstSeconds)
  }

  get size() {
    return this.buckets.size
  }

  private refilled(key: string, now: number): Bucket {
    const bucket = this.buckets.get(key)
    if (bucket === undefined) return { tokens: this.burst, at: now }
    const tokens = Math.min(this.burst, bucket.tokens + Math.max(0, now - bucket.at) * this.perSecond / 1000)
    return { tokens, at: now }
  }

  private store(key: string, bucket: Bucket) {
    // Re-inserted, so the map's order is least recently used first.
    this.buckets.delete(key)
    if (bucket.tokens >= this.burst) return
    this.buckets.set(key, bucket)
    // Past the bound the least recently used bucket goes (a key that comes back starts full): O(1),
    // so a flood of new keys costs no sweep per request; `sweep` forgets the refilled ones.
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!)
  }

  /** Takes a token for `key` at `now` (ms), or says how long until there is one. */
  take(key: string, now: number): Taken {
    const bucket = this.refilled(key, now)
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1
      this.store(key, bucket)
      return { ok: true, retryAfter: 0 }
    }
    this.store(key, bucket)
    return { ok: false, retryAfter: Math.max(1, Math.ceil((1 - bucket.tokens) / this.perSecond)) }
  }

  /** Whole seconds until `key` could take a token (0: it can now), taking nothing. */
  wait(key: string, now: number): number {
    const { tokens } = this.refilled(key, now)
    return tokens >= 1 ? 0 : Math.max(1, Math.ceil((1 - tokens) / this.perSecond))
  }

  /** Gives back a token taken for something that turned out not to count. */
  refund(key: string, now: number) {
    const bucket = this.refilled(key, now)
    bucket.tokens = Math.min(this.burst, bucket.tokens + 1)
    this.store(key, bucket)
  }

  /** Forgets every bucket that has refilled by `now`. */
  sweep(now: number) {
    for (const [key, bucket] of this.buckets) {
      if (bucket.tokens + Math.max(0, now - bucket.at) * this.perSecond / 1000 >= this.burst) this.buckets.delete(key)
    }
  }
}
