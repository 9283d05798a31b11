import { Api, type Chat } from "@herald/domain"
import { Effect, FiberSet, Layer, Option, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ChatService } from "../chat/ChatService.js"
import { asUser } from "../chat/Policy.js"
import { AppConfig } from "../config/AppConfig.js"
import { doorSpan } from "../observability/Tracing.js"
import { AuthorizationHeader } from "./AuthorizationHeader.js"
import {
  doorEndpoint,
  type DoorRequest,
  endpointOf,
  finished,
  fromClient,
  invalidJsonAnswer,
  pathOf,
  write
} from "./Doors.js"
import { REPLAYED_STATUS, writeResult } from "./Handlers.js"
import { MAX_BODY_BYTES, redactUrl } from "./Middleware.js"
import { NodeServer } from "./NodeServer.js"

/**
 * The post door: the hot write — `POST /api/projects/:projectId/messages` and
 * `…/workspace/messages` with a JSON body of declared length — served below the HTTP app, as the
 * SSE door serves the streams. Both endpoints are built from the API definition (Doors.ts): the
 * same authentication, decoding and answers as the app's, then the same handler result
 * (`writeResult`). What it saves is the HTTP app's per-request fiber pipeline (router, middleware,
 * request and response wrappers): about a fifth of a post's CPU (docs/benchmarks.md, "write"). A
 * request it is not sure about — another content type, no Content-Length or one over the limit, a
 * chunked body — goes to the HTTP app untouched, before any of its body is read.
 */

const JSON_TYPE = /^application\/json\s*(;\s*charset=utf-8\s*)?$/i

/** Whether the door may take the request at all (the rest is the endpoint's to decide). */
const plain = (req: IncomingMessage) => {
  const { "content-length": length, "content-type": type } = req.headers
  return type !== undefined && JSON_TYPE.test(type) && length !== undefined && /^\d{1,7}$/.test(length) &&
    Number(length) <= MAX_BODY_BYTES && req.headers["transfer-encoding"] === undefined
}

const encodeReplayed = (body: Api.MessageReplayed) => Effect.orDie(Schema.encode(Api.MessageReplayed)(body))

const projectOf = (r: DoorRequest<unknown>) => (r.path as typeof Api.ProjectPath.Type).projectId

class InvalidJson {
  readonly _tag = "InvalidJson"
}

/** As the platform reads a JSON body: UTF-8 (a byte-order mark kept, so not JSON), empty = `null`. */
const parseJson = (body: Buffer) =>
  Effect.try({
    try: (): unknown => {
      const text = body.toString("utf8")
      return text === "" ? null : JSON.parse(text)
    },
    catch: () => new InvalidJson()
  })

export const PostDoorLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const node = yield* Effect.serviceOption(NodeServer)
    if (Option.isNone(node)) return
    const chat = yield* ChatService
    const traced = Option.isSome((yield* AppConfig).tracing)
    const context = yield* Effect.context<Api.Authentication>()
    const run = yield* FiberSet.makeRuntime<never>()

    const endpoints = [
      {
        endpoint: doorEndpoint<Chat.User>(endpointOf("messages", "post"), context),
        post: (r: DoorRequest<Chat.User>) =>
          chat.postMessage(projectOf(r), r.payload as typeof Api.PostMessagePayload.Type)
      },
      {
        endpoint: doorEndpoint<Chat.User>(endpointOf("workspace", "post"), context),
        post: (r: DoorRequest<Chat.User>) =>
          chat.postWorkspaceMessage(projectOf(r), r.payload as typeof Api.PostWorkspaceMessagePayload.Type)
      }
    ]

    const serve = (
      req: IncomingMessage,
      res: ServerResponse,
      target: (typeof endpoints)[number],
      params: Record<string, string>,
      body: Buffer
    ) => {
      const url = redactUrl(req.url ?? "")
      const served = Effect.gen(function*() {
        const request = yield* target.endpoint.decode(req, params, parseJson(body))
        const written = yield* asUser(request.caller)(target.post(request))
        const result = writeResult(written)
        const answer = result.created
          ? yield* target.endpoint.success(result.body)
          : { status: REPLAYED_STATUS, contentType: "application/json", body: yield* encodeReplayed(result.body) }
        write(res, answer)
        return answer.status
      }).pipe(
        Effect.catchIf((e): e is InvalidJson => e instanceof InvalidJson, () =>
          Effect.sync(() => {
            const answer = invalidJsonAnswer("POST", req.url ?? "")
            write(res, answer)
            return answer.status
          })),
        Effect.provideService(AuthorizationHeader, req.headers.authorization),
        fromClient(req),
        finished(res, "POST", url)
      )
      return traced ? doorSpan(req, target.endpoint.path, url)(served) : served
    }

    const door = (req: IncomingMessage, res: ServerResponse) => {
      if (req.method !== "POST" || req.url === undefined || !plain(req)) return false
      const path = pathOf(req.url)
      for (const target of endpoints) {
        const params = target.endpoint.match(path)
        if (params === undefined) continue
        const chunks: Array<Buffer> = []
        req.on("data", (chunk: Buffer) => chunks.push(chunk))
        req.once("end", () => run(serve(req, res, target, params, Buffer.concat(chunks))))
        return true
      }
      return false
    }

    yield* node.value.hang(door)
  })
)
