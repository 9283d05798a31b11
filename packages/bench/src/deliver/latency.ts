import { Effect } from "effect"
import * as http from "node:http"
import { sseFrames } from "../../../../test-support/SseClient.js"
import { ascending, attempt, request, sleep } from "../support.js"
import { streamPath, type Target } from "./common.js"

/**
 * Part 1: commit→SSE latency for one SSE client, under an open-loop load of message posts over
 * HTTP (a post every 1/rate seconds, whatever the answers do), next to the floor: the same
 * open-loop schedule of `GET /health/live`.
 */

/** How long after the last scheduled request the stragglers may still arrive. */
const DRAIN_MS = 15_000
const WARMUP_SECONDS = 1

export interface LatencySample {
  readonly rate: number
  readonly requests: number
  /** Request sent → its HTTP answer complete (201 for posts, 200 for the health check). */
  readonly roundTrip: ReadonlyArray<number>
  /** Post sent → its event on the SSE client. Empty for the health check. */
  readonly sendToSse: ReadonlyArray<number>
  /** 201 arrived → its event on the SSE client (negative: the event came first). */
  readonly answerToSse: ReadonlyArray<number>
  /** Posts whose event never reached the SSE client within the drain time. */
  readonly missing: number
  /** How late the driver sent requests against the schedule (its own event loop's lag). */
  readonly sendLag: ReadonlyArray<number>
  /** Answers per second over the run: below the rate means the server could not keep up. */
  readonly answeredPerSecond: number
  /** The run was stopped early: too many requests were waiting for an answer. */
  readonly overloaded: boolean
}

// ---------------------------------------------------------------------------------------------
// The SSE client: one connection, recording when each seq arrived

interface SseListener {
  readonly arrivals: Map<number, number>
  /** Resolves once `seq` has arrived (or after `timeoutMs`; then false). */
  readonly waitFor: (seq: number, timeoutMs: number) => Promise<boolean>
  readonly close: () => void
}

const listen = (target: Target) =>
  new Promise<SseListener>((resolve, reject) => {
    const arrivals = new Map<number, number>()
    const waiters = new Map<number, () => void>()
    const request = http.get({
      host: "127.0.0.1",
      port: target.port,
      path: streamPath(target),
      agent: false,
      headers: { accept: "text/event-stream" }
    }, (response) => {
      if (response.statusCode !== 200) {
        reject(new Error(`SSE connection answered HTTP ${response.statusCode}`))
        response.resume()
        return
      }
      response.setEncoding("utf8")
      let live = false
      // When the chunk holding a frame arrived: every frame in one chunk arrived at once.
      let at = 0
      const push = sseFrames((frame) => {
        if (!live && frame.retry !== undefined) {
          // The server subscribed to the hub before it sent this: every later commit arrives.
          live = true
          resolve(listener)
        }
        if (frame.id !== undefined) {
          const seq = Number(frame.id)
          arrivals.set(seq, at)
          waiters.get(seq)?.()
        }
      })
      response.on("data", (chunk: string) => {
        at = performance.now()
        push(chunk)
      })
      response.on("error", () => undefined)
    })
    request.on("error", reject)
    const listener: SseListener = {
      arrivals,
      waitFor: (seq, timeoutMs) =>
        arrivals.has(seq) ? Promise.resolve(true) : new Promise((ok) => {
          const timer = setTimeout(() => {
            waiters.delete(seq)
            ok(false)
          }, timeoutMs)
          waiters.set(seq, () => {
            clearTimeout(timer)
            waiters.delete(seq)
            ok(true)
          })
        }),
      close: () => request.destroy()
    }
  })

export const sseListener = (target: Target) =>
  Effect.acquireRelease(attempt("opening the SSE client", () => listen(target)), (l) => Effect.sync(l.close))

// ---------------------------------------------------------------------------------------------
// The open-loop driver

/**
 * Calls `fire(i)` for i = 0 … count-1 at start + i/rate, catching up at once when the event loop
 * was late (the lag is recorded: a late driver would flatter the server). Stops early when `fire`
 * says so. Returns the lags.
 */
