import { Effect, Layer, Schedule } from "effect"
import { DEAD_TOKEN_RETENTION_MS, TokensRepo } from "../chat/TokensRepo.js"
import { SseHub } from "../stream/SseHub.js"
import { supervised } from "../Supervised.js"
import { Tokens } from "./Auth.js"

/**
 * How often each node asks the database which tokens were revoked or expired: the bound on how
 * long a revoked token still works here, and its SSE connections stay open (SPEC: within 1 s).
 */
export const REVOCATION_POLL_MS = 250
/**
 * Each poll looks this far behind the previous one's time: a revocation committed just after a
 * poll began, stamped before it, is still seen (seeing one twice is harmless).
 */
const OVERLAP_MS = 5_000
/** How often the rows of tokens dead for DEAD_TOKEN_RETENTION_MS are deleted. */
const PRUNE_EVERY = "10 minutes"

/**
 * Revocation on every node, through the database rather than the broker: `herald tokens revoke`
 * works on the database alone, and with the memory broker there is no other node to tell anyway.
 * Each node polls `api_tokens` (two partial indexes: a few rows read, four times a second), tells
 * the token cache to refuse what it finds and the SSE hub to end the connections those tokens
 * opened — directly or through a stream ticket. See docs/http.md, "Tokens".
 */
export const RevocationsLive = Layer.scopedDiscard(
  Effect.gen(function*() {
    const repo = yield* TokensRepo
    const tokens = yield* Tokens
    const hub = yield* SseHub
    let since: Date | undefined

    const poll = Effect.gen(function*() {
      const { ids, now } = yield* repo.endedSince(since, OVERLAP_MS)
      if (ids.length > 0) {
        yield* tokens.forget(ids)
        const ended = yield* Effect.forEach(ids, hub.endToken)
        const total = ended.reduce((a, b) => a + b, 0)
        if (total > 0) yield* Effect.logInfo(`ended ${total} SSE connection(s) of revoked or expired tokens`)
      }
      // Only after a successful poll: one that failed is caught up by the next from here.
      since = now
    })

    yield* poll.pipe(
      Effect.catchAllDefect((defect) => Effect.fail(defect)),
      Effect.repeat(Schedule.spaced(REVOCATION_POLL_MS)),
      supervised({ message: (e) => `token revocation poll failed; retrying: ${String(e)}` }),
      Effect.forkScoped
    )

    yield* repo.pruneDead(DEAD_TOKEN_RETENTION_MS).pipe(
      Effect.catchAllDefect((defect) => Effect.logWarning("could not prune dead tokens", defect)),
      Effect.repeat(Schedule.spaced(PRUNE_EVERY)),
      Effect.forkScoped
    )
  })
)
