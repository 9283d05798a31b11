/**
 * The messages the `sse` bench (and `signals`) exchange over IPC with their child processes: the
 * client processes that hold the idle SSE connections (`client.ts`) and the floor server (`floor.ts`).
 *
 * Times are wall-clock milliseconds as `performance.timeOrigin + performance.now()` in every
 * process: all run on one machine, so a time taken in the bench and one taken in a client compare.
 */

export const now = () => performance.timeOrigin + performance.now()

/** One connection to open: its path and the bearer token it sends ("": none, the path has `?access_token=`). */
export interface ConnectionSpec {
  readonly path: string
  readonly token: string
}

/**
 * When a connection counts as open (the server has subscribed it, so every later event reaches it):
 * "retry" once the `retry:` line has arrived (the per-stream endpoints write it after subscribing);
 * "heads" once the `event: heads` frame has (the multiplexed endpoint's first frame).
 */
export type Ready = "retry" | "heads"

/** An event as a client records it: `<stream>#<seq>`, from the frame's data (its envelope). */
export const eventKey = (stream: string, seq: number) => `${stream}#${seq}`

export type ToClient =
  | {
    readonly type: "open"
    readonly id: number
    readonly port: number
    readonly connections: ReadonlyArray<ConnectionSpec>
    readonly ready: Ready
    readonly concurrency: number
    readonly timeoutMs: number
  }
  /** Answers once every key has been received by `expected[key]` of this client's connections (or at the timeout). */
  | {
    readonly type: "await"
    readonly id: number
    readonly expected: Readonly<Record<string, number>>
    readonly timeoutMs: number
  }
  | { readonly type: "close"; readonly id: number }
  /** What each connection has read of one live draft (`event: draft`, the `signals` bench); forgotten once told. */
  | { readonly type: "drafts"; readonly id: number; readonly draftId: string }

/** One connection's view of one live draft: its update frames (the end frame not counted). */
export interface DraftSeen {
  readonly frames: number
  /** The body length of the last update frame read (0 if none). */
  readonly lastLength: number
  /** When the last update frame was read (NaN if none). */
  readonly lastAt: number
  /** Update frames whose body was not longer than the one before (a draft only grows here). */
  readonly notLonger: number
}

export type FromClient =
  | { readonly type: "opened"; readonly id: number; readonly open: number; readonly error?: string }
  | {
    readonly type: "received"
    readonly id: number
    /** Per key, when each connection that has it received it. */
    readonly times: Readonly<Record<string, ReadonlyArray<number>>>
    readonly timedOut: boolean
  }
  | { readonly type: "closed"; readonly id: number; readonly closedByServer: number }
  /** One entry per open connection. */
  | { readonly type: "drafts"; readonly id: number; readonly connections: ReadonlyArray<DraftSeen> }

export type ToFloor =
  /** Which projects each token's multiplexed connection carries. */
  | {
    readonly type: "members"
    readonly id: number
    readonly projects: Readonly<Record<string, ReadonlyArray<string>>>
  }
  /** One event frame to every connection that carries the project. */
  | { readonly type: "publish"; readonly id: number; readonly projectId: string; readonly seq: number }

export type FromFloor =
  | { readonly type: "listening"; readonly port: number }
  | {
    readonly type: "done"
    readonly id: number
    readonly stream: string
    readonly seq: number
    readonly count: number
  }
