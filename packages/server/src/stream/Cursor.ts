import { createHmac } from "node:crypto"
import type { Position } from "./Position.js"

/**
 * The cursor of `GET /api/stream`: "every event up to here, per stream", in at most 1 KB however
 * many streams the connection carries.
 *
 * A cursor names a **base** — a row of `stream_cursors` holding the connection's streams and
 * their positions when it was written, the caller it belongs to and a key — and carries only the
 * streams whose position moved since: `(index in the base, seq)` pairs, or a stream the base does
 * not know (joined later) spelled out as its project id. The whole is signed with the base's key
 * (HMAC-SHA256, 96 bits), so a changed cursor is refused, and a cursor only resolves for the user
 * its base belongs to. A base's key is derived from a secret of the database, its id and its user
 * (CursorStore.ts), so a cursor whose base was deleted can still be verified: that is how
 * `CursorExpired` is told from a forged cursor. When the moved streams outgrow the soft budget the
 * connection writes a new base (one row, once in a while — never a write per frame), so the
 * cursor shrinks back to about 40 characters. Bases are shared by a user's connections at the same
 * positions.
 *
 * Every position carries the tag of the event the client saw there (Position.ts, G9), so a resume
 * after a restore that gave its seq to another event is a reset, as on the per-stream endpoints.
 *
 * Layout (then URL-safe base64): version 2 · base id (16 bytes) · entries · signature (12 bytes).
 * An entry is a varint header, a varint seq, then — when the header's low bit is set — the tag's 4
 * bytes. Header >> 1: 2i = the base's stream i; 1 = the project stream of the 16-byte project id
 * that follows the header; 3 = the caller's workspace stream in that project. Version 1 (no low
 * bit, no tags; before G9) is still read.
 */

const VERSION = 2
const UNTAGGED_VERSION = 1
const TAG_BYTES = 4
const ID_BYTES = 16
const SIGNATURE_BYTES = 12
/** 1 KB of base64 is 768 bytes. */
const MAX_BYTES = 768
/** Past this many bytes of entries the connection writes a new base. */
export const SOFT_ENTRY_BYTES = 320

export interface Base {
  readonly id: string
  readonly userId: string
  /** The HMAC key (hex text: no Buffer per connection pinning a pool slab). */
  readonly key: string
  readonly streams: ReadonlyArray<string>
  readonly seqs: ReadonlyArray<number>
  /** The tag at each position (undefined: none known). */
  readonly tags: ReadonlyArray<string | undefined>
  /** Stream → its index in `streams`. */
  readonly index: ReadonlyMap<string, number>
  /** The id as 32 hex digits, as it goes into every cursor. */
  readonly idHex: string
}

export const makeBase = (
  fields: Omit<Base, "index" | "idHex">
): Base => ({ ...fields, index: new Map(fields.streams.map((s, i) => [s, i])), idHex: fields.id.replace(/-/g, "") })

/** Whether `position` is the base's own position in `stream` (no object made: once per connection per event). */
export const atBase = (base: Base, stream: string, position: Position): boolean => {
  const i = base.index.get(stream)
  return i !== undefined && base.seqs[i] === position.seq && base.tags[i] === position.tag
}

/** The base's position in `stream`, if it has one. */
export const basePosition = (base: Base, stream: string): Position | undefined => {
  const i = base.index.get(stream)
  return i === undefined ? undefined : { seq: base.seqs[i]!, tag: base.tags[i] }
}

const TAG = /^[0-9a-f]{8}$/

