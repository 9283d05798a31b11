import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { Api, Events } from "@herald/domain"
import { Effect, Option, Stream } from "effect"
import { ChatService } from "../chat/ChatService.js"
import { AppConfig } from "../config/AppConfig.js"
import { EventReader } from "../stream/EventReader.js"
import { SseHub } from "../stream/SseHub.js"
import { sseEvents } from "../stream/SseStream.js"
import { Metrics } from "./Metrics.js"

const headers = {
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no"
}

export const StreamsLive = HttpApiBuilder.group(Api.HeraldApi, "streams", (handlers) =>
  Effect.gen(function*() {
    const chat = yield* ChatService
    // The response body outlives the handler: it gets its services now, not at each pull.
    const context = yield* Effect.context<SseHub | EventReader | Metrics | AppConfig>()

    const respond = (request: {
      readonly stream: string
      readonly after: Option.Option<number>
      readonly endsWith?: (event: Events.EventWire) => boolean
    }) =>
      HttpServerResponse.stream(sseEvents(request).pipe(Stream.provideContext(context)), {
        contentType: "text/event-stream",
        headers
      })

    /** Last-Event-ID (sent by a reconnecting EventSource) wins over the URL's `after`. */
    const position = (h: { readonly "last-event-id"?: number | undefined }, p: { readonly after?: number | undefined }) =>
      Option.orElse(Option.fromNullable(h["last-event-id"]), () => Option.fromNullable(p.after))

    return handlers
      .handle("project", ({ headers: h, path, urlParams }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          yield* chat.getProject(me, path.projectId)
          return respond({
            stream: Events.projectStream(path.projectId),
            after: position(h, urlParams),
            // Removed from the project: the member sees their removal, then the stream ends (G5).
            endsWith: (e) => e.type === "member.removed" && (e.data as { userId: string }).userId === me.id
          })
        }))
      .handle("workspace", ({ headers: h, path, urlParams }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          yield* chat.getProject(me, path.projectId)
          return respond({ stream: Events.workspaceStream(path.projectId, me.id), after: position(h, urlParams) })
        }))
  }))
