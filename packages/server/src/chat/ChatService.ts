import { SqlClient } from "@effect/sql"
import { Api, Chat, Errors, Events, Ids } from "@herald/domain"
import { DateTime, Effect, Option, type Tracer } from "effect"
import { randomUUID } from "node:crypto"
import { AppConfig } from "../config/AppConfig.js"
import { Limits } from "../limits/Limits.js"
import { traceparentOf } from "../observability/Tracing.js"
import { OutboxWriter } from "../outbox/OutboxWriter.js"
import { Wakeup } from "../outbox/Wakeup.js"
import { MessagesRepo, type StoredMessage } from "./MessagesRepo.js"
import { Policy } from "./Policy.js"
import { ProjectsRepo } from "./ProjectsRepo.js"
import { UsersRepo } from "./UsersRepo.js"

export interface MessageWrite {
  /** `replayed`: the clientMessageId was seen before; nothing was written. */
  readonly outcome: "created" | "replayed"
  readonly message: Chat.Message
  readonly event: Events.EventRef
}

const notFound = (what: string) => new Errors.NotFound({ message: `${what} not found` })

/** A committed event's wire envelope, as `toWire` makes it from its outbox row: what the publisher is handed. */
const envelope = (
  ref: Events.EventRef,
  at: DateTime.Utc,
  projectId: Ids.ProjectId,
  actorId: Ids.UserId,
  type: string,
  data: unknown
): Events.EventWire =>
  ({
    id: ref.id,
    stream: ref.stream,
    seq: ref.seq,
    type,
    projectId,
    actorId,
    occurredAt: DateTime.formatIso(at),
    data
  }) as Events.EventWire

/**
 * The request path's reads and writes, for the caller (`CurrentUser`; `asUser` from Policy.ts
 * runs them for a user held in hand). Each write is one transaction that bumps the stream's seq,
 * writes the chat row and the outbox row together (G1) — a message post does it in one statement —
 * then, after commit, hands the event to the local publisher (Wakeup). Nothing here can reach a
 * broker (G2): this layer is never given one. Every write is charged to its caller first
 * (`Limits.write`, SPEC §5 "Limits"), whichever front — the HTTP app or the post door — called it.
 */
