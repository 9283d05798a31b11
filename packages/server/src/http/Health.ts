import { HttpApiBuilder } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { Api, Errors } from "@herald/domain"
import { Effect } from "effect"

/** live: the process answers. ready: the database answers (and, once it runs, the publisher). */
export const HealthLive = HttpApiBuilder.group(Api.HeraldApi, "health", (handlers) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const database = sql`SELECT 1`.pipe(
      Effect.timeout("2 seconds"),
      Effect.as("ok"),
      Effect.catchAll((e) => Effect.succeed(`unreachable: ${e.message}`))
    )
    return handlers
      .handle("live", () => Effect.succeed({ status: "ok" as const, checks: {} }))
      .handle("ready", () =>
        Effect.gen(function*() {
          const checks = { database: yield* database }
          return Object.values(checks).every((c) => c === "ok")
            ? { status: "ok" as const, checks }
            : yield* new Errors.ServiceUnavailable({ message: "not ready", checks })
        }))
  }))
