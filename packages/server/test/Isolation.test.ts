/**
 * G5 isolation over real HTTP against real PostgreSQL: who may see and do what, on every endpoint
 * of the API except the admin and health groups.
 *
 * - non-member: 404 (never 403) on every project-scoped endpoint, byte-for-byte the same answer as
 *   for a project that does not exist, and nothing written;
 * - member / owner: the role matrix (reads, owner-only member management, author-only edits,
 *   author-or-owner deletes), every refusal leaving the database untouched;
 * - workspace: only its owner sees it; its messages are unreachable through the project message
 *   endpoints;
 * - a removed member loses access at once; GET /api/projects lists only the caller's projects;
 * - a missing or invalid token is a 401 `Unauthorized` on every endpoint.
 */
import { SqlClient } from "@effect/sql"
import { expect, it } from "@effect/vitest"
import type { Ids } from "@herald/domain"
import { Effect } from "effect"
import { randomUUID } from "node:crypto"
import { addMember, createProject, expectStatus, get, post, send, show } from "./support/HttpTesting.js"
import { type Response, TestServer, TestServerLive, type TestUser } from "./support/TestServer.js"

// ---------------------------------------------------------------------------------------------
// Harness helpers

/** A test user with a unique name. */
interface Account extends TestUser {
  readonly name: string
}

interface Call {
  readonly method: string
  readonly path: string
  readonly json?: unknown
}

/** `as` undefined: no Authorization header at all. */
const sendCall = (as: Account | undefined, call: Call, headers?: Record<string, string>) =>
  send(as, call.method, call.path, call.json, headers)

/** Asserts a JSON error `{_tag, message}` with nothing else in it. */
const expectError = (res: Response, status: number, tag: string) => {
  expect(res.status, show(res)).toBe(status)
  expect(res.headers.get("content-type") ?? "").toContain("application/json")
  expect(res.body).toEqual({ _tag: tag, message: expect.any(String) })
  expect(res.body.message.length).toBeGreaterThan(0)
}

const newAccount = (name: string) =>
  Effect.gen(function*() {
    const server = yield* TestServer
    const unique = `${name}-${randomUUID().slice(0, 8)}`
    const user = yield* server.user(unique)
    return { ...user, name: unique } satisfies Account
  })

const postMessage = (as: Account, projectId: Ids.ProjectId, body: string) =>
  Effect.map(post(as, projectId, { body }), ({ message }) => message.id)

const postWorkspaceMessage = (as: Account, projectId: Ids.ProjectId, body: string, role: "user" | "worker" = "user") =>
  Effect.map(post(as, projectId, { body, workspace: true, role }), ({ message }) => message.id)

const listIds = (as: Account, path: string) =>
  Effect.map(
    get(as, path),
    (body: { items: Array<{ id: string }>; nextCursor: string | null }) => body.items.map((m) => m.id)
  )

const projectIdsOf = (as: Account) =>
  Effect.map(get(as, "/api/projects"), (body: { items: Array<{ id: string }> }) => body.items.map((p) => p.id).sort())

// ---------------------------------------------------------------------------------------------
// The world every test starts from: fresh users and projects, so tests sharing a database
// never see each other's data.

interface World {
  readonly owner: Account
  /** A plain member of the project. */
  readonly member: Account
  /** A second plain member, who never posted to their workspace. */
  readonly carol: Account
  /** Not a member of the project; owns a project of their own. */
  readonly outsider: Account
  /** A user in no project yet. */
  readonly newcomer: Account
  readonly project: { readonly id: string; readonly name: string }
  readonly outsiderProjectId: string
  readonly ownerMessage: string
  readonly memberMessage: string
  readonly ownerWorkspaceMessage: string
  readonly memberWorkspaceMessage: string
}

