import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Api, Signals as Wire } from "@herald/domain"
import { DateTime, Effect } from "effect"
import { Policy } from "../chat/Policy.js"
import { Limits } from "../limits/Limits.js"
import { Signals } from "../signals/Signals.js"

/**
 * Live signals (SPEC §5, G10): members only (404 otherwise, as everywhere), nothing written to the
 * database. Typing counts as a write (`HERALD_WRITE_RATE`), draft updates have their own rate
 * (`HERALD_DRAFT_RATE`): over them, a 429 with `Retry-After`.
 */
export const SignalsLive = HttpApiBuilder.group(Api.HeraldApi, "signals", (handlers) =>
  Effect.gen(function*() {
    const policy = yield* Policy
    const signals = yield* Signals
    const limits = yield* Limits
    return handlers
      .handle("presence", ({ path }) =>
        Effect.zipRight(
          policy.requireMember(path.projectId),
          Effect.map(signals.presence(path.projectId), (users) =>
            new Wire.Presence({
              projectId: path.projectId,
              users: users.map((u) =>
                new Wire.PresentUser({
                  userId: u.userId as Wire.PresentUser["userId"],
                  since: DateTime.unsafeMake(u.since)
                })
              )
            }))
        ))
      .handle("typing", ({ path }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          yield* policy.requireMember(path.projectId)
          yield* limits.write(me.id)
          yield* signals.typing(path.projectId, me.id)
        }))
      .handle("putDraft", ({ path, payload }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          yield* policy.requireMember(path.projectId)
          yield* limits.draft(me.id)
          yield* signals.putDraft(path.projectId, me.id, path.draftId, payload.role ?? "user", payload.body)
        }))
      .handle("deleteDraft", ({ path }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          yield* policy.requireMember(path.projectId)
          yield* signals.deleteDraft(path.projectId, me.id, path.draftId)
        }))
  }))
