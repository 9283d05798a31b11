import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import { Api, Errors, Events } from "@herald/domain"
import { DateTime, Duration, Effect } from "effect"
import { Policy, withPolicy } from "../chat/Policy.js"
import { Analytics, type Range } from "../eventlog/Analytics.js"
import { EventHistory } from "../eventlog/EventHistory.js"

const DEFAULT_RANGE = Duration.days(30)
const MAX_POINTS = 10_000
const bucketSize = { minute: Duration.minutes(1), hour: Duration.hours(1), day: Duration.days(1) } as const

/** `[from, to)`; `to` defaults to now, `from` to 30 days before `to`. */
const range = (params: { readonly from?: DateTime.Utc | undefined; readonly to?: DateTime.Utc | undefined }) =>
  Effect.gen(function*() {
    const to = params.to ?? (yield* DateTime.now)
    const from = params.from ?? DateTime.subtractDuration(to, DEFAULT_RANGE)
    if (DateTime.greaterThan(from, to)) {
      return yield* new Errors.BadRequest({ message: "from must not be after to", field: "from" })
    }
    return { from, to } satisfies Range
  })

export const HistoryLive = HttpApiBuilder.group(Api.HeraldApi, "history", (handlers) =>
  Effect.gen(function*() {
    const policy = yield* Policy
    const history = yield* EventHistory
    const page = (stream: Events.StreamId, params: typeof Api.HistoryParams.Type) =>
      Effect.map(
        history.page({ stream, after: params.after ?? 0, limit: params.limit ?? 100, type: params.type }),
        (p) => new Api.EventPage(p)
      )
    return handlers
      .handle("project", ({ path, urlParams }) =>
        page(Events.projectStream(path.projectId), urlParams).pipe(withPolicy(policy.requireMember(path.projectId))))
      .handle("workspace", ({ path, urlParams }) =>
        Effect.flatMap(Api.CurrentUser, (me) =>
          page(Events.workspaceStream(path.projectId, me.id), urlParams)).pipe(
            withPolicy(policy.requireMember(path.projectId))
          ))
  }))

export const AnalyticsLive = HttpApiBuilder.group(Api.HeraldApi, "analytics", (handlers) =>
  Effect.gen(function*() {
    const policy = yield* Policy
    const analytics = yield* Analytics
    return handlers
      .handle("summary", ({ path, urlParams }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          const r = yield* range(urlParams)
          return new Api.AnalyticsSummary(
            yield* analytics.summary(path.projectId, Events.workspaceStream(path.projectId, me.id), r)
          )
        }).pipe(withPolicy(policy.requireMember(path.projectId))))
      .handle("timeseries", ({ path, urlParams }) =>
        Effect.gen(function*() {
          const r = yield* range(urlParams)
          // Buckets are UTC-aligned (multiples of their size since the epoch); the first is the one holding `from`.
          const size = Duration.toMillis(bucketSize[urlParams.bucket])
          const firstBucket = Math.floor(DateTime.toEpochMillis(r.from) / size) * size
          const points = Math.ceil((DateTime.toEpochMillis(r.to) - firstBucket) / size)
          if (points > MAX_POINTS) {
            return yield* new Errors.BadRequest({
              message:
                `at most ${MAX_POINTS} ${urlParams.bucket} buckets per request; narrow from/to or use a larger bucket`,
              field: "bucket"
            })
          }
          return new Api.Timeseries(yield* analytics.timeseries(path.projectId, urlParams.bucket, r, urlParams.type))
        }).pipe(withPolicy(policy.requireMember(path.projectId))))
  }))
