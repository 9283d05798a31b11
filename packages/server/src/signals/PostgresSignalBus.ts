import { PgClient } from "@effect/sql-pg"
import { Deferred, Duration, Effect, Layer, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import pg from "pg"
import { listenerConfig } from "../broker/PostgresBroker.js"
import { incoming, outgoing, SignalBus } from "./SignalBus.js"

/** The signal side's own channel: never the events' (`herald_events`). */
export const SIGNAL_CHANNEL = "herald_signals"

/** PostgreSQL's NOTIFY payload limit is 8000 bytes; a longer signal (a draft's body) goes in pieces. */
const MAX_PAYLOAD_BYTES = 7_900
/** UTF-16 units per piece: at most 3 bytes each in UTF-8 (a surrogate pair, 2 units, is 4), with room for the wrapper. */
const PIECE_UNITS = 2_400
/** A signal whose pieces have not all arrived by then is dropped. */
const PIECES_TIMEOUT_MS = 10_000
const PROBE_INTERVAL = Duration.seconds(10)
const PROBE_TIMEOUT = Duration.seconds(5)
const RECONNECT = Duration.seconds(1)

/** A piece of a long signal: `{"piece": [id, index, count], "text": …}`. */
interface Piece {
  readonly piece: readonly [string, number, number]
  readonly text: string
}

/** Splits `payload` into NOTIFY-sized pieces, never between the two halves of a surrogate pair. */
export const piecesOf = (payload: string): ReadonlyArray<string> => {
  if (Buffer.byteLength(payload) <= MAX_PAYLOAD_BYTES) return [payload]
  const parts: Array<string> = []
  let at = 0
  while (at < payload.length) {
    let end = Math.min(at + PIECE_UNITS, payload.length)
    const last = payload.charCodeAt(end - 1)
    if (end < payload.length && last >= 0xd800 && last <= 0xdbff) end--
    parts.push(payload.slice(at, end))
    at = end
  }
  const id = randomUUID()
  return parts.map((text, i) => JSON.stringify({ piece: [id, i, parts.length], text } satisfies Piece))
}

/** Puts pieces back together: the whole payload once its last piece arrives (a node's pieces arrive in order). */
export const reassembler = () => {
  const pending = new Map<string, { parts: Array<string>; startedAt: number }>()
  return (payload: string, now: number): string | undefined => {
    if (!payload.startsWith("{\"piece\":")) return payload
    let piece: Piece
    try {
      piece = JSON.parse(payload) as Piece
    } catch {
      return undefined
    }
    const [id, index, count] = piece.piece
    for (const [key, p] of pending) if (now - p.startedAt > PIECES_TIMEOUT_MS) pending.delete(key)
    const entry = pending.get(id) ?? { parts: [], startedAt: now }
    if (index !== entry.parts.length) {
      pending.delete(id)
      return undefined
    }
    entry.parts.push(piece.text)
    if (entry.parts.length < count) {
      pending.set(id, entry)
      return undefined
    }
    pending.delete(id)
    return entry.parts.join("")
  }
}

/**
 * The postgres broker's signal side: `NOTIFY herald_signals` and `LISTEN herald_signals` on one
 * connection of its own (not the pool, not the events' LISTEN connection), re-made a second after
 * it fails; signals sent or published meanwhile are lost (best-effort, G10).
 */
export const PostgresSignalBusLive = Layer.scoped(
  SignalBus,
  Effect.gen(function*() {
    const sql = yield* PgClient.PgClient
    const options: pg.ClientConfig = {
      ...listenerConfig(sql.config),
      application_name: `${sql.config.applicationName ?? "herald"}-signals`
    }
    const { heard, signals } = yield* incoming
    const assemble = reassembler()
    let current: pg.Client | undefined
    /** Logged once per outage. */
    let failing = false

    const connectOnce = Effect.gen(function*() {
      const lost = yield* Deferred.make<void, Error>()
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const client = new pg.Client(options)
          client.on("error", (error) => void Deferred.unsafeDone(lost, Effect.fail(error)))
          client.on("end", () => void Deferred.unsafeDone(lost, Effect.fail(new Error("connection closed"))))
          client.on("notification", (n) => {
            if (n.channel !== SIGNAL_CHANNEL || n.payload === undefined) return
            const whole = assemble(n.payload, Date.now())
            if (whole !== undefined) heard(whole)
          })
          return client
        }),
        (client) =>
          Effect.sync(() => {
            if (current === client) current = undefined
          }).pipe(
            Effect.zipRight(Effect.promise(() => client.end()).pipe(Effect.timeoutOption(Duration.seconds(1)))),
            Effect.ensuring(Effect.sync(() => client.connection.stream.destroy()))
          )
      )
      yield* Effect.tryPromise(() => client.connect().then(() => client.query(`LISTEN ${SIGNAL_CHANNEL}`)))
      current = client
      failing = false
      const probe = Effect.tryPromise(() => client.query("SELECT 1")).pipe(
        Effect.timeoutFail({ duration: PROBE_TIMEOUT, onTimeout: () => new Error("no answer to the probe") }),
        Effect.delay(PROBE_INTERVAL),
        Effect.forever
      )
      yield* Effect.raceFirst(Deferred.await(lost), probe)
    }).pipe(Effect.scoped)

    yield* connectOnce.pipe(
      Effect.catchAllCause((cause) =>
        failing ? Effect.void : Effect.zipRight(
          Effect.sync(() => failing = true),
          Effect.logWarning("postgres signals: connection lost; signals are dropped until it is back", cause)
        )
      ),
      Effect.repeat(Schedule.spaced(RECONNECT)),
      Effect.forkScoped
    )

    const publish = yield* outgoing("postgres signals", (payloads) =>
      Effect.suspend(() => {
        const client = current
        if (client === undefined) return Effect.fail(new Error("not connected"))
        const pieces = payloads.flatMap(piecesOf)
        // One statement: in order, as one transaction's notifications.
        return Effect.tryPromise(() =>
          client.query(
            "SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, n) ORDER BY n",
            [SIGNAL_CHANNEL, pieces]
          )
        )
      }).pipe(
        // Not connected yet (starting) or for a moment: wait a little before the batch is dropped.
        Effect.retry({ schedule: Schedule.spaced(Duration.millis(100)), times: 50 })
      ))
    return { publish, signals }
  })
)
