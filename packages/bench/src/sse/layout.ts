import { inParallel } from "../parallel.js"
import { requestJson } from "../support.js"
import type { ConnectionSpec } from "./protocol.js"

/**
 * Who connects to what in the `sse` bench: one owner who posts, `users` members who hold the
 * connections, and `projects` projects — the first shared by every user (a company-wide channel),
 * the rest teams, each user in `memberships - 1` of them — so that connections spread over many
 * users and streams, as a real deployment's do, instead of all sitting on one stream.
 */

export interface User {
  readonly id: string
  readonly token: string
  /** Project ids, the shared one first. */
  readonly projects: ReadonlyArray<string>
}

export interface Layout {
  readonly ownerToken: string
  /** Project ids, the shared one first. */
  readonly projects: ReadonlyArray<string>
  readonly users: ReadonlyArray<User>
}

export type Endpoint = "project" | "multiplexed"

export const ENDPOINT_PATH: Record<Endpoint, string> = {
  project: "GET /api/projects/:projectId/stream",
  multiplexed: "GET /api/stream"
}

/** A connection to open, and the projects whose events it receives. */
export interface Connection extends ConnectionSpec {
  readonly projects: ReadonlyArray<string>
}

/** The team projects (indexes 1 … projects-1) user `u` belongs to: `memberships - 1` distinct ones. */
const teamsOf = (u: number, projects: number, memberships: number) => {
  const teams = projects - 1
  const stride = Math.max(1, Math.floor(teams / Math.max(1, memberships - 1)))
  return Array.from({ length: memberships - 1 }, (_, k) => 1 + ((u + k * stride) % teams))
}

/** Creates the owner, the users, the projects and the memberships over HTTP (the admin endpoint). */
export const createLayout = async (
  port: number,
  adminToken: string,
  settings: { readonly users: number; readonly projects: number; readonly memberships: number }
): Promise<Layout> => {
  const createUser = (name: string) =>
    requestJson<{ id: string; token: string }>(
      { port, method: "POST", path: "/api/admin/users", token: adminToken, body: { name } },
      201
    )
  const owner = await createUser("bench owner")
  const projects = await inParallel(settings.projects, 8, (p) =>
    requestJson<{ id: string }>({
      port,
      method: "POST",
      path: "/api/projects",
      token: owner.token,
      body: { name: p === 0 ? "bench shared" : `bench team ${p}` }
    }, 201).then((project) => project.id))
  const created = await inParallel(settings.users, 8, (u) => createUser(`bench user ${u}`))
  const users = created.map((user, u): User => ({
    id: user.id,
    token: user.token,
    projects: [projects[0]!, ...teamsOf(u, settings.projects, settings.memberships).map((t) => projects[t]!)]
  }))
  const memberships = users.flatMap((user) => user.projects.map((projectId) => ({ projectId, userId: user.id })))
  await inParallel(memberships.length, 8, (i) =>
    requestJson({
      port,
      method: "POST",
      path: `/api/projects/${memberships[i]!.projectId}/members`,
      token: owner.token,
      body: { userId: memberships[i]!.userId }
    }, 201))
  return { ownerToken: owner.token, projects, users }
}

/**
 * Connection `i` of an endpoint: user `i mod users`; on the per-stream endpoint, one of that
 * user's project streams in turn, so every user's connections spread over all their projects.
 */
export const connection = (layout: Layout, endpoint: Endpoint, i: number): Connection => {
  const user = layout.users[i % layout.users.length]!
  if (endpoint === "multiplexed") return { path: "/api/stream", token: user.token, projects: user.projects }
  const projectId = user.projects[Math.floor(i / layout.users.length) % user.projects.length]!
  return { path: `/api/projects/${projectId}/stream`, token: user.token, projects: [projectId] }
}
