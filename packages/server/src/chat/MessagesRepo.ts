import { SqlClient, type SqlError } from "@effect/sql"
import { Chat, type Events, Ids } from "@herald/domain"
import { Data, DateTime, Effect, Option, Schema } from "effect"

/** A `messages` row; a deleted message keeps its place in the history but not its text. */
const MessageRow = Schema.Struct({
  id: Ids.MessageId,
  position: Schema.Number,
  projectId: Ids.ProjectId,
  authorId: Ids.UserId,
  scope: Chat.MessageScope,
  role: Chat.AuthorRole,
  body: Schema.String,
  clientMessageId: Schema.NullOr(Schema.String),
  createdEventId: Ids.EventId,
  createdEventSeq: Schema.Number,
  createdAt: Schema.DateTimeUtcFromDate,
  editedAt: Schema.NullOr(Schema.DateTimeUtcFromDate),
  deletedAt: Schema.NullOr(Schema.DateTimeUtcFromDate)
})
const decodeRows = Schema.decodeUnknown(Schema.Array(MessageRow))

export interface StoredMessage {
  readonly message: Chat.Message
  readonly position: number
  /** The seq and id of the `message.created` event, for idempotent replies. */
  readonly createdEvent: { readonly id: Ids.EventId; readonly seq: number }
}

const toStored = (row: typeof MessageRow.Type): StoredMessage => ({
  message: new Chat.Message({
    id: row.id,
    projectId: row.projectId,
    authorId: row.authorId,
    scope: row.scope,
    role: row.role,
    body: row.deletedAt === null ? row.body : "",
    ...(row.clientMessageId === null ? {} : { clientMessageId: row.clientMessageId }),
    createdAt: row.createdAt,
    ...(row.editedAt === null ? {} : { editedAt: row.editedAt }),
    ...(row.deletedAt === null ? {} : { deletedAt: row.deletedAt })
  }, true),
  position: row.position,
  createdEvent: { id: row.createdEventId, seq: row.createdEventSeq }
})

