/**
 * A client's position in one stream (SPEC §5, "Resume"; G9): the last seq it has and the tag of the
 * event it saw there. The tag tells that event from another one that took its seq after a restore
 * or a failover that lost commits; a position without one (a bare `<seq>`, `?after=`, a stream the
 * client has seen nothing of) cannot tell them apart.
 */
export interface Position {
  readonly seq: number
  readonly tag: string | undefined
}

/** An event's tag: the first 8 hex digits of its id (a random UUID), 32 random bits. */
export const tagOf = (eventId: string) => eventId.slice(0, 8)

export const untagged = (seq: number): Position => ({ seq, tag: undefined })

/** The position just after an event: where a client that received it stands. */
export const after = (event: { readonly seq: number; readonly id: string }): Position => ({
  seq: event.seq,
  tag: tagOf(event.id)
})

/** An event's per-stream `id:`, `<seq>.<tag>`. */
export const frameId = (event: { readonly seq: number; readonly id: string }) => `${event.seq}.${tagOf(event.id)}`

export const same = (a: Position, b: Position) => a.seq === b.seq && a.tag === b.tag
