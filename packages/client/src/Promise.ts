import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import type { Events, Signals } from "@herald/domain"
import { Cause, Effect, Exit, Fiber, Stream } from "effect"
import { Position, type Status } from "./Frame.js"
import { type ApiClient, make } from "./HeraldClient.js"
import type { EventSourceConstructor, SubscribeError, SubscribeOptions } from "./Subscription.js"

/**
 * The Promise face (SPEC §9): for applications that do not use Effect. Every API call of the
 * Effect face as a function returning a Promise (rejected with the API's error: an object with
 * `_tag` and `message`), and `subscribe` with callbacks.
 */

export type CreateClientOptions =
  & {
    readonly baseUrl: string
    /** The `EventSource` to open streams with; the browser's by default (Node: the package brings one). */
    readonly EventSource?: EventSourceConstructor | undefined
  }
  & ({ readonly token: string } | { readonly getToken: () => Promise<string> })

/**
 * `ApiClient` with each call's Effect replaced by a Promise of its success (`withResponse`, which
 * adds the raw response, is the Effect face's).
 */
export type PromiseApi = {
  readonly [Group in keyof ApiClient]: {
    readonly [Call in keyof ApiClient[Group]]: ApiClient[Group][Call] extends
      (...args: infer Args) => Effect.Effect<infer Success, infer _E, infer _R>
      ? (...args: Args) => Promise<Exclude<Success, readonly [unknown, unknown]>>
      : never
  }
}

export interface Handlers {
  /** An event, once per `(stream, seq)`, in seq order per stream: the envelope as SPEC §5 writes it. */
  readonly onEvent?: (envelope: Events.EventWire) => void
  /** The stream could not be resumed where it was (a restore, retention): reload it over HTTP. */
  readonly onReset?: (reset: { readonly stream: string; readonly from: number }) => void
  /**
   * A connection opened without a cursor — the first one, or after a `CursorExpired` — starts
   * every stream after these heads: load history up to them over HTTP.
   */
  readonly onHeads?: (heads: { readonly streams: Readonly<Record<string, number>> }) => void
  readonly onPresence?: (frame: Signals.PresenceFrame) => void
  readonly onTyping?: (frame: Signals.TypingFrame) => void
  readonly onDraft?: (frame: Signals.DraftFrame) => void
  readonly onStatus?: (status: Status) => void
  /** The subscription ended for good (the server refused it: a revoked token, a stream no longer visible). */
  readonly onError?: (error: SubscribeError) => void
}

export interface Subscription {
  /** The last cursor: pass it as `cursor` to resume in a later session. */
  readonly cursor: string | undefined
  /** Ends the subscription (`onStatus("closed")`). */
  readonly close: () => void
}

export type HeraldPromiseClient = PromiseApi & {
  readonly subscribe: (options?: SubscribeOptions, handlers?: Handlers) => Subscription
}

/** A handler that throws must not end the subscription: it is reported, and the next frame goes on. */
const call = <A>(handler: ((a: A) => void) | undefined, a: A) =>
  Effect.sync(() => {
    try {
      handler?.(a)
    } catch (error) {
      console.error("@herald/client: a subscription handler threw", error)
    }
  })

const toPromise = <A, E>(effect: Effect.Effect<A, E>): Promise<A> =>
  Effect.runPromiseExit(effect).then((exit) =>
    Exit.isSuccess(exit) ? exit.value : Promise.reject(Cause.squash(exit.cause))
  )

export const createClient = (options: CreateClientOptions): HeraldPromiseClient => {
  const token = "token" in options ? options.token : Effect.tryPromise(options.getToken)
  const client = Effect.runSync(
    make({ baseUrl: options.baseUrl, token, EventSource: options.EventSource }).pipe(
      Effect.provide(FetchHttpClient.layer)
    )
  )
  const api = Object.fromEntries(
    Object.entries(
      client.api as unknown as Record<
        string,
        Record<string, (...args: Array<unknown>) => Effect.Effect<unknown, unknown>>
      >
    )
      .map(([group, calls]) => [
        group,
        Object.fromEntries(
          Object.entries(calls).map(([name, f]) => [name, (...args: Array<unknown>) => toPromise(f(...args))])
        )
      ])
  ) as unknown as PromiseApi

  const subscribe = (subscribeOptions: SubscribeOptions = {}, handlers: Handlers = {}): Subscription => {
    const position = new Position(subscribeOptions.cursor)
    const fiber = Effect.runFork(
      client.subscribe(subscribeOptions, position).pipe(
        Stream.runForEach((frame) => {
          switch (frame._tag) {
            case "Event":
              return call(handlers.onEvent, frame.envelope)
            case "Heads":
              return call(handlers.onHeads, { streams: frame.streams })
            case "Reset":
              return call(handlers.onReset, { stream: frame.stream, from: frame.from })
            case "Presence":
              return call(handlers.onPresence, frame.frame)
            case "Typing":
              return call(handlers.onTyping, frame.frame)
            case "Draft":
              return call(handlers.onDraft, frame.frame)
            case "Status":
              return call(handlers.onStatus, frame.status)
          }
        }),
        Effect.catchAll((error) => call(handlers.onError, error)),
        Effect.ensuring(call(handlers.onStatus, "closed" as const))
      )
    )
    return {
      get cursor() {
        return position.cursor
      },
      close: () => {
        Effect.runFork(Fiber.interrupt(fiber))
      }
    }
  }

  return { ...api, subscribe }
}
