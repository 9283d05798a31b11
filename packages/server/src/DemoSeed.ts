import { Effect, Option, Redacted } from "effect"
import { ChatService } from "./chat/ChatService.js"
import { asUser } from "./chat/Policy.js"
import { UsersRepo } from "./chat/UsersRepo.js"
import { AppConfig } from "./config/AppConfig.js"
import { printLine } from "./observability/LogOutput.js"

/** On an empty embedded database, a demo user and project so `npm start` is usable at once. */
export const seedDemo = Effect.gen(function*() {
  const config = yield* AppConfig
  if (Option.isSome(config.databaseUrl)) return
  const users = yield* UsersRepo
  if ((yield* users.count) > 0) return
  const { token, user } = yield* users.create("demo")
  const project = yield* (yield* ChatService).createProject("Demo project").pipe(asUser(user))
  yield* printLine(
    [
      "",
      "  Empty database: created a demo user and project.",
      `  demo token:   ${Redacted.value(token)}`,
      `  project id:   ${project.id}`,
      `  try:          curl -H 'Authorization: Bearer ${
        Redacted.value(token)
      }' http://${config.host}:${config.port}/api/projects`,
      ""
    ].join("\n")
  )
}).pipe(Effect.orDie)