const openLoop = async (rate: number, count: number, fire: (i: number) => boolean) => {
  const interval = 1000 / rate
  const start = performance.now() + 2
  const lags: Array<number> = []
  let i = 0
  while (i < count) {
    const now = performance.now()
    while (i < count && start + i * interval <= now) {
      lags.push(performance.now() - (start + i * interval))
      if (!fire(i++)) return lags
    }
    if (i < count) await sleep(Math.max(0, start + i * interval - performance.now()))
  }
  return lags
}

interface Sent {
  sentAt: number
  answeredAt: number
  seq: number
}

/** One HTTP request; resolves with its timing (and a post's seq) once the whole answer is in. */
const timedRequest = (
  agent: http.Agent,
  port: number,
  options: { method: string; path: string; token?: string; body?: unknown; expected: number }
) =>
  request({ ...options, port, agent }).then(({ answeredAt, body, sentAt }): Sent => ({
    sentAt,
    answeredAt,
    seq: options.method === "POST" ? (JSON.parse(body) as { event: { seq: number } }).event.seq : 0
  }))

// ---------------------------------------------------------------------------------------------
// One cell: a kind of request at a rate

export type Kind = "post" | "health"

const runCell = async (
  target: Target,
  sse: SseListener,
  kind: Kind,
  rate: number,
  seconds: number
): Promise<LatencySample> => {
  // A fresh keep-alive pool per cell: no socket sits idle long enough for the server's
  // keep-alive timeout to close it under a request.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 })
  try {
    let n = 0
    const one = () =>
      kind === "post"
        ? timedRequest(agent, target.port, {
          method: "POST",
          path: `/api/projects/${target.projectId}/messages`,
          token: target.token,
          body: { body: `deliver bench message ${++n} at ${rate}/s` },
          expected: 201
        })
        : timedRequest(agent, target.port, { method: "GET", path: "/health/live", expected: 200 })

    // An open loop against a server that cannot keep up only queues: past this many requests in
    // flight (half a second's worth) the cell stops and says so, rather than run for minutes.
    const maxInFlight = Math.max(20, rate / 2)
    let overloaded = false
    const run = async (count: number) => {
      const pending: Array<Promise<Sent>> = []
      let inFlight = 0
      const lags = await openLoop(rate, count, () => {
        if (inFlight >= maxInFlight) {
          overloaded = true
          return false
        }
        inFlight++
        const p = one()
        p.then(() => inFlight--, () => inFlight--)
        pending.push(p)
        return true
      })
      const settled = await Promise.allSettled(pending)
      const failure = settled.find((s) => s.status === "rejected")
      if (failure !== undefined) throw (failure as PromiseRejectedResult).reason
      return { lags, sent: settled.map((s) => (s as PromiseFulfilledResult<Sent>).value) }
    }

    await run(Math.max(1, Math.round(rate * WARMUP_SECONDS)))
    overloaded = false
    const { lags, sent } = await run(Math.max(1, Math.round(rate * seconds)))

    let missing = 0
    if (kind === "post") {
      const deadline = performance.now() + DRAIN_MS
      for (const s of sent) {
        if (!(await sse.waitFor(s.seq, Math.max(0, deadline - performance.now())))) missing++
      }
    }
    const sendToSse: Array<number> = []
    const answerToSse: Array<number> = []
    if (kind === "post") {
      for (const s of sent) {
        const at = sse.arrivals.get(s.seq)
        if (at === undefined) continue
        sendToSse.push(at - s.sentAt)
        answerToSse.push(at - s.answeredAt)
      }
    }
    return {
      rate,
      requests: sent.length,
      roundTrip: ascending(sent.map((s) => s.answeredAt - s.sentAt)),
      sendToSse: ascending(sendToSse),
      answerToSse: ascending(answerToSse),
      missing,
      sendLag: ascending(lags),
      overloaded,
      answeredPerSecond: sent.length /
        ((Math.max(...sent.map((s) => s.answeredAt)) - Math.min(...sent.map((s) => s.sentAt))) / 1000)
    }
  } finally {
    agent.destroy()
  }
}

export const measureCell = (target: Target, sse: SseListener, kind: Kind, rate: number, seconds: number) =>
  attempt(`latency, ${kind} at ${rate}/s`, () => runCell(target, sse, kind, rate, seconds))
