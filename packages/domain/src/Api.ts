import * as HttpApi from "@effect/platform/HttpApi"
import * as HttpApiEndpoint from "@effect/platform/HttpApiEndpoint"
import * as HttpApiGroup from "@effect/platform/HttpApiGroup"
import * as HttpApiMiddleware from "@effect/platform/HttpApiMiddleware"
import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import * as HttpApiSecurity from "@effect/platform/HttpApiSecurity"
import * as OpenApi from "@effect/platform/OpenApi"
import { Context, ParseResult, Schema } from "effect"
import { AuthorRole, ClientMessageId, Member, MemberRole, Message, MessageBody, Name, Project, User } from "./Chat.js"
import {
  BadRequest,
  Conflict,
  CursorExpired,
  Forbidden,
  NotFound,
  ServiceUnavailable,
  TooManyRequests,
  Unauthorized
} from "./Errors.js"
import { Event, EventRef, EventType } from "./Events.js"
import { MessageId, ProjectId, TokenId, UserId } from "./Ids.js"
import { DraftPath, Presence, PutDraftPayload } from "./Signals.js"
import { storable } from "./Text.js"

/**
 * The token a request was authenticated with: directly, or through a stream ticket it issued. A
 * revoked or expired token ends the SSE connections it opened either way (SseHub).
 */
export interface Credential {
  readonly tokenId: TokenId
  readonly via: "token" | "ticket"
}

/**
 * The caller: a user, and — when the API's middleware authenticated the request — the credential
 * it used. (The CLI, the demo seed and tests act for a user they hold, without one.)
 */
export type Caller = User & { readonly credential?: Credential | undefined }

/** The user with the credential that authenticated them, kept off the user's own fields (and JSON). */
export const callerOf = (user: User, credential: Credential): Caller =>
  Object.defineProperty(new User(user, true), "credential", { value: credential, enumerable: false })

/** The authenticated caller, provided by the `Authentication` middleware. */
export class CurrentUser extends Context.Tag("Herald/CurrentUser")<CurrentUser, Caller>() {}

/**
 * Every authentication may also be refused with a 429: a client address over its budget of failed
 * authentications is refused before its token is looked up (SPEC §5 "Limits"); the same error
 * answers the write limit and the SSE connection caps.
 */
