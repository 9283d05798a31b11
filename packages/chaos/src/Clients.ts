import { Effect } from "effect"
import * as http from "node:http"
import { sseFrames } from "../../../test-support/SseClient.js"
import { envelopeOf } from "./Envelope.js"
import type { ServerNode } from "./Fleet.js"
import {
  type ClientKind,
  type ClientRecord,
  type ConnectionRecord,
  type Frame,
  type Position,
  projectStream,
  type User,
  workspaceStream
} from "./Records.js"
import type { Rng } from "./Rng.js"
import { now, type Run } from "./Run.js"

/**
 * SSE clients as a browser's would behave, on the three endpoints: a project stream, a workspace
 * stream, and `GET /api/stream` (every stream of the user). Each connects to a random node, reads
 * frames, and — during the run — disconnects at a random moment and resumes from another random
 * node with its last `id:` as `Last-Event-ID`, as EventSource does. The id is opaque: the client
 * never parses it (the per-stream id is becoming `<seq>.<tag>`); it reads `stream` and `seq`
 * from the envelope in `data`, and follows `event: reset` and `event: heads`. Everything it
 * receives is recorded, per connection, for the checker.
 */

/** No byte for this long (keepalives come every second): the connection is dead (a frozen node). */
const IDLE_TIMEOUT_MS = 6_000
/** No answer for this long: give up on this node and try another. */
const CONNECT_TIMEOUT_MS = 8_000

export interface Client {
  readonly record: ClientRecord
  readonly user: User
  /** The streams this client is at, and the last seq it has of each (its current segment). */
  readonly progress: Map<string, number>
  /** The last id received (a per-stream position or a cursor), sent back as Last-Event-ID. */
  lastId: string | undefined
  /** Closes the current connection now; the client resumes at once. */
  reconnect: () => void
  /** The connection open now, if any. */
  current: ConnectionRecord | undefined
}

export const streamOf = (record: ClientRecord, user: User): string | undefined =>
  record.kind === "project"
    ? projectStream(record.projectId!)
    : record.kind === "workspace"
    ? workspaceStream(record.projectId!, user.id)
    : undefined

const pathOf = (record: ClientRecord) =>
  record.kind === "project"
    ? `/api/projects/${record.projectId}/stream`
    : record.kind === "workspace"
    ? `/api/projects/${record.projectId}/workspace/stream`
    : "/api/stream"

const parseData = (lines: ReadonlyArray<string>): unknown => {
  const text = lines.join("\n")
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

interface Ending {
  readonly end: string
  readonly body?: string
}

/**
 * One SSE request: resolves when it is over (`onOpen` once the headers are in). Aborting `signal`
 * closes it from our side.
 */
const connect = (
  node: ServerNode,
  path: string,
  query: Record<string, string>,
  headers: Record<string, string>,
  signal: AbortSignal,
  onOpen: (status: number) => void,
  onFrame: (frame: { id: string | undefined; event: string | undefined; data: ReadonlyArray<string> }) => void
) =>
  new Promise<Ending>((resolve) => {
    const url = new URL(node.url + path)
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v)
    let settled = false
    let reason: string | undefined
    const finish = (ending: Ending) => {
      if (settled) return
      settled = true
      clearTimeout(idle)
      signal.removeEventListener("abort", onAbort)
      req.destroy()
      resolve(ending)
    }
    let idle = setTimeout(() => {
      reason = "connect-timeout"
      req.destroy()
    }, CONNECT_TIMEOUT_MS)
    const onAbort = () => {
      reason = "client-closed"
      req.destroy()
    }
    const req = http.get(url, { headers: { accept: "text/event-stream", ...headers }, agent: false }, (res) => {
      const status = res.statusCode ?? 0
      onOpen(status)
      res.setEncoding("utf8")
      const resetIdle = () => {
        clearTimeout(idle)
        idle = setTimeout(() => {
          reason = "idle-timeout"
          req.destroy()
        }, IDLE_TIMEOUT_MS)
      }
      resetIdle()
      let body = ""
      const push = sseFrames(onFrame)
      res.on("data", (chunk: string) => {
        resetIdle()
        if (status === 200) push(chunk)
        else if (body.length < 4_000) body += chunk
      })
      res.on("end", () => finish(status === 200 ? { end: "server-ended" } : { end: `http ${status}`, body }))
      res.on("close", () => finish({ end: reason ?? (status === 200 ? "closed" : `http ${status}`), body }))
      res.on("error", (e) => finish({ end: reason ?? `error: ${e.message}`, body }))
    })
    req.on("error", (e) => finish({ end: reason ?? `error: ${e.message}` }))
    if (signal.aborted) onAbort()
    else signal.addEventListener("abort", onAbort)
  })

