import type * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiError from "@effect/platform/HttpApiError"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import type * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import { Api } from "@herald/domain"
import { Context, Effect, Option, ParseResult, Redacted, Schema, type SchemaAST } from "effect"
import * as QueryString from "find-my-way-ts/QueryString"
import type { IncomingMessage, ServerResponse } from "node:http"
import { ClientAddress } from "../limits/Limits.js"
import { invalidJsonMessage } from "./Middleware.js"

/**
 * What the doors (SseDoor, PostDoor) are built from: an endpoint of the HttpApi definition, served
 * below the HTTP app the way HttpApiBuilder serves it — one source for routing, auth precedence,
 * decoding, answers and errors. For an endpoint, `doorEndpoint` derives from the definition:
 * - the path's match (a path that is not UTF-8 matches nothing: the app answers it);
 * - authentication: the endpoint's security middleware, its credentials decoded as the platform
 *   decodes them and tried in the definition's order (the first success wins, the last failure is
 *   the answer), each handled by the same middleware implementation as the app's;
 * - decoding, in the app's order (after authentication): path, payload, headers, query, a failure
 *   being the API's `HttpApiDecodeError`;
 * - answers: a success encoded with the endpoint's success schemas (the status each is annotated
 *   with), an error with the API's error schemas (likewise).
 * The differential test (DoorDifferential.test.ts) sends the same requests to both.
 */

type Endpoint = HttpApiEndpoint.HttpApiEndpoint.AnyWithProps

/** An endpoint of the API with the middleware it runs under (its group's, then its own). */
export interface ApiEndpoint {
  readonly endpoint: Endpoint
  readonly middlewares: ReadonlyArray<HttpApiMiddleware.TagClassAny>
}

/** The API's endpoint `name` of group `group` (a typo is a defect at start-up, not a silent miss). */
export const endpointOf = (group: string, name: string): ApiEndpoint => {
  const g = Api.HeraldApi.groups[group]
  const endpoint = g?.endpoints[name]
  if (g === undefined || endpoint === undefined) throw new Error(`no endpoint ${group}.${name} in the API`)
  return {
    endpoint: endpoint as unknown as Endpoint,
    middlewares: [...Api.HeraldApi.middlewares, ...g.middlewares, ...endpoint.middlewares]
  }
}

/** An answer the door writes: status, content type and the encoded body (`undefined`: none). */
export interface Answer {
  readonly status: number
  readonly contentType: string
  readonly body: unknown
}

const isAnswer = (u: unknown): u is Answer => typeof u === "object" && u !== null && "status" in u
const AnswerSchema = Schema.declare(isAnswer)

/** The platform's schema-to-response, to a plain answer: each schema's status and encoding from its annotations. */
const toAnswer = (status: (ast: SchemaAST.AST) => number) => <A, I, R>(schema: Schema.Schema<A, I, R>) =>
  Schema.transformOrFail(AnswerSchema, schema, {
    strict: false,
    decode: (_, __, ast) => ParseResult.fail(new ParseResult.Forbidden(ast, _, "encode only")),
    encode: (data, _, ast) =>
      ParseResult.succeed({
        status: status(ast.to),
        contentType: HttpApiSchema.getEncoding(ast.to).contentType,
        body: HttpApiSchema.isVoid(ast.to) ? undefined : data
      })
  })

const answerUnion = (status: (ast: SchemaAST.AST) => number, add: (into: Set<Schema.Schema.Any>) => void) => {
  const schemas = new Set<Schema.Schema.Any>()
  add(schemas)
  // Every schema of the API is context-free (no service is needed to encode an answer).
  return Schema.encodeUnknown(
    Schema.Union(...Array.from(schemas, toAnswer(status))) as unknown as Schema.Schema<unknown, Answer>
  )
}

/** Every error the API answers, as the app encodes them (HttpApiBuilder's error schema). */
const encodeError = answerUnion(HttpApiSchema.getStatusErrorAST, (schemas) => {
  HttpApiSchema.deunionize(schemas, Api.HeraldApi.errorSchema as Schema.Schema.Any)
  for (const group of Object.values(Api.HeraldApi.groups)) {
    for (const endpoint of Object.values(group.endpoints)) {
      HttpApiSchema.deunionize(schemas, endpoint.errorSchema as Schema.Schema.Any)
    }
    HttpApiSchema.deunionize(schemas, group.errorSchema as Schema.Schema.Any)
  }
})

