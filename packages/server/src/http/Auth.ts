import { Api, Errors } from "@herald/domain"
import { Cache, Duration, Effect, Either, Exit, Layer, Option, Redacted, Schedule } from "effect"
import { timingSafeEqual } from "node:crypto"
import { type LiveToken, TokensRepo } from "../chat/TokensRepo.js"
import { hashToken } from "../chat/UsersRepo.js"
import { AppConfig } from "../config/AppConfig.js"
import { Limits } from "../limits/Limits.js"
import { Metrics } from "../observability/Metrics.js"
import { AuthorizationHeader } from "./AuthorizationHeader.js"
import { StreamTickets } from "./StreamTickets.js"

const unauthorized = (message: string) => new Errors.Unauthorized({ message })

/** A lookup's answer is cached this long: revocation does not wait for it (`forget`). */
const CACHE_TTL = Duration.seconds(30)
/**
 * How long a token `forget` was told of is refused from memory: longer than a cached answer, or a
 * lookup in flight when the revocation was seen, can live.
 */
const FORGET_MS = 2 * 60_000
/** `last_used_at` is written at most once a minute per token (never a write per request) … */
const TOUCH_EVERY_MS = 60_000
/** … in one statement for every token used, this often. */
const TOUCH_FLUSH = Duration.seconds(5)

/**
 * How long an unknown token is remembered as unknown: a flood of bad tokens (the same one again and
 * again) is then not a flood of SELECTs. A token is random, so none is created during that time.
 */
const UNKNOWN_TOKEN_TTL = Duration.seconds(2)

/**
 * Credentials → callers, through short-lived caches for every middleware: every request
 * authenticates, and the caches save a database round trip per request. Bearer tokens (and
 * `?access_token=`) are looked up by their hash; stream tickets are checked by signature
 * (StreamTickets.ts), then their issuing token by id. A revoked or expired token is refused at
 * once: `forget` (fed by http/Revocations.ts, which polls the database) outranks the caches, and
 * every answer checks the expiry itself.
 */
export class Tokens extends Effect.Service<Tokens>()("Herald/Tokens", {
  scoped: Effect.gen(function*() {
    const repo = yield* TokensRepo
    const tickets = yield* StreamTickets
    const limits = yield* Limits
    const ttl = (exit: Exit.Exit<Option.Option<LiveToken>>) =>
      Exit.isSuccess(exit) && Option.isSome(exit.value) ? CACHE_TTL : UNKNOWN_TOKEN_TTL
    const metrics = yield* Metrics
    const bySecret = yield* Cache.makeWith({
      capacity: 10_000,
      lookup: (secret: string) =>
        Effect.tap(
          repo.findLive(secret),
          (found) => Effect.sync(() => metrics.tokenLookups.inc({ result: Option.isSome(found) ? "found" : "unknown" }))
        ),
      timeToLive: ttl
    })
    const byId = yield* Cache.makeWith({ capacity: 10_000, lookup: repo.findLiveById, timeToLive: ttl })

    /** Tokens known to be revoked or expired → when we learnt it. */
    const forgotten = new Map<string, number>()
    /** Tokens used → when their use was last queued for writing; the queue. */
    const touched = new Map<string, number>()
    const toTouch = new Set<string>()

    const forget = (ids: Iterable<string>) =>
      Effect.sync(() => {
        const now = Date.now()
        for (const id of ids) forgotten.set(id, now)
        for (const [id, at] of forgotten) if (now - at > FORGET_MS) forgotten.delete(id)
      })

    /** The cached token, if it is still live; its use noted for `last_used_at`. */
    const check = (found: Option.Option<LiveToken>, what: string) => {
      if (Option.isNone(found)) return Effect.fail(unauthorized(`invalid ${what}`))
      const token = found.value
      const now = Date.now()
      if (token.expiresAt !== null && token.expiresAt <= now) return Effect.fail(unauthorized(`${what} has expired`))
      if (forgotten.has(token.tokenId)) return Effect.fail(unauthorized(`${what} has been revoked or has expired`))
      if (now - (touched.get(token.tokenId) ?? 0) >= TOUCH_EVERY_MS) {
        touched.set(token.tokenId, now)
        toTouch.add(token.tokenId)
      }
      return Effect.succeed(token)
    }

    /**
     * The caller a bearer token (or `?access_token=`) stands for. Limits (SPEC §5): a token already
     * known good costs nothing; any other is looked up within the client address's budget of
     * failed authentications (Limits.authentication).
     */
    const user = (token: Redacted.Redacted) => {
      const secret = Redacted.value(token)
      return Effect.flatMap(
        bySecret.getOptionComplete(secret),
        (known) =>
          Option.isSome(known) && Option.isSome(known.value)
            ? check(known.value, "bearer token")
            : limits.authentication(Effect.flatMap(bySecret.get(secret), (found) => check(found, "bearer token")))
      ).pipe(
        Effect.map((t) => Api.callerOf(t.user, { tokenId: t.tokenId, via: "token" }))
      )
    }

    /** The caller a stream ticket stands for, while it and the token that issued it are live. */
    const ticket = (text: Redacted.Redacted) =>
      limits.authentication(Either.match(tickets.verify(Redacted.value(text)), {
        onLeft: (why) =>
          Effect.fail(unauthorized(
            why === "expired"
              ? "stream ticket has expired: ask POST /api/stream-tickets for a new one"
              : "invalid stream ticket"
          )),
        onRight: (claims) =>
          byId.get(claims.tokenId).pipe(
            Effect.flatMap((found) =>
              check(
                Option.filter(found, (t) => t.user.id === claims.userId),
                "stream ticket's token"
              )
            ),
            Effect.map((t) => Api.callerOf(t.user, { tokenId: t.tokenId, via: "ticket" }))
          )
      }))

    yield* Effect.suspend(() => {
      const ids = [...toTouch]
      toTouch.clear()
      const now = Date.now()
      for (const [id, at] of touched) if (now - at >= TOUCH_EVERY_MS) touched.delete(id)
      return repo.touch(ids)
    }).pipe(
      Effect.catchAllDefect((defect) => Effect.logWarning("could not record tokens' last use", defect)),
      Effect.repeat(Schedule.spaced(TOUCH_FLUSH)),
      Effect.forkScoped
    )

    return { user, ticket, forget } as const
  })
}) {}

