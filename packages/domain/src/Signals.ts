import { Schema } from "effect"
import { AuthorRole } from "./Chat.js"
import { ProjectId, UserId } from "./Ids.js"
import { storable } from "./Text.js"

/**
 * Live signals (SPEC §5, G10): presence, typing and drafts. Ephemeral frames on the SSE endpoints,
 * never with an `id:`, never in `event_outbox` or `event_log`. These are their shapes on the wire
 * (the `data:` of `event: presence|typing|draft`) and the inputs of their endpoints.
 */

/** A draft's id: 1–64 of `A–Z a–z 0–9 _ -` (a worker uses it as the `clientMessageId` of its message). */
export const DraftId = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9_-]{1,64}$/, {
    message: () => "draftId must be 1-64 characters of A-Z a-z 0-9 _ -"
  })
)
export type DraftId = typeof DraftId.Type

/** A draft's body: the whole text so far, 0–10 000 characters. */
export const DraftBody = Schema.String.pipe(
  storable("body"),
  Schema.maxLength(10_000, { message: () => "body must be at most 10000 characters" })
)

export const DraftPath = Schema.Struct({ projectId: ProjectId, draftId: DraftId })

export const PutDraftPayload = Schema.Struct({
  body: DraftBody,
  role: Schema.optionalWith(AuthorRole, { exact: true })
})

export class PresentUser extends Schema.Class<PresentUser>("PresentUser")({
  userId: UserId,
  since: Schema.DateTimeUtc
}) {}

/** `GET /api/projects/:projectId/presence`: the members present now, fleet-wide. */
export class Presence extends Schema.Class<Presence>("Presence")({
  projectId: ProjectId,
  users: Schema.Array(PresentUser)
}) {}

// ---------------------------------------------------------------------------------------------
// Frames (`data:` of the SSE signal frames)

/** The first `event: presence` of a connection that starts carrying a project stream. */
export const PresenceSnapshotFrame = Schema.Struct({
  stream: Schema.String,
  users: Schema.Array(Schema.Struct({ userId: Schema.String, since: Schema.String }))
})
export type PresenceSnapshotFrame = typeof PresenceSnapshotFrame.Type

/** A user came (`present: true`) or went. */
export const PresenceChangeFrame = Schema.Struct({
  stream: Schema.String,
  userId: Schema.String,
  present: Schema.Boolean,
  at: Schema.String
})
export type PresenceChangeFrame = typeof PresenceChangeFrame.Type

export const PresenceFrame = Schema.Union(PresenceSnapshotFrame, PresenceChangeFrame)
export type PresenceFrame = typeof PresenceFrame.Type

/** `event: typing`: `userId` is typing in the project chat until `until`. */
export const TypingFrame = Schema.Struct({
  stream: Schema.String,
  userId: Schema.String,
  until: Schema.String
})
export type TypingFrame = typeof TypingFrame.Type

/** `event: draft`: a live draft's whole body so far. */
export const DraftUpdateFrame = Schema.Struct({
  stream: Schema.String,
  draftId: Schema.String,
  role: AuthorRole,
  body: Schema.String,
  updatedAt: Schema.String
})
export type DraftUpdateFrame = typeof DraftUpdateFrame.Type

/** `event: draft`: the draft is over (deleted, idle for 60 s, or its message was posted). */
export const DraftEndedFrame = Schema.Struct({
  stream: Schema.String,
  draftId: Schema.String,
  ended: Schema.Literal(true)
})
export type DraftEndedFrame = typeof DraftEndedFrame.Type

export const DraftFrame = Schema.Union(DraftUpdateFrame, DraftEndedFrame)
export type DraftFrame = typeof DraftFrame.Type

/** How long a typing signal lasts, and a draft without an update. */
export const TYPING_MS = 5_000
export const DRAFT_IDLE_MS = 60_000