const setup = Effect.gen(function*() {
  const owner = yield* newAccount("owner")
  const member = yield* newAccount("member")
  const carol = yield* newAccount("carol")
  const outsider = yield* newAccount("outsider")
  const newcomer = yield* newAccount("newcomer")
  const project = yield* createProject(owner, `secret-${randomUUID()}`)
  yield* addMember(owner, project.id, member)
  yield* addMember(owner, project.id, carol)
  const outsiderProject = yield* createProject(outsider, `secret-${randomUUID()}`)
  yield* postMessage(outsider, outsiderProject.id, "the outsider's own chat")
  const ownerMessage = yield* postMessage(owner, project.id, "owner says hi")
  const memberMessage = yield* postMessage(member, project.id, "member says hi")
  const ownerWorkspaceMessage = yield* postWorkspaceMessage(owner, project.id, "owner's private note")
  const memberWorkspaceMessage = yield* postWorkspaceMessage(member, project.id, "member's worker output", "worker")
  return {
    owner,
    member,
    carol,
    outsider,
    newcomer,
    project: { id: project.id, name: project.name },
    outsiderProjectId: outsiderProject.id,
    ownerMessage,
    memberMessage,
    ownerWorkspaceMessage,
    memberWorkspaceMessage
  } satisfies World
})

/**
 * Everything a refused request could have changed, read from the database (chat rows, outbox,
 * seq counters) and over HTTP (what the owner and the members see).
 */
const snapshot = (w: World) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const projectIds = [w.project.id, w.outsiderProjectId]
    const db = {
      projects: yield* sql`SELECT id, name, owner_id FROM projects WHERE owner_id IN ${
        sql.in([w.owner.id, w.member.id, w.carol.id, w.outsider.id, w.newcomer.id])
      } ORDER BY id`,
      members: yield* sql`SELECT project_id, user_id, role FROM project_members
        WHERE project_id IN ${sql.in(projectIds)} ORDER BY project_id, user_id`,
      messages: yield* sql`SELECT id, project_id, author_id, scope, role, body, edited_at, deleted_at FROM messages
        WHERE project_id IN ${sql.in(projectIds)} ORDER BY position`,
      outbox: yield* sql`SELECT id, stream_id, seq, type FROM event_outbox
        WHERE project_id IN ${sql.in(projectIds)} ORDER BY position`,
      streams: yield* sql`SELECT stream_id, last_seq FROM event_streams
        WHERE stream_id LIKE ${`%${w.project.id}%`} OR stream_id LIKE ${`%${w.outsiderProjectId}%`} ORDER BY stream_id`
    }
    // Status and body as they are: a snapshot is also taken after a member was removed.
    const read = (as: Account, path: string) =>
      Effect.map(sendCall(as, { method: "GET", path }), (r) => ({ status: r.status, body: r.body as unknown }))
    const base = `/api/projects/${w.project.id}`
    const http = {
      project: yield* read(w.owner, base),
      ownerMessages: yield* read(w.owner, `${base}/messages`),
      ownerWorkspace: yield* read(w.owner, `${base}/workspace/messages`),
      memberWorkspace: yield* read(w.member, `${base}/workspace/messages`),
      carolWorkspace: yield* read(w.carol, `${base}/workspace/messages`),
      outsiderMessages: yield* read(w.outsider, `/api/projects/${w.outsiderProjectId}/messages`),
      projectLists: {
        owner: yield* projectIdsOf(w.owner),
        member: yield* projectIdsOf(w.member),
        carol: yield* projectIdsOf(w.carol),
        outsider: yield* projectIdsOf(w.outsider),
        newcomer: yield* projectIdsOf(w.newcomer)
      }
    }
    return { db, http }
  })

/** Runs a request that must be refused and asserts it wrote nothing. */
const refusedWritesNothing = <A, E, R>(w: World, request: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const before = yield* snapshot(w)
    const result = yield* request
    const after = yield* snapshot(w)
    expect(after).toEqual(before)
    return result
  })

// ---------------------------------------------------------------------------------------------
// The endpoints

/** What a request is aimed at: a project, a message in it, a user. */
interface Target {
  readonly projectId: string
  readonly messageId: string
  readonly userId: string
}

interface Endpoint {
  readonly name: string
  readonly call: (t: Target) => Call
}

