import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { describe, expect, it } from "@effect/vitest"
import { Text } from "@herald/domain"
import { Duration, Effect, Exit, FastCheck, Fiber, TestClock } from "effect"
import { randomUUID } from "node:crypto"
import { draftIdOf, draftSteps, replyText } from "../src/worker/Reply.js"
import { followSse, type SseFrame, sseParser, StartOver } from "../src/worker/Sse.js"

/**
 * The demo worker's pure parts: its SSE parser (WHATWG framing, whatever the chunking) and its
 * replies (bounded, storable, deterministic), and its reader's reconnections against a scripted
 * server under the TestClock. `herald worker` against a real server: WorkerCli.test.ts.
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

describe("the worker's SSE reader", () => {
  /**
   * A scripted server: the n-th request gets `answers[n]` (a status and headers); a 200's body is
   * written by the test through `bodies[n]`.
   */
  const scripted = (answers: ReadonlyArray<{ readonly status: number; readonly headers?: Record<string, string> }>) => {
    const requests: Array<HttpClientRequest.HttpClientRequest> = []
    const bodies: Array<ReadableStreamDefaultController<Uint8Array>> = []
    const client = HttpClient.make((request) =>
      Effect.sync(() => {
        const n = requests.length
        const answer = answers[n] ?? { status: 503 }
        requests.push(request)
        const body = answer.status === 200
          ? new ReadableStream<Uint8Array>({ start: (c) => void (bodies[n] = c) })
          : JSON.stringify({ _tag: "Refused", message: "scripted" })
        return HttpClientResponse.fromWeb(request, new Response(body, answer))
      })
    )
    const write = (n: number, text: string) => bodies[n]!.enqueue(new TextEncoder().encode(text))
    return { client, requests, bodies, write }
  }

  /** Lets the body's reads and the reader's fiber run (the web stream settles on the real event loop). */
  const settle = Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20)))

  it.effect(
    "keepalives hold a quiet connection; 60 s of silence, an ended body, a 429 (after its Retry-After) and a reset reconnect — resuming from the last id: but after a reset; a 401 stops it",
    () =>
      Effect.gen(function*() {
        const server = scripted([
          { status: 200 },
          { status: 200 },
          { status: 429, headers: { "retry-after": "7" } },
          { status: 200 },
          { status: 200 },
          { status: 401 }
        ])
        const frames: Array<SseFrame> = []
        const lastEventIds = () => server.requests.map((r) => r.headers["last-event-id"])
        const fiber = yield* followSse({
          url: "http://herald.test/api/projects/p/workspace/stream",
          headers: { authorization: "Bearer t" },
          onFrame: (frame) =>
            frame.event === "reset" ? new StartOver({ reason: "reset" }) : Effect.sync(() => frames.push(frame)),
          onOpen: () => Effect.void,
          onRetry: () => Effect.void
        }).pipe(Effect.provideService(HttpClient.HttpClient, server.client), Effect.fork)
        yield* settle
        expect(lastEventIds()).toEqual([undefined])
        expect(server.requests[0]!.headers.authorization).toBe("Bearer t")

        server.write(0, "retry: 2000\n\nid: 1.0a0a0a0a\nevent: message.created\ndata: {}\n\nevent: draft\ndata: {}\n\n")
        yield* settle
        expect(frames.map((f) => f.event)).toEqual(["message.created", "draft"])
        // Ten minutes of keepalives only: the same connection.
        for (let i = 0; i < 40; i++) {
          yield* TestClock.adjust(Duration.seconds(15))
          server.write(0, ": keepalive\n\n")
          yield* settle
        }
        expect(server.requests).toHaveLength(1)

        // Silence: taken for dead after 60 s; back within the first backoff (≤ 600 ms), from the last id:.
        yield* TestClock.adjust(Duration.seconds(61))
        yield* settle
        yield* TestClock.adjust(Duration.millis(600))
        yield* settle
        expect(lastEventIds()).toEqual([undefined, "1.0a0a0a0a"])

        // The body ends: reconnect; a 429 answers — the next attempt waits its Retry-After (7 s).
        server.write(1, "event: presence\ndata: {}\n\n")
        server.bodies[1]!.close()
        yield* settle
        yield* TestClock.adjust(Duration.seconds(2))
        yield* settle
        expect(server.requests).toHaveLength(3)
        yield* TestClock.adjust(Duration.seconds(4))
        yield* settle
        expect(server.requests).toHaveLength(3)
        yield* TestClock.adjust(Duration.seconds(4))
        yield* settle
        // A frame without id: (presence, draft) never moved the position.
        expect(lastEventIds()).toEqual([undefined, "1.0a0a0a0a", "1.0a0a0a0a", "1.0a0a0a0a"])

        // A reset: start over after the head (no Last-Event-ID).
        server.write(3, "id: 0\nevent: reset\ndata: {}\n\n")
        yield* settle
        yield* TestClock.adjust(Duration.seconds(30))
        yield* settle
        expect(lastEventIds()).toEqual([undefined, "1.0a0a0a0a", "1.0a0a0a0a", "1.0a0a0a0a", undefined])

        // A 401: no more attempts, the reader fails with it.
        server.bodies[4]!.close()
        yield* settle
        yield* TestClock.adjust(Duration.seconds(30))
        yield* settle
        const exit = yield* Fiber.await(fiber)
        expect(Exit.isFailure(exit) && JSON.stringify(exit.cause)).toContain("\"status\":401")
        expect(server.requests).toHaveLength(6)
      })
  )
})
