import { SqlClient, SqlSchema } from "@effect/sql"
import { Chat, Ids } from "@herald/domain"
import { DateTime, Effect, Option, Schema } from "effect"

/** A `projects` row, decoded into the domain's Project. */
const ProjectRow = Schema.Struct({
  id: Ids.ProjectId,
  name: Schema.String,
  ownerId: Ids.UserId,
  createdAt: Schema.DateTimeUtcFromDate
})
const toProject = (row: typeof ProjectRow.Type) => new Chat.Project(row, true)

const MembershipRow = Schema.Struct({ ...ProjectRow.fields, role: Chat.MemberRole })

const MemberRow = Schema.Struct({ userId: Ids.UserId, name: Schema.String, role: Chat.MemberRole })

export interface Membership {
  readonly project: Chat.Project
  readonly role: Chat.MemberRole
}

const ProjectMember = Schema.Struct({ projectId: Ids.ProjectId, userId: Ids.UserId })

/**
 * Projects and memberships. Visibility is always "the caller is a member". A database failure, or
 * a row that does not decode, is a defect.
 */
export class ProjectsRepo extends Effect.Service<ProjectsRepo>()("Herald/ProjectsRepo", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient

    const insertRow = SqlSchema.single({
      Request: Schema.Struct({
        id: Ids.ProjectId,
        name: Schema.String,
        ownerId: Ids.UserId,
        at: Schema.DateTimeUtcFromDate
      }),
      Result: ProjectRow,
      execute: (project) =>
        sql`
        WITH p AS (
          INSERT INTO projects (id, name, owner_id, created_at)
          VALUES (${project.id}, ${project.name}, ${project.ownerId}, ${project.at})
          RETURNING *
        ), m AS (
          INSERT INTO project_members (project_id, user_id, role, created_at)
          SELECT id, owner_id, 'owner', created_at FROM p
        )
        SELECT id, name, owner_id, created_at FROM p`
    })
    const insert = (project: { id: Ids.ProjectId; name: string; ownerId: Ids.UserId; at: DateTime.Utc }) =>
      insertRow(project).pipe(Effect.map(toProject), Effect.orDie)

    const membershipRow = SqlSchema.findOne({
      Request: ProjectMember,
      Result: MembershipRow,
      execute: ({ projectId, userId }) =>
        sql`
        SELECT p.id, p.name, p.owner_id, p.created_at, m.role
        FROM projects p JOIN project_members m ON m.project_id = p.id
        WHERE p.id = ${projectId} AND m.user_id = ${userId}`
    })
    /** The project and the caller's role in it, if the caller is a member. */
    const membership = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      membershipRow({ projectId, userId }).pipe(
        Effect.map(Option.map(({ role, ...project }): Membership => ({ project: toProject(project), role }))),
        Effect.orDie
      )

    const isMember = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      sql`SELECT 1 FROM project_members WHERE project_id = ${projectId} AND user_id = ${userId}`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.orDie
      )

    const forUser = SqlSchema.findAll({
      Request: Ids.UserId,
      Result: ProjectRow,
      execute: (userId) =>
        sql`
        SELECT p.id, p.name, p.owner_id, p.created_at
        FROM projects p JOIN project_members m ON m.project_id = p.id
        WHERE m.user_id = ${userId}
        ORDER BY p.created_at, p.id`
    })
    const listForUser = (userId: Ids.UserId) =>
      forUser(userId).pipe(Effect.map((rows) => rows.map(toProject)), Effect.orDie)

    /** The ids of the projects `userId` is a member of (what an SSE connection may carry), nothing decoded but the id. */
    const projectIdsOf = (userId: Ids.UserId) =>
      Effect.map(
        sql<{ projectId: Ids.ProjectId }>`SELECT project_id FROM project_members WHERE user_id = ${userId}`,
        (rows) => rows.map((r) => r.projectId)
      ).pipe(Effect.orDie)

    /** Members with their names, owner first. */
    const membersOf = SqlSchema.findAll({
      Request: Ids.ProjectId,
      Result: MemberRow,
      execute: (projectId) =>
        sql`
        SELECT m.user_id, u.name, m.role FROM project_members m JOIN users u ON u.id = m.user_id
        WHERE m.project_id = ${projectId}
        ORDER BY m.role = 'owner' DESC, m.created_at, m.user_id`
    })
    const members = (projectId: Ids.ProjectId) => Effect.orDie(membersOf(projectId))

    /** false when already a member. */
    const addMember = (projectId: Ids.ProjectId, userId: Ids.UserId, at: DateTime.Utc) =>
      sql`
        INSERT INTO project_members (project_id, user_id, role, created_at)
        VALUES (${projectId}, ${userId}, 'member', ${DateTime.toDateUtc(at)})
        ON CONFLICT DO NOTHING RETURNING 1`.pipe(Effect.map((rows) => rows.length > 0), Effect.orDie)

    /** false when not a (removable) member. The owner's membership is never removed. */
    const removeMember = (projectId: Ids.ProjectId, userId: Ids.UserId) =>
      sql`
        DELETE FROM project_members
        WHERE project_id = ${projectId} AND user_id = ${userId} AND role = 'member' RETURNING 1`.pipe(
        Effect.map((rows) => rows.length > 0),
        Effect.orDie
      )

    return { insert, membership, isMember, listForUser, projectIdsOf, members, addMember, removeMember } as const
  })
}) {}