/** Every project-scoped endpoint of the API. */
const projectScoped: ReadonlyArray<Endpoint> = [
  {
    name: "GET /api/projects/:projectId",
    call: (t) => ({ method: "GET", path: `/api/projects/${t.projectId}` })
  },
  {
    name: "POST /api/projects/:projectId/members",
    call: (t) => ({ method: "POST", path: `/api/projects/${t.projectId}/members`, json: { userId: t.userId } })
  },
  {
    name: "DELETE /api/projects/:projectId/members/:userId",
    call: (t) => ({ method: "DELETE", path: `/api/projects/${t.projectId}/members/${t.userId}` })
  },
  {
    name: "POST /api/projects/:projectId/messages",
    call: (t) => ({ method: "POST", path: `/api/projects/${t.projectId}/messages`, json: { body: "sneaky" } })
  },
  {
    name: "GET /api/projects/:projectId/messages",
    call: (t) => ({ method: "GET", path: `/api/projects/${t.projectId}/messages` })
  },
  {
    name: "PATCH /api/projects/:projectId/messages/:messageId",
    call: (t) => ({
      method: "PATCH",
      path: `/api/projects/${t.projectId}/messages/${t.messageId}`,
      json: { body: "hijacked" }
    })
  },
  {
    name: "DELETE /api/projects/:projectId/messages/:messageId",
    call: (t) => ({ method: "DELETE", path: `/api/projects/${t.projectId}/messages/${t.messageId}` })
  },
  {
    name: "POST /api/projects/:projectId/workspace/messages",
    call: (t) => ({
      method: "POST",
      path: `/api/projects/${t.projectId}/workspace/messages`,
      json: { body: "sneaky", role: "worker" }
    })
  },
  {
    name: "GET /api/projects/:projectId/workspace/messages",
    call: (t) => ({ method: "GET", path: `/api/projects/${t.projectId}/workspace/messages` })
  },
  {
    name: "GET /api/projects/:projectId/presence",
    call: (t) => ({ method: "GET", path: `/api/projects/${t.projectId}/presence` })
  },
  {
    name: "POST /api/projects/:projectId/typing",
    call: (t) => ({ method: "POST", path: `/api/projects/${t.projectId}/typing` })
  },
  {
    name: "PUT /api/projects/:projectId/workspace/drafts/:draftId",
    call: (t) => ({
      method: "PUT",
      path: `/api/projects/${t.projectId}/workspace/drafts/sneaky`,
      json: { body: "sneaky", role: "worker" }
    })
  },
  {
    name: "DELETE /api/projects/:projectId/workspace/drafts/:draftId",
    call: (t) => ({ method: "DELETE", path: `/api/projects/${t.projectId}/workspace/drafts/sneaky` })
  }
]

const endpointNamed = (name: string) => {
  const found = projectScoped.find((e) => e.name === name)
  if (found === undefined) throw new Error(`no endpoint ${name}`)
  return found
}

/** Every authenticated endpoint: the project-scoped ones plus the caller's own. */
const authenticated: ReadonlyArray<Endpoint> = [
  { name: "GET /api/me", call: () => ({ method: "GET", path: "/api/me" }) },
  { name: "POST /api/projects", call: () => ({ method: "POST", path: "/api/projects", json: { name: "sneaky" } }) },
  { name: "GET /api/projects", call: () => ({ method: "GET", path: "/api/projects" }) },
  ...projectScoped
]

/**
 * A caller who cannot see the project gets exactly what a project that does not exist answers:
 * 404 `NotFound`, the same body, nothing about the project in it, and nothing written.
 */
const expectHidden = (w: World, as: Account, endpoint: Endpoint, target: Target) =>
  Effect.gen(function*() {
    const hidden = yield* refusedWritesNothing(w, sendCall(as, endpoint.call(target)))
    const ghost = yield* refusedWritesNothing(w, sendCall(as, endpoint.call({ ...target, projectId: randomUUID() })))
    expectError(hidden, 404, "NotFound")
    expectError(ghost, 404, "NotFound")
    expect(hidden.body).toEqual(ghost.body)
    const text = JSON.stringify(hidden.body)
    for (const secret of [w.project.id, w.project.name, w.owner.id, w.owner.name, target.messageId]) {
      expect(text).not.toContain(secret)
    }
  })

