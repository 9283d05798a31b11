import { createHash } from "node:crypto"

/**
 * An event envelope as a client received it, kept small: its fields and a digest of its `data`
 * (a body can be 10 000 characters, and a long run receives hundreds of thousands of frames). The
 * checker compares the digest with the database's event.
 */
export interface Envelope {
  readonly stream: string
  readonly seq: number
  readonly id: unknown
  readonly type: unknown
  readonly projectId: unknown
  readonly actorId: unknown
  readonly occurredAt: unknown
  /** sha1 of the canonical JSON of `data`. */
  readonly digest: string
}

/** Key order does not matter to jsonb; it does to JSON.stringify. */
export const canonical = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
      : v) ?? "undefined"

export const digestOf = (data: unknown): string => createHash("sha1").update(canonical(data)).digest("base64")

/** The envelope in a frame's or a history item's JSON, if it is one (it has `stream` and `seq`). */
export const envelopeOf = (value: unknown): Envelope | undefined => {
  if (typeof value !== "object" || value === null) return undefined
  const e = value as Record<string, unknown>
  if (typeof e.stream !== "string" || typeof e.seq !== "number") return undefined
  return {
    stream: e.stream,
    seq: e.seq,
    id: e.id,
    type: e.type,
    projectId: e.projectId,
    actorId: e.actorId,
    occurredAt: e.occurredAt,
    digest: digestOf(e.data)
  }
}
