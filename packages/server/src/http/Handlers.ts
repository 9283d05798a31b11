import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Api } from "@herald/domain"
import { Effect, Redacted } from "effect"
import { ChatService, type MessageWrite } from "../chat/ChatService.js"
import { UsersRepo } from "../chat/UsersRepo.js"

/**
 * A post's result: a new message (201, from the endpoint definition) or a replayed
 * `clientMessageId`. Both have the same shape, so the status cannot come from the schema union:
 * a replay answers `REPLAYED_STATUS` explicitly — here and in the post door (PostDoor.ts).
 */
export const REPLAYED_STATUS = 200
export const writeResult = (w: MessageWrite) =>
  w.outcome === "created"
    ? { created: true, body: new Api.MessagePosted({ message: w.message, event: w.event }) } as const
    : { created: false, body: new Api.MessageReplayed({ message: w.message, event: w.event }) } as const

const encodeReplayed = HttpServerResponse.schemaJson(Api.MessageReplayed)
const toWriteResult = (w: MessageWrite): Effect.Effect<Api.MessagePosted | HttpServerResponse.HttpServerResponse> => {
  const result = writeResult(w)
  return result.created
    ? Effect.succeed(result.body)
    : Effect.orDie(encodeReplayed(result.body, { status: REPLAYED_STATUS }))
}

export const AdminLive = HttpApiBuilder.group(Api.HeraldApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const users = yield* UsersRepo
    return handlers.handle("createUser", ({ payload }) =>
      Effect.map(users.create(payload.name), (created) =>
        new Api.CreatedUser({ id: created.user.id, name: created.user.name, token: Redacted.value(created.token) })))
  }))

export const MeLive = HttpApiBuilder.group(
  Api.HeraldApi,
  "me",
  (handlers) => handlers.handle("me", () => Api.CurrentUser)
)

export const ProjectsLive = HttpApiBuilder.group(Api.HeraldApi, "projects", (handlers) =>
  Effect.gen(function*() {
    const chat = yield* ChatService
    return handlers
      .handle("create", ({ payload }) => chat.createProject(payload.name))
      .handle("list", () => Effect.map(chat.listProjects, (items) => ({ items })))
      .handle("get", ({ path }) => chat.getProject(path.projectId))
      .handle("members", ({ path }) =>
        Effect.map(chat.listMembers(path.projectId), (rows) => ({
          items: rows.map((r) => new Api.MemberView(r))
        })))
      .handle("addMember", ({ path, payload }) => chat.addMember(path.projectId, payload.userId))
      .handle("removeMember", ({ path }) => chat.removeMember(path.projectId, path.userId))
  }))

export const MessagesLive = HttpApiBuilder.group(Api.HeraldApi, "messages", (handlers) =>
  Effect.gen(function*() {
    const chat = yield* ChatService
    return handlers
      .handle("post", ({ path, payload }) => Effect.flatMap(chat.postMessage(path.projectId, payload), toWriteResult))
      .handle("list", ({ path, urlParams }) =>
        Effect.map(chat.listMessages(path.projectId, "project", urlParams), (page) =>
          new Api.MessagePage(page)))
      .handle("edit", ({ path, payload }) =>
        Effect.map(chat.editMessage(path.projectId, path.messageId, payload.body), (r) =>
          new Api.MessageEdited(r)))
      .handle("delete", ({ path }) =>
        chat.deleteMessage(path.projectId, path.messageId))
  }))

export const WorkspaceLive = HttpApiBuilder.group(Api.HeraldApi, "workspace", (handlers) =>
  Effect.gen(function*() {
    const chat = yield* ChatService
    return handlers
      .handle("post", ({ path, payload }) =>
        Effect.flatMap(chat.postWorkspaceMessage(path.projectId, payload), toWriteResult))
      .handle("list", ({ path, urlParams }) =>
        Effect.map(chat.listMessages(path.projectId, "workspace", urlParams), (page) =>
          new Api.MessagePage(page)))
  }))