// ---------------------------------------------------------------------------------------------

it.layer(TestServerLive)("isolation: non-members", (it) => {
  for (const endpoint of projectScoped) {
    it.effect(`a non-member gets 404, as for a missing project: ${endpoint.name}`, () =>
      Effect.gen(function*() {
        const w = yield* setup
        // The outsider aims at a real message of the project, and at membership for themselves.
        yield* expectHidden(w, w.outsider, endpoint, {
          projectId: w.project.id,
          messageId: w.ownerMessage,
          userId: w.outsider.id
        })
        // Also when targeting a real member of the project.
        yield* expectHidden(w, w.outsider, endpoint, {
          projectId: w.project.id,
          messageId: w.memberMessage,
          userId: w.member.id
        })
      }))
  }

  it.effect("a message of another project is not reachable through a project the caller owns", () =>
    Effect.gen(function*() {
      const w = yield* setup
      for (const messageId of [w.ownerMessage, w.memberMessage, w.memberWorkspaceMessage]) {
        const target = { projectId: w.outsiderProjectId, messageId, userId: w.member.id }
        for (const name of ["PATCH", "DELETE"].map((m) => `${m} /api/projects/:projectId/messages/:messageId`)) {
          const res = yield* refusedWritesNothing(w, sendCall(w.outsider, endpointNamed(name).call(target)))
          expectError(res, 404, "NotFound")
        }
      }
      // Nor can the outsider remove a member of another project through their own.
      const remove = yield* refusedWritesNothing(
        w,
        sendCall(w.outsider, { method: "DELETE", path: `/api/projects/${w.outsiderProjectId}/members/${w.member.id}` })
      )
      expectError(remove, 404, "NotFound")
    }))

  it.effect("GET /api/projects lists only the caller's projects", () =>
    Effect.gen(function*() {
      const w = yield* setup
      const listed = (as: Account) =>
        Effect.map(sendCall(as, { method: "GET", path: "/api/projects" }), (res) => expectStatus(res, 200))
      const outsiderList = yield* listed(w.outsider)
      expect(outsiderList).toEqual({
        items: [{
          id: w.outsiderProjectId,
          name: expect.any(String),
          ownerId: w.outsider.id,
          createdAt: expect.any(String)
        }]
      })
      expect(JSON.stringify(outsiderList)).not.toContain(w.project.id)
      expect(yield* projectIdsOf(w.member)).toEqual([w.project.id])
      expect(yield* projectIdsOf(w.owner)).toEqual([w.project.id])
      expect(yield* listed(w.newcomer)).toEqual({ items: [] })
    }))

  it.effect("GET /api/me answers the caller and no one else", () =>
    Effect.gen(function*() {
      const w = yield* setup
      for (const who of [w.owner, w.member, w.outsider]) {
        const me = expectStatus(yield* sendCall(who, { method: "GET", path: "/api/me" }), 200)
        expect(me).toEqual({ id: who.id, name: who.name, createdAt: expect.any(String) })
      }
    }))
})

// ---------------------------------------------------------------------------------------------
// The role matrix: one row per (role, request), with the expected answer. Refusals must write
// nothing; allowed requests are checked by their `then`.

type Actor = "owner" | "member"

interface RoleCase {
  readonly actor: Actor
  readonly does: string
  readonly request: (w: World) => Call
  readonly expect:
    | { readonly status: 403 | 404 | 409; readonly tag: "Forbidden" | "NotFound" | "Conflict" }
    | {
      readonly status: 200 | 201 | 204
      readonly then: (w: World, res: Response) => Effect.Effect<void, never, TestServer>
    }
}