const uuidText = (bytes: Uint8Array, at: number) => {
  const hex = Buffer.from(bytes.subarray(at, at + 16)).toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
const PROJECT = new RegExp(`^project:(${UUID})$`)
const WORKSPACE = new RegExp(`^workspace:(${UUID}):(${UUID})$`)

const sign = (key: string, body: Uint8Array) =>
  createHmac("sha256", key).update(body).digest().subarray(0, SIGNATURE_BYTES)

/** One buffer for every cursor this process writes: a cursor is encoded and turned into text at once. */
const scratch = Buffer.allocUnsafe(MAX_BYTES)

/** Writes `n` as a varint at `at`; the offset after it (MAX_BYTES + 1 when it does not fit). */
const putVarint = (n: number, at: number) => {
  while (n >= 128) {
    if (at >= MAX_BYTES) return MAX_BYTES + 1
    scratch[at++] = (n % 128) | 128
    n = Math.floor(n / 128)
  }
  if (at >= MAX_BYTES) return MAX_BYTES + 1
  scratch[at++] = n
  return at
}

const putHex = (hex: string, at: number, bytes = 16) => {
  if (at + bytes > MAX_BYTES) return MAX_BYTES + 1
  scratch.write(hex, at, bytes, "hex")
  return at + bytes
}
const putUuid = (uuid: string, at: number) => putHex(uuid.replace(/-/g, ""), at)

/**
 * The cursor for the base and the streams that moved since (`moved`: stream → position), with how
 * many bytes its entries take (the budget that decides a new base); undefined past 1 KB, or for a
 * stream no cursor can name.
 */
export const encode = (
  base: Base,
  moved: ReadonlyMap<string, Position>
): { readonly text: string; readonly entryBytes: number } | undefined => {
  scratch[0] = VERSION
  let at = putHex(base.idHex, 1)
  for (const [stream, { seq, tag }] of moved) {
    const tagged = tag !== undefined && TAG.test(tag) ? 1 : 0
    const i = base.index.get(stream)
    if (i !== undefined) at = putVarint(4 * i + tagged, at)
    else {
      const project = PROJECT.exec(stream)
      const workspace = project === null ? WORKSPACE.exec(stream) : null
      if (project !== null) at = putUuid(project[1]!, putVarint(2 + tagged, at))
      else if (workspace !== null && workspace[2] === base.userId) {
        at = putUuid(workspace[1]!, putVarint(6 + tagged, at))
      } else return undefined
    }
    at = putVarint(seq, at)
    if (tagged === 1) at = putHex(tag!, at, TAG_BYTES)
    if (at > MAX_BYTES - SIGNATURE_BYTES) return undefined
  }
  sign(base.key, scratch.subarray(0, at)).copy(scratch, at)
  return { text: scratch.toString("base64url", 0, at + SIGNATURE_BYTES), entryBytes: at - 1 - ID_BYTES }
}

/** What a cursor says before it is checked: its base and its signed bytes. */
export interface Parsed {
  readonly baseId: string
  readonly body: Uint8Array
  readonly signature: Uint8Array
}

/** The cursor's structure, or undefined when it is not one at all. */
export const parse = (text: string): Parsed | undefined => {
  const bytes = Buffer.from(text, "base64url")
  // base64url decoding skips what it does not understand: insist it round-trips.
  if (bytes.toString("base64url") !== text) return undefined
  if (bytes.length < 1 + ID_BYTES + SIGNATURE_BYTES) return undefined
  if (bytes[0] !== VERSION && bytes[0] !== UNTAGGED_VERSION) return undefined
  return {
    baseId: uuidText(bytes, 1),
    body: bytes.subarray(0, bytes.length - SIGNATURE_BYTES),
    signature: bytes.subarray(bytes.length - SIGNATURE_BYTES)
  }
}

/** Whether the cursor was signed with `key` (its base's key), unchanged. */
export const verify = (key: string, parsed: Parsed): boolean =>
  Buffer.from(sign(key, parsed.body)).equals(Buffer.from(parsed.signature))

/** The positions a signed cursor stands for (base overlaid with its entries), or undefined when forged. */
export const positions = (base: Base, parsed: Parsed): Map<string, Position> | undefined => {
  if (!verify(base.key, parsed)) return undefined
  const result = new Map<string, Position>(base.streams.map((s, i) => [s, { seq: base.seqs[i]!, tag: base.tags[i] }]))
  const body = parsed.body
  const tags = body[0] === VERSION
  let at = 1 + ID_BYTES
  const readVarint = () => {
    let n = 0
    let scale = 1
    for (;;) {
      if (at >= body.length || scale > 2 ** 56) return undefined
      const b = body[at++]!
      n += (b & 127) * scale
      if (b < 128) return n
      scale *= 128
    }
  }
  while (at < body.length) {
    const read = readVarint()
    if (read === undefined) return undefined
    const tagged = tags && read % 2 === 1
    const header = tags ? Math.floor(read / 2) : read
    let stream: string | undefined
    if (header % 2 === 0) stream = base.streams[header / 2]
    else if (header === 1 || header === 3) {
      if (at + 16 > body.length) return undefined
      const project = uuidText(body, at)
      at += 16
      stream = header === 1 ? `project:${project}` : `workspace:${project}:${base.userId}`
    }
    const seq = readVarint()
    if (stream === undefined || seq === undefined || seq > Number.MAX_SAFE_INTEGER) return undefined
    if (tagged && at + TAG_BYTES > body.length) return undefined
    const tag = tagged ? Buffer.from(body.subarray(at, at + TAG_BYTES)).toString("hex") : undefined
    if (tagged) at += TAG_BYTES
    result.set(stream, { seq, tag })
  }
  return result
}
