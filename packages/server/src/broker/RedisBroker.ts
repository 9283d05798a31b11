import { Events } from "@herald/domain"
import { Chunk, Data, Effect, Layer, Option, Redacted, Runtime, Schema, Stream } from "effect"
import { Redis } from "ioredis"
import { AppConfig } from "../config/AppConfig.js"
import { SubscriberStatus } from "../observability/SubscriberStatus.js"
import { BrokerError } from "./BrokerError.js"
import { BrokerPublisher } from "./BrokerPublisher.js"
import { BrokerDelivery, BrokerSubscriber } from "./BrokerSubscriber.js"

/** The one Redis stream every server instance appends to and reads (pick a database in REDIS_URL to share a Redis). */
export const STREAM_KEY = "herald:events"

/**
 * The stream is trimmed to about this many entries (`XADD … MAXLEN ~`, whole macro nodes, so
 * cheap). A node away for longer than the window (or one that falls that far behind) catches up
 * from the database: what it missed shows as gaps, which SSE gap filling reads.
 */
export const STREAM_MAXLEN = 100_000

/** Entries per XREAD, and how long one waits for new entries before asking again. */
const READ_COUNT = 1_000
const BLOCK_MS = 5_000

/** The start-up check (connect + PING) and how long a publish may wait for Redis's answer. */
const CONNECT_TIMEOUT_MS = 3_000
const PUBLISH_TIMEOUT_MS = 3_000

/** A read with no answer this long after its BLOCK ran out is a dead connection: it is dropped and re-made. */
const READ_TIMEOUT_MS = BLOCK_MS + 5_000

/** Redis could not be reached at start-up: one line naming REDIS_URL. */
export class RedisUnavailable extends Data.TaggedError("RedisUnavailable")<{ readonly message: string }> {}

/** The URL without its credentials, for messages. */
const describeUrl = (url: string) => {
  try {
    const u = new URL(url)
    return `${u.protocol}//${u.hostname}:${u.port || "6379"}${u.pathname.length > 1 ? u.pathname : ""}`
  } catch {
    return "(unparsable URL)"
  }
}

const reasonOf = (cause: unknown) => cause instanceof Error ? cause.message : String(cause)

/**
 * One ioredis connection, checked at start-up (connect and PING within 3 s, else
 * RedisUnavailable naming REDIS_URL). While Redis is down, commands fail at once instead of
 * queueing (no offline queue, no retries per request): a publish becomes a BrokerError for the
 * outbox's retry policy, a read fails and the SSE hub re-subscribes with backoff. ioredis
 * reconnects in the background; an outage is logged once when it starts and once when it ends.
 * `commandTimeout` 0 means none: ioredis takes any number, 0 included, as a timeout, and fails
 * every command of such a connection at once.
 */
export const connection = (
  role: "publisher" | "subscriber" | "signals-publisher" | "signals-subscriber",
  commandTimeout: number
) =>
  Effect.gen(function*() {
    const { redisUrl } = yield* AppConfig
    if (Option.isNone(redisUrl)) {
      return yield* new RedisUnavailable({ message: "REDIS_URL: required with HERALD_BROKER=redis" })
    }
    const url = Redacted.value(redisUrl.value)
    const where = describeUrl(url)
    const runtime = yield* Effect.runtime<never>()
    const log = Runtime.runSync(runtime)
    let lastError: unknown
    let ready = false
    let down = false
    let closing = false
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new Redis(url, {
          lazyConnect: true,
          connectionName: `herald-${role}`,
          enableOfflineQueue: false,
          maxRetriesPerRequest: 0,
          autoResendUnfulfilledCommands: false,
          connectTimeout: CONNECT_TIMEOUT_MS,
          ...(commandTimeout > 0 ? { commandTimeout } : {}),
          keepAlive: 10_000,
          // Reconnect in the background: 100 ms, 200 ms, … at most 2 s apart, forever.
          retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times - 1, 5), 2_000)
        })
      ),
      (client) =>
        Effect.sync(() => {
          closing = true
          client.disconnect()
        })
    )
    client.on("error", (error) => lastError = error)
    client.on("close", () => {
      if (!ready || down || closing) return
      down = true
      const reason = lastError === undefined ? "connection closed" : reasonOf(lastError)
      log(Effect.logWarning(`redis broker (${role}): connection to ${where} lost (${reason}); reconnecting`))
    })
    client.on("ready", () => {
      ready = true
      lastError = undefined
      if (down) {
        down = false
        log(Effect.logInfo(`redis broker (${role}): reconnected to ${where}`))
      }
    })
    yield* Effect.tryPromise(() => client.connect().then(() => client.ping())).pipe(
      Effect.timeoutFail({ duration: CONNECT_TIMEOUT_MS, onTimeout: () => new Error("no answer within 3 s") }),
      Effect.mapError((cause) =>
        new RedisUnavailable({ message: `REDIS_URL: cannot reach ${where}: ${reasonOf(lastError ?? cause)}` })
      )
    )
    return client
  })

