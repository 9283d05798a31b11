import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Api, Events } from "@herald/domain"
import { Effect, Option } from "effect"
import { Policy, withPolicy } from "../chat/Policy.js"
import { ProjectsRepo } from "../chat/ProjectsRepo.js"
import { type EventReader } from "../stream/EventReader.js"
import { type SseHub } from "../stream/SseHub.js"
import { sseBody, type StreamRequest } from "../stream/SseStream.js"

const headers = {
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no"
}

export const StreamsLive = HttpApiBuilder.group(Api.HeraldApi, "streams", (handlers) =>
  Effect.gen(function*() {
    const policy = yield* Policy
    const projects = yield* ProjectsRepo
    // The response body outlives the handler: it gets its services now, not at each pull.
    const context = yield* Effect.context<SseHub | EventReader>()

    const respond = (request: StreamRequest) =>
      Effect.gen(function*() {
        const node = NodeHttpServerRequest.toServerResponse(yield* HttpServerRequest.HttpServerRequest)
        // Node adds `Connection: keep-alive` by itself; HTTP/2 forbids the header, so SSE responses never carry it.
        node.removeHeader("connection")
        const body = yield* sseBody(request).pipe(Effect.provide(context))
        return HttpServerResponse.raw(body, { contentType: "text/event-stream", headers })
      })

    /** Last-Event-ID (sent by a reconnecting EventSource) wins over the URL's `after`. */
    const position = (
      h: { readonly "last-event-id"?: number | undefined },
      p: { readonly after?: number | undefined }
    ) => Option.orElse(Option.fromNullable(h["last-event-id"]), () => Option.fromNullable(p.after))

    return handlers
      .handle("project", ({ headers: h, path, urlParams }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          return yield* respond({
            stream: Events.projectStream(path.projectId),
            after: position(h, urlParams),
            // Removed from the project: the member sees their removal, then the stream ends (G5). A
            // removal replayed from before a re-add does not end it: membership decides, now.
            mayEnd: (e) => e.type === "member.removed" && (e.data as { userId: string }).userId === me.id,
            ends: Effect.map(projects.isMember(path.projectId, me.id), (member) => !member)
          })
        }).pipe(withPolicy(policy.requireMember(path.projectId))))
      .handle("workspace", ({ headers: h, path, urlParams }) =>
        Effect.flatMap(
          Api.CurrentUser,
          (me) => respond({ stream: Events.workspaceStream(path.projectId, me.id), after: position(h, urlParams) })
        ).pipe(
          withPolicy(policy.requireMember(path.projectId))
        ))
  }))
