import { Effect, Schema } from "effect"
import { AuthorRole, MemberRole } from "./Chat.js"
import { EventId, MessageId, ProjectId, UserId } from "./Ids.js"

const uuid = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

/** `project:<projectId>` or `workspace:<projectId>:<userId>`; each stream has its own seq counter. */
export const StreamId = Schema.String.pipe(
  Schema.pattern(new RegExp(`^(project:${uuid}|workspace:${uuid}:${uuid})$`), {
    message: () => "stream must be project:<projectId> or workspace:<projectId>:<userId>"
  }),
  Schema.brand("StreamId")
)
export type StreamId = typeof StreamId.Type

export const projectStream = (projectId: ProjectId): StreamId => `project:${projectId}` as StreamId
export const workspaceStream = (projectId: ProjectId, userId: UserId): StreamId =>
  `workspace:${projectId}:${userId}` as StreamId

/** A stream position: 1, 2, 3 … (0 means "before the first event"). */
export const Seq = Schema.Int.pipe(Schema.nonNegative())

export const ProjectCreatedData = Schema.Struct({ name: Schema.String, ownerId: UserId })
export const MemberAddedData = Schema.Struct({ userId: UserId, role: MemberRole })
export const MemberRemovedData = Schema.Struct({ userId: UserId })
export const MessageCreatedData = Schema.Struct({
  messageId: MessageId,
  authorId: UserId,
  role: AuthorRole,
  body: Schema.String,
  clientMessageId: Schema.optionalWith(Schema.String, { exact: true })
})
export const MessageEditedData = Schema.Struct({ messageId: MessageId, body: Schema.String })
export const MessageDeletedData = Schema.Struct({ messageId: MessageId })

const envelope = <Type extends string, Data extends Schema.Schema.Any>(type: Type, data: Data) =>
  Schema.Struct({
    id: EventId,
    stream: StreamId,
    seq: Seq,
    type: Schema.Literal(type),
    projectId: ProjectId,
    actorId: UserId,
    occurredAt: Schema.DateTimeUtc,
    data
  })

export const ProjectCreated = envelope("project.created", ProjectCreatedData)
export const MemberAdded = envelope("member.added", MemberAddedData)
export const MemberRemoved = envelope("member.removed", MemberRemovedData)
export const MessageCreated = envelope("message.created", MessageCreatedData)
export const MessageEdited = envelope("message.edited", MessageEditedData)
export const MessageDeleted = envelope("message.deleted", MessageDeletedData)

/** The event envelope, the same everywhere: outbox, event_log, broker, SSE, history, CLI. */
export const Event = Schema.Union(
  ProjectCreated,
  MemberAdded,
  MemberRemoved,
  MessageCreated,
  MessageEdited,
  MessageDeleted
)
export type Event = typeof Event.Type
export type EventType = Event["type"]

export const EventType = Schema.Literal(
  "project.created",
  "member.added",
  "member.removed",
  "message.created",
  "message.edited",
  "message.deleted"
)

/** The `type`+`data` part of an event, before the write path gives it an id, stream and seq. */
export type EventPayload = {
  [T in Event as T["type"]]: { readonly type: T["type"]; readonly data: T["data"] }
}[EventType]

/** Decoding an unknown or malformed event is a typed `ParseError`, never a crash. */
export const decodeEvent = Schema.decodeUnknown(Event)
export const encodeEvent = Schema.encode(Event)

/** The reference a write returns to its caller. */
export const EventRef = Schema.Struct({ id: EventId, stream: StreamId, seq: Seq })
export type EventRef = typeof EventRef.Type

/** The envelope as JSON (ISO timestamps, plain strings): what the broker, SSE and history carry. */
export type EventWire = typeof Event.Encoded

/** Checks that `u` is a well-formed envelope and keeps its wire form. */
export const validateWire = (u: unknown) => Effect.as(decodeEvent(u), u as EventWire)