export class Authentication extends HttpApiMiddleware.Tag<Authentication>()("Herald/Authentication", {
  failure: Schema.Union(Unauthorized, TooManyRequests),
  provides: CurrentUser,
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/**
 * The admin API: `Authorization: Bearer $HERALD_ADMIN_TOKEN`; 404 while that variable is unset,
 * so a server without it does not even show the endpoint exists.
 */
export class AdminAuthentication extends HttpApiMiddleware.Tag<AdminAuthentication>()("Herald/AdminAuthentication", {
  failure: Schema.Union(Unauthorized, NotFound, TooManyRequests),
  security: { bearer: HttpApiSecurity.bearer }
}) {}

/**
 * The SSE endpoints also take `?ticket=` (a short-lived stream ticket, `POST /api/stream-tickets`)
 * and, for compatibility, `?access_token=`, because a browser's `EventSource` cannot send headers.
 * Tried in this order; the first that authenticates wins.
 */
export class StreamAuthentication extends HttpApiMiddleware.Tag<StreamAuthentication>()("Herald/StreamAuthentication", {
  failure: Schema.Union(Unauthorized, TooManyRequests),
  provides: CurrentUser,
  security: {
    bearer: HttpApiSecurity.bearer,
    accessToken: HttpApiSecurity.apiKey({ key: "access_token", in: "query" }),
    // Last: with no credential at all, its failure is the answer, and it names all three.
    ticket: HttpApiSecurity.apiKey({ key: "ticket", in: "query" })
  }
}) {}

// ---------------------------------------------------------------------------------------------
// Payloads and results

export const CreateUserPayload = Schema.Struct({ name: Name })
export class CreatedUser extends Schema.Class<CreatedUser>("CreatedUser")({
  id: UserId,
  name: Schema.String,
  token: Schema.String
}) {}

export const CreateProjectPayload = Schema.Struct({ name: Name })
export class MemberView extends Schema.Class<MemberView>("MemberView")({
  userId: UserId,
  name: Schema.String,
  role: MemberRole
}) {}
export const AddMemberPayload = Schema.Struct({ userId: UserId })

export const PostMessagePayload = Schema.Struct({
  body: MessageBody,
  clientMessageId: Schema.optionalWith(ClientMessageId, { exact: true })
})
export const PostWorkspaceMessagePayload = Schema.Struct({
  body: MessageBody,
  role: Schema.optionalWith(AuthorRole, { exact: true }),
  clientMessageId: Schema.optionalWith(ClientMessageId, { exact: true })
})
export const EditMessagePayload = Schema.Struct({ body: MessageBody })

const messageWriteFields = { message: Message, event: EventRef }
/** A new message: 201. */
export class MessagePosted extends Schema.Class<MessagePosted>("MessagePosted")(messageWriteFields) {}
/** A repeated `clientMessageId`: 200 with the original message and event; nothing written. */
export class MessageReplayed extends Schema.Class<MessageReplayed>("MessageReplayed")(messageWriteFields) {}
export class MessageEdited extends Schema.Class<MessageEdited>("MessageEdited")(messageWriteFields) {}

/** A whole number written as plain digits: `1e2`, `0x10`, `+3` or ` 7` are malformed, not 100, 16, 3, 7. */
const DigitsFromString = (field: string) =>
  Schema.String.pipe(
    Schema.pattern(/^[0-9]{1,16}$/, { message: () => `${field} must be a whole number written in digits` }),
    Schema.compose(Schema.NumberFromString)
  )

const PositiveIntFromString = (field: string, max: number) =>
  DigitsFromString(field).pipe(
    Schema.int({ message: () => `${field} must be an integer` }),
    Schema.between(1, max, { message: () => `${field} must be between 1 and ${max}` })
  )

/** An opaque paging cursor (a message position). */
export const Cursor = Schema.String.pipe(
  Schema.pattern(/^[1-9][0-9]{0,17}$/, { message: () => "before must be a cursor returned as nextCursor" })
)

export const MessagePageParams = Schema.Struct({
  limit: Schema.optional(PositiveIntFromString("limit", 200)),
  before: Schema.optional(Cursor)
})
export class MessagePage extends Schema.Class<MessagePage>("MessagePage")({
  items: Schema.Array(Message),
  nextCursor: Schema.NullOr(Cursor)
}) {}

export const ProjectPath = Schema.Struct({ projectId: ProjectId })
export const MemberPath = Schema.Struct({ projectId: ProjectId, userId: UserId })
export const MessagePath = Schema.Struct({ projectId: ProjectId, messageId: MessageId })

/** A stream position: `Last-Event-ID` or `?after=` (0 = from the beginning). */
export const StreamPosition = DigitsFromString("a stream position").pipe(
  Schema.int({ message: () => "a stream position must be a whole number" }),
  Schema.nonNegative({ message: () => "a stream position must not be negative" }),
  Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER)
)
/**
 * A per-stream `Last-Event-ID`: the `id:` of a frame, `<seq>.<tag>` (`<tag>`: 8 characters derived
 * from the event's id, G9), or a bare `<seq>` (which cannot tell a restored stream's new event at
 * that seq from the one the client saw).
 */
export const StreamEventId = Schema.String.pipe(
  Schema.pattern(/^[0-9]{1,16}(\.[0-9a-f]{8})?$/, {
    message: () => "Last-Event-ID must be the id of a frame of this stream: <seq>.<tag>, or a bare <seq>"
  }),
  Schema.transformOrFail(
    Schema.Struct({ seq: Schema.Number, tag: Schema.optional(Schema.String) }),
    {
      strict: true,
      decode: (text, _, ast) => {
        const dot = text.indexOf(".")
        const seq = Number(dot < 0 ? text : text.slice(0, dot))
        return seq > Number.MAX_SAFE_INTEGER
          ? ParseResult.fail(new ParseResult.Type(ast, text, "a stream position must be at most 2^53 - 1"))
          : ParseResult.succeed(dot < 0 ? { seq } : { seq, tag: text.slice(dot + 1) })
      },
      encode: ({ seq, tag }) => ParseResult.succeed(tag === undefined ? String(seq) : `${seq}.${tag}`)
    }
  )
)
export const StreamParams = Schema.Struct({ after: Schema.optional(StreamPosition) })
export const StreamHeaders = Schema.Struct({ "last-event-id": Schema.optional(StreamEventId) })

/**
 * A multiplexed stream's position: the opaque cursor sent as each frame's `id:` (URL-safe
 * base64, at most 1 KB), given back as `Last-Event-ID` or `?cursor=`.
 */
export const StreamCursor = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{1,1024}$/, {
    message: () => "a cursor must be the id of a frame of GET /api/stream (URL-safe, at most 1024 characters)"
  })
)
/** `?streams=<id>,<id>`: some of the caller's streams. */
export const StreamList = Schema.String.pipe(
  Schema.pattern(
    /^(project:[0-9a-fA-F-]{36}|workspace:[0-9a-fA-F-]{36}:[0-9a-fA-F-]{36})(,(project:[0-9a-fA-F-]{36}|workspace:[0-9a-fA-F-]{36}:[0-9a-fA-F-]{36})){0,199}$/,
    {
      message: () =>
        "streams must be 1 to 200 stream ids separated by commas: project:<projectId> or workspace:<projectId>:<userId>"
    }
  )
)
export const MultiplexParams = Schema.Struct({
  streams: Schema.optional(StreamList),
  cursor: Schema.optional(StreamCursor)
})
export const MultiplexHeaders = Schema.Struct({ "last-event-id": Schema.optional(StreamCursor) })

