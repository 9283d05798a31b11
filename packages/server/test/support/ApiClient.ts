import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Api } from "@herald/domain"
import { Effect } from "effect"

/**
 * A client derived from the API declaration (packages/domain/src/Api.ts): payloads are encoded and
 * answers decoded by the same schemas the server uses, and each declared error arrives as its
 * tagged class — which the client picks by the answer's status, so `NotFound` means a 404.
 * `token`, when given, is sent as `Authorization: Bearer <token>` on every call.
 */
export const apiClient = (baseUrl: string, token?: string) =>
  HttpApiClient.make(Api.HeraldApi, {
    baseUrl,
    transformClient: token === undefined ? undefined : HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  }).pipe(Effect.provide(FetchHttpClient.layer))

export type ApiClient = Effect.Effect.Success<ReturnType<typeof apiClient>>
