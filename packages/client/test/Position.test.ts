/**
 * The subscription's memory (Frame.ts `Position`), alone: whatever a connection replays —
 * duplicates, a stream replayed from a reset, heads of a fresh start — each stream's events are
 * handed on once, in increasing seq, and the cursor is the last one the server gave.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Events } from "@herald/domain"
import { FastCheck, Option } from "effect"
import { Frame, Position } from "../src/Frame.js"

const STREAMS = ["project:a", "project:b"] as const

const event = (stream: string, seq: number, cursor: string) =>
  Frame.Event({
    event: { stream, seq } as unknown as Events.Event,
    envelope: { stream, seq } as unknown as Events.EventWire,
    cursor
  })

describe("Position", () => {
  it.prop(
    "hands on each (stream, seq) once and in order between resets, whatever is replayed",
    {
      frames: FastCheck.array(
        FastCheck.oneof(
          FastCheck.record({ stream: FastCheck.constantFrom(...STREAMS), seq: FastCheck.integer({ min: 1, max: 30 }) }),
          FastCheck.record({ reset: FastCheck.constantFrom(...STREAMS), from: FastCheck.integer({ min: 1, max: 30 }) })
        ),
        { maxLength: 80 }
      )
    },
    ({ frames }) => {
      const position = new Position(undefined)
      const last = new Map<string, number>()
      let i = 0
      for (const f of frames) {
        const cursor = `c${i++}`
        if ("reset" in f) {
          expect(Option.isSome(position.accept(Frame.Reset({ stream: f.reset, from: f.from, cursor })))).toBe(true)
          last.set(f.reset, f.from - 1)
        } else {
          const out = position.accept(event(f.stream, f.seq, cursor))
          const fresh = f.seq > (last.get(f.stream) ?? 0)
          expect(Option.isSome(out)).toBe(fresh)
          if (fresh) last.set(f.stream, f.seq)
        }
        expect(position.cursor).toBe(cursor)
      }
    }
  )

  it("heads set every stream's mark; forget() starts over with no cursor; signals never move the cursor", () => {
    const position = new Position("start")
    position.accept(Frame.Heads({ streams: { "project:a": 5 }, cursor: "h" }))
    expect(Option.isNone(position.accept(event("project:a", 5, "h2")))).toBe(true)
    expect(Option.isSome(position.accept(event("project:a", 6, "h3")))).toBe(true)
    position.accept(Frame.Typing({ frame: { stream: "project:a", userId: "u", until: "t" } }))
    expect(position.cursor).toBe("h3")
    position.forget()
    expect(position.cursor).toBeUndefined()
    expect(Option.isSome(position.accept(event("project:a", 1, "n")))).toBe(true)
  })
})