/** The SSE response (documented only: the body is a text/event-stream). */
export const EventStream = HttpApiSchema.Text({ contentType: "text/event-stream" })

export const Health = Schema.Struct({
  status: Schema.Literal("ok"),
  checks: Schema.Record({ key: Schema.String, value: Schema.String })
})

// ---------------------------------------------------------------------------------------------
// Groups

export class AdminApi extends HttpApiGroup.make("admin")
  .add(
    HttpApiEndpoint.post("createUser", "/api/admin/users")
      .setPayload(CreateUserPayload)
      .addSuccess(CreatedUser, { status: 201 })
  )
  .middleware(AdminAuthentication)
  .annotate(OpenApi.Description, "Needs `Authorization: Bearer $HERALD_ADMIN_TOKEN`; 404 when that variable is unset.")
{}

export class MeApi extends HttpApiGroup.make("me")
  .add(HttpApiEndpoint.get("me", "/api/me").addSuccess(User))
  .middleware(Authentication)
{}

/** A token as its owner sees it: never the secret. */
export class TokenView extends Schema.Class<TokenView>("TokenView")({
  id: TokenId,
  label: Schema.NullOr(Schema.String),
  createdAt: Schema.DateTimeUtc,
  lastUsedAt: Schema.NullOr(Schema.DateTimeUtc),
  expiresAt: Schema.NullOr(Schema.DateTimeUtc)
}) {}
export const TokenLabel = Schema.String.pipe(
  storable("label"),
  Schema.maxLength(200, { message: () => "label must be at most 200 characters" })
)
/** `expiresIn`: a duration such as `30d`, `12h`, `90m` (read by the server; absent = never expires). */
export const CreateTokenPayload = Schema.Struct({
  label: Schema.optionalWith(Schema.NullOr(TokenLabel), { exact: true }),
  expiresIn: Schema.optionalWith(
    Schema.NullOr(Schema.String.pipe(
      Schema.maxLength(64, { message: () => "expiresIn must be a duration such as 30d, 12h or 90m" })
    )),
    { exact: true }
  )
})
/** A new token: the secret, shown this once. */
export class CreatedToken extends Schema.Class<CreatedToken>("CreatedToken")({
  id: TokenId,
  token: Schema.String,
  expiresAt: Schema.NullOr(Schema.DateTimeUtc)
}) {}
export const TokenPath = Schema.Struct({ tokenId: TokenId })
export class StreamTicket extends Schema.Class<StreamTicket>("StreamTicket")({
  ticket: Schema.String,
  expiresAt: Schema.DateTimeUtc
}) {}

