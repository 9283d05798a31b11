import type { Events } from "@herald/domain"
import { Effect, Option } from "effect"
import { PassThrough } from "node:stream"
import { EventReader } from "./EventReader.js"
import { SseHub } from "./SseHub.js"

const RETRY = new TextEncoder().encode("retry: 2000\n\n")

export interface StreamRequest {
  readonly stream: string
  /** The last seq the client has; None → start after the current head. */
  readonly after: Option.Option<number>
  /** Events that may end the response (e.g. a removal of the caller) … */
  readonly mayEnd?: (event: Events.EventWire) => boolean
  /** … and the decision, made once one has been sent: true → the response ends after it. */
  readonly ends?: Effect.Effect<boolean>
}

/**
 * The body of one SSE response: `retry:`, then every event of the stream after the client's
 * position, exactly once, in seq order, with no gap — then live (see SseHub). A Node stream of
 * encoded frames, piped to the socket with its backpressure.
 */
export const sseBody = (request: StreamRequest) =>
  Effect.gen(function*() {
    const hub = yield* SseHub
    const reader = yield* EventReader
    const start = Option.isSome(request.after) ? request.after.value : yield* Effect.orDie(reader.head(request.stream))
    const out = new PassThrough({ objectMode: true })
    out.write(RETRY)
    yield* hub.register({
      stream: request.stream,
      out,
      start,
      mayEnd: request.mayEnd ?? (() => false),
      ends: request.ends ?? Effect.succeed(false)
    })
    return out
  })
