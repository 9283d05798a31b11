import * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as HttpClientResponse from "@effect/platform/HttpClientResponse"
import { Data, Duration, Effect, Option, Ref, Schedule, Stream } from "effect"

/**
 * A server-sent events client for Node (which has no `EventSource`): WHATWG parsing over the body
 * of an `HttpClient` response, and a reader that follows one stream for as long as it runs —
 * reconnecting with backoff and resuming with the last `id:` it saw as `Last-Event-ID`, as a
 * browser does. A frame without `id:` (the live signals: presence, typing, drafts) leaves that
 * position alone (G10).
 */

/** One dispatched frame: `id` only when the frame had an `id:` field. */
export interface SseFrame {
  readonly id: string | undefined
  readonly event: string
  readonly data: string
}

/**
 * The WHATWG event-stream parser: feed it the body's text as it arrives; it answers the frames that
 * text completed. Lines end with CRLF, LF or CR (a CR that ends a chunk may be half a CRLF);
 * `:` starts a comment; a frame is dispatched on a blank line when it has data or an id.
 */
export const sseParser = () => {
  let buffer = ""
  let id: string | undefined
  let event = ""
  let data: Array<string> = []
  const line = (text: string, out: Array<SseFrame>) => {
    if (text === "") {
      if (data.length > 0 || id !== undefined) {
        out.push({ id, event: event === "" ? "message" : event, data: data.join("\n") })
      }
      id = undefined
      event = ""
      data = []
      return
    }
    if (text.startsWith(":")) return
    const colon = text.indexOf(":")
    const field = colon < 0 ? text : text.slice(0, colon)
    const value = colon < 0 ? "" : text.slice(colon + (text[colon + 1] === " " ? 2 : 1))
    if (field === "data") data.push(value)
    else if (field === "event") event = value
    else if (field === "id" && !value.includes("\u0000")) id = value
    // `retry:` and unknown fields: this reader keeps its own backoff.
  }
  // The last chunk ended with a CR: an LF at the start of this one is the rest of that CRLF.
  let afterCR = false
  return (chunk: string): Array<SseFrame> => {
    if (chunk === "") return []
    buffer += afterCR && chunk.startsWith("\n") ? chunk.slice(1) : chunk
    afterCR = false
    const out: Array<SseFrame> = []
    let start = 0
    for (let i = 0; i < buffer.length; i++) {
      const c = buffer[i]
      if (c !== "\n" && c !== "\r") continue
      line(buffer.slice(start, i), out)
      if (c === "\r" && i === buffer.length - 1) afterCR = true
      else if (c === "\r" && buffer[i + 1] === "\n") i++
      start = i + 1
    }
    buffer = buffer.slice(start)
    return out
  }
}

/** The frames of an SSE body. */
export const sseFrames = <E, R>(body: Stream.Stream<Uint8Array, E, R>): Stream.Stream<SseFrame, E, R> =>
  Stream.suspend(() => {
    const parse = sseParser()
    return body.pipe(Stream.decodeText(), Stream.mapConcat(parse))
  })

// ---------------------------------------------------------------------------------------------
// Following a stream

/** Why a connection ended; the reader reconnects after it. */
export class Disconnected extends Data.TaggedError("Disconnected")<{
  readonly reason: string
  /** A 429's `Retry-After`: wait at least this long. */
  readonly retryAfter?: Duration.Duration
}> {}

/** The backoff's delay, or a 429's `Retry-After` when that is longer. */
const delayAfter = (error: Disconnected | Refused, delay: Duration.Duration) =>
  error._tag === "Disconnected" && error.retryAfter !== undefined ? Duration.max(delay, error.retryAfter) : delay

/**
 * What a frame handler fails with to drop the resume position: the reader reconnects without
 * `Last-Event-ID`, after the stream's head (e.g. after an `event: reset`, to not replay history).
 */
export class StartOver extends Data.TaggedError("StartOver")<{ readonly reason: string }> {}

/** An answer that reconnecting cannot change (a refused token, a stream not found): the reader stops. */
export class Refused extends Data.TaggedError("Refused")<{
  readonly status: number
  readonly body: string
}> {}

export interface FollowOptions {
  readonly url: string
  readonly headers: Record<string, string>
  /** Called with each frame in order; the frame's `id:` becomes the resume position once it returns. */
  readonly onFrame: (frame: SseFrame) => Effect.Effect<void, Refused | StartOver>
  /** Called once a connection is open (the response was a 200). */
  readonly onOpen: (resumedFrom: Option.Option<string>) => Effect.Effect<void>
  /** Called when a connection ended or could not be opened, with the delay before the next attempt. */
  readonly onRetry: (reason: string, delay: Duration.Duration) => Effect.Effect<void>
}