const projectPath = (w: World) => `/api/projects/${w.project.id}`
const messagePath = (w: World, messageId: string) => `${projectPath(w)}/messages/${messageId}`

/** The project's message list as seen by the owner, by id. */
const projectMessage = (w: World, id: string) =>
  Effect.map(sendCall(w.owner, { method: "GET", path: `${projectPath(w)}/messages` }), (res) => {
    const found = (expectStatus(res, 200).items as Array<{ id: string }>).find((m) => m.id === id)
    expect(found, `message ${id} in the project list`).toBeDefined()
    return found as { id: string; body: string; editedAt?: string; deletedAt?: string }
  })

const forbidden = { status: 403, tag: "Forbidden" } as const
const notFound = { status: 404, tag: "NotFound" } as const

const roleCases: ReadonlyArray<RoleCase> = [
  // --- member
  {
    actor: "member",
    does: "reads the project",
    request: (w) => ({ method: "GET", path: projectPath(w) }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.sync(() =>
          expect(res.body).toEqual({
            id: w.project.id,
            name: w.project.name,
            ownerId: w.owner.id,
            createdAt: expect.any(String)
          })
        )
    }
  },
  {
    actor: "member",
    does: "reads the project chat (and no workspace message in it)",
    request: (w) => ({ method: "GET", path: `${projectPath(w)}/messages` }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.sync(() => {
          expect(res.body.items.map((m: { id: string }) => m.id)).toEqual([w.memberMessage, w.ownerMessage])
          expect(res.body.items.every((m: { scope: string }) => m.scope === "project")).toBe(true)
          expect(res.body.nextCursor).toBeNull()
        })
    }
  },
  {
    actor: "member",
    does: "posts to the project chat",
    request: (w) => ({ method: "POST", path: `${projectPath(w)}/messages`, json: { body: "from a member" } }),
    expect: {
      status: 201,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body.message).toMatchObject({ authorId: w.member.id, scope: "project", body: "from a member" })
          expect(res.body.event.stream).toBe(`project:${w.project.id}`)
          // Every member sees it.
          expect(yield* listIds(w.carol, `${projectPath(w)}/messages`)).toContain(res.body.message.id)
        })
    }
  },
  {
    actor: "member",
    does: "cannot add a member (owner only)",
    request: (w) => ({ method: "POST", path: `${projectPath(w)}/members`, json: { userId: w.newcomer.id } }),
    expect: forbidden
  },
  {
    actor: "member",
    does: "cannot remove another member (owner only)",
    request: (w) => ({ method: "DELETE", path: `${projectPath(w)}/members/${w.carol.id}` }),
    expect: forbidden
  },
  {
    actor: "member",
    does: "cannot remove the owner (owner only)",
    request: (w) => ({ method: "DELETE", path: `${projectPath(w)}/members/${w.owner.id}` }),
    expect: forbidden
  },
  {
    actor: "member",
    does: "cannot edit someone else's message",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.ownerMessage), json: { body: "hijacked" } }),
    expect: forbidden
  },
  {
    actor: "member",
    does: "cannot delete someone else's message",
    request: (w) => ({ method: "DELETE", path: messagePath(w, w.ownerMessage) }),
    expect: forbidden
  },
  {
    actor: "member",
    does: "edits their own message",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.memberMessage), json: { body: "member, edited" } }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body.message).toMatchObject({
            id: w.memberMessage,
            body: "member, edited",
            editedAt: expect.any(String)
          })
          expect(yield* projectMessage(w, w.memberMessage)).toMatchObject({ body: "member, edited" })
        })
    }
  },
  {
    actor: "member",
    does: "deletes their own message",
    request: (w) => ({ method: "DELETE", path: messagePath(w, w.memberMessage) }),
    expect: {
      status: 204,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body).toBeUndefined()
          expect(yield* projectMessage(w, w.memberMessage)).toMatchObject({ body: "", deletedAt: expect.any(String) })
        })
    }
  },
  {
    actor: "member",
    does: "cannot reach the owner's workspace message through PATCH",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.ownerWorkspaceMessage), json: { body: "hijacked" } }),
    expect: notFound
  },
  {
    actor: "member",
    does: "cannot reach the owner's workspace message through DELETE",
    request: (w) => ({ method: "DELETE", path: messagePath(w, w.ownerWorkspaceMessage) }),
    expect: notFound
  },
  {
    actor: "member",
    does: "cannot reach their own workspace message through the project PATCH",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.memberWorkspaceMessage), json: { body: "edited" } }),
    expect: notFound
  },
  {
    actor: "member",
    does: "cannot reach their own workspace message through the project DELETE",
    request: (w) => ({ method: "DELETE", path: messagePath(w, w.memberWorkspaceMessage) }),
    expect: notFound
  },
  {
    actor: "member",
    does: "posts into their own workspace",
    request: (w) => ({ method: "POST", path: `${projectPath(w)}/workspace/messages`, json: { body: "note to self" } }),
    expect: {
      status: 201,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body.message).toMatchObject({ authorId: w.member.id, scope: "workspace", role: "user" })
          expect(res.body.event.stream).toBe(`workspace:${w.project.id}:${w.member.id}`)
          const id = res.body.message.id as string
          expect(yield* listIds(w.member, `${projectPath(w)}/workspace/messages`)).toEqual([
            id,
            w.memberWorkspaceMessage
          ])
          // Nobody else sees it: not the owner's workspace, not a co-member's, not the project chat.
          expect(yield* listIds(w.owner, `${projectPath(w)}/workspace/messages`)).toEqual([w.ownerWorkspaceMessage])
          expect(yield* listIds(w.carol, `${projectPath(w)}/workspace/messages`)).toEqual([])
          expect(yield* listIds(w.owner, `${projectPath(w)}/messages`)).not.toContain(id)
        })
    }
  },
  {
    actor: "member",
    does: "lists only their own workspace",
    request: (w) => ({ method: "GET", path: `${projectPath(w)}/workspace/messages` }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.sync(() => {
          expect(res.body.items.map((m: { id: string }) => m.id)).toEqual([w.memberWorkspaceMessage])
          expect(res.body.items[0]).toMatchObject({ authorId: w.member.id, scope: "workspace", role: "worker" })
          expect(res.body.nextCursor).toBeNull()
        })
    }
  },
  // --- owner
  {
    actor: "owner",
    does: "adds a member",
    request: (w) => ({ method: "POST", path: `${projectPath(w)}/members`, json: { userId: w.newcomer.id } }),
    expect: {
      status: 201,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body).toEqual({ projectId: w.project.id, userId: w.newcomer.id, role: "member" })
          expect(yield* projectIdsOf(w.newcomer)).toEqual([w.project.id])
          expectStatus(yield* sendCall(w.newcomer, { method: "GET", path: projectPath(w) }), 200)
          expect(yield* listIds(w.newcomer, `${projectPath(w)}/messages`)).toEqual([w.memberMessage, w.ownerMessage])
          // A new member still sees no one's workspace.
          expect(yield* listIds(w.newcomer, `${projectPath(w)}/workspace/messages`)).toEqual([])
        })
    }
  },
  {
    actor: "owner",
    does: "removes a member",
    request: (w) => ({ method: "DELETE", path: `${projectPath(w)}/members/${w.carol.id}` }),
    expect: {
      status: 204,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body).toBeUndefined()
          expect(yield* projectIdsOf(w.carol)).toEqual([])
          expectError(yield* sendCall(w.carol, { method: "GET", path: projectPath(w) }), 404, "NotFound")
        })
    }
  },
  {
    actor: "owner",
    does: "deletes someone else's message",
    request: (w) => ({ method: "DELETE", path: messagePath(w, w.memberMessage) }),
    expect: {
      status: 204,
      then: (w) =>
        Effect.gen(function*() {
          expect(yield* projectMessage(w, w.memberMessage)).toMatchObject({ body: "", deletedAt: expect.any(String) })
        })
    }
  },
  {
    actor: "owner",
    does: "cannot edit someone else's message",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.memberMessage), json: { body: "hijacked" } }),
    expect: forbidden
  },
  {
    actor: "owner",
    does: "edits their own message",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.ownerMessage), json: { body: "owner, edited" } }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.gen(function*() {
          expect(res.body.message).toMatchObject({ id: w.ownerMessage, body: "owner, edited" })
          expect(yield* projectMessage(w, w.ownerMessage)).toMatchObject({ body: "owner, edited" })
        })
    }
  },
  {
    actor: "owner",
    does: "cannot reach a member's workspace message through PATCH",
    request: (w) => ({ method: "PATCH", path: messagePath(w, w.memberWorkspaceMessage), json: { body: "hijacked" } }),
    expect: notFound
  },
  {
    actor: "owner",
    does: "cannot reach a member's workspace message through DELETE (owner delete rights stop at the project chat)",
    request: (w) => ({ method: "DELETE", path: messagePath(w, w.memberWorkspaceMessage) }),
    expect: notFound
  },
  {
    actor: "owner",
    does: "lists only their own workspace",
    request: (w) => ({ method: "GET", path: `${projectPath(w)}/workspace/messages` }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.sync(() => {
          expect(res.body).toEqual({
            items: [expect.objectContaining({ id: w.ownerWorkspaceMessage })],
            nextCursor: null
          })
          expect(JSON.stringify(res.body)).not.toContain(w.memberWorkspaceMessage)
          expect(JSON.stringify(res.body)).not.toContain("member's worker output")
        })
    }
  },
  {
    actor: "owner",
    does: "reads the project chat without any workspace message in it",
    request: (w) => ({ method: "GET", path: `${projectPath(w)}/messages` }),
    expect: {
      status: 200,
      then: (w, res) =>
        Effect.sync(() => {
          expect(res.body.items.map((m: { id: string }) => m.id)).toEqual([w.memberMessage, w.ownerMessage])
          const text = JSON.stringify(res.body)
          expect(text).not.toContain(w.memberWorkspaceMessage)
          expect(text).not.toContain(w.ownerWorkspaceMessage)
        })
    }
  }
]

