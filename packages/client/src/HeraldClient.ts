import type * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientError from "@effect/platform/HttpClientError"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Api } from "@herald/domain"
import { Context, Effect, Layer, type Stream } from "effect"
import { resolveEventSource } from "./EventSources.js"
import type { Frame, Position } from "./Frame.js"
import { type EventSourceConstructor, subscribe, type SubscribeError, type SubscribeOptions } from "./Subscription.js"

/** The API's groups, as the domain declares them. */
type Groups = typeof Api.HeraldApi extends HttpApi.HttpApi<string, infer G, infer _E, infer _R> ? G : never
/** The errors every endpoint may answer (a malformed request, an unreadable response). */
type ApiErrors = typeof Api.HeraldApi extends HttpApi.HttpApi<string, infer _G, infer E, infer _R> ? E : never

/** The API's typed calls, exactly as `HttpApiClient` derives them from the domain's `HttpApi`. */
export type ApiClient = HttpApiClient.Client<Groups, ApiErrors, never>

export interface HeraldClientOptions {
  /** Where the server answers, e.g. `https://chat.example.com` (no trailing slash needed). */
  readonly baseUrl: string
  /** The caller's bearer token, or an effect that gives the current one before each request. */
  readonly token: string | Effect.Effect<string, unknown>
  /** The `EventSource` to open streams with; the browser's by default (Node: the package's Node entry brings one). */
  readonly EventSource?: EventSourceConstructor | undefined
  /**
   * Send the current span as `traceparent` (and `b3`) with each request, so the server's trace
   * continues the application's. Off by default: from another origin those headers need a CORS
   * preflight that `HERALD_CORS_ORIGINS` does not allow.
   */
  readonly tracePropagation?: boolean | undefined
}

export interface HeraldClientShape {
  readonly api: ApiClient
  /** `GET /api/stream`, followed across reconnections: see Subscription.ts. */
  readonly subscribe: (
    options?: SubscribeOptions,
    position?: Position
  ) => Stream.Stream<Frame, SubscribeError>
}

/** The Effect face: the typed API client and the subscription, over whichever `HttpClient` is provided. */
export const make = (options: HeraldClientOptions) =>
  Effect.gen(function*() {
    const baseUrl = options.baseUrl.replace(/\/+$/, "")
    const token = typeof options.token === "string" ? Effect.succeed(options.token) : options.token
    const http = (yield* HttpClient.HttpClient).pipe(
      HttpClient.withTracerPropagation(options.tracePropagation === true),
      HttpClient.mapRequestEffect((request) =>
        Effect.mapBoth(token, {
          onSuccess: (t) => HttpClientRequest.bearerToken(request, t),
          onFailure: (cause) =>
            new HttpClientError.RequestError({
              request,
              reason: "Transport",
              cause,
              description: "the token could not be had"
            })
        })
      )
    )
    const api = yield* HttpApiClient.make(Api.HeraldApi, { baseUrl, transformClient: () => http })
    const ticket = api.tokens.streamTicket()
    return {
      api,
      // The EventSource is looked for when a subscription starts: an application that only calls
      // the API needs none.
      subscribe: (subscribeOptions?: SubscribeOptions, position?: Position) =>
        subscribe(
          { http, baseUrl, ticket, EventSource: resolveEventSource(options.EventSource) },
          subscribeOptions,
          position
        )
    } satisfies HeraldClientShape
  })

export class HeraldClient extends Context.Tag("@herald/client/HeraldClient")<HeraldClient, HeraldClientShape>() {
  /** The client as a layer (it needs an `HttpClient`: `FetchHttpClient.layer` in a browser and in Node 20+). */
  static readonly layer = (options: HeraldClientOptions) => Layer.effect(HeraldClient, make(options))
}
