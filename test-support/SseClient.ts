import * as http from "node:http"

export interface SseEvent {
  readonly id: string | undefined
  readonly event: string | undefined
  readonly data: any
}

export interface SseConnection {
  readonly status: number
  readonly headers: http.IncomingHttpHeaders
  /** Events received so far (every frame but live signals), in arrival order. */
  readonly events: Array<SseEvent>
  /** Live signals received so far (`presence`, `typing`, `draft`: frames without `id:`, G10), in arrival order. */
  readonly signals: Array<SseEvent>
  /** Events and signals, as they arrived. */
  readonly all: Array<SseEvent>
  /** Comment lines (e.g. `keepalive`) and `retry:` values seen. */
  readonly comments: Array<string>
  readonly retry: Array<number>
  /** Resolves when the server ends the response (or the connection drops). */
  readonly ended: Promise<void>
  /** Resolves once `n` events have arrived (rejects after `timeoutMs`). */
  readonly waitForEvents: (n: number, timeoutMs?: number) => Promise<Array<SseEvent>>
  readonly close: () => void
  /** The body of a non-200 answer, parsed as JSON when it is. */
  readonly errorBody: unknown
}

export interface SseOptions {
  readonly token?: string
  readonly accessToken?: string
  readonly lastEventId?: string
  readonly after?: string
  /** Don't read the body (a slow client): the socket's buffers fill up. */
  readonly paused?: boolean
}

/** One SSE frame (the lines up to a blank line), its fields as written; `data` lines unparsed. */
export interface SseFrame {
  readonly id: string | undefined
  readonly event: string | undefined
  readonly data: ReadonlyArray<string>
  /** Comment lines (`: keepalive`), without the colon. */
  readonly comments: ReadonlyArray<string>
  readonly retry: number | undefined
}

const parseFrame = (text: string): SseFrame => {
  let id: string | undefined
  let event: string | undefined
  let retry: number | undefined
  const data: Array<string> = []
  const comments: Array<string> = []
  for (const line of text.split("\n")) {
    if (line.startsWith(":")) comments.push(line.slice(1).trim())
    else if (line.startsWith("id: ")) id = line.slice(4)
    else if (line.startsWith("event: ")) event = line.slice(7)
    else if (line.startsWith("data: ")) data.push(line.slice(6))
    else if (line.startsWith("retry: ")) retry = Number(line.slice(7))
  }
  return { id, event, data, comments, retry }
}

/**
 * The SSE frame reader: feed it the body's text as it arrives (`push`); `onFrame` is called, in
 * order, for each complete frame. The tests' clients and the benches' listeners all read with it.
 */
export const sseFrames = (onFrame: (frame: SseFrame) => void) => {
  let buffer = ""
  return (chunk: string) => {
    buffer += chunk
    let i: number
    while ((i = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, i)
      buffer = buffer.slice(i + 2)
      onFrame(parseFrame(frame))
    }
  }
}

/**
 * Reads an SSE body as it arrives: collects events (data parsed as JSON), comment lines and
 * `retry:` values, and lets a caller wait for the n-th event.
 */
/** The frames of live signals (SPEC §5, G10): not events, kept apart from them. */
export const SIGNAL_EVENTS: ReadonlySet<string | undefined> = new Set(["presence", "typing", "draft"])

export const sseReader = () => {
  const events: Array<SseEvent> = []
  const signals: Array<SseEvent> = []
  const all: Array<SseEvent> = []
  const comments: Array<string> = []
  const retry: Array<number> = []
  const waiters: Array<() => void> = []
  const push = sseFrames((frame) => {
    comments.push(...frame.comments)
    if (frame.retry !== undefined) retry.push(frame.retry)
    if (frame.data.length > 0) {
      const received = { id: frame.id, event: frame.event, data: JSON.parse(frame.data.join("\n")) }
      all.push(received)
      if (SIGNAL_EVENTS.has(frame.event)) return signals.push(received)
      events.push(received)
      for (const w of waiters.splice(0)) w()
    }
  })
  const waitForEvents = (n: number, timeoutMs = 15_000) =>
    new Promise<Array<SseEvent>>((ok, fail) => {
      const timer = setTimeout(
        () =>
          fail(
            new Error(
              `timed out waiting for ${n} SSE events; got ${events.length}: ${events.map((e) => e.id).join(",")}`
            )
          ),
        timeoutMs
      )
      const check = () => {
        if (events.length >= n) {
          clearTimeout(timer)
          ok(events.slice(0, n))
        } else waiters.push(check)
      }
      check()
    })
  return { events, signals, all, comments, retry, push, waitForEvents }
}

/** A minimal WHATWG SSE client over node:http, as a browser's EventSource would read the stream. */
export const connectSse = (baseUrl: string, path: string, options: SseOptions = {}): Promise<SseConnection> =>
  new Promise((resolve, reject) => {
    const url = new URL(baseUrl + path)
    if (options.after !== undefined) url.searchParams.set("after", options.after)
    if (options.accessToken !== undefined) url.searchParams.set("access_token", options.accessToken)
    const headers: Record<string, string> = { accept: "text/event-stream" }
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    if (options.lastEventId !== undefined) headers["last-event-id"] = options.lastEventId
    const req = http.get(url, { headers, agent: false }, (res) => {
      const reader = sseReader()
      let text = ""
      let endedResolve!: () => void
      const ended = new Promise<void>((r) => (endedResolve = r))
      res.on("end", () => endedResolve())
      res.on("close", () => endedResolve())
      res.on("error", () => endedResolve())
      res.setEncoding("utf8")
      if (res.statusCode !== 200) {
        res.on("data", (chunk: string) => (text += chunk))
      } else if (options.paused) {
        res.pause()
      } else {
        res.on("data", reader.push)
      }
      const connection: SseConnection = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        events: reader.events,
        signals: reader.signals,
        all: reader.all,
        comments: reader.comments,
        retry: reader.retry,
        ended,
        waitForEvents: reader.waitForEvents,
        close: () => req.destroy(),
        get errorBody() {
          try {
            return JSON.parse(text)
          } catch {
            return text
          }
        }
      }
      if (res.statusCode !== 200) res.on("end", () => resolve(connection))
      else resolve(connection)
    })
    req.on("error", reject)
  })