it.layer(TestServerLive)("isolation: members and owners", (it) => {
  for (const c of roleCases) {
    const outcome = "tag" in c.expect ? `${c.expect.status} ${c.expect.tag}` : `${c.expect.status}`
    it.effect(`${c.actor} ${c.does} → ${outcome}`, () =>
      Effect.gen(function*() {
        const w = yield* setup
        const as = w[c.actor]
        const expected = c.expect
        if ("tag" in expected) {
          const res = yield* refusedWritesNothing(w, sendCall(as, c.request(w)))
          expectError(res, expected.status, expected.tag)
        } else {
          const res = yield* sendCall(as, c.request(w))
          expectStatus(res, expected.status)
          yield* expected.then(w, res)
        }
      }))
  }

  it.effect("workspace listing pages through the caller's own messages only", () =>
    Effect.gen(function*() {
      const w = yield* setup
      const mine = [w.ownerWorkspaceMessage]
      for (let i = 0; i < 4; i++) {
        mine.unshift(yield* postWorkspaceMessage(w.owner, w.project.id, `owner note ${i}`))
        yield* postWorkspaceMessage(w.member, w.project.id, `member note ${i}`, "worker")
        yield* postMessage(w.carol, w.project.id, `chat ${i}`)
      }
      const seen: Array<string> = []
      let before: string | null = null
      do {
        const query: string = before === null ? "?limit=2" : `?limit=2&before=${before}`
        const res = yield* sendCall(w.owner, { method: "GET", path: `${projectPath(w)}/workspace/messages${query}` })
        const page = expectStatus(res, 200) as {
          items: Array<{ id: string; authorId: string; scope: string }>
          nextCursor: string | null
        }
        for (const m of page.items) expect(m).toMatchObject({ authorId: w.owner.id, scope: "workspace" })
        seen.push(...page.items.map((m) => m.id))
        before = page.nextCursor
      } while (before !== null)
      expect(seen).toEqual(mine)
    }))

  it.effect("a removed member loses access at once, on every project endpoint", () =>
    Effect.gen(function*() {
      const w = yield* setup
      expect(yield* projectIdsOf(w.member)).toEqual([w.project.id])
      expectStatus(
        yield* sendCall(w.owner, { method: "DELETE", path: `${projectPath(w)}/members/${w.member.id}` }),
        204
      )
      expect(yield* projectIdsOf(w.member)).toEqual([])
      for (const endpoint of projectScoped) {
        // Aimed at the removed member's own project message and own membership.
        yield* expectHidden(w, w.member, endpoint, {
          projectId: w.project.id,
          messageId: w.memberMessage,
          userId: w.member.id
        })
        yield* expectHidden(w, w.member, endpoint, {
          projectId: w.project.id,
          messageId: w.ownerMessage,
          userId: w.carol.id
        })
      }
      // The remaining members are unaffected.
      expect(yield* listIds(w.carol, `${projectPath(w)}/messages`)).toEqual([w.memberMessage, w.ownerMessage])
    }))

  it.effect("a removed member who is added back sees the project again, but never another's workspace", () =>
    Effect.gen(function*() {
      const w = yield* setup
      expectStatus(
        yield* sendCall(w.owner, { method: "DELETE", path: `${projectPath(w)}/members/${w.member.id}` }),
        204
      )
      yield* addMember(w.owner, w.project.id, w.member)
      expect(yield* projectIdsOf(w.member)).toEqual([w.project.id])
      expect(yield* listIds(w.member, `${projectPath(w)}/workspace/messages`)).toEqual([w.memberWorkspaceMessage])
    }))
})