/** The API's answer to a failure; one it does not declare is a defect (the door's 500). */
export const errorAnswer = (error: unknown): Effect.Effect<Answer> => Effect.orDie(encodeError(error))

/** A body that is not JSON: the app's answer (Middleware.ts jsonErrors). */
export const invalidJsonAnswer = (method: string, url: string): Answer => ({
  status: 400,
  contentType: "application/json",
  body: { _tag: "BadRequest", message: invalidJsonMessage(method, url) }
})

/**
 * The answer, unless the response is already under way or gone; a 429's `retryAfter` is sent as
 * `Retry-After` too, as the HTTP app does (Middleware.ts `retryAfter`).
 */
export const write = (res: ServerResponse, answer: Answer) => {
  if (res.headersSent || res.destroyed) return
  if (answer.body === undefined) {
    res.writeHead(answer.status)
    res.end()
    return
  }
  const text = answer.contentType.includes("json") ? JSON.stringify(answer.body) : String(answer.body)
  const body = answer.body as { readonly retryAfter?: unknown }
  const wait = answer.status === 429 && typeof body.retryAfter === "number"
    ? { "retry-after": String(body.retryAfter) }
    : {}
  res.writeHead(answer.status, {
    "content-type": answer.contentType,
    "content-length": Buffer.byteLength(text),
    ...wait
  })
  res.end(text)
}

/** The client address of a door's request, for the limits (Limits.ts `ClientAddress`). */
export const fromClient = (req: IncomingMessage) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  req.socket.remoteAddress === undefined ? self : Effect.provideService(self, ClientAddress, req.socket.remoteAddress)

/** The request target's path, as the app's router matches it (as sent, before any `?`). */
export const pathOf = (url: string) => {
  const q = url.indexOf("?")
  return q < 0 ? url : url.slice(0, q)
}

/**
 * The query as the app's router parses it (find-my-way's parser, which the platform's router
 * uses): a repeated parameter is an array; what does not percent-decode stays as sent.
 */
const queryRecord = (url: string): Record<string, string | Array<string>> => {
  const q = url.indexOf("?")
  return q < 0 ? {} : QueryString.parse(url.slice(q + 1))
}

/** A credential as HttpApiBuilder's `securityDecode` reads it (a missing or repeated one is empty). */
const credential = (
  security: HttpApiSecurity.HttpApiSecurity,
  req: IncomingMessage,
  query: Record<string, string | Array<string>>
) => {
  switch (security._tag) {
    case "Bearer":
      return Redacted.make((req.headers.authorization ?? "").slice("Bearer ".length))
    case "ApiKey": {
      const value = security.in === "query"
        ? query[security.key]
        : security.in === "header"
        ? req.headers[security.key.toLowerCase()]
        : undefined
      return Redacted.make(typeof value === "string" ? value : "")
    }
    case "Basic":
      throw new Error("the doors serve no endpoint with basic authentication")
  }
}

type SecurityHandlers = Record<string, (credential: unknown) => Effect.Effect<unknown, unknown>>

/**
 * A request a door took, as the endpoint's handler gets it (decoded by the endpoint's schemas,
 * which the door's handler knows), with the authenticated caller.
 */
export interface DoorRequest<Caller> {
  readonly caller: Caller
  readonly path: unknown
  readonly payload: unknown
  readonly headers: unknown
  readonly urlParams: unknown
}

/**
 * The endpoint as a door serves it. `context` holds the implementations of its middleware (the
 * same layers the app is given). `Caller` is what its security middleware provides.
 */
