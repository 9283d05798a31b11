import * as net from "node:net"
import { inParallel } from "../parallel.js"
import { ascending, request, sleep } from "../support.js"
import { postMessage, streamPath, type Target } from "./common.js"
import type { MemoryUsage, ServerProcess } from "./serverProcess.js"

/**
 * Part 3: many idle connections on a server process — what each costs in memory, and how long one
 * event takes to reach all of them. The clients are raw sockets that read as little as they can:
 * the bench process must not be the bottleneck it measures.
 */

const OPEN_TIMEOUT_MS = 30_000
const ROUND_TIMEOUT_MS = 30_000
/** Requests or connections in flight while opening many connections. */
const OPENING_CONCURRENCY = 200
/** Left idle this long before memory is read, so the opening's transient work is over. */
const SETTLE_MS = 1_500
const ROUND_PAUSE_MS = 250

// ---------------------------------------------------------------------------------------------
// Plain keep-alive connections (the memory baseline)

const HEALTH_REQUEST = "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

interface KeepAlive {
  /** One more GET /health/live on this connection; resolves with the whole 200 answer. */
  readonly ask: () => Promise<void>
  readonly isClosed: () => boolean
  readonly socket: net.Socket
}

/** A socket with one GET /health/live answered, left open (HTTP/1.1 keep-alive). */
const keepAlive = (port: number) =>
  new Promise<KeepAlive>((resolve, reject) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    let buffer = ""
    let closed = false
    let waiting: { ok: () => void; fail: (e: Error) => void } | undefined
    const timer = setTimeout(
      () => socket.destroy(new Error("opening a keep-alive connection timed out")),
      OPEN_TIMEOUT_MS
    )
    socket.setEncoding("latin1")
    socket.on("data", (chunk: string) => {
      buffer += chunk
      const head = buffer.indexOf("\r\n\r\n")
      if (head < 0) return
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(buffer.slice(0, head))?.[1] ?? NaN)
      if (Number.isNaN(length)) return waiting?.fail(new Error("an answer without Content-Length"))
      if (buffer.length < head + 4 + length) return
      const status = buffer.slice(9, 12)
      buffer = buffer.slice(head + 4 + length)
      const w = waiting
      waiting = undefined
      if (status === "200") w?.ok()
      else w?.fail(new Error(`GET /health/live answered ${status}`))
    })
    socket.on("error", (e) => waiting?.fail(e))
    socket.on("close", () => {
      closed = true
      waiting?.fail(new Error("the server closed the connection"))
    })
    const connection: KeepAlive = {
      socket,
      isClosed: () => closed,
      ask: () =>
        new Promise<void>((ok, fail) => {
          waiting = { ok, fail }
          socket.write(HEALTH_REQUEST)
        })
    }
    socket.on("connect", () =>
      connection.ask().then(() => {
        clearTimeout(timer)
        resolve(connection)
      }, (e) => {
        clearTimeout(timer)
        socket.destroy()
        reject(e)
      }))
    socket.on("error", (e) => {
      clearTimeout(timer)
      reject(e)
    })
  })

export interface KeepAliveSet {
  readonly connections: ReadonlyArray<KeepAlive>
  /** One more request on every connection: restarts the server's keep-alive idle timer. */
  readonly refresh: () => Promise<void>
  readonly closedCount: () => number
  readonly close: () => void
}