// ---------------------------------------------------------------------------------------------

interface Credential {
  readonly name: string
  /** The Authorization header to send; undefined: none at all. */
  readonly header: (w: World) => string | undefined
}

const badCredentials: ReadonlyArray<Credential> = [
  { name: "no Authorization header", header: () => undefined },
  { name: "an empty bearer token", header: () => "Bearer " },
  { name: "an unknown token", header: () => `Bearer ${randomUUID()}` },
  {
    name: "a valid token with its last character changed",
    header: (w) => `Bearer ${w.owner.token.slice(0, -1)}${w.owner.token.endsWith("A") ? "B" : "A"}`
  },
  // "Digest " has the length of "Bearer ": a server that slices the prefix off blindly accepts it.
  { name: "the owner's token under a non-Bearer scheme", header: (w) => `Digest ${w.owner.token}` }
]

it.layer(TestServerLive)("isolation: authentication", (it) => {
  for (const credential of badCredentials) {
    it.effect(`${credential.name} → 401 Unauthorized on every endpoint, nothing written`, () =>
      Effect.gen(function*() {
        const w = yield* setup
        const header = credential.header(w)
        const target = { projectId: w.project.id, messageId: w.ownerMessage, userId: w.newcomer.id }
        for (const endpoint of authenticated) {
          const res = yield* refusedWritesNothing(
            w,
            sendCall(undefined, endpoint.call(target), header === undefined ? undefined : { authorization: header })
          )
          expect(res.status, `${endpoint.name}: ${show(res)}`).toBe(401)
          expectError(res, 401, "Unauthorized")
          // A missing project answers the same: authentication comes before any lookup.
          if (endpoint.call(target).path.includes(w.project.id)) {
            const ghost = yield* sendCall(
              undefined,
              endpoint.call({ ...target, projectId: randomUUID() }),
              header === undefined ? undefined : { authorization: header }
            )
            expect(ghost.status, `${endpoint.name}: ${show(ghost)}`).toBe(401)
            expect(ghost.body).toEqual(res.body)
          }
        }
        // The refused POST /api/projects created no project for anyone.
        const sql = yield* SqlClient.SqlClient
        const sneaky = yield* sql`SELECT id FROM projects WHERE name = 'sneaky'`
        expect(sneaky).toEqual([])
      }))
  }
})
