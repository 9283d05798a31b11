import { Layer } from "effect"
import { OutboxWriter } from "../outbox/OutboxWriter.js"
import { ChatService } from "./ChatService.js"
import { MessagesRepo } from "./MessagesRepo.js"
import { Policy } from "./Policy.js"
import { ProjectsRepo } from "./ProjectsRepo.js"
import { TokensRepo } from "./TokensRepo.js"
import { UsersRepo } from "./UsersRepo.js"

/**
 * The request path: every service an HTTP handler can reach. It needs a SqlClient, the config
 * and the in-process Wakeup — and no broker publisher (G2): `test/G2.test.ts` keeps it that way.
 */
export const RequestPathLive = ChatService.Default.pipe(
  Layer.provideMerge(Policy.Default),
  Layer.provideMerge(
    Layer.mergeAll(
      UsersRepo.Default,
      TokensRepo.Default,
      ProjectsRepo.Default,
      MessagesRepo.Default,
      OutboxWriter.Default
    )
  )
)
