import { expect } from "@effect/vitest"
import type { Chat, Ids } from "@herald/domain"
import { Effect, Option } from "effect"
import { type Response, TestServer, type TestUser } from "./TestServer.js"

/**
 * The calls the HTTP tests make again and again. The well-formed ones go through the user's typed
 * client and assert the status they must answer; `send` is raw, for tests that need the answer as
 * it is (any status, any body).
 */

/** An answer in one line for an assertion's message: the status and the start of the body. */
export const show = (res: Response) => {
  const body = JSON.stringify(res.body) ?? ""
  return `${res.status} ${body.length > 400 ? `${body.slice(0, 400)}…` : body}`
}

/** A raw request as `as` (undefined: no Authorization header at all), with a JSON body if `json` is given. */
export const send = (
  as: { readonly token: string } | undefined,
  method: string,
  path: string,
  json?: unknown,
  headers?: Record<string, string>
) =>
  Effect.flatMap(TestServer, (server) =>
    server.request(method, path, {
      token: as?.token,
      ...(json === undefined ? {} : { json }),
      ...(headers === undefined ? {} : { headers })
    }))

/** Asserts the status (showing the answer when it differs) and returns the body. */
export const expectStatus = (res: Response, status: number, what?: string) => {
  expect(res.status, what === undefined ? show(res) : `${what}: ${show(res)}`).toBe(status)
  return res.body
}

/** A raw GET that must answer 200; returns the body. */
export const get = (as: { readonly token: string }, path: string) =>
  Effect.map(send(as, "GET", path), (res) => expectStatus(res, 200, `GET ${path}`))

/** A new project owned by `owner` (its stream holds `project.created` at seq 1): 201. */
export const createProject = (owner: TestUser, name = "p") =>
  Effect.map(owner.api.projects.create({ payload: { name }, withResponse: true }), ([project, res]) => {
    expect(res.status).toBe(201)
    return project
  })

/** `owner` adds `user` to the project: 201. */
export const addMember = (owner: TestUser, projectId: Ids.ProjectId, user: { readonly id: Ids.UserId }) =>
  Effect.map(
    owner.api.projects.addMember({ path: { projectId }, payload: { userId: user.id }, withResponse: true }),
    ([member, res]) => {
      expect(res.status).toBe(201)
      return member
    }
  )

export interface PostOptions {
  /** "hello" unless given. */
  readonly body?: string
  /** To the caller's workspace instead of the project chat. */
  readonly workspace?: boolean
  /** The workspace author role, sent only when given. */
  readonly role?: Chat.AuthorRole
}

/** Posts a message to the project chat (or to the caller's workspace): 201; the message and its event. */
export const post = (as: TestUser, projectId: Ids.ProjectId, options: PostOptions = {}) => {
  const body = options.body ?? "hello"
  const written = options.workspace
    ? as.api.workspace.post({
      path: { projectId },
      payload: { body, ...(options.role === undefined ? {} : { role: options.role }) },
      withResponse: true
    })
    : as.api.messages.post({ path: { projectId }, payload: { body }, withResponse: true })
  return Effect.map(written, ([posted, res]) => {
    expect(res.status).toBe(201)
    return posted
  })
}

/** `n` posts, `concurrency` (16 unless given) at a time. */
export const postMany = (
  as: TestUser,
  projectId: Ids.ProjectId,
  n: number,
  options: PostOptions & { readonly concurrency?: number } = {}
) =>
  Effect.forEach(Array.from({ length: n }), () => post(as, projectId, options), {
    concurrency: options.concurrency ?? 16
  })

/** Polls `probe` until it yields a value; dies after `timeoutMs`. */
export const eventually = <A, E, R>(label: string, probe: Effect.Effect<Option.Option<A>, E, R>, timeoutMs = 10_000) =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const found = yield* probe
      if (Option.isSome(found)) return found.value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out waiting for ${label}`))
      yield* Effect.sleep("20 millis")
    }
  })
