import { SqlClient } from "@effect/sql"
import { Chat, type Ids } from "@herald/domain"
import { DateTime, Effect, Option } from "effect"

interface ProjectRow {
  readonly id: string
  readonly name: string
  readonly ownerId: string
  readonly createdAt: Date
}
const toProject = (row: ProjectRow) =>
  new Chat.Project({
    id: row.id as Ids.ProjectId,
    name: row.name,
    ownerId: row.ownerId as Ids.UserId,
    createdAt: DateTime.unsafeFromDate(row.createdAt)
  })

export interface Membership {
  readonly project: Chat.Project
  readonly role: Chat.MemberRole
}

/** Projects and memberships. Visibility is always "the caller is a member". */
export class ProjectsRepo extends Effect.Service<ProjectsRepo>()("Herald/ProjectsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insert = (project: { id: Ids.ProjectId; name: string; ownerId: Ids.UserId; at: DateTime.Utc }) =>
      Effect.map(
        sql<ProjectRow>`
          WITH p AS (
            INSERT INTO projects (id, name, owner_id, created_at)
            VALUES (${project.id}, ${project.name}, ${project.ownerId}, ${DateTime.toDateUtc(project.at)})
            RETURNING *
          ), m AS (
            INSERT INTO project_members (project_id, user_id, role, created_at)
            SELECT id, owner_id, 'owner', created_at FROM p
          )
          SELECT id, name, owner_id, created_at FROM p`,
        ([row]) => toProject(row!)
      )

    /** The project and the caller's role in it, if the caller is a member. */
    const membership = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      Effect.map(
        sql<ProjectRow & { role: Chat.MemberRole }>`
          SELECT p.id, p.name, p.owner_id, p.created_at, m.role
          FROM projects p JOIN project_members m ON m.project_id = p.id
          WHERE p.id = ${projectId} AND m.user_id = ${userId}`,
        (rows) => Option.map(Option.fromNullable(rows[0]), (row): Membership => ({ project: toProject(row), role: row.role }))
      )

    const isMember = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      Effect.map(
        sql`SELECT 1 FROM project_members WHERE project_id = ${projectId} AND user_id = ${userId}`,
        (rows) => rows.length > 0
      )

    const listForUser = (userId: Ids.UserId) =>
      Effect.map(
        sql<ProjectRow>`
          SELECT p.id, p.name, p.owner_id, p.created_at
          FROM projects p JOIN project_members m ON m.project_id = p.id
          WHERE m.user_id = ${userId}
          ORDER BY p.created_at, p.id`,
        (rows) => rows.map(toProject)
      )

    /** Members with their names, owner first. */
    const members = (projectId: Ids.ProjectId) =>
      sql<{ userId: Ids.UserId; name: string; role: Chat.MemberRole }>`
        SELECT m.user_id, u.name, m.role FROM project_members m JOIN users u ON u.id = m.user_id
        WHERE m.project_id = ${projectId}
        ORDER BY m.role = 'owner' DESC, m.created_at, m.user_id`

    /** false when already a member. */
    const addMember = (projectId: Ids.ProjectId, userId: Ids.UserId, at: DateTime.Utc) =>
      Effect.map(
        sql`
          INSERT INTO project_members (project_id, user_id, role, created_at)
          VALUES (${projectId}, ${userId}, 'member', ${DateTime.toDateUtc(at)})
          ON CONFLICT DO NOTHING RETURNING 1`,
        (rows) => rows.length > 0
      )

    /** false when not a (removable) member. The owner's membership is never removed. */
    const removeMember = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      Effect.map(
        sql`
          DELETE FROM project_members
          WHERE project_id = ${projectId} AND user_id = ${userId} AND role = 'member' RETURNING 1`,
        (rows) => rows.length > 0
      )

    return { insert, membership, isMember, listForUser, members, addMember, removeMember } as const
  })
}) {}