export class ChatService extends Effect.Service<ChatService>()("Herald/ChatService", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const outbox = yield* OutboxWriter
    const wakeup = yield* Wakeup
    const projects = yield* ProjectsRepo
    const messages = yield* MessagesRepo
    const users = yield* UsersRepo
    const policy = yield* Policy
    const limits = yield* Limits
    // Harnesses that build the request path alone (no config) run it untraced.
    const traced = Option.exists(yield* Effect.serviceOption(AppConfig), (c) => Option.isSome(c.tracing))

    /**
     * With tracing on, the span of the request writing an event: its outbox row and its hand-off
     * carry it, so the publish and every node's fan-out are in the request's trace.
     */
    const requestSpan: Effect.Effect<Tracer.AnySpan | undefined> = Effect.map(
      Effect.option(Effect.currentSpan),
      Option.getOrUndefined
    )

    /** The caller, charged one write (HERALD_WRITE_RATE): refused with a 429 before anything is read or written. */
    const writer = Effect.tap(Api.CurrentUser, (caller) => limits.write(caller.id))

    /**
     * Every chat change has one shape, in one transaction: take the stream's next seq (and with it
     * the stream's lock), make the change, append its event. The event is handed to the publisher
     * only after the commit; a database failure is a defect (a 500), domain refusals roll back and fail.
     */
    const change = <A, E, R>(
      caller: Chat.User,
      projectId: Ids.ProjectId,
      stream: Events.StreamId,
      apply: (slot: { readonly at: DateTime.Utc; readonly event: Events.EventRef }) => Effect.Effect<
        { readonly result: A; readonly event: Events.EventPayload },
        E,
        R
      >
    ) =>
      Effect.flatMap(
        wakeup.handOffGraceMs,
        (dueInMs) =>
          Effect.flatMap(traced ? requestSpan : Effect.succeed(undefined), (span) =>
            sql.withTransaction(Effect.gen(function*() {
              const { at, seq } = yield* outbox.reserve(stream)
              const ref: Events.EventRef = { id: Ids.EventId.make(randomUUID()), stream, seq }
              const { event, result } = yield* apply({ at, event: ref })
              const traceContext = span === undefined ? undefined : traceparentOf(span)
              yield* outbox.insert({ ref, at, projectId, actorId: caller.id, payload: event, dueInMs, traceContext })
              return { result, span, envelope: envelope(ref, at, projectId, caller.id, event.type, event.data) }
            })))
      ).pipe(
        Effect.flatMap(({ envelope, result, span }) =>
          Effect.as(wakeup.handOff(envelope, span), result)
        ),
        // BEGIN or COMMIT failed: the repositories already turn their own database failures into defects.
        Effect.catchTag("SqlError", Effect.die)
      )

    const createProject = (name: string) =>
      Effect.flatMap(Api.CurrentUser, (caller) => {
        const projectId = Ids.ProjectId.make(randomUUID())
        return change(caller, projectId, Events.projectStream(projectId), ({ at }) =>
          Effect.map(projects.insert({ id: projectId, name, ownerId: caller.id, at }), (project) => ({
            result: project,
            event: { type: "project.created", data: { name, ownerId: caller.id } }
          })))
      })

    const listProjects = Effect.flatMap(Api.CurrentUser, (caller) => projects.listForUser(caller.id))

    const getProject = (projectId: Ids.ProjectId) => Effect.map(policy.requireMember(projectId), (m) => m.project)

    const listMembers = (projectId: Ids.ProjectId) =>
      Effect.zipRight(policy.requireMember(projectId), projects.members(projectId))

    const addMember = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      Effect.gen(function*() {
        const caller = yield* writer
        yield* policy.requireOwner(projectId, "manage members")
        if (!(yield* users.exists(userId))) return yield* Effect.fail(notFound("user"))
        return yield* change(caller, projectId, Events.projectStream(projectId), ({ at }) =>
          Effect.gen(function*() {
            if (!(yield* projects.addMember(projectId, userId, at))) {
              return yield* new Errors.Conflict({ message: "user is already a member" })
            }
            return {
              result: new Chat.Member({ projectId, userId, role: "member" }),
              event: { type: "member.added", data: { userId, role: "member" } }
            } as const
          }))
      })

    const removeMember = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      Effect.gen(function*() {
        const caller = yield* writer
        yield* policy.requireOwner(projectId, "manage members")
        if (userId === caller.id) {
          return yield* Effect.fail(new Errors.Conflict({ message: "the owner cannot be removed from their project" }))
        }
        yield* change(caller, projectId, Events.projectStream(projectId), () =>
          Effect.gen(function*() {
            if (!(yield* projects.removeMember(projectId, userId))) return yield* notFound("member")
            return { result: undefined, event: { type: "member.removed", data: { userId } } } as const
          }))
      })

    const replay = (stored: StoredMessage): MessageWrite => ({
      outcome: "replayed",
      message: stored.message,
      event: {
        id: stored.createdEvent.id,
        stream: stored.message.scope === "project"
          ? Events.projectStream(stored.message.projectId)
          : Events.workspaceStream(stored.message.projectId, stored.message.authorId),
        seq: stored.createdEvent.seq
      }
    })

    const post = (projectId: Ids.ProjectId, input: {
      readonly scope: Chat.MessageScope
      readonly role: Chat.AuthorRole
      readonly body: string
      readonly clientMessageId: string | undefined
    }) =>
      Effect.gen(function*() {
        const caller = yield* writer
        // No separate visibility check: the message insert is guarded by membership (404 and a
        // rollback for a non-member), and the idempotency lookup only finds a member's own message.
        const key = input.clientMessageId === undefined ? undefined : {
          projectId,
          authorId: caller.id,
          scope: input.scope,
          clientMessageId: input.clientMessageId
        }
        const previous = key === undefined ? Option.none() : yield* messages.findByClientMessageId(key)
        if (Option.isSome(previous)) return replay(previous.value)

        const stream = input.scope === "project"
          ? Events.projectStream(projectId)
          : Events.workspaceStream(projectId, caller.id)
        const messageId = Ids.MessageId.make(randomUUID())
        const eventId = Ids.EventId.make(randomUUID())
        // One statement, one transaction (MessagesRepo.post): the hot path has no BEGIN/COMMIT.
        const data = {
          messageId,
          authorId: caller.id,
          role: input.role,
          body: input.body,
          ...(input.clientMessageId === undefined ? {} : { clientMessageId: input.clientMessageId })
        }
        const dueInMs = yield* wakeup.handOffGraceMs
        const span = traced ? yield* requestSpan : undefined
        const created = messages.post({
          dueInMs,
          traceContext: span === undefined ? undefined : traceparentOf(span),
          id: messageId,
          projectId,
          authorId: caller.id,
          scope: input.scope,
          role: input.role,
          body: input.body,
          clientMessageId: input.clientMessageId,
          event: { id: eventId, stream, data }
        }).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(notFound("project")),
            onSome: (stored): Effect.Effect<MessageWrite> => {
              const ref = { id: eventId, stream, seq: stored.createdEvent.seq }
              return Effect.as(
                wakeup.handOff(
                  envelope(ref, stored.message.createdAt, projectId, caller.id, "message.created", data),
                  span
                ),
                { outcome: "created", message: stored.message, event: ref }
              )
            }
          }))
        )
        // A concurrent post with the same clientMessageId committed first: answer with its result.
        return yield* created.pipe(
          Effect.catchTag("DuplicateClientMessage", () =>
            messages.findByClientMessageId(key!).pipe(
              Effect.flatMap(Option.match({
                onNone: () => Effect.fail(notFound("project")),
                onSome: (found) => Effect.succeed(replay(found))
              }))
            ))
        )
      })

    const postMessage = (projectId: Ids.ProjectId, input: { body: string; clientMessageId?: string }) =>
      post(projectId, { scope: "project", role: "user", body: input.body, clientMessageId: input.clientMessageId })

    const postWorkspaceMessage = (
      projectId: Ids.ProjectId,
      input: { body: string; role?: Chat.AuthorRole; clientMessageId?: string }
    ) =>
      post(projectId, {
        scope: "workspace",
        role: input.role ?? "user",
        body: input.body,
        clientMessageId: input.clientMessageId
      })

    const listMessages = (
      projectId: Ids.ProjectId,
      scope: Chat.MessageScope,
      params: { readonly limit?: number | undefined; readonly before?: string | undefined }
    ) =>
      Effect.gen(function*() {
        const caller = yield* Api.CurrentUser
        yield* policy.requireMember(projectId)
        const page = yield* messages.page({
          projectId,
          workspaceOf: scope === "workspace" ? caller.id : undefined,
          limit: params.limit ?? 50,
          before: params.before === undefined ? undefined : Number(params.before)
        })
        return {
          items: page.items.map((s) => s.message),
          nextCursor: page.nextCursor === undefined ? null : String(page.nextCursor)
        }
      })

    const editMessage = (projectId: Ids.ProjectId, messageId: Ids.MessageId, body: string) =>
      Effect.gen(function*() {
        const caller = yield* writer
        yield* policy.requireMember(projectId)
        const current = yield* messages.findProjectMessage(projectId, messageId).pipe(
          Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound("message")), onSome: Effect.succeed }))
        )
        yield* policy.requireAuthor(current.message, "edit a message")
        if (current.message.deletedAt !== undefined) {
          return yield* Effect.fail(new Errors.Conflict({ message: "the message was deleted" }))
        }
        return yield* change(caller, projectId, Events.projectStream(projectId), ({ at, event }) =>
          Effect.gen(function*() {
            if (!(yield* projects.isMember(projectId, caller.id))) {
              return yield* notFound("project")
            }
            const edited = yield* messages.editBody(messageId, body, at)
            if (Option.isNone(edited)) {
              return yield* new Errors.Conflict({ message: "the message was deleted" })
            }
            return {
              result: { message: edited.value.message, event },
              event: { type: "message.edited", data: { messageId, body } }
            } as const
          }))
      })

    const deleteMessage = (projectId: Ids.ProjectId, messageId: Ids.MessageId) =>
      Effect.gen(function*() {
        const caller = yield* writer
        const membership = yield* policy.requireMember(projectId)
        const current = yield* messages.findProjectMessage(projectId, messageId).pipe(
          Effect.flatMap(Option.match({ onNone: () => Effect.fail(notFound("message")), onSome: Effect.succeed }))
        )
        yield* policy.requireAuthor(current.message, "delete a message", membership)
        // Deleting twice is a no-op: the first delete's event stands, nothing more is written.
        if (current.message.deletedAt !== undefined) return
        yield* change(caller, projectId, Events.projectStream(projectId), ({ at }) =>
          Effect.gen(function*() {
            if (!(yield* projects.isMember(projectId, caller.id))) return yield* notFound("project")
            if (!(yield* messages.softDelete(messageId, at))) return yield* Effect.fail(new AlreadyDeleted())
            return { result: undefined, event: { type: "message.deleted", data: { messageId } } } as const
          })).pipe(Effect.catchTag("AlreadyDeleted", () => Effect.void))
      })

    return {
      createProject,
      listProjects,
      getProject,
      listMembers,
      addMember,
      removeMember,
      postMessage,
      postWorkspaceMessage,
      listMessages,
      editMessage,
      deleteMessage
    } as const
  })
}) {}

class AlreadyDeleted {
  readonly _tag = "AlreadyDeleted"
}
