import { SqlClient } from "@effect/sql"
import { Ids } from "@herald/domain"
import { Duration, Effect, Either } from "effect"
import { createHmac, timingSafeEqual } from "node:crypto"
import { AppConfig } from "../config/AppConfig.js"

/**
 * Stream tickets: `hst_<payload>.<signature>` (base64url), the payload the user's id, the issuing
 * token's id and the expiry (16 + 16 + 8 bytes), signed with HMAC-SHA256 under the key every node
 * reads from `server_secrets` (migration 0009). A ticket issued by one node opens a stream on any
 * other, and nothing is stored per ticket. Checking the issuing token is still live is the
 * caller's part (Auth.ts): a ticket dies with its token.
 */

const PREFIX = "hst_"
const PAYLOAD_BYTES = 40

export interface TicketClaims {
  readonly userId: Ids.UserId
  readonly tokenId: Ids.TokenId
  /** Epoch ms. */
  readonly expiresAt: number
}

const uuidBytes = (uuid: string) => Buffer.from(uuid.replace(/-/g, ""), "hex")
const uuidText = (bytes: Buffer) => {
  const h = bytes.toString("hex")
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export class StreamTickets extends Effect.Service<StreamTickets>()("Herald/StreamTickets", {
  effect: Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { ticketTtl } = yield* AppConfig
    const [row] = yield* Effect.orDie(
      sql<{ secret: Uint8Array }>`SELECT secret FROM server_secrets WHERE name = 'stream_tickets'`
    )
    if (row === undefined) return yield* Effect.dieMessage("server_secrets has no stream_tickets key (migration 0009)")
    const key = Buffer.from(row.secret)
    const sign = (payload: string) => createHmac("sha256", key).update(payload).digest()

    /** A ticket for this user and token, valid for HERALD_TICKET_TTL from now. */
    const issue = (userId: Ids.UserId, tokenId: Ids.TokenId) =>
      Effect.sync(() => {
        const expiresAt = Date.now() + Duration.toMillis(ticketTtl)
        const payload = Buffer.alloc(PAYLOAD_BYTES)
        uuidBytes(userId).copy(payload, 0)
        uuidBytes(tokenId).copy(payload, 16)
        payload.writeBigUInt64BE(BigInt(expiresAt), 32)
        const text = payload.toString("base64url")
        return { ticket: `${PREFIX}${text}.${sign(text).toString("base64url")}`, expiresAt }
      })

    /** The claims of an unaltered, unexpired ticket of ours, or why not. */
    const verify = (ticket: string): Either.Either<TicketClaims, "invalid" | "expired"> => {
      if (!ticket.startsWith(PREFIX)) return Either.left("invalid")
      const dot = ticket.indexOf(".")
      if (dot < 0) return Either.left("invalid")
      const text = ticket.slice(PREFIX.length, dot)
      const given = Buffer.from(ticket.slice(dot + 1), "base64url")
      const expected = sign(text)
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return Either.left("invalid")
      const payload = Buffer.from(text, "base64url")
      if (payload.length !== PAYLOAD_BYTES) return Either.left("invalid")
      const expiresAt = Number(payload.readBigUInt64BE(32))
      if (expiresAt <= Date.now()) return Either.left("expired")
      return Either.right({
        userId: Ids.UserId.make(uuidText(payload.subarray(0, 16))),
        tokenId: Ids.TokenId.make(uuidText(payload.subarray(16, 32))),
        expiresAt
      })
    }

    return { issue, verify } as const
  })
}) {}