/**
 * No bytes for this long (the server writes `: keepalive` every 15 s by default): the connection is
 * taken for dead, and the reader reconnects and resumes.
 */
const IDLE_TIMEOUT = Duration.seconds(60)

/**
 * Reconnection delays: exponential from 500 ms, jittered, at most 30 s; back to the start after a
 * connection that lived a minute.
 */
const reconnect = Schedule.exponential(Duration.millis(500)).pipe(
  Schedule.union(Schedule.spaced(Duration.seconds(30))),
  Schedule.jittered,
  Schedule.resetAfter(Duration.minutes(1))
)

/** `Retry-After` in seconds (a date form is taken as 1 s). */
const retryAfterOf = (response: HttpClientResponse.HttpClientResponse) => {
  const seconds = Number(response.headers["retry-after"])
  return Duration.seconds(Number.isFinite(seconds) && seconds > 0 ? seconds : 1)
}

const describeTransport = (error: HttpClientError.HttpClientError) =>
  error._tag === "RequestError"
    ? `cannot reach the server (${error.cause instanceof Error ? error.cause.message : error.reason})`
    : `${error.reason}: ${error.message}`

/**
 * Reads the stream at `url` until interrupted or refused: starts after the head (no
 * `Last-Event-ID`), and after every disconnection reconnects with backoff and resumes from the last
 * `id:` seen. A 429 waits for its `Retry-After`; 400, 401, 403 and 404 are `Refused`; anything else
 * (the server down or restarting, a 5xx, a dropped or silent connection) is retried.
 */
export const followSse = (options: FollowOptions): Effect.Effect<never, Refused, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const resume = yield* Ref.make(Option.none<string>())

    const connectOnce: Effect.Effect<never, Disconnected | Refused> = Effect.gen(function*() {
      const from = yield* Ref.get(resume)
      const request = HttpClientRequest.get(options.url).pipe(
        HttpClientRequest.setHeaders(options.headers),
        HttpClientRequest.setHeader("accept", "text/event-stream"),
        Option.isSome(from) ? HttpClientRequest.setHeader("last-event-id", from.value) : (r) => r
      )
      const response = yield* client.execute(request).pipe(
        Effect.mapError((error) => new Disconnected({ reason: describeTransport(error) }))
      )
      if (response.status === 429) {
        return yield* new Disconnected({ reason: "429 Too Many Requests", retryAfter: retryAfterOf(response) })
      }
      if (response.status !== 200) {
        const body = yield* response.text.pipe(Effect.orElseSucceed(() => ""))
        return yield* [400, 401, 403, 404].includes(response.status)
          ? new Refused({ status: response.status, body })
          : new Disconnected({ reason: `the server answered ${response.status}` })
      }
      yield* options.onOpen(from)
      // On the bytes, not the frames: keepalive comments make no frame, but they are signs of life.
      const body = response.stream.pipe(
        Stream.mapError((error) => new Disconnected({ reason: describeTransport(error) })),
        Stream.timeoutFail(() => new Disconnected({ reason: "no data for 60s" }), IDLE_TIMEOUT)
      )
      yield* sseFrames(body).pipe(
        Stream.runForEach((frame) =>
          Effect.zipRight(
            options.onFrame(frame),
            frame.id === undefined
              ? Effect.void
              : Ref.set(resume, frame.id === "" ? Option.none() : Option.some(frame.id))
          )
        ),
        Effect.catchTag(
          "StartOver",
          ({ reason }) => Effect.zipRight(Ref.set(resume, Option.none()), new Disconnected({ reason }))
        )
      )
      return yield* new Disconnected({ reason: "the server ended the stream" })
    }).pipe(Effect.scoped)

    const retrying = Schedule.identity<Disconnected | Refused>().pipe(
      Schedule.intersect(Schedule.delays(reconnect)),
      Schedule.modifyDelay(([error], delay) => delayAfter(error, delay)),
      Schedule.tapOutput(([error, delay]) =>
        error._tag === "Disconnected" ? options.onRetry(error.reason, delayAfter(error, delay)) : Effect.void
      )
    )
    return yield* connectOnce.pipe(
      Effect.retry({ schedule: retrying, while: (error) => error._tag === "Disconnected" }),
      // The schedule never ends: only a refusal gets here.
      Effect.catchTag("Disconnected", (error) => Effect.die(error))
    )
  })