/**
 * Appends each event to the stream as one entry (`e` = the envelope JSON, whole: Redis has no
 * payload limit; with tracing on, `t` = its publish span's `traceparent`, which nodes that do not
 * know it ignore), the batch in one MULTI/EXEC: all or nothing, in order. Fails fast while Redis
 * is down, so the outbox retries the batch later (G3).
 */
export const RedisBrokerPublisherLive = Layer.scoped(
  BrokerPublisher,
  Effect.gen(function*() {
    const client = yield* connection("publisher", PUBLISH_TIMEOUT_MS)
    const maxLen = String(STREAM_MAXLEN)
    return {
      publish: (events, traceparents) =>
        events.length === 0 ? Effect.void : Effect.tryPromise({
          try: () => {
            const tx = client.multi()
            events.forEach((e, i) => {
              const traceparent = traceparents?.[i]
              if (traceparent === undefined) tx.xadd(STREAM_KEY, "MAXLEN", "~", maxLen, "*", "e", JSON.stringify(e))
              else tx.xadd(STREAM_KEY, "MAXLEN", "~", maxLen, "*", "e", JSON.stringify(e), "t", traceparent)
            })
            return tx.exec()
          },
          catch: (cause) => new BrokerError({ message: `XADD failed: ${reasonOf(cause)}`, cause })
        }).pipe(Effect.flatMap((replies) => {
          const failed = replies === null ? new Error("transaction aborted") : replies.find(([e]) => e !== null)?.[0]
          return failed
            ? Effect.fail(new BrokerError({ message: `XADD failed: ${reasonOf(failed)}`, cause: failed }))
            : Effect.void
        }))
    }
  })
)

/** A stream entry id `<ms>-<n>` as two numbers, for comparing. */
const parseId = (id: string): readonly [number, number] => {
  const dash = id.indexOf("-")
  return [Number(id.slice(0, dash)), Number(id.slice(dash + 1))]
}
const isAfter = (a: string, b: string) => {
  const [am, an] = parseId(a)
  const [bm, bn] = parseId(b)
  return am > bm || (am === bm && an > bn)
}

const decode = (json: string, traceparent: string | undefined) =>
  Effect.flatMap(
    Schema.decodeUnknown(Schema.parseJson())(json),
    (parsed) =>
      Effect.map(
        Events.validateWire(parsed),
        (event) =>
          traceparent === undefined
            ? BrokerDelivery.Envelope({ event })
            : BrokerDelivery.Envelope({ event, traceparent })
      )
  )

/** The value of `field` in an entry's field list (`[name, value, name, value, …]`). */
const fieldOf = (fields: ReadonlyArray<string>, field: string) => {
  for (let i = 0; i < fields.length - 1; i += 2) if (fields[i] === field) return fields[i + 1]
  return undefined
}

type Entries = ReadonlyArray<readonly [id: string, fields: ReadonlyArray<string>]>

/**
 * Reads the stream with XREAD BLOCK on a connection of its own, from the stream's tail as it was
 * at start-up (a fresh node serves history from the database, as every node does). The last
 * entry id read outlives a failed read: when the hub re-subscribes after an outage, reading
 * resumes after it, and a `Resync` goes first — the server may have restarted empty or trimmed
 * entries meanwhile, so every live stream checks the database. If the stream now ends before that
 * id (Redis restarted empty, or was flushed), reading starts from its beginning. A read that comes
 * back full means this node is behind: if the stream's oldest entry is by then past the id the
 * read started after, entries may have been trimmed unread, and a `Resync` follows its entries.
 */
