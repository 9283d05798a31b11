import { SqlClient } from "@effect/sql"
import { Chat, type Events, type Ids } from "@herald/domain"
import { DateTime, Effect, Option } from "effect"

interface MessageRow {
  readonly id: string
  readonly position: number
  readonly projectId: string
  readonly authorId: string
  readonly scope: Chat.MessageScope
  readonly role: Chat.AuthorRole
  readonly body: string
  readonly clientMessageId: string | null
  readonly createdEventId: string
  readonly createdEventSeq: number
  readonly createdAt: Date
  readonly editedAt: Date | null
  readonly deletedAt: Date | null
}

export interface StoredMessage {
  readonly message: Chat.Message
  readonly position: number
  /** The seq and id of the `message.created` event, for idempotent replies. */
  readonly createdEvent: { readonly id: Ids.EventId; readonly seq: number }
}

const toMessage = (row: MessageRow): StoredMessage => ({
  message: new Chat.Message({
    id: row.id as Ids.MessageId,
    projectId: row.projectId as Ids.ProjectId,
    authorId: row.authorId as Ids.UserId,
    scope: row.scope,
    role: row.role,
    // A deleted message keeps its place in the history but not its text.
    body: row.deletedAt === null ? row.body : "",
    ...(row.clientMessageId === null ? {} : { clientMessageId: row.clientMessageId }),
    createdAt: DateTime.unsafeFromDate(row.createdAt),
    ...(row.editedAt === null ? {} : { editedAt: DateTime.unsafeFromDate(row.editedAt) }),
    ...(row.deletedAt === null ? {} : { deletedAt: DateTime.unsafeFromDate(row.deletedAt) })
  }),
  position: row.position,
  createdEvent: { id: row.createdEventId as Ids.EventId, seq: row.createdEventSeq }
})

const columns = `id, position, project_id, author_id, scope, role, body, client_message_id,
  created_event_id, created_event_seq, created_at, edited_at, deleted_at`

export interface NewMessage {
  readonly id: Ids.MessageId
  readonly projectId: Ids.ProjectId
  readonly authorId: Ids.UserId
  readonly scope: Chat.MessageScope
  readonly role: Chat.AuthorRole
  readonly body: string
  readonly clientMessageId: string | undefined
  readonly event: Events.EventRef
  readonly at: DateTime.Utc
}

/** Messages of project chats and workspaces. Deletion is soft (`deleted_at`). */
export class MessagesRepo extends Effect.Service<MessagesRepo>()("Herald/MessagesRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const cols = sql.literal(columns)

    /**
     * Inserts only while the author is still a member: run after the stream's seq bump, this
     * sees a removal committed just before and writes nothing (None).
     */
    const insertAsMember = (m: NewMessage) =>
      Effect.map(
        sql<MessageRow>`
          INSERT INTO messages (id, project_id, author_id, scope, role, body, client_message_id,
                                created_event_id, created_event_seq, created_at)
          SELECT ${m.id}, ${m.projectId}, ${m.authorId}, ${m.scope}, ${m.role}, ${m.body},
                 ${m.clientMessageId ?? null}, ${m.event.id}, ${m.event.seq}, ${DateTime.toDateUtc(m.at)}
          WHERE EXISTS (SELECT 1 FROM project_members WHERE project_id = ${m.projectId} AND user_id = ${m.authorId})
          RETURNING ${cols}`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toMessage)
      )

    /** The author's earlier message with this key — only while the author is still a member. */
    const findByClientMessageId = (key: {
      projectId: Ids.ProjectId
      authorId: Ids.UserId
      scope: Chat.MessageScope
      clientMessageId: string
    }) =>
      Effect.map(
        sql<MessageRow>`
          SELECT ${cols} FROM messages
          WHERE project_id = ${key.projectId} AND author_id = ${key.authorId}
            AND scope = ${key.scope} AND client_message_id = ${key.clientMessageId}
            AND EXISTS (SELECT 1 FROM project_members WHERE project_id = ${key.projectId} AND user_id = ${key.authorId})`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toMessage)
      )

    const findProjectMessage = (projectId: Ids.ProjectId, messageId: Ids.MessageId) =>
      Effect.map(
        sql<MessageRow>`
          SELECT ${cols} FROM messages
          WHERE id = ${messageId} AND project_id = ${projectId} AND scope = 'project'`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toMessage)
      )

    /** None when the message is gone or deleted meanwhile. */
    const editBody = (messageId: Ids.MessageId, body: string, at: DateTime.Utc) =>
      Effect.map(
        sql<MessageRow>`
          UPDATE messages SET body = ${body}, edited_at = ${DateTime.toDateUtc(at)}
          WHERE id = ${messageId} AND deleted_at IS NULL
          RETURNING ${cols}`,
        (rows) => Option.map(Option.fromNullable(rows[0]), toMessage)
      )

    /** false when it was already deleted. */
    const softDelete = (messageId: Ids.MessageId, at: DateTime.Utc) =>
      Effect.map(
        sql`UPDATE messages SET deleted_at = ${DateTime.toDateUtc(at)} WHERE id = ${messageId} AND deleted_at IS NULL RETURNING 1`,
        (rows) => rows.length > 0
      )

    /** Newest first; `before` is the position cursor of the previous page. */
    const page = (filter: {
      readonly projectId: Ids.ProjectId
      readonly workspaceOf: Ids.UserId | undefined
      readonly limit: number
      readonly before: number | undefined
    }) =>
      Effect.map(
        sql<MessageRow>`
          SELECT ${cols} FROM messages
          WHERE project_id = ${filter.projectId}
            AND ${
          filter.workspaceOf === undefined
            ? sql`scope = 'project'`
            : sql`scope = 'workspace' AND author_id = ${filter.workspaceOf}`
        }
            ${filter.before === undefined ? sql`` : sql`AND position < ${filter.before}`}
          ORDER BY position DESC
          LIMIT ${filter.limit + 1}`,
        (rows) => {
          const items = rows.slice(0, filter.limit).map(toMessage)
          const more = rows.length > filter.limit
          return { items, nextCursor: more ? items[items.length - 1]!.position : undefined }
        }
      )

    return { insertAsMember, findByClientMessageId, findProjectMessage, editBody, softDelete, page } as const
  })
}) {}