export const openKeepAlive = async (port: number, count: number): Promise<KeepAliveSet> => {
  const opened: Array<KeepAlive> = []
  try {
    await inParallel(count, OPENING_CONCURRENCY, async () => {
      opened.push(await keepAlive(port))
    })
  } catch (error) {
    for (const c of opened) c.socket.destroy()
    throw error
  }
  return {
    connections: opened,
    refresh: () => inParallel(opened.length, OPENING_CONCURRENCY * 5, (i) => opened[i]!.ask()).then(() => undefined),
    closedCount: () => opened.filter((c) => c.isClosed()).length,
    close: () => {
      for (const c of opened) c.socket.destroy()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SSE connections

/** The event currently being waited for, and who has it. */
interface Round {
  readonly id: number
  /** `id: <seq>\n`: the frame's first line, which no other text of the stream contains. */
  readonly marker: string
  readonly expected: number
  count: number
  firstAt: number
  lastAt: number
  readonly done: () => void
}

export interface SseSet {
  readonly size: number
  /** Waits until every connection has the event with `seq` (or the timeout); returns the round. */
  readonly expect: (seq: number) => { round: Round; all: Promise<boolean> }
  readonly closedCount: () => number
  readonly close: () => void
}

export const openSse = async (target: Target, count: number): Promise<SseSet> => {
  const sockets: Array<net.Socket> = []
  let round: Round | undefined
  let closed = 0
  const requestText = `GET ${streamPath(target)} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`

  const open = () =>
    new Promise<void>((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port: target.port })
      let head = ""
      let live = false
      let tail = ""
      let counted = -1
      const timer = setTimeout(() => socket.destroy(new Error("opening an SSE connection timed out")), OPEN_TIMEOUT_MS)
      socket.setNoDelay(true)
      socket.setEncoding("latin1")
      socket.on("connect", () => socket.write(requestText))
      socket.on("data", (chunk: string) => {
        if (!live) {
          head += chunk
          if (!head.startsWith("HTTP/1.1 ") && head.length >= 9) {
            socket.destroy(new Error(`not an HTTP answer: ${head.slice(0, 80)}`))
            return
          }
          if (head.length >= 12 && head.slice(9, 12) !== "200") {
            socket.destroy(new Error(`the SSE request answered: ${head.slice(0, 300)}`))
            return
          }
          // The server subscribed to the hub before it wrote `retry:`: every later event arrives.
          if (!head.includes("retry:")) return
          live = true
          tail = head.slice(-16)
          head = ""
          clearTimeout(timer)
          resolve()
          return
        }
        const r = round
        if (r !== undefined && counted !== r.id) {
          const text = tail + chunk
          if (text.includes(r.marker)) {
            counted = r.id
            const at = performance.now()
            if (r.count++ === 0) r.firstAt = at
            if (r.count === r.expected) {
              r.lastAt = at
              r.done()
            }
          }
        }
        tail = chunk.length >= 16 ? chunk.slice(-16) : (tail + chunk).slice(-16)
      })
      socket.on("error", (e) => {
        clearTimeout(timer)
        reject(e)
      })
      socket.on("close", () => {
        closed++
        clearTimeout(timer)
        reject(new Error("the server closed an SSE connection while it opened"))
      })
      sockets.push(socket)
    })

  try {
    await inParallel(count, OPENING_CONCURRENCY, open)
  } catch (error) {
    for (const s of sockets) s.destroy()
    throw error
  }
  let rounds = 0
  return {
    size: sockets.length,
    closedCount: () => closed,
    close: () => {
      for (const s of sockets) s.destroy()
    },
    expect: (seq) => {
      let done!: () => void
      const all = new Promise<void>((resolve) => (done = resolve))
      const r: Round = {
        id: ++rounds,
        marker: `id: ${seq}\n`,
        expected: sockets.length,
        count: 0,
        firstAt: NaN,
        lastAt: NaN,
        done
      }
      round = r
      return {
        round: r,
        all: Promise.race([all.then(() => true), sleep(ROUND_TIMEOUT_MS).then(() => false)])
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fan-out rounds

export interface FanOut {
  readonly clients: number
  readonly rounds: number
  /** POST sent → the last client has the event. */
  readonly toLast: ReadonlyArray<number>
  /** POST sent → the first client has it. */
  readonly toFirst: ReadonlyArray<number>
  /** POST sent → its 201. */
  readonly toAnswer: ReadonlyArray<number>
  /** Rounds in which some client never got the event within the timeout. */
  readonly incomplete: number
  /** The server's CPU time per round (NaN when not measured). */
  readonly serverCpuMs: number
}

/**
 * Up to `rounds` times (fewer, but at least 3, when `budgetMs` runs out): post one message and
 * time it to the first and to the last of the connections. `lastSeq` is the stream's current seq,
 * so the next event's is known before it is posted (the event can arrive before the 201).
 */
export const fanOut = async (
  target: Target,
  set: SseSet,
  options: { rounds: number; lastSeq: number; budgetMs: number; serverCpuMs?: () => number }
) => {
  const toLast: Array<number> = []
  const toFirst: Array<number> = []
  const toAnswer: Array<number> = []
  let incomplete = 0
  let seq = options.lastSeq
  let rounds = 0
  let cpu = 0
  const deadline = performance.now() + options.budgetMs
  try {
    while (rounds < options.rounds && (rounds < 3 || performance.now() < deadline)) {
      await sleep(ROUND_PAUSE_MS)
      rounds++
      const cpuBefore = options.serverCpuMs?.() ?? NaN
      const { round, all } = set.expect(++seq)
      const sentAt = performance.now()
      // A fresh connection per post: a round can outlast the server's keep-alive timeout.
      const posted = await postMessage(target, `fan-out round ${rounds}`)
      const answeredAt = performance.now()
      if (posted.event.seq !== seq) throw new Error(`expected the event to get seq ${seq}, it got ${posted.event.seq}`)
      toAnswer.push(answeredAt - sentAt)
      const complete = await all
      cpu += (options.serverCpuMs?.() ?? NaN) - cpuBefore
      if (!complete) {
        incomplete++
        continue
      }
      toFirst.push(round.firstAt - sentAt)
      toLast.push(round.lastAt - sentAt)
    }
  } finally {
    // nothing to release: every post had its own connection
  }
  const result: FanOut = {
    clients: set.size,
    rounds,
    toLast: ascending(toLast),
    toFirst: ascending(toFirst),
    toAnswer: ascending(toAnswer),
    incomplete,
    serverCpuMs: cpu / rounds
  }
  return { result, lastSeq: seq }
}

// ---------------------------------------------------------------------------------------------
// Memory

export interface MemoryPoint {
  /** VmRSS when the point was taken, before any collection was forced. */
  readonly rss: number
  /** memoryUsage() right after a full GC in the server. */
  readonly collected: MemoryUsage
}

/**
 * The server's memory at rest, before the connections: full collections until RSS stops moving
 * (a young process still gives back the memory of its start-up for a while), so that what the
 * connections add is not hidden by what the start-up gives back.
 */
export const restingPoint = async (server: ServerProcess): Promise<MemoryPoint> => {
  let collected = await server.collect()
  for (let i = 0; i < 8; i++) {
    await sleep(500)
    const again = await server.collect()
    const moved = Math.abs(again.rss - collected.rss)
    collected = again
    if (moved < 1024 * 1024) break
  }
  return { rss: collected.rss, collected }
}

/** VmRSS as it is (garbage included), then the process's own figures after a full GC. */
export const loadedPoint = async (server: ServerProcess): Promise<MemoryPoint> => {
  const rss = server.rss()
  return { rss, collected: await server.collect() }
}

export interface MemoryDelta {
  readonly connections: number
  /** Bytes per connection. */
  readonly rss: number
  readonly rssAfterGc: number
  readonly heapAfterGc: number
  readonly externalAfterGc: number
  readonly gc: boolean
}

export const perConnection = (before: MemoryPoint, after: MemoryPoint, connections: number): MemoryDelta => ({
  connections,
  rss: (after.rss - before.rss) / connections,
  rssAfterGc: (after.collected.rss - before.collected.rss) / connections,
  heapAfterGc: (after.collected.heapUsed - before.collected.heapUsed) / connections,
  externalAfterGc: (after.collected.external - before.collected.external) / connections,
  gc: before.collected.gc && after.collected.gc
})

export const settle = () => sleep(SETTLE_MS)
export const SETTLE_SECONDS = SETTLE_MS / 1000

/** The server's own count of open SSE connections, from /metrics. */
export const serverSseConnections = async (port: number) => {
  const answer = await request({ port, method: "GET", path: "/metrics" })
  const m = /^herald_sse_connections (\d+)/m.exec(answer.body)
  return m === null ? NaN : Number(m[1])
}