export const RedisBrokerSubscriberLive = Layer.scoped(
  BrokerSubscriber,
  Effect.gen(function*() {
    const client = yield* connection("subscriber", READ_TIMEOUT_MS)
    const status = yield* SubscriberStatus
    const redisError = (what: string) => (cause: unknown) => {
      // A read with no answer at all: drop the connection (ioredis makes a new one).
      if (reasonOf(cause) === "Command timed out") client.disconnect(true)
      return new BrokerError({ message: `${what} failed: ${reasonOf(cause)}`, cause })
    }
    const newest = Effect.tryPromise({
      try: () => client.xrevrange(STREAM_KEY, "+", "-", "COUNT", 1),
      catch: redisError("XREVRANGE")
    }).pipe(Effect.map((entries) => entries[0]?.[0]))
    const oldest = Effect.tryPromise({
      try: () => client.xrange(STREAM_KEY, "-", "+", "COUNT", 1),
      catch: redisError("XRANGE")
    }).pipe(Effect.map((entries) => entries[0]?.[0]))

    let lastId = (yield* Effect.mapError(newest, (e) => new RedisUnavailable({ message: `REDIS_URL: ${e.message}` })))
      ?? "0-0"
    let runs = 0

    /** An entry we cannot read is logged and skipped: SSE gap filling reads the event from the database. */
    const deliveryOf = (id: string, fields: ReadonlyArray<string>): Effect.Effect<Option.Option<BrokerDelivery>> => {
      const json = fieldOf(fields, "e")
      const decoded: Effect.Effect<BrokerDelivery, unknown> = json === undefined
        ? Effect.fail("no `e` field")
        : decode(json, fields.length > 2 ? fieldOf(fields, "t") : undefined)
      return decoded.pipe(
        Effect.map(Option.some),
        Effect.catchAll((e) => Effect.as(Effect.logWarning(`redis broker: unreadable entry ${id}`, e), Option.none()))
      )
    }

    const deliveries = (entries: Entries) =>
      Effect.map(
        Effect.forEach(entries, ([id, fields]) => {
          lastId = id
          return deliveryOf(id, fields)
        }),
        (found) => Chunk.filterMap(Chunk.fromIterable(found), (d) => d)
      )

    const read = Effect.gen(function*() {
      const from = lastId
      const reply = yield* Effect.tryPromise({
        try: () => client.xread("COUNT", READ_COUNT, "BLOCK", BLOCK_MS, "STREAMS", STREAM_KEY, from),
        catch: redisError("XREAD")
      })
      const entries: Entries = reply?.[0]?.[1] ?? []
      const found = yield* deliveries(entries)
      if (entries.length < READ_COUNT || from === "0-0") return found
      // A full read: this node is behind. If the stream's oldest entry is past where the read
      // started, entries in between may have been trimmed unread (a failed look counts as such).
      const trimmed = yield* oldest.pipe(
        Effect.map((first) => first !== undefined && isAfter(first, from)),
        Effect.orElseSucceed(() => true)
      )
      return trimmed ? Chunk.append(found, BrokerDelivery.Resync()) : found
    })

    const live = status.set({ _tag: "Live" })

    const resume = Effect.gen(function*() {
      const last = yield* newest
      if (last === undefined || isAfter(lastId, last)) lastId = "0-0"
      yield* live
      return BrokerDelivery.Resync()
    })

    // Live from the first run (start-up has just reached Redis) or a resume that Redis answered;
    // down, with the reason, from a read that fails until one succeeds again.
    return {
      events: Stream.suspend(() =>
        runs++ === 0
          ? Stream.concat(Stream.execute(live), Stream.repeatEffectChunk(read))
          : Stream.concat(Stream.fromEffect(resume), Stream.repeatEffectChunk(read))
      ).pipe(Stream.tapError((error) => status.set({ _tag: "Down", reason: error.message })))
    }
  })
)
