import * as http from "node:http"
import {
  type ConnectionSpec,
  type DraftSeen,
  eventKey,
  type FromClient,
  now,
  type Ready,
  type ToClient
} from "./protocol.js"

/**
 * One client process of the `sse` bench (`node --import tsx client.ts`, with an IPC channel): holds
 * idle SSE connections opened with plain `node:http` (a keep-alive agent, no socket limit,
 * `Authorization: Bearer`), and records when each connection receives each event frame, by the
 * `stream` and `seq` of the frame's envelope. It reads every frame, as a real client would; of the
 * live drafts' frames (`event: draft`) it keeps, per connection, how many and the last body's length.
 */

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
const open = new Set<http.ClientRequest>()
let closedByServer = 0
/** `<stream>#<seq>` → when each connection got it. */
const received = new Map<string, Array<number>>()
/** Per open connection: draft id → what it has read of that draft. */
const drafts = new Map<http.ClientRequest, Map<string, Mutable<DraftSeen>>>()
/** Called after every recorded event (the pending `await`, if any). */
let onEvent: (() => void) | undefined

const send = (message: FromClient) => process.send!(message)

type Mutable<A> = { -readonly [K in keyof A]: A[K] }

const sawDraft = (seen: Map<string, Mutable<DraftSeen>>, data: string, at: number) => {
  const draft = JSON.parse(data) as { draftId?: unknown; body?: unknown }
  if (typeof draft.draftId !== "string" || typeof draft.body !== "string") return // an end frame
  const entry = seen.get(draft.draftId) ??
    seen.set(draft.draftId, { frames: 0, lastLength: 0, lastAt: NaN, notLonger: 0 }).get(draft.draftId)!
  if (entry.frames > 0 && draft.body.length <= entry.lastLength) entry.notLonger++
  entry.frames++
  entry.lastLength = draft.body.length
  entry.lastAt = at
}

const record = (
  frame: string,
  at: number,
  ready: (kind: Ready) => void,
  seenDrafts: Map<string, Mutable<DraftSeen>>
) => {
  let event: string | undefined
  let data: string | undefined
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim()
    else if (line.startsWith("data:")) data = (data === undefined ? "" : data + "\n") + line.slice(5).trimStart()
    else if (line.startsWith("retry:")) ready("retry")
  }
  if (event === "heads") return ready("heads")
  if (data === undefined) return
  if (event === "draft") return sawDraft(seenDrafts, data, at)
  const envelope = JSON.parse(data) as { stream?: unknown; seq?: unknown }
  if (typeof envelope.stream !== "string" || typeof envelope.seq !== "number") return
  const key = eventKey(envelope.stream, envelope.seq)
  const times = received.get(key)
  if (times === undefined) received.set(key, [at])
  else times.push(at)
  onEvent?.()
}

const connect = (port: number, spec: ConnectionSpec, mode: Ready, timeoutMs: number) =>
  new Promise<void>((resolve, reject) => {
    let live = false
    let settled = false
    let status: number | undefined
    let buffer = ""
    const seenDrafts = new Map<string, Mutable<DraftSeen>>()
    const fail = (error: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      open.delete(req)
      drafts.delete(req)
      req.destroy()
      reject(error)
    }
    /** The response is over: counted once it was live, a failure before. */
    const gone = () => {
      if (live) {
        drafts.delete(req)
        if (open.delete(req)) closedByServer++
      } else {
        fail(new Error(`GET ${spec.path}: closed before it was open${status === undefined ? "" : ` (HTTP ${status})`}`))
      }
    }
    const timer = setTimeout(() => fail(new Error(`GET ${spec.path}: not open within ${timeoutMs} ms`)), timeoutMs)
    const ready = (kind: Ready) => {
      if (live || kind !== mode) return
      live = true
      settled = true
      clearTimeout(timer)
      resolve()
    }
    const req = http.request({
      host: "127.0.0.1",
      port,
      method: "GET",
      path: spec.path,
      agent,
      // No token: the path carries its credential (`?access_token=`, as a burst of `http.get`s does).
      headers: spec.token === ""
        ? { accept: "text/event-stream" }
        : { authorization: `Bearer ${spec.token}`, accept: "text/event-stream" }
    }, (response) => {
      status = response.statusCode
      response.setEncoding("utf8")
      response.on("error", gone)
      if (response.statusCode !== 200) {
        let body = ""
        response.on("data", (chunk: string) => (body += chunk))
        response.on("end", () => fail(new Error(`GET ${spec.path}: HTTP ${response.statusCode} ${body.slice(0, 200)}`)))
        return
      }
      response.on("data", (chunk: string) => {
        const at = now()
        buffer += chunk
        let end = buffer.indexOf("\n\n")
        while (end >= 0) {
          const frame = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          record(frame, at, ready, seenDrafts)
          end = buffer.indexOf("\n\n")
        }
      })
      response.on("end", gone)
    })
    req.on("error", (error) => (live ? gone() : fail(error)))
    req.on("close", gone)
    open.add(req)
    drafts.set(req, seenDrafts)
    req.end()
  })

const openAll = async (message: Extract<ToClient, { type: "open" }>) => {
  let next = 0
  const worker = async () => {
    while (next < message.connections.length) {
      const spec = message.connections[next++]!
      await connect(message.port, spec, message.ready, message.timeoutMs)
    }
  }
  await Promise.all(Array.from({ length: Math.min(message.concurrency, message.connections.length) }, worker))
}

const awaitAll = (message: Extract<ToClient, { type: "await" }>) => {
  const keys = Object.keys(message.expected)
  const complete = () => keys.every((k) => (received.get(k)?.length ?? 0) >= message.expected[k]!)
  const answer = (timedOut: boolean) => {
    onEvent = undefined
    clearTimeout(timer)
    const times: Record<string, ReadonlyArray<number>> = {}
    for (const k of keys) {
      times[k] = received.get(k) ?? []
      received.delete(k)
    }
    send({ type: "received", id: message.id, times, timedOut })
  }
  const timer = setTimeout(() => answer(true), message.timeoutMs)
  if (complete()) return answer(false)
  onEvent = () => {
    if (complete()) answer(false)
  }
}

process.on("message", (message: ToClient) => {
  switch (message.type) {
    case "open":
      openAll(message).then(
        () => send({ type: "opened", id: message.id, open: open.size }),
        (error: unknown) =>
          send({
            type: "opened",
            id: message.id,
            open: open.size,
            error: error instanceof Error ? error.message : String(error)
          })
      )
      break
    case "await":
      awaitAll(message)
      break
    case "drafts": {
      const connections: Array<DraftSeen> = []
      for (const req of open) {
        const seen = drafts.get(req)
        connections.push(seen?.get(message.draftId) ?? { frames: 0, lastLength: 0, lastAt: NaN, notLonger: 0 })
        seen?.delete(message.draftId)
      }
      send({ type: "drafts", id: message.id, connections })
      break
    }
    case "close": {
      const closed = closedByServer
      for (const req of open) req.destroy()
      open.clear()
      drafts.clear()
      closedByServer = 0
      received.clear()
      send({ type: "closed", id: message.id, closedByServer: closed })
      break
    }
  }
})

// The bench gone (its IPC channel closed): nothing left to do.
process.on("disconnect", () => process.exit(0))
