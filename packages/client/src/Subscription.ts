import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Data, DateTime, Duration, Effect, Either, Option, Random, Stream } from "effect"
import { CONTROL_TYPES, decodeFrame, EVENT_TYPES, Frame, Position, type RawFrame, SIGNAL_TYPES } from "./Frame.js"

/**
 * `subscribe`: `GET /api/stream` followed for as long as the stream runs, one connection at a time.
 * Each connection is a native `EventSource` (or a WHATWG one in Node) opened with a stream ticket —
 * the long-lived token never goes into a URL — and the last cursor. The EventSource's own
 * reconnection is not used (its URL holds a ticket that expires): on an error the connection is
 * closed and another one opened after a backoff with jitter, with a fresh ticket when the old one
 * is about to expire. A connection refused before it opened is followed by a `HEAD` with the
 * token, which answers why without opening anything: 401/403/404 end the subscription, a 400 on a
 * cursor (`CursorExpired`) starts over without it (the `heads` frame then says what to reload),
 * anything else is retried.
 */

/** The minimal WHATWG `EventSource` this needs: the browser's, or the `eventsource` package's in Node. */
export interface EventSourceLike {
  onopen: ((event: never) => unknown) | null
  onerror: ((event: never) => unknown) | null
  addEventListener(
    type: string,
    listener: (event: { readonly data: string; readonly lastEventId: string }) => void
  ): void
  close(): void
}
export type EventSourceConstructor = new(url: string) => EventSourceLike

export interface SubscribeOptions {
  /** Narrow the connection to these streams (`?streams=`); every stream the caller may read by default. */
  readonly streams?: ReadonlyArray<string> | undefined
  /** Resume from a cursor an earlier subscription ended with (`sub.cursor`); after the current heads by default. */
  readonly cursor?: string | undefined
}

/** Why a subscription ended for good: the server refused it in a way retrying cannot mend. */
export class SubscribeError extends Data.TaggedError("SubscribeError")<{
  readonly status: number
  readonly message: string
}> {}

export interface Connector {
  /** An HTTP client that adds the caller's token and the base URL. */
  readonly http: HttpClient.HttpClient
  readonly baseUrl: string
  /** A new stream ticket: its secret and when it expires. */
  readonly ticket: Effect.Effect<{ readonly ticket: string; readonly expiresAt: DateTime.Utc }, unknown>
  readonly EventSource: EventSourceConstructor
}

/** Backoff: 0.5 s doubling to 15 s, each delay drawn between half and all of it (jitter spreads a fleet's reconnects). */
const BASE_MS = 500
const CAP_MS = 15_000
/** A ticket this close to expiry is replaced before a connection uses it. */
const TICKET_MARGIN_MS = 5_000
/** A connection that ends sooner than this after opening counts as a failure (no hot loop against a flapping server). */
const STEADY_MS = 2_000

const delay = (failures: number) =>
  Effect.map(
    Random.nextRange(0.5, 1),
    (r) => Duration.millis(Math.round(Math.min(CAP_MS, BASE_MS * 2 ** Math.min(failures, 10)) * r))
  )

/** Why a connection ended, as seen from the client. */
class Dropped extends Data.TaggedError("Dropped")<{ readonly openedAt: number | undefined }> {}

const query = (options: SubscribeOptions, position: Position, extra: Record<string, string>) => {
  const params = new URLSearchParams(extra)
  if (options.streams !== undefined && options.streams.length > 0) params.set("streams", options.streams.join(","))
  if (position.cursor !== undefined) params.set("cursor", position.cursor)
  return params.toString()
}

/** One EventSource's messages until it errors (the stream then fails with `Dropped`). */
const eventSource = (EventSource: EventSourceConstructor, url: string) =>
  Stream.asyncScoped<RawFrame | "open", Dropped>((emit) => {
    let openedAt: number | undefined
    return Effect.acquireRelease(
      Effect.sync(() => {
        const source = new EventSource(url)
        source.onopen = () => {
          openedAt = Date.now()
          void emit.single("open")
        }
        source.onerror = () => {
          source.close()
          void emit.fail(new Dropped({ openedAt }))
        }
        for (const type of [...CONTROL_TYPES, ...EVENT_TYPES, ...SIGNAL_TYPES]) {
          source.addEventListener(type, (e) => void emit.single({ type, data: e.data, id: e.lastEventId }))
        }
        return source
      }),
      (source) => Effect.sync(() => source.close())
    )
  }, "unbounded")

