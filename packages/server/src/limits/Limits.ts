import { Errors } from "@herald/domain"
import { Clock, Context, Effect, Layer, Schedule } from "effect"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../observability/Metrics.js"
import { TokenBuckets } from "./TokenBuckets.js"

/**
 * Limits no test or benchmark meets unless it means to (as AppConfig overrides): a benchmark
 * measures throughput, and a test of something else should not trip over its 41st post.
 */
export const ROOMY_LIMITS = {
  sseMaxPerUser: 100_000,
  sseMaxConnections: 1_000_000,
  writeRate: 1_000_000,
  draftRate: 1_000_000,
  authFailureRate: 1_000_000
} as const

/** The same as environment variables, for server processes that benchmarks and drills spawn. */
export const ROOMY_LIMITS_ENV = {
  HERALD_SSE_MAX_PER_USER: "100000",
  HERALD_SSE_MAX_CONNECTIONS: "1000000",
  HERALD_WRITE_RATE: "1000000/s",
  HERALD_DRAFT_RATE: "1000000/s",
  HERALD_AUTH_FAILURE_RATE: "1000000/s"
} as const

/** What `/metrics` calls each limit (`herald_limit_refusals_total{limit}`). */
export type LimitName = "sse_per_user" | "sse_total" | "write" | "draft" | "auth_failure" | "headers" | "tokens"

/** What a client is told to wait after a refused SSE connection: a slot frees when any connection ends, so soon. */
export const SSE_RETRY_AFTER_SECONDS = 5

/**
 * The client address of the request being served (the TCP peer: behind a proxy, the proxy's),
 * set by each front — the HTTP app and the doors — for the failed-authentication budget. Unset
 * for in-process callers, which have no address to limit.
 */
export class ClientAddress extends Context.Reference<ClientAddress>()("Herald/ClientAddress", {
  defaultValue: (): string | undefined => undefined
}) {}

/** An open SSE connection's place under the caps, given back (once) when it ends. */
export interface SseSlot {
  readonly release: () => void
}

export interface LimitsShape {
  /** One write (post, edit, delete, member change, typing) by `userId`, or a 429. */
  readonly write: (userId: string) => Effect.Effect<void, Errors.TooManyRequests>
  /** One draft update by `userId`, or a 429. */
  readonly draft: (userId: string) => Effect.Effect<void, Errors.TooManyRequests>
  /**
   * Runs an authentication for the current `ClientAddress`: refused with a 429, before `attempt`
   * runs (no token looked up), while the address is over its budget of failed authentications. A
   * token is taken from the budget for the attempt and given back if it succeeds, so at most a
   * budget's worth of unknown tokens is ever looked up at once from one address.
   */
  readonly authentication: <A, E, R>(attempt: Effect.Effect<A, E, R>) => Effect.Effect<A, E | Errors.TooManyRequests, R>
  /**
   * Fails with the 429 an authentication from the current address would get now, without counting
   * anything: for an answer that must not turn a refusal already made into a 401.
   */
  readonly stillRefused: Effect.Effect<void, Errors.TooManyRequests>
  /** A place for one more open SSE connection of `userId`, or a 429 (per user first, then in all). */
  readonly sseSlot: (userId: string) => Effect.Effect<SseSlot, Errors.TooManyRequests>
  /** Counts a refusal made outside these checks (the 431 for headers, answered by Node's server). */
  readonly refused: (limit: LimitName) => void
}

const noSlot: SseSlot = { release: () => undefined }

/** No limits: what in-process callers (the CLI's seeding, tests of the request path alone) get. */
const unlimited: LimitsShape = {
  write: () => Effect.void,
  draft: () => Effect.void,
  authentication: (attempt) => attempt,
  stillRefused: Effect.void,
  sseSlot: () => Effect.succeed(noSlot),
  refused: () => undefined
}

/**
 * The limits of SPEC §5 ("Limits", G11), per server process: token buckets (burst = 2 s worth)
 * for writes and draft updates per user and failed authentications per client address, and the
 * open SSE connections per user and in all. Every refusal is a `TooManyRequests` (a JSON 429 with
 * `Retry-After`, on both fronts) counted in `/metrics`. The server provides `Limits.layer`; a
 * request path built without it is unlimited.
 */
