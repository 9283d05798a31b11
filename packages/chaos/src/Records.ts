import type { Envelope } from "./Envelope.js"

/**
 * What a run records as it goes — the faults injected, every write and its outcome, every SSE
 * connection with every frame it received, every history page — and what the checker reads
 * afterwards, together with the database's final state. Times are milliseconds since the run
 * started (`at`), except where a field says epoch.
 */

export type FaultKind =
  | "kill-9"
  | "pause"
  | "listen-terminate"
  | "redis-kill"
  | "pg-restart-fast"
  | "pg-restart-immediate"

export const FAULT_KINDS: ReadonlyArray<FaultKind> = [
  "kill-9",
  "pause",
  "listen-terminate",
  "redis-kill",
  "pg-restart-fast",
  "pg-restart-immediate"
]

export interface FaultRecord {
  readonly kind: FaultKind
  /** A node's name, `postgres` or `redis`. */
  readonly target: string
  readonly at: number
  /** When it was over (the node, PostgreSQL or Redis back up); undefined if it never was. */
  until: number | undefined
  /** E.g. how many LISTEN connections were terminated, or why it was skipped. */
  detail: string
  skipped: boolean
}

export interface User {
  readonly index: number
  readonly id: string
  readonly name: string
  readonly token: string
}

export interface Project {
  readonly id: string
  readonly name: string
  readonly owner: number
}

export type WriteKind = "post" | "workspace-post" | "edit" | "delete" | "add-member" | "remove-member"

export interface EventRef {
  readonly id: string
  readonly stream: string
  readonly seq: number
}

export interface WriteRecord {
  readonly kind: WriteKind
  readonly user: number
  readonly projectId: string
  readonly at: number
  readonly clientMessageId?: string
  readonly bodyLength?: number
  /** The message edited or deleted. */
  readonly target?: string
  /** The user added or removed. */
  readonly member?: number
  /** Every status answered, in order (0: no answer). */
  readonly statuses: Array<number>
  /** The answer that settled it: a success (confirmed), a refusal, or none (unconfirmed). */
  outcome: "confirmed" | "refused" | "unconfirmed"
  messageId?: string | undefined
  event?: EventRef
  /** Every message id a post's answers named (an idempotent repeat must name the first). */
  readonly answeredMessageIds: Array<string>
}

/** Where a connection asked to start. */
export type Position =
  | { readonly _tag: "none"; readonly headBefore: number | undefined }
  | { readonly _tag: "after"; readonly after: number }
  | { readonly _tag: "lastEventId"; readonly id: string }

export interface Frame {
  readonly at: number
  readonly id: string | undefined
  readonly event: string | undefined
  /** An event's envelope (digested) … */
  readonly envelope: Envelope | undefined
  /** … or the data of any other frame (heads, reset, a signal), parsed as JSON when it is. */
  readonly data: unknown
}

export type Phase = "run" | "calm" | "final"

export interface ConnectionRecord {
  readonly index: number
  readonly node: string
  readonly phase: Phase
  readonly position: Position
  readonly startedAt: number
  /** When the response's headers arrived; epoch too, to compare with events' occurredAt. */
  openedAt: number | undefined
  openedEpoch: number | undefined
  status: number | undefined
  readonly frames: Array<Frame>
  endedAt: number | undefined
  /** Why it ended: `server-ended`, `client-closed`, `idle-timeout`, `connect-timeout`, `error: …`, `http <status>`. */
  end: string | undefined
  errorBody: unknown
}

export type ClientKind = "project" | "workspace" | "multiplexed"

export interface ClientRecord {
  readonly name: string
  readonly kind: ClientKind
  readonly user: number
  /** The project of a per-stream client. */
  readonly projectId: string | undefined
  readonly connections: Array<ConnectionRecord>
}

export interface HistoryPage {
  readonly at: number
  readonly node: string
  readonly after: number
  readonly status: number
  readonly items: ReadonlyArray<Envelope>
  readonly nextAfter: number | null | undefined
}

export interface HistoryRecord {
  readonly name: string
  readonly user: number
  readonly projectId: string
  readonly scope: "project" | "workspace"
  readonly pages: Array<HistoryPage>
}

/** What the waits after the run saw: a live connection that did not deliver, a resume that was not served. */
export interface Observation {
  readonly kind: "stalled" | "unserved"
  readonly client: string
  readonly stream: string
  readonly at: number
  readonly expected: number
  readonly reached: number | undefined
  readonly node: string | undefined
  readonly connection: number | undefined
  readonly detail: string
}

export const projectStream = (projectId: string) => `project:${projectId}`
export const workspaceStream = (projectId: string, userId: string) => `workspace:${projectId}:${userId}`
