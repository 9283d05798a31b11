import { Schema } from "effect"
import { MessageId, ProjectId, UserId } from "./Ids.js"
import { storable } from "./Text.js"

export class User extends Schema.Class<User>("User")({
  id: UserId,
  name: Schema.String,
  createdAt: Schema.DateTimeUtc
}) {}

export class Project extends Schema.Class<Project>("Project")({
  id: ProjectId,
  name: Schema.String,
  ownerId: UserId,
  createdAt: Schema.DateTimeUtc
}) {}

export const MemberRole = Schema.Literal("owner", "member")
export type MemberRole = typeof MemberRole.Type

export class Member extends Schema.Class<Member>("Member")({
  projectId: ProjectId,
  userId: UserId,
  role: MemberRole
}) {}

export const MessageScope = Schema.Literal("project", "workspace")
export type MessageScope = typeof MessageScope.Type

export const AuthorRole = Schema.Literal("user", "worker")
export type AuthorRole = typeof AuthorRole.Type

// Every free-text input is `storable`: PostgreSQL refuses NUL and unpaired surrogates (400, not 500).
export const MessageBody = Schema.String.pipe(
  storable("body"),
  Schema.minLength(1, { message: () => "body must not be empty" }),
  Schema.maxLength(10_000, { message: () => "body must be at most 10000 characters" })
)

export const ClientMessageId = Schema.String.pipe(
  storable("clientMessageId"),
  Schema.minLength(1, { message: () => "clientMessageId must not be empty" }),
  Schema.maxLength(200, { message: () => "clientMessageId must be at most 200 characters" })
)

export const Name = Schema.Trim.pipe(
  storable("name"),
  Schema.minLength(1, { message: () => "name must not be empty" }),
  Schema.maxLength(200, { message: () => "name must be at most 200 characters" })
)

export class Message extends Schema.Class<Message>("Message")({
  id: MessageId,
  projectId: ProjectId,
  authorId: UserId,
  scope: MessageScope,
  role: AuthorRole,
  body: Schema.String,
  clientMessageId: Schema.optionalWith(Schema.String, { exact: true }),
  createdAt: Schema.DateTimeUtc,
  editedAt: Schema.optionalWith(Schema.DateTimeUtc, { exact: true }),
  deletedAt: Schema.optionalWith(Schema.DateTimeUtc, { exact: true })
}) {}