/** The frames of `GET /api/stream`, de-duplicated, across every reconnection; fails only with a `SubscribeError`. */
export const subscribe = (
  connector: Connector,
  options: SubscribeOptions = {},
  /** Where it stands (the cursor to resume with, the seqs delivered): given to read it while it runs. */
  position: Position = new Position(options.cursor)
): Stream.Stream<Frame, SubscribeError> =>
  Stream.suspend(() => {
    let failures = 0
    let ticket: { readonly ticket: string; readonly expiresAt: DateTime.Utc } | undefined
    let status: Frame | undefined

    const url = (extra: Record<string, string>) => {
      const q = query(options, position, extra)
      return `${connector.baseUrl}/api/stream${q === "" ? "" : `?${q}`}`
    }

    const freshTicket = Effect.gen(function*() {
      const now = yield* DateTime.now
      if (ticket !== undefined && DateTime.distance(now, ticket.expiresAt) > TICKET_MARGIN_MS) return ticket
      ticket = yield* connector.ticket
      return ticket
    })

    /**
     * Why the server refused to open the stream: the status a GET with the position held now
     * would have had (none: unreachable).
     */
    const probe = Effect.suspend(() => connector.http.execute(HttpClientRequest.head(url({})))).pipe(
      Effect.map((res) => Option.some(res.status)),
      Effect.catchAll(() => Effect.succeedNone),
      Effect.scoped
    )

    const refused = (status: number, what: string) =>
      new SubscribeError({ status, message: `the server refused the stream (${status}): ${what}` })

    /** After a connection ended: decide (end, start over, or retry), then wait before the next one. */
    const afterDrop = (openedAt: number | undefined) =>
      Effect.gen(function*() {
        if (openedAt !== undefined) {
          failures = Date.now() - openedAt < STEADY_MS ? failures + 1 : 0
        } else {
          const answer = yield* probe
          if (Option.isSome(answer)) {
            const s = answer.value
            if (s === 401) return yield* refused(s, "the token was refused")
            if (s === 403 || s === 404) return yield* refused(s, "a stream asked for is not visible")
            if (s === 400) {
              if (position.cursor === undefined) return yield* refused(s, "malformed request")
              // The cursor cannot be resumed (CursorExpired): start over; `heads` says what to reload.
              yield* Effect.logInfo("herald: the cursor cannot be resumed; starting over without it")
              position.forget()
              return
            }
            // The server would open it now: the ticket was what it refused (expired).
            if (s >= 200 && s < 300) ticket = undefined
          }
          failures += 1
        }
        yield* Effect.sleep(yield* delay(failures))
      })

    const connecting = Frame.Status({ status: "connecting" })
    const connectOnce: Stream.Stream<Frame, SubscribeError> = Stream.unwrap(Effect.gen(function*() {
      const got = yield* Effect.either(freshTicket)
      if (Either.isLeft(got)) {
        return Stream.execute(Effect.flatMap(probe, (answer) =>
          Option.isSome(answer) && answer.value === 401
            ? Effect.fail(refused(401, "the token was refused"))
            : Effect.andThen(Effect.sync(() => failures += 1), Effect.flatMap(delay(failures), Effect.sleep))))
      }
      return eventSource(connector.EventSource, url({ ticket: got.right.ticket })).pipe(
        Stream.map((raw) => raw === "open" ? Either.right(Frame.Status({ status: "live" })) : decodeFrame(raw)),
        Stream.tap((decoded) =>
          Either.isLeft(decoded)
            ? Effect.logWarning(`herald: skipped an unreadable ${decoded.left.type} frame: ${decoded.left.reason}`)
            : Effect.void
        ),
        Stream.filterMap((decoded) => Either.isLeft(decoded) ? Option.none() : position.accept(decoded.right)),
        // Said at once: the wait before the next connection is spent `connecting`, not `live`.
        Stream.catchAll((dropped) =>
          Stream.concat(Stream.make(connecting), Stream.execute(afterDrop(dropped.openedAt)))
        )
      )
    }))

    return Stream.concat(Stream.make(connecting), connectOnce).pipe(
      Stream.forever,
      // One Status per change: a retry that never opens says `connecting` once.
      Stream.filter((frame) => {
        if (frame._tag !== "Status") return true
        if (status !== undefined && status._tag === "Status" && status.status === frame.status) return false
        status = frame
        return true
      })
    )
  })