/** The rows of a query, decoded. */
const decoded = (query: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
  query.pipe(Effect.flatMap(decodeRows), Effect.map((rows) => rows.map(toStored)))

/** The same, where a database failure or a row that does not decode is a defect. */
const stored = (query: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) => Effect.orDie(decoded(query))

const first = (query: Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>) =>
  Effect.map(stored(query), (rows) => Option.fromNullable(rows[0]))

/** The insert lost a race with an identical post (same author, scope and clientMessageId). */
export class DuplicateClientMessage extends Data.TaggedError("DuplicateClientMessage") {}

const isUniqueViolation = (error: SqlError.SqlError, constraint: string) => {
  const cause = error.cause as { code?: string; constraint?: string } | undefined
  return cause?.code === "23505" && cause.constraint === constraint
}

const sqlState = (error: SqlError.SqlError) => (error.cause as { code?: string } | undefined)?.code

/** What `herald_post_message` raises for an author who is not a member (any more). */
const NOT_A_MEMBER = "HN404"

const columns = `id, position, project_id, author_id, scope, role, body, client_message_id,
  created_event_id, created_event_seq, created_at, edited_at, deleted_at`

/** Messages of project chats and workspaces. Deletion is soft (`deleted_at`). */
export class MessagesRepo extends Effect.Service<MessagesRepo>()("Herald/MessagesRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const cols = sql.literal(columns)

    /**
     * A message and its `message.created` event, written by one statement (`herald_post_message`,
     * migration 0006): the seq bump, the message (only while the author is still a member: None
     * otherwise, with nothing written) and the outbox row, all or nothing.
     */
    const post = (m: {
      readonly id: Ids.MessageId
      readonly projectId: Ids.ProjectId
      readonly authorId: Ids.UserId
      readonly scope: Chat.MessageScope
      readonly role: Chat.AuthorRole
      readonly body: string
      readonly clientMessageId: string | undefined
      readonly event: { readonly id: Ids.EventId; readonly stream: Events.StreamId; readonly data: unknown }
      /** How long the outbox row is not due for claims (its event is handed to the publisher). */
      readonly dueInMs: number
      /** The request's `traceparent`, for the outbox row (tracing on; migration 0011). */
      readonly traceContext?: string | undefined
    }) =>
      decoded(
        m.traceContext === undefined
          ? sql`
        SELECT ${cols} FROM herald_post_message(
          ${m.event.stream}, ${m.event.id}, ${m.id}, ${m.projectId}, ${m.authorId}, ${m.scope}, ${m.role},
          ${m.body}, ${m.clientMessageId ?? null}, ${JSON.stringify(m.event.data)}::jsonb, ${m.dueInMs}::int)`
          : sql`
        SELECT ${cols} FROM herald_post_message(
          ${m.event.stream}, ${m.event.id}, ${m.id}, ${m.projectId}, ${m.authorId}, ${m.scope}, ${m.role},
          ${m.body}, ${m.clientMessageId ?? null}, ${JSON.stringify(m.event.data)}::jsonb, ${m.dueInMs}::int,
          ${m.traceContext})`
      ).pipe(
        Effect.map((rows) => Option.fromNullable(rows[0])),
        Effect.catchTags({
          SqlError: (e) =>
            isUniqueViolation(e, "messages_client_message_id_key")
              ? new DuplicateClientMessage()
              : sqlState(e) === NOT_A_MEMBER
              ? Effect.succeed(Option.none<StoredMessage>())
              : Effect.die(e),
          ParseError: Effect.die
        })
      )

    /** The author's earlier message with this key — only while the author is still a member. */
    const findByClientMessageId = (key: {
      projectId: Ids.ProjectId
      authorId: Ids.UserId
      scope: Chat.MessageScope
      clientMessageId: string
    }) =>
      first(
        sql`
          SELECT ${cols} FROM messages
          WHERE project_id = ${key.projectId} AND author_id = ${key.authorId}
            AND scope = ${key.scope} AND client_message_id = ${key.clientMessageId}
            AND EXISTS (SELECT 1 FROM project_members WHERE project_id = ${key.projectId} AND user_id = ${key.authorId})`
      )

    const findProjectMessage = (projectId: Ids.ProjectId, messageId: Ids.MessageId) =>
      first(sql`
        SELECT ${cols} FROM messages
        WHERE id = ${messageId} AND project_id = ${projectId} AND scope = 'project'`)

    /** None when the message is gone or deleted meanwhile. */
    const editBody = (messageId: Ids.MessageId, body: string, at: DateTime.Utc) =>
      first(sql`
        UPDATE messages SET body = ${body}, edited_at = ${DateTime.toDateUtc(at)}
        WHERE id = ${messageId} AND deleted_at IS NULL
        RETURNING ${cols}`)

    /** false when it was already deleted. */
    const softDelete = (messageId: Ids.MessageId, at: DateTime.Utc) =>
      sql`UPDATE messages SET deleted_at = ${
        DateTime.toDateUtc(at)
      } WHERE id = ${messageId} AND deleted_at IS NULL RETURNING 1`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.orDie
      )

    /** Newest first; `before` is the position cursor of the previous page. */
    const page = (filter: {
      readonly projectId: Ids.ProjectId
      readonly workspaceOf: Ids.UserId | undefined
      readonly limit: number
      readonly before: number | undefined
    }) =>
      Effect.map(
        stored(sql`
          SELECT ${cols} FROM messages
          WHERE project_id = ${filter.projectId}
            AND ${
          filter.workspaceOf === undefined
            ? sql`scope = 'project'`
            : sql`scope = 'workspace' AND author_id = ${filter.workspaceOf}`
        }
            ${filter.before === undefined ? sql`` : sql`AND position < ${filter.before}`}
          ORDER BY position DESC
          LIMIT ${filter.limit + 1}`),
        (rows) => {
          const items = rows.slice(0, filter.limit)
          const more = rows.length > filter.limit
          return { items, nextCursor: more ? items[items.length - 1]!.position : undefined }
        }
      )

    return { post, findByClientMessageId, findProjectMessage, editBody, softDelete, page } as const
  })
}) {}
