import { Api, type Chat, Errors, type Ids } from "@herald/domain"
import { Effect, Option } from "effect"
import { type Membership, ProjectsRepo } from "./ProjectsRepo.js"

/**
 * Who may do what, written once: each policy is an effect on the caller (`CurrentUser`) that
 * succeeds with what it checked or fails with the answer the API gives. A non-member gets 404 —
 * not 403 — so a project's existence does not leak (G5); a member who may see but not act gets 403.
 */
export class Policy extends Effect.Service<Policy>()("Herald/Policy", {
  effect: Effect.gen(function*() {
    const projects = yield* ProjectsRepo

    /** The caller's membership of the project (its project and role). */
    const requireMember = (projectId: Ids.ProjectId): Effect.Effect<Membership, Errors.NotFound, Api.CurrentUser> =>
      Effect.flatMap(Api.CurrentUser, (me) =>
        projects.membership(projectId, me.id).pipe(
          Effect.flatMap(Option.match({
            onNone: () => Effect.fail(new Errors.NotFound({ message: "project not found" })),
            onSome: Effect.succeed
          }))
        ))

    /** The caller owns the project; `action` completes "only the project owner can …". */
    const requireOwner = (projectId: Ids.ProjectId, action: string) =>
      Effect.filterOrFail(
        requireMember(projectId),
        (m) => m.role === "owner",
        () => new Errors.Forbidden({ message: `only the project owner can ${action}` })
      )

    /** The caller wrote the message, or — when `orOwner` is given — owns its project. */
    const requireAuthor = (message: Chat.Message, action: string, orOwner?: Membership) =>
      Effect.flatMap(Api.CurrentUser, (me) =>
        message.authorId === me.id || orOwner?.role === "owner"
          ? Effect.void
          : Effect.fail(
            new Errors.Forbidden({ message: `only the author${orOwner ? " or the project owner" : ""} can ${action}` })
          ))

    return { requireMember, requireOwner, requireAuthor } as const
  })
}) {}

/** Runs `policy` first; `self` runs only if it passes. */
export const withPolicy = <A2, E2, R2>(policy: Effect.Effect<A2, E2, R2>) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.zipRight(policy, self)

/** Runs `self` as `user` (the CLI, the demo seed and tests act for a user they hold). */
export const asUser = (user: Chat.User) => <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.provideService(self, Api.CurrentUser, user)