/** A client of `kind` for `user` (and `projectId` for the per-stream ones), recorded in the run. */
export const makeClient = (run: Run, name: string, kind: ClientKind, user: User, projectId?: string): Client => {
  const record: ClientRecord = { name, kind, user: user.index, projectId, connections: [] }
  run.clients.push(record)
  return { record, user, progress: new Map(), lastId: undefined, current: undefined, reconnect: () => undefined }
}

/**
 * The client's life until interrupted: connect, read, and (in the run phase) leave at a random
 * moment; after any end, resume with the last id from a random node.
 */
export const runClient = (run: Run, client: Client, rng: Rng) =>
  Effect.gen(function*() {
    const { record, user } = client
    const single = streamOf(record, user)
    for (;;) {
      const node = rng.pick(run.fleet.nodes)
      const headers: Record<string, string> = { authorization: `Bearer ${user.token}` }
      const query: Record<string, string> = {}
      let position: Position
      if (client.lastId !== undefined) {
        headers["last-event-id"] = client.lastId
        position = { _tag: "lastEventId", id: client.lastId }
      } else if (single !== undefined && (run.phase !== "run" || rng.chance(0.5))) {
        // A page that loaded the stream's head, then subscribed after it.
        const head = yield* Effect.promise(() => run.db.head(single))
        if (head !== undefined) {
          query.after = String(head)
          position = { _tag: "after", after: head }
        } else position = { _tag: "none", headBefore: undefined }
      } else {
        const headBefore = single === undefined ? undefined : yield* Effect.promise(() => run.db.head(single))
        position = { _tag: "none", headBefore }
      }
      const connection: ConnectionRecord = {
        index: record.connections.length,
        node: node.name,
        phase: run.phase,
        position,
        startedAt: now(run),
        openedAt: undefined,
        openedEpoch: undefined,
        status: undefined,
        frames: [],
        endedAt: undefined,
        end: undefined,
        errorBody: undefined
      }
      record.connections.push(connection)
      client.current = connection
      const controller = new AbortController()
      const lifetime = run.phase === "run" ? setTimeout(() => controller.abort(), rng.int(1_000, 10_000)) : undefined
      const ending = yield* Effect.promise((interrupted) => {
        interrupted.addEventListener("abort", () => controller.abort())
        client.reconnect = () => controller.abort()
        return connect(
          node,
          pathOf(record),
          query,
          headers,
          controller.signal,
          (status) => {
            connection.status = status
            connection.openedAt = now(run)
            connection.openedEpoch = Date.now()
            if (status === 200 && position._tag === "after") client.progress.set(single!, position.after)
          },
          (raw) => {
            if (raw.data.length === 0 && raw.id === undefined) return // a comment or retry line only
            const data = parseData(raw.data)
            const envelope = envelopeOf(data)
            const frame: Frame = {
              at: now(run),
              id: raw.id,
              event: raw.event,
              envelope,
              data: envelope === undefined ? data : undefined
            }
            connection.frames.push(frame)
            if (raw.id !== undefined) client.lastId = raw.id
            track(client, frame)
          }
        )
      }).pipe(Effect.ensuring(Effect.sync(() => clearTimeout(lifetime))))
      connection.endedAt = now(run)
      connection.end = ending.end
      if (ending.body !== undefined && ending.body.length > 0) {
        try {
          connection.errorBody = JSON.parse(ending.body)
        } catch {
          connection.errorBody = ending.body
        }
      }
      client.current = undefined
      if (connection.status === 400 && client.lastId !== undefined) {
        // The position was refused (recorded; the checker judges it): start over as a fresh page would.
        client.lastId = undefined
        client.progress.clear()
      }
      const calm = run.phase !== "run"
      yield* Effect.sleep(
        calm ? (connection.status === 200 ? 50 : 1_000) : rng.int(50, connection.status === 200 ? 1_500 : 2_500)
      )
    }
  })

/** What the waits after the run compare with the heads: how far the client is, per stream. */
const track = (client: Client, frame: Frame) => {
  const data = frame.data as Record<string, unknown> | undefined
  if (frame.event === "heads" && typeof data?.streams === "object" && data.streams !== null) {
    client.progress.clear()
    for (const [stream, head] of Object.entries(data.streams as Record<string, unknown>)) {
      if (typeof head === "number") client.progress.set(stream, head)
    }
    return
  }
  if (frame.event === "reset" && typeof data?.stream === "string" && typeof data.from === "number") {
    client.progress.set(data.stream, data.from - 1)
    return
  }
  if (frame.envelope !== undefined) client.progress.set(frame.envelope.stream, frame.envelope.seq)
}