export class Limits extends Context.Reference<Limits>()("Herald/Limits", {
  defaultValue: (): LimitsShape => unlimited
}) {
  static readonly layer = Layer.scoped(
    Limits,
    Effect.gen(function*() {
      const config = yield* AppConfig
      const metrics = yield* Metrics
      const writes = new TokenBuckets(config.writeRate)
      const drafts = new TokenBuckets(config.draftRate)
      const authFailures = new TokenBuckets(config.authFailureRate)

      const refused = (limit: LimitName) => metrics.limitRefusals.inc({ limit })
      const refuse = (limit: LimitName, retryAfter: number, message: string) =>
        Effect.suspend(() => {
          refused(limit)
          return Effect.fail(new Errors.TooManyRequests({ message, limit, retryAfter }))
        })

      const bucket = (buckets: TokenBuckets, limit: LimitName, what: string) => (key: string) =>
        Effect.flatMap(Clock.currentTimeMillis, (now) => {
          const taken = buckets.take(key, now)
          return taken.ok ? Effect.void : refuse(
            limit,
            taken.retryAfter,
            `too many ${what}: at most ${buckets.perSecond}/s (bursts of ${buckets.burst}); retry in ${taken.retryAfter} s`
          )
        })

      const authentication = <A, E, R>(attempt: Effect.Effect<A, E, R>) =>
        Effect.flatMap(ClientAddress, (address): Effect.Effect<A, E | Errors.TooManyRequests, R> => {
          if (address === undefined) return attempt
          return Effect.flatMap(Clock.currentTimeMillis, (now): Effect.Effect<A, E | Errors.TooManyRequests, R> => {
            const taken = authFailures.take(address, now)
            if (!taken.ok) {
              return refuse(
                "auth_failure",
                taken.retryAfter,
                `too many failed authentications from this address; retry in ${taken.retryAfter} s`
              )
            }
            return Effect.tap(
              attempt,
              () => Effect.map(Clock.currentTimeMillis, (at) => authFailures.refund(address, at))
            )
          })
        })

      const stillRefused = Effect.flatMap(
        ClientAddress,
        (address) =>
          address === undefined ? Effect.void : Effect.flatMap(Clock.currentTimeMillis, (now) => {
            const wait = authFailures.wait(address, now)
            return wait === 0 ? Effect.void : Effect.fail(
              new Errors.TooManyRequests({
                message: `too many failed authentications from this address; retry in ${wait} s`,
                limit: "auth_failure",
                retryAfter: wait
              })
            )
          })
      )

      const perUser = new Map<string, number>()
      let total = 0
      const sseSlot = (userId: string) =>
        Effect.suspend((): Effect.Effect<SseSlot, Errors.TooManyRequests> => {
          const mine = perUser.get(userId) ?? 0
          if (mine >= config.sseMaxPerUser) {
            return refuse(
              "sse_per_user",
              SSE_RETRY_AFTER_SECONDS,
              `too many open SSE connections for this user: at most ${config.sseMaxPerUser}; close one first`
            )
          }
          if (total >= config.sseMaxConnections) {
            return refuse("sse_total", SSE_RETRY_AFTER_SECONDS, "the server has as many SSE connections as it takes")
          }
          perUser.set(userId, mine + 1)
          total++
          let held = true
          return Effect.succeed({
            release: () => {
              if (!held) return
              held = false
              total--
              const left = (perUser.get(userId) ?? 1) - 1
              if (left === 0) perUser.delete(userId)
              else perUser.set(userId, left)
            }
          })
        })

      // Buckets that have refilled are forgotten: memory follows the busy users and addresses, not all there were.
      yield* Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.sync(() => {
          for (const buckets of [writes, drafts, authFailures]) buckets.sweep(now)
        })).pipe(Effect.repeat(Schedule.spaced("10 seconds")), Effect.forkScoped)

      return {
        write: bucket(writes, "write", "writes"),
        draft: bucket(drafts, "draft", "draft updates"),
        authentication,
        stillRefused,
        sseSlot,
        refused
      } satisfies LimitsShape
    })
  )
}
