import { Effect, Option } from "effect"
import type { Writable } from "node:stream"
import { EventReader } from "./EventReader.js"
import type { Position } from "./Position.js"
import { resetFrame, resets } from "./Reset.js"
import { SseHub } from "./SseHub.js"

/** The first bytes of every SSE response: how long a browser waits before it reconnects. */
export const RETRY = "retry: 2000\n\n"

/** The headers of every SSE response (never `Connection`: HTTP/2 forbids it). */
export const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no"
} as const

/**
 * A stream that has been authorised and positioned: `attach` hands it a response body to write
 * into (after `retry:`), and the hub serves it from then on. One that will not be attached (its
 * client went away meanwhile) is `abandon`ed, giving back what the opening held (its SSE slot).
 */
export interface Opened {
  readonly attach: (out: Writable) => Effect.Effect<void>
  readonly abandon: Effect.Effect<void>
}

export interface StreamRequest {
  readonly stream: string
  /** Where the client is; None → start after the current head. */
  readonly after: Option.Option<Position>
  /**
   * A project stream read by this user: after their removal nothing goes out until the event that
   * admitted them again (what lies between was not theirs to read, G5); with none, the response ends.
   */
  readonly reader?: string
  /** The token that opened it (directly or through a ticket): revoking it ends the connection. */
  readonly tokenId?: string | undefined
  /** Whose connection it is (live signals). */
  readonly userId?: string | undefined
}

/**
 * One stream's SSE response: every event of the stream after the client's position, exactly
 * once, in seq order, with no gap — then live (see SseHub). A position it cannot continue from
 * (Reset.ts) is answered with `event: reset` first (`id: from − 1`), then every event from `from`.
 */
export const openStream = (request: StreamRequest) =>
  Effect.gen(function*() {
    const hub = yield* SseHub
    const reader = yield* EventReader
    const after = request.after
    // A position the database cannot continue from: a reset frame, then the stream from `from` on.
    const from = Option.isSome(after)
      ? (yield* Effect.orDie(resets(reader, [[request.stream, after.value] as const]))).get(request.stream)
      : undefined
    const start = from !== undefined
      ? from - 1
      : Option.isSome(after)
      ? after.value.seq
      : yield* Effect.orDie(reader.head(request.stream))
    // A client whose last frame was its own removal (it was added back since, or it could not open).
    const removedAtStart = request.reader !== undefined && from === undefined && Option.isSome(after) &&
      (yield* Effect.orDie(reader.removedAt(request.reader, [[request.stream, start]]))).has(request.stream)
    const opened: Opened = {
      attach: (out) =>
        Effect.suspend(() => {
          out.write(RETRY)
          if (from !== undefined) out.write(resetFrame(String(start), request.stream, from))
          return hub.register(
            out,
            {
              stream: request.stream,
              start,
              atHead: Option.isNone(request.after),
              removedAtStart,
              removable: request.reader
            },
            request.tokenId,
            request.userId ?? request.reader
          )
        }),
      abandon: Effect.void
    }
    return opened
  })