export const doorEndpoint = <Caller>({ endpoint, middlewares }: ApiEndpoint, context: Context.Context<never>) => {
  // The path: `:name` segments, decoded as the router decodes them.
  const names: Array<string> = []
  const source = endpoint.path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/:(\w+)/g, (_, name: string) => {
    names.push(name)
    return "([^/]+)"
  })
  const pattern = new RegExp(`^${source}$`)
  const match = (pathname: string): Record<string, string> | undefined => {
    const m = pattern.exec(pathname)
    if (m === null) return undefined
    const params: Record<string, string> = {}
    try {
      names.forEach((name, i) => params[name] = decodeURIComponent(m[i + 1]!))
    } catch {
      return undefined
    }
    return params
  }

  // Authentication: every security middleware of the endpoint (HttpApiBuilder's makeSecurityMiddleware).
  if (middlewares.some((tag) => !HttpApiMiddleware.isSecurity(tag))) {
    throw new Error(`the doors serve endpoints with security middleware only (${endpoint.path})`)
  }
  const securities = middlewares.filter(HttpApiMiddleware.isSecurity).map((tag) => ({
    tag,
    handlers: Context.unsafeGet(context, tag as unknown as Context.Tag<unknown, SecurityHandlers>)
  }))
  if (securities.length !== 1) {
    throw new Error(`the doors serve endpoints with one security middleware (${endpoint.path})`)
  }
  const { handlers, tag } = securities[0]!
  const authenticate = (
    req: IncomingMessage,
    query: Record<string, string | Array<string>>
  ): Effect.Effect<Caller, unknown> => {
    let effect: Effect.Effect<unknown, unknown> | undefined
    for (const [key, security] of Object.entries(tag.security)) {
      const attempt = Effect.suspend(() => handlers[key]!(credential(security, req, query)))
      effect = effect === undefined ? attempt : Effect.catchAll(effect, () => attempt)
    }
    return (effect ?? Effect.void) as Effect.Effect<Caller, unknown>
  }

  const decodePath = Option.map(endpoint.pathSchema, Schema.decodeUnknown)
  const decodePayload = Option.map(endpoint.payloadSchema, Schema.decodeUnknown)
  const decodeHeaders = Option.map(endpoint.headersSchema, Schema.decodeUnknown)
  const decodeUrlParams = Option.map(endpoint.urlParamsSchema, Schema.decodeUnknown)

  /**
   * Authenticated, then decoded in the app's order; a failure is what the API answers (see
   * `errorAnswer`). `payload` is read when the app would read it: after the path.
   */
  const decode = (
    req: IncomingMessage,
    params: Record<string, string>,
    payload: Effect.Effect<unknown, unknown> = Effect.succeed(undefined)
  ): Effect.Effect<DoorRequest<Caller>, unknown> => {
    const query = queryRecord(req.url ?? "")
    return Effect.flatMap(authenticate(req, query), (caller) =>
      Effect.gen(function*() {
        const path = decodePath._tag === "Some" ? yield* decodePath.value(params) : undefined
        const body = decodePayload._tag === "Some" ? yield* Effect.flatMap(payload, decodePayload.value) : undefined
        const headers = decodeHeaders._tag === "Some" ? yield* decodeHeaders.value(req.headers) : undefined
        const urlParams = decodeUrlParams._tag === "Some"
          ? yield* decodeUrlParams.value(query)
          : undefined
        return { caller, path, payload: body, headers, urlParams }
      }).pipe(
        Effect.catchIf(ParseResult.isParseError, HttpApiError.HttpApiDecodeError.refailParseError)
      )) as Effect.Effect<DoorRequest<Caller>, unknown>
  }

  const encodeSuccess = answerUnion(HttpApiSchema.getStatusSuccessAST, (schemas) => {
    HttpApiSchema.deunionize(schemas, endpoint.successSchema)
  })
  /** A handler's result as the app answers it. */
  const success = (value: unknown): Effect.Effect<Answer> => Effect.orDie(encodeSuccess(value))

  return { method: endpoint.method, path: endpoint.path, match, decode, success } as const
}

/**
 * The end of every door's request, as the HTTP app ends its own: a failure answers what the API
 * answers; a defect is logged and answers the API's 500; then the access-log line (method, URL
 * as logged by the app, status).
 */
export const finished =
  (res: ServerResponse, method: string, loggedUrl: string) => <R>(self: Effect.Effect<number, unknown, R>) =>
    self.pipe(
      Effect.catchAll((error) =>
        Effect.map(errorAnswer(error), (answer) => {
          write(res, answer)
          return answer.status
        })
      ),
      Effect.catchAllDefect((defect) =>
        Effect.as(
          Effect.zipRight(
            Effect.logError("unexpected failure", defect),
            Effect.sync(() =>
              write(res, {
                status: 500,
                contentType: "application/json",
                body: { _tag: "InternalServerError", message: "internal error; the server log has the details" }
              })
            )
          ),
          500
        )
      ),
      Effect.tap((code) =>
        Effect.annotateLogs(Effect.logInfo("Sent HTTP response"), {
          "http.method": method,
          "http.url": loggedUrl,
          "http.status": code
        })
      ),
      Effect.withLogSpan("http")
    )
