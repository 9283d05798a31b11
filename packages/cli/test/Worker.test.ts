import { describe, expect, it } from "@effect/vitest"
import { Text } from "@herald/domain"
import { FastCheck } from "effect"
import { randomUUID } from "node:crypto"
import { draftIdOf, draftSteps, replyText } from "../src/worker/Reply.js"
import { type SseFrame, sseParser } from "../src/worker/Sse.js"

/**
 * The demo worker's pure parts: its SSE parser (WHATWG framing, whatever the chunking) and its
 * replies (bounded, storable, deterministic). `herald worker` against a server: WorkerCli.test.ts.
 */

const parseAll = (chunks: ReadonlyArray<string>): Array<SseFrame> => {
  const parse = sseParser()
  return chunks.flatMap(parse)
}

/** `text` cut into pieces at the given offsets (empty pieces included). */
const cut = (text: string, at: ReadonlyArray<number>): Array<string> => {
  const points = at.map((i) => i % (text.length + 1)).sort((a, b) => a - b)
  return [...points, text.length].map((end, i) => text.slice(i === 0 ? 0 : points[i - 1], end))
}

const STREAM = [
  "retry: 2000\n\n",
  "id: 1.0a1b2c3d\nevent: message.created\ndata: {\"seq\":1}\n\n",
  ": keepalive\n\n",
  "event: draft\ndata: {\"draftId\":\"d\",\"body\":\"a\"}\n\n",
  "id: 2.0e0f0a0b\r\nevent: message.created\r\ndata: {\"seq\":\r\ndata:2}\r\n\r\n",
  "event: draft\rdata: {\"ended\":true}\r\r"
].join("")

const EXPECTED: Array<SseFrame> = [
  { id: "1.0a1b2c3d", event: "message.created", data: "{\"seq\":1}" },
  { id: undefined, event: "draft", data: "{\"draftId\":\"d\",\"body\":\"a\"}" },
  { id: "2.0e0f0a0b", event: "message.created", data: "{\"seq\":\n2}" },
  { id: undefined, event: "draft", data: "{\"ended\":true}" }
]

describe("the worker's SSE parser", () => {
  it("reads ids, event types and multi-line data; skips comments and retry; LF, CRLF and CR line ends", () => {
    expect(parseAll([STREAM])).toEqual(EXPECTED)
  })

  it.prop("gives the same frames however the body is chunked (a CRLF split across chunks included)", {
    at: FastCheck.array(FastCheck.nat(), { maxLength: 40 })
  }, ({ at }) => {
    expect(parseAll(cut(STREAM, at))).toEqual(EXPECTED)
  })

  it("a frame without id: leaves the id unset (signals never move a resume position); an incomplete frame waits", () => {
    const parse = sseParser()
    expect(parse("event: presence\ndata: {}\n\nid: 3.00000000\nevent: message.created\ndata: {}\n")).toEqual([
      { id: undefined, event: "presence", data: "{}" }
    ])
    expect(parse("\n")).toEqual([{ id: "3.00000000", event: "message.created", data: "{}" }])
  })

  it("a CRLF split by an empty chunk is still one line end", () => {
    expect(parseAll(["data: x\r", "", "\ndata: y\n\n"])).toEqual([{ id: undefined, event: "message", data: "x\ny" }])
  })
})

describe("the worker's reply", () => {
  const storable = FastCheck.string({ unit: "grapheme", minLength: 1, maxLength: 2_000 }).filter(Text.isStorable)
  const anyText = FastCheck.oneof(storable, FastCheck.string({ unit: "binary", minLength: 1, maxLength: 500 }))

  it.prop("is 200–400 characters of storable text for any storable message, and always the same", {
    body: anyText.filter(Text.isStorable)
  }, ({ body }) => {
    const reply = replyText(body)
    expect(Array.from(reply).length).toBeGreaterThanOrEqual(200)
    expect(Array.from(reply).length).toBeLessThanOrEqual(400)
    expect(Text.isStorable(reply)).toBe(true)
    expect(replyText(body)).toBe(reply)
  })

  it.prop("is drafted in at most 20 growing steps, each cut after a word, the last one the whole reply", {
    body: storable
  }, ({ body }) => {
    const reply = replyText(body)
    const steps = draftSteps(reply, 20)
    expect(steps.length).toBeGreaterThanOrEqual(10)
    expect(steps.length).toBeLessThanOrEqual(20)
    expect(steps.at(-1)).toBe(reply)
    steps.forEach((step, i) => {
      expect(reply.startsWith(step)).toBe(true)
      expect(Text.isStorable(step)).toBe(true)
      if (i > 0) expect(step.length).toBeGreaterThan(steps[i - 1]!.length)
    })
  })

  it("its draft id is a valid draft id (and clientMessageId), the same for the same message, another for another", () => {
    const a = randomUUID()
    expect(draftIdOf(a)).toMatch(/^reply-[0-9a-f]{32}$/)
    expect(draftIdOf(a)).toMatch(/^[A-Za-z0-9_-]{1,64}$/)
    expect(draftIdOf(a)).toBe(draftIdOf(a))
    expect(draftIdOf(randomUUID())).not.toBe(draftIdOf(a))
  })
})
