import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import * as Cursor from "../src/stream/Cursor.js"

/**
 * The multiplexed stream's cursor on its own: what it encodes comes back exactly, it stays within
 * 1 KB, and any change to it is refused (the HTTP side of the same is in Multiplexed.test.ts).
 */
const userId = randomUUID()
const projects = Array.from({ length: 40 }, () => randomUUID())
const streamOf = (i: number) => i % 2 === 0 ? `project:${projects[i >> 1]}` : `workspace:${projects[i >> 1]}:${userId}`

const scenario = FastCheck.record({
  inBase: FastCheck.uniqueArray(FastCheck.integer({ min: 0, max: 79 }), { maxLength: 80 }),
  seqs: FastCheck.array(FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { minLength: 80, maxLength: 80 }),
  moved: FastCheck.uniqueArray(FastCheck.integer({ min: 0, max: 79 }), { maxLength: 20 }),
  movedSeqs: FastCheck.array(FastCheck.integer({ min: 0, max: 2 ** 40 }), { minLength: 20, maxLength: 20 })
})

const build = (
  { inBase, moved, movedSeqs, seqs }: typeof scenario extends FastCheck.Arbitrary<infer A> ? A : never
) => {
  const base = Cursor.makeBase({
    id: randomUUID(),
    userId,
    key: randomBytes(32).toString("hex"),
    streams: inBase.map(streamOf),
    seqs: inBase.map((i) => seqs[i]!)
  })
  const changes = new Map(moved.map((i, k) => [streamOf(i), movedSeqs[k]!]))
  return { base, changes }
}

describe("multiplexed stream cursor", () => {
  it.prop("stands for the base overlaid with what moved, within 1 KB of URL-safe text", { s: scenario }, ({ s }) => {
    const { base, changes } = build(s)
    const cursor = Cursor.encode(base, changes)
    if (cursor === undefined) {
      // Only when it would not fit: 20 streams the base does not know take 20 × 19 bytes and more.
      expect(changes.size).toBeGreaterThan(0)
      return
    }
    expect(cursor.text).toMatch(/^[A-Za-z0-9_-]{1,1024}$/)
    const parsed = Cursor.parse(cursor.text)!
    expect(parsed.baseId).toBe(base.id)
    const expected = new Map(base.streams.map((stream, i) => [stream, base.seqs[i]!]))
    for (const [stream, seq] of changes) expected.set(stream, seq)
    expect(Cursor.positions(base, parsed)).toEqual(expected)
  })

  it.prop("any changed byte is refused", {
    s: scenario,
    at: FastCheck.nat(),
    bit: FastCheck.integer({ min: 0, max: 7 })
  }, ({ at, bit, s }) => {
    const { base, changes } = build(s)
    const cursor = Cursor.encode(base, changes)
    if (cursor === undefined) return
    const bytes = Buffer.from(cursor.text, "base64url")
    bytes[at % bytes.length] ^= 1 << bit
    const parsed = Cursor.parse(bytes.toString("base64url"))
    expect(parsed === undefined || parsed.baseId !== base.id || Cursor.positions(base, parsed) === undefined).toBe(true)
  })

  it("another base's key does not verify it (a cursor never resolves against someone else's base)", () => {
    const { base, changes } = build({
      inBase: [0, 1],
      seqs: Array(80).fill(3),
      moved: [0],
      movedSeqs: Array(20).fill(9)
    })
    const other = Cursor.makeBase({ ...base, key: randomBytes(32).toString("hex") })
    const parsed = Cursor.parse(Cursor.encode(base, changes)!.text)!
    expect(Cursor.positions(other, parsed)).toBeUndefined()
  })

  it("text that is not a cursor does not parse", () => {
    for (const text of ["", "12", "not base64!", "AAAA", "A".repeat(60)]) {
      expect(Cursor.parse(text), text).toBeUndefined()
    }
  })
})
