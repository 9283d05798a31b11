/**
 * The campaign's only source of randomness: a small seeded generator (mulberry32). Every actor
 * (the nemesis, each user, each client, each history reader) draws from a generator of its own,
 * forked from the run's seed by a label, so its choices are the same on every replay of a seed
 * whatever the other actors did meanwhile (only the timing of the machine differs).
 */
export class Rng {
  private state: number

  constructor(readonly seed: number) {
    this.state = seed >>> 0
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1))
  }

  /** A float in [min, max). */
  between(min: number, max: number): number {
    return min + this.next() * (max - min)
  }

  chance(p: number): boolean {
    return this.next() < p
  }

  pick<A>(items: ReadonlyArray<A>): A {
    if (items.length === 0) throw new Error("Rng.pick: nothing to pick from")
    return items[Math.floor(this.next() * items.length)]!
  }

  /** One of `choices`, each as likely as its weight. */
  weighted<A>(choices: ReadonlyArray<readonly [A, number]>): A {
    const total = choices.reduce((sum, [, w]) => sum + w, 0)
    let x = this.next() * total
    for (const [choice, w] of choices) {
      if ((x -= w) < 0) return choice
    }
    return choices[choices.length - 1]![0]
  }

  shuffle<A>(items: ReadonlyArray<A>): Array<A> {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      ;[out[i], out[j]] = [out[j]!, out[i]!]
    }
    return out
  }

  /** An exponentially distributed delay with this mean (a Poisson process's gaps). */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean
  }

  /** A generator of its own for `label`: the same for the same seed and label. */
  fork(label: string): Rng {
    return new Rng(hash32(`${this.seed}/${label}`))
  }
}

/** FNV-1a: a label (or a seed given as text) as 32 bits. */
export const hash32 = (text: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** `CHAOS_SEED` as a seed: a whole number as itself (mod 2^32), any other text hashed. */
export const parseSeed = (text: string): number =>
  /^\d+$/.test(text) ? Number(BigInt(text) % 4294967296n) : hash32(text)

/** A fresh seed when none is given. */
export const newSeed = (): number => Math.floor(Math.random() * 4294967296) >>> 0
