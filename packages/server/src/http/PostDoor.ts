import type * as HttpApiError from "@effect/platform/HttpApiError"
import { Api, type Errors } from "@herald/domain"
import { Effect, FiberSet, Layer, Option, type ParseResult, Redacted, Schema } from "effect"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ChatService, type MessageWrite } from "../chat/ChatService.js"
import { asUser } from "../chat/Policy.js"
import { Tokens } from "./Auth.js"
import { answer, decode, decodeErrorBody, failureStatus, finished, fromClient, tooManyRequestsBody } from "./Doors.js"
import { MAX_BODY_BYTES } from "./Middleware.js"
import { NodeServer } from "./NodeServer.js"

/**
 * The post door: the hot write — `POST /api/projects/:projectId/messages` and
 * `…/workspace/messages` with a JSON body of declared length and a bearer token — served below the
 * HTTP app, as the SSE door serves the streams. It does what the API does, in the API's order and
 * with its schemas and answers: authenticate (the same token cache), decode the path, parse the
 * body (an empty one is `null`), decode the payload, post as the caller, encode the answer (201,
 * or 200 for a replayed `clientMessageId`), and log the access line. What it saves is the HTTP
 * app's per-request fiber pipeline (router, middleware, request and response wrappers): about a
 * fifth of a post's CPU (docs/benchmarks.md, "write"). Any request it is not sure about — another
 * content type, no Content-Length or one over the limit, a chunked body, a query string, no
 * bearer header — goes to the HTTP app untouched, before any of its body is read.
 */

const POST_PATH = /^\/api\/projects\/([^/?]*)\/(messages|workspace\/messages)$/
const JSON_TYPE = /^application\/json\s*(;\s*charset=utf-8\s*)?$/i
const BEARER = /^Bearer [^\s]/i

const utf8 = new TextDecoder()

type Scope = "project" | "workspace"

/** The request, if the door takes it: its scope and the raw project id from the path. */
const takes = (req: IncomingMessage): { readonly scope: Scope; readonly projectId: string } | undefined => {
  if (req.method !== "POST" || req.url === undefined) return undefined
  const m = POST_PATH.exec(req.url)
  if (m === null) return undefined
  const { authorization, "content-length": length, "content-type": type } = req.headers
  if (
    type === undefined || !JSON_TYPE.test(type) || length === undefined || !/^\d{1,7}$/.test(length) ||
    Number(length) > MAX_BODY_BYTES || req.headers["transfer-encoding"] !== undefined ||
    authorization === undefined || !BEARER.test(authorization)
  ) return undefined
  try {
    return { scope: m[2] === "messages" ? "project" : "workspace", projectId: decodeURIComponent(m[1]!) }
  } catch {
    return undefined
  }
}

class InvalidJson {
  readonly _tag = "InvalidJson"
}

type Failure =
  | Errors.Unauthorized
  | Errors.NotFound
  | Errors.TooManyRequests
  | HttpApiError.HttpApiDecodeError
  | InvalidJson

const encodePosted = Schema.encode(Api.MessagePosted)
const encodeReplayed = Schema.encode(Api.MessageReplayed)
const encodeWrite = (w: MessageWrite): Effect.Effect<readonly [number, unknown], ParseResult.ParseError> =>
  w.outcome === "created"
    ? Effect.map(encodePosted(new Api.MessagePosted({ message: w.message, event: w.event })), (body) => [201, body])
    : Effect.map(encodeReplayed(new Api.MessageReplayed({ message: w.message, event: w.event })), (body) => [200, body])

export const PostDoorLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const node = yield* Effect.serviceOption(NodeServer)
    if (Option.isNone(node)) return
    const tokens = yield* Tokens
    const chat = yield* ChatService
    const run = yield* FiberSet.makeRuntime<never>()

    const serve = (req: IncomingMessage, res: ServerResponse, target: ReturnType<typeof takes> & {}, body: Buffer) =>
      Effect.flatMap(tokens.user(Redacted.make(req.headers.authorization!.slice(7))), (me) =>
        Effect.gen(function*() {
          const { projectId } = yield* decode(Api.ProjectPath, { projectId: target.projectId })
          const text = utf8.decode(body)
          const json = yield* Effect.try({
            try: (): unknown => text === "" ? null : JSON.parse(text),
            catch: () => new InvalidJson()
          })
          const write = target.scope === "project"
            ? yield* Effect.flatMap(decode(Api.PostMessagePayload, json), (p) => chat.postMessage(projectId, p))
            : yield* Effect.flatMap(decode(Api.PostWorkspaceMessagePayload, json), (p) =>
              chat.postWorkspaceMessage(projectId, p))
          const [code, encoded] = yield* Effect.orDie(encodeWrite(write))
          answer(res, code, encoded)
          return code
        }).pipe(asUser(me))).pipe(
          Effect.catchAll((e: Failure) =>
            Effect.sync(() => {
              if (e._tag === "InvalidJson") {
                answer(res, 400, {
                  _tag: "BadRequest",
                  message: `the request body is not valid JSON: Decode error (POST ${req.url})`
                })
                return 400
              }
              const code = failureStatus(e)
              answer(
                res,
                code,
                e._tag === "HttpApiDecodeError"
                  ? decodeErrorBody(e)
                  : e._tag === "TooManyRequests"
                  ? tooManyRequestsBody(e)
                  : { message: e.message, _tag: e._tag }
              )
              return code
            })
          ),
          finished(res, "POST", req.url ?? ""),
          fromClient(req)
        )

    const door = (req: IncomingMessage, res: ServerResponse) => {
      const target = takes(req)
      if (target === undefined) return false
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.once("end", () => run(serve(req, res, target, Buffer.concat(chunks))))
      return true
    }

    yield* node.value.hang(door)
  })
)
