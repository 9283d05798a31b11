import { Effect } from "effect"
import * as http from "node:http"
import {
  connectSse,
  type SseConnection,
  type SseEvent,
  type SseOptions,
  sseReader
} from "../../../../test-support/SseClient.js"
import { NodeServer } from "../../src/http/NodeServer.js"
import { TestServer } from "./TestServer.js"

/** `herald_sse_connections` as the test server's `/metrics` reports it. */
export const sseConnectionsGauge = Effect.gen(function*() {
  const server = yield* TestServer
  const res = yield* server.request("GET", "/metrics")
  const match = /^herald_sse_connections (\d+)$/m.exec(String(res.body))
  if (match === null) return yield* Effect.dieMessage("no herald_sse_connections in /metrics")
  return Number(match[1])
})

/** An SSE connection to the test server, closed by the client when the test's scope closes. */
export const openSse = (path: string, options: SseOptions = {}) =>
  Effect.flatMap(TestServer, (server) =>
    Effect.acquireRelease(
      Effect.promise(() => connectSse(server.url, path, options)),
      (connection) => Effect.sync(() => connection.close())
    ))

/** Waits (in real time) until `n` events have arrived; fails the test with what did arrive otherwise. */
export const awaitEvents = (
  connection: { readonly waitForEvents: SseConnection["waitForEvents"] },
  n: number,
  timeoutMs = 10_000
) => Effect.promise(() => connection.waitForEvents(n, timeoutMs))

/** The seqs of received events, as a client reads them: from the envelope (`id:` is opaque, `<seq>.<tag>`). */
export const ids = (events: ReadonlyArray<SseEvent>) => events.map((e) => Number(e.data.seq))

/** [from, from + 1, …, to]; empty when to < from. */
export const range = (from: number, to: number) =>
  Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i)

/** Resolves with true if `promise` settles within `ms`, false otherwise. */
export const settlesWithin = (promise: Promise<unknown>, ms: number) =>
  Effect.promise(() =>
    new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms)
      promise.then(() => {
        clearTimeout(timer)
        resolve(true)
      }, () => {
        clearTimeout(timer)
        resolve(true)
      })
    })
  )

export interface StallingSseConnection {
  readonly status: number
  /** Events parsed so far (nothing is parsed before `resume`). */
  readonly events: Array<SseEvent>
  /** Live signals parsed so far, and everything in arrival order. */
  readonly signals: Array<SseEvent>
  readonly all: Array<SseEvent>
  /** How the response ended: "end" = the server finished it cleanly; "aborted" = the connection broke. */
  readonly ended: Promise<"end" | "aborted">
  /** Starts reading: everything the server managed to write meanwhile is parsed, then live. */
  readonly resume: () => void
  readonly waitForEvents: (n: number, timeoutMs?: number) => Promise<Array<SseEvent>>
  readonly close: () => void
}

/**
 * An SSE client that does not read its response until told to: a stalled consumer. Its socket's
 * receive window fills up, the server's writes stop draining, and the server must cope.
 */
export const connectStalling = (
  baseUrl: string,
  path: string,
  options: { readonly token: string; readonly after?: string }
) =>
  new Promise<StallingSseConnection>((resolve, reject) => {
    const url = new URL(baseUrl + path)
    if (options.after !== undefined) url.searchParams.set("after", options.after)
    const req = http.get(url, {
      headers: { accept: "text/event-stream", authorization: `Bearer ${options.token}` },
      agent: false
    }, (res) => {
      res.pause()
      const reader = sseReader()
      let endedResolve!: (how: "end" | "aborted") => void
      const ended = new Promise<"end" | "aborted">((r) => (endedResolve = r))
      res.on("end", () => endedResolve("end"))
      res.on("aborted", () => endedResolve("aborted"))
      res.on("error", () => endedResolve("aborted"))
      res.on("close", () => endedResolve(res.complete ? "end" : "aborted"))
      const resume = () => {
        res.setEncoding("utf8")
        res.on("data", reader.push)
        res.resume()
      }
      resolve({
        status: res.statusCode ?? 0,
        events: reader.events,
        signals: reader.signals,
        all: reader.all,
        ended,
        resume,
        waitForEvents: reader.waitForEvents,
        close: () => req.destroy()
      })
    })
    req.on("error", reject)
  })

export interface RawSseResponse {
  readonly status: number
  readonly headers: Headers
  /** The body as received, byte for byte (decoded as UTF-8). */
  readonly text: string
}

/**
 * Reads an SSE response with `fetch` (which asks for gzip/deflate/br, as browsers do) until
 * `until(text)` holds or `timeoutMs` passes, then aborts: for assertions on the raw wire format.
 */
export const fetchSse = (
  baseUrl: string,
  path: string,
  options: {
    readonly headers?: Record<string, string>
    readonly until: (text: string) => boolean
    readonly timeoutMs?: number
  }
) =>
  Effect.promise(async (): Promise<RawSseResponse> => {
    const abort = new AbortController()
    const timer = setTimeout(() => abort.abort(), options.timeoutMs ?? 5_000)
    const res = await fetch(baseUrl + path, {
      headers: { accept: "text/event-stream", ...options.headers },
      signal: abort.signal
    })
    let text = ""
    try {
      const decoder = new TextDecoder()
      const reader = res.body!.getReader()
      while (!options.until(text)) {
        const { done, value } = await reader.read()
        if (done) break
        text += decoder.decode(value, { stream: true })
      }
    } catch {
      // aborted at the timeout: the assertions see what arrived
    } finally {
      clearTimeout(timer)
      abort.abort()
    }
    return { status: res.status, headers: res.headers, text }
  })

const SSE_PATH = /^\/api\/(stream|projects\/[^/]*\/(stream|workspace\/stream))(\?|$)/

/**
 * The SSE door unhung while the scope lasts: every request on an SSE path goes to the HTTP app
 * (http/Streams.ts `StreamsLive`), as on a server without the door.
 */
export const withoutSseDoor = Effect.acquireRelease(
  Effect.map(NodeServer, (node) => {
    const doors = [...node.doors]
    node.doors.splice(
      0,
      doors.length,
      ...doors.map((door) => (req: Parameters<typeof door>[0], res: Parameters<typeof door>[1]) =>
        SSE_PATH.test(req.url ?? "") ? false : door(req, res)
      )
    )
    return { node, doors }
  }),
  ({ doors, node }) => Effect.sync(() => node.doors.splice(0, node.doors.length, ...doors))
)
