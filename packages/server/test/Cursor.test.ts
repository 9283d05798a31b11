import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import { createHmac, randomBytes, randomUUID } from "node:crypto"
import * as Cursor from "../src/stream/Cursor.js"

/**
 * The multiplexed stream's cursor on its own: what it encodes comes back exactly, it stays within
 * 1 KB, and any change to it is refused (the HTTP side of the same is in Multiplexed.test.ts).
 */
const userId = randomUUID()
const projects = Array.from({ length: 40 }, () => randomUUID())
const streamOf = (i: number) => i % 2 === 0 ? `project:${projects[i >> 1]}` : `workspace:${projects[i >> 1]}:${userId}`

/** A tag (8 hex digits, as an event id's first 8) or none. */
const tag = FastCheck.option(FastCheck.stringMatching(/^[0-9a-f]{8}$/), { nil: undefined })

const scenario = FastCheck.record({
  inBase: FastCheck.uniqueArray(FastCheck.integer({ min: 0, max: 79 }), { maxLength: 80 }),
  seqs: FastCheck.array(FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), { minLength: 80, maxLength: 80 }),
  tags: FastCheck.array(tag, { minLength: 80, maxLength: 80 }),
  moved: FastCheck.uniqueArray(FastCheck.integer({ min: 0, max: 79 }), { maxLength: 20 }),
  movedSeqs: FastCheck.array(FastCheck.integer({ min: 0, max: 2 ** 40 }), { minLength: 20, maxLength: 20 }),
  movedTags: FastCheck.array(tag, { minLength: 20, maxLength: 20 })
})

const build = (
  { inBase, moved, movedSeqs, movedTags, seqs, tags }: typeof scenario extends FastCheck.Arbitrary<infer A> ? A
    : never
) => {
  const base = Cursor.makeBase({
    id: randomUUID(),
    userId,
    key: randomBytes(32).toString("hex"),
    streams: inBase.map(streamOf),
    seqs: inBase.map((i) => seqs[i]!),
    tags: inBase.map((i) => tags[i])
  })
  const changes = new Map(moved.map((i, k) => [streamOf(i), { seq: movedSeqs[k]!, tag: movedTags[k] }]))
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
    const expected = new Map(base.streams.map((stream, i) => [stream, { seq: base.seqs[i]!, tag: base.tags[i] }]))
    for (const [stream, position] of changes) expected.set(stream, position)
    expect(Cursor.positions(base, parsed)).toEqual(expected)
  })

  it("with 60 projects (120 streams) all moved and tagged, a cursor on a base of them stays within 1 KB", () => {
    const many = Array.from({ length: 120 }, (_, i) => i % 2 === 0 ? `project:${randomUUID()}` : `x${i}`)
    const base = Cursor.makeBase({
      id: randomUUID(),
      userId,
      key: randomBytes(32).toString("hex"),
      streams: many,
      seqs: many.map(() => 2 ** 40),
      tags: many.map(() => "89abcdef")
    })
    // What a connection carries before it writes a new base: entries up to the soft budget.
    const moved = new Map<string, { seq: number; tag: string }>()
    for (const stream of many) {
      const next = new Map([...moved, [stream, { seq: 2 ** 40 + 1, tag: "01234567" }]])
      if (Cursor.encode(base, next)!.entryBytes > Cursor.SOFT_ENTRY_BYTES) break
      moved.set(stream, { seq: 2 ** 40 + 1, tag: "01234567" })
    }
    const cursor = Cursor.encode(base, moved)!
    expect(cursor.text.length).toBeLessThanOrEqual(1024)
    expect(Cursor.positions(base, Cursor.parse(cursor.text)!)!.get(many[0]!)).toEqual({
      seq: 2 ** 40 + 1,
      tag: "01234567"
    })
  })

  it("a cursor from before tags (version 1) still resolves, to positions without tags", () => {
    const base = Cursor.makeBase({
      id: randomUUID(),
      userId,
      key: "k",
      streams: [streamOf(0), streamOf(1)],
      seqs: [3, 4],
      tags: [undefined, undefined]
    })
    // Version 1 · base id · (header 2 = stream 1, seq 9) · HMAC-SHA256 truncated to 12 bytes.
    const body = Buffer.concat([Buffer.from([1]), Buffer.from(base.idHex, "hex"), Buffer.from([2, 9])])
    const signature = createHmac("sha256", base.key).update(body).digest().subarray(0, 12)
    const parsed = Cursor.parse(Buffer.concat([body, signature]).toString("base64url"))!
    expect(Cursor.positions(base, parsed)).toEqual(
      new Map([[streamOf(0), { seq: 3, tag: undefined }], [streamOf(1), { seq: 9, tag: undefined }]])
    )
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
      tags: Array(80).fill("0badcafe"),
      moved: [0],
      movedSeqs: Array(20).fill(9),
      movedTags: Array(20).fill(undefined)
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