export class TokensApi extends HttpApiGroup.make("tokens")
  .add(
    HttpApiEndpoint.get("list", "/api/me/tokens")
      .addSuccess(Schema.Struct({ items: Schema.Array(TokenView) }))
      .annotate(OpenApi.Description, "The caller's live tokens (never revoked or expired ones, never a secret).")
  )
  .add(
    HttpApiEndpoint.post("create", "/api/me/tokens")
      .setPayload(CreateTokenPayload)
      .addSuccess(CreatedToken, { status: 201 })
      .addError(Conflict)
      .annotate(
        OpenApi.Description,
        "A new token for the caller; the secret is shown once. `expiresIn`: a duration such as `30d`, `12h`, " +
          "`90m` (1 minute to 3650 days); absent or null: it never expires. At most 100 live tokens (409 beyond)."
      )
  )
  .add(
    HttpApiEndpoint.del("revoke", "/api/me/tokens/:tokenId")
      .setPath(TokenPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .annotate(
        OpenApi.Description,
        "Revokes one of the caller's tokens: refused on every node, and the SSE connections it opened ended, within 1 s."
      )
  )
  .add(
    HttpApiEndpoint.post("streamTicket", "/api/stream-tickets")
      .addSuccess(StreamTicket, { status: 201 })
      .annotate(
        OpenApi.Description,
        "A short-lived credential (`HERALD_TICKET_TTL`) for `?ticket=` on the SSE endpoints, and nothing else. " +
          "A connection opened with it outlives it; it dies with the token that issued it."
      )
  )
  .middleware(Authentication)
{}

export class ProjectsApi extends HttpApiGroup.make("projects")
  .add(
    HttpApiEndpoint.post("create", "/api/projects")
      .setPayload(CreateProjectPayload)
      .addSuccess(Project, { status: 201 })
  )
  .add(
    HttpApiEndpoint.get("list", "/api/projects")
      .addSuccess(Schema.Struct({ items: Schema.Array(Project) }))
  )
  .add(
    HttpApiEndpoint.get("get", "/api/projects/:projectId")
      .setPath(ProjectPath)
      .addSuccess(Project)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("members", "/api/projects/:projectId/members")
      .setPath(ProjectPath)
      .addSuccess(Schema.Struct({ items: Schema.Array(MemberView) }))
      .addError(NotFound)
      .annotate(OpenApi.Description, "The project's members with their names (members only).")
  )
  .add(
    HttpApiEndpoint.post("addMember", "/api/projects/:projectId/members")
      .setPath(ProjectPath)
      .setPayload(AddMemberPayload)
      .addSuccess(Member, { status: 201 })
      .addError(NotFound)
      .addError(Forbidden)
      .addError(Conflict)
  )
  .add(
    HttpApiEndpoint.del("removeMember", "/api/projects/:projectId/members/:userId")
      .setPath(MemberPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .addError(Forbidden)
      .addError(Conflict)
  )
  .middleware(Authentication)
{}

export class MessagesApi extends HttpApiGroup.make("messages")
  .add(
    HttpApiEndpoint.post("post", "/api/projects/:projectId/messages")
      .setPath(ProjectPath)
      .setPayload(PostMessagePayload)
      .addSuccess(MessagePosted, { status: 201 })
      .addSuccess(MessageReplayed, { status: 200 })
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("list", "/api/projects/:projectId/messages")
      .setPath(ProjectPath)
      .setUrlParams(MessagePageParams)
      .addSuccess(MessagePage)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.patch("edit", "/api/projects/:projectId/messages/:messageId")
      .setPath(MessagePath)
      .setPayload(EditMessagePayload)
      .addSuccess(MessageEdited)
      .addError(NotFound)
      .addError(Forbidden)
      .addError(Conflict)
  )
  .add(
    HttpApiEndpoint.del("delete", "/api/projects/:projectId/messages/:messageId")
      .setPath(MessagePath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .addError(Forbidden)
  )
  .middleware(Authentication)
{}

export class WorkspaceApi extends HttpApiGroup.make("workspace")
  .add(
    HttpApiEndpoint.post("post", "/api/projects/:projectId/workspace/messages")
      .setPath(ProjectPath)
      .setPayload(PostWorkspaceMessagePayload)
      .addSuccess(MessagePosted, { status: 201 })
      .addSuccess(MessageReplayed, { status: 200 })
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("list", "/api/projects/:projectId/workspace/messages")
      .setPath(ProjectPath)
      .setUrlParams(MessagePageParams)
      .addSuccess(MessagePage)
      .addError(NotFound)
  )
  .middleware(Authentication)
{}

/**
 * Live signals (SPEC §5, G10): presence and typing in a project's chat, and live drafts in the
 * caller's own workspace. Ephemeral: nothing is written to the database, and they reach the SSE
 * endpoints as frames without an `id:`.
 */
export class SignalsApi extends HttpApiGroup.make("signals")
  .add(
    HttpApiEndpoint.get("presence", "/api/projects/:projectId/presence")
      .setPath(ProjectPath)
      .addSuccess(Presence)
      .addError(NotFound)
      .annotate(
        OpenApi.Description,
        "The members present now: with an SSE connection carrying the project stream, on any node."
      )
  )
  .add(
    HttpApiEndpoint.post("typing", "/api/projects/:projectId/typing")
      .setPath(ProjectPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .annotate(
        OpenApi.Description,
        "The caller is typing: `event: typing` `{stream, userId, until}` (now + 5 s) to the other members' connections carrying the project stream; calls within a second are coalesced."
      )
  )
  .add(
    HttpApiEndpoint.put("putDraft", "/api/projects/:projectId/workspace/drafts/:draftId")
      .setPath(DraftPath)
      .setPayload(PutDraftPayload)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
      .annotate(
        OpenApi.Description,
        "A live draft in the caller's workspace (the whole body so far): `event: draft` to the caller's own connections carrying the workspace stream, at most 10 frames a second, the latest body always. It ends on DELETE, after 60 s without an update, or when a workspace message is posted with `clientMessageId` equal to the draft's id."
      )
  )
  .add(
    HttpApiEndpoint.del("deleteDraft", "/api/projects/:projectId/workspace/drafts/:draftId")
      .setPath(DraftPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(NotFound)
  )
  .middleware(Authentication)
{}

export class StreamsApi extends HttpApiGroup.make("streams")
  .add(
    HttpApiEndpoint.get("project", "/api/projects/:projectId/stream")
      .setPath(ProjectPath)
      .setUrlParams(StreamParams)
      .setHeaders(StreamHeaders)
      .addSuccess(EventStream)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("workspace", "/api/projects/:projectId/workspace/stream")
      .setPath(ProjectPath)
      .setUrlParams(StreamParams)
      .setHeaders(StreamHeaders)
      .addSuccess(EventStream)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("multiplexed", "/api/stream")
      .setUrlParams(MultiplexParams)
      .setHeaders(MultiplexHeaders)
      .addSuccess(EventStream)
      .addError(BadRequest)
      .addError(CursorExpired)
      .addError(NotFound)
      .annotate(
        OpenApi.Description,
        "Every stream the caller may read on one connection (`?streams=` narrows it). `id:` is an opaque cursor " +
          "(at most 1 KB) standing for every event up to there, per stream; resume with `Last-Event-ID` or " +
          "`?cursor=`. Without a cursor the first frame is `event: heads` with `{streams: {<id>: <head seq>}}`. " +
          "A cursor whose base was unused for HERALD_CURSOR_RETENTION is a 400 `CursorExpired`: start over " +
          "without a cursor and reload over HTTP."
      )
  )
  .middleware(StreamAuthentication)
  .annotate(
    OpenApi.Description,
    "Server-sent events: `id: <seq>.<tag>` (opaque: read the seq from the envelope), `event: <type>`, `data: <envelope>`. Resume with `Last-Event-ID` (`<seq>.<tag>` or `<seq>`) or `?after=<seq>`; a position whose event is no longer the one at its seq, ahead of the head or past retention is answered with `event: reset`."
  )
{}

// ---------------------------------------------------------------------------------------------
// History and analytics (served from event_log)

/** An instant as ISO-8601 with an explicit zone (`Z` or `±hh:mm`). */
export const Instant = Schema.DateTimeUtc.pipe(
  Schema.annotations({ description: "ISO-8601 date-time with a zone, e.g. 2026-11-27T10:00:00Z" })
)

/**
 * Where event_log's history starts: retention dropped every month before it (ISO-8601); null while
 * nothing was ever dropped. History and analytics answer for what is held from there on.
 */
export const HeldFrom = Schema.NullOr(Instant).pipe(
  Schema.annotations({
    description: "Where event_log's history starts (retention dropped every month before it); null: nothing dropped"
  })
)

export const HistoryParams = Schema.Struct({
  after: Schema.optional(StreamPosition),
  limit: Schema.optional(PositiveIntFromString("limit", 1000)),
  type: Schema.optional(EventType)
})
export class EventPage extends Schema.Class<EventPage>("EventPage")({
  items: Schema.Array(Event),
  nextAfter: Schema.NullOr(Schema.Int),
  heldFrom: HeldFrom
}) {}

/** A real calendar date (JS `Date` would roll 2026-02-30 over into March). */
const isCalendarDate = (text: string) => {
  const [y, m, d] = text.slice(0, 10).split("-").map(Number) as [number, number, number]
  const date = new Date(Date.UTC(y, m - 1, d))
  return date.getUTCFullYear() === y && date.getUTCMonth() === m - 1 && date.getUTCDate() === d
}
const InstantParam = Schema.String.pipe(
  Schema.pattern(/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/, {
    message: () => "expected an ISO-8601 date (2026-11-27) or date-time with a zone (2026-11-27T10:00:00Z)"
  }),
  Schema.filter(isCalendarDate, { message: () => "not a calendar date" }),
  Schema.compose(Schema.DateTimeUtc)
)
export const RangeParams = Schema.Struct({
  from: Schema.optional(InstantParam),
  to: Schema.optional(InstantParam)
})
export const Bucket = Schema.Literal("minute", "hour", "day")
export type Bucket = typeof Bucket.Type
export const TimeseriesParams = Schema.Struct({
  ...RangeParams.fields,
  bucket: Bucket,
  type: Schema.optional(EventType)
})

export class AnalyticsSummary extends Schema.Class<AnalyticsSummary>("AnalyticsSummary")({
  projectId: ProjectId,
  from: Instant,
  to: Instant,
  /** Every event committed before this instant is counted. */
  asOf: Schema.NullOr(Instant),
  heldFrom: HeldFrom,
  events: Schema.Struct({ total: Schema.Int, byType: Schema.Record({ key: Schema.String, value: Schema.Int }) }),
  messages: Schema.Struct({ created: Schema.Int, edited: Schema.Int, deleted: Schema.Int }),
  activeUsers: Schema.Int,
  topAuthors: Schema.Array(Schema.Struct({ userId: UserId, messages: Schema.Int })),
  workspace: Schema.Struct({ events: Schema.Int })
}) {}

export class Timeseries extends Schema.Class<Timeseries>("Timeseries")({
  bucket: Bucket,
  asOf: Schema.NullOr(Instant),
  heldFrom: HeldFrom,
  points: Schema.Array(Schema.Struct({ t: Instant, count: Schema.Int }))
}) {}

export class HistoryApi extends HttpApiGroup.make("history")
  .add(
    HttpApiEndpoint.get("project", "/api/projects/:projectId/events")
      .setPath(ProjectPath)
      .setUrlParams(HistoryParams)
      .addSuccess(EventPage)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("workspace", "/api/projects/:projectId/workspace/events")
      .setPath(ProjectPath)
      .setUrlParams(HistoryParams)
      .addSuccess(EventPage)
      .addError(NotFound)
  )
  .middleware(Authentication)
{}

export class AnalyticsApi extends HttpApiGroup.make("analytics")
  .add(
    HttpApiEndpoint.get("summary", "/api/projects/:projectId/analytics/summary")
      .setPath(ProjectPath)
      .setUrlParams(RangeParams)
      .addSuccess(AnalyticsSummary)
      .addError(NotFound)
  )
  .add(
    HttpApiEndpoint.get("timeseries", "/api/projects/:projectId/analytics/timeseries")
      .setPath(ProjectPath)
      .setUrlParams(TimeseriesParams)
      .addSuccess(Timeseries)
      .addError(NotFound)
  )
  .middleware(Authentication)
{}

export class HealthApi extends HttpApiGroup.make("health")
  .add(HttpApiEndpoint.get("live", "/health/live").addSuccess(Health))
  .add(HttpApiEndpoint.get("ready", "/health/ready").addSuccess(Health).addError(ServiceUnavailable))
  .add(
    HttpApiEndpoint.get("metrics", "/metrics")
      .addSuccess(HttpApiSchema.Text({ contentType: "text/plain; version=0.0.4; charset=utf-8" }))
      .annotate(OpenApi.Description, "Prometheus text exposition")
  )
{}

export class HeraldApi extends HttpApi.make("herald")
  .add(AdminApi)
  .add(MeApi)
  .add(TokensApi)
  .add(ProjectsApi)
  .add(MessagesApi)
  .add(WorkspaceApi)
  .add(SignalsApi)
  .add(StreamsApi)
  .add(HistoryApi)
  .add(AnalyticsApi)
  .add(HealthApi)
  .addError(BadRequest)
  .annotate(OpenApi.Title, "Herald")
  .annotate(OpenApi.Description, "A chat backend whose realtime events never disagree with its database.")
{}