/** The platform strips the header's first 7 characters whatever they are: insist on the Bearer scheme. */
const bearerScheme = Effect.flatMap(
  AuthorizationHeader,
  (authorization) =>
    /^Bearer [^\s]/i.test(authorization ?? "")
      ? Effect.void
      : Effect.fail(unauthorized("missing bearer token: send Authorization: Bearer <token>"))
)

/** Bearer-token authentication: provides `CurrentUser` to every endpoint of a protected group. */
export const AuthenticationLive = Layer.effect(
  Api.Authentication,
  Effect.map(
    Tokens,
    (tokens) => ({ bearer: (token: Redacted.Redacted) => Effect.zipRight(bearerScheme, tokens.user(token)) })
  )
)

/**
 * The same for the SSE endpoints, which also take `?access_token=` and `?ticket=` (EventSource
 * sends no headers). Tried in that order (Api.StreamAuthentication): with none of the three, the
 * ticket's failure is the answer, so it names them all.
 */
export const StreamAuthenticationLive = Layer.effect(
  Api.StreamAuthentication,
  Effect.map(Effect.all([Tokens, Limits]), ([tokens, limits]) => ({
    bearer: (token: Redacted.Redacted) => Effect.zipRight(bearerScheme, tokens.user(token)),
    accessToken: (token: Redacted.Redacted) =>
      Redacted.value(token).length === 0
        ? Effect.fail(unauthorized("missing token: send Authorization: Bearer <token> or ?access_token=<token>"))
        : tokens.user(token),
    ticket: (ticket: Redacted.Redacted) =>
      Redacted.value(ticket).length === 0
        // Tried last: an address an earlier attempt found over its budget stays a 429.
        ? Effect.zipRight(
          limits.stillRefused,
          Effect.fail(
            unauthorized(
              "missing credential: send Authorization: Bearer <token>, ?ticket=<stream ticket> or ?access_token=<token>"
            )
          )
        )
        : tokens.ticket(ticket)
  }))
)

/** The admin API's token, compared by digest (equal length, constant time); 404 while it is unset. */
export const AdminAuthenticationLive = Layer.effect(
  Api.AdminAuthentication,
  Effect.map(Effect.all([AppConfig, Limits]), ([{ adminToken }, limits]) => ({
    bearer: (token: Redacted.Redacted) =>
      Option.match(adminToken, {
        onNone: () =>
          Effect.fail(new Errors.NotFound({ message: "admin API is disabled (HERALD_ADMIN_TOKEN is unset)" })),
        onSome: (expected) =>
          Effect.zipRight(
            bearerScheme.pipe(Effect.mapError(() => unauthorized("admin token required"))),
            limits.authentication(Effect.suspend(() =>
              timingSafeEqual(hashToken(Redacted.value(token)), hashToken(Redacted.value(expected)))
                ? Effect.void
                : Effect.fail(unauthorized("admin token required"))
            ))
          )
      })
  }))
)
