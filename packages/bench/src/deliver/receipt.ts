import { Effect } from "effect"
import * as http from "node:http"
import type * as net from "node:net"
import { sseFrames } from "../../../../test-support/SseClient.js"
import { attempt, REQUEST_TIMEOUT_MS } from "../support.js"
import { MESSAGE_BODY } from "../wrk.js"
import type { Target } from "./common.js"

/**
 * Part 1 of `deliver`: how long after a post its event reaches a subscriber, against how long the
 * post's own 201 takes, same posts. One poster in the bench process posts sequentially over one
 * keep-alive socket; one SSE subscriber on the project's stream, opened before the posts, notes
 * when each `message.created` frame arrives. Both times run from the same `performance.now()`
 * taken just before the post is sent, in this one process.
 */

/** A post whose event has not reached the subscriber this long after its 201 is missing. */
export const MISSING_AFTER_MS = 10_000

/** The body every post sends, byte for byte (as `write`'s wrk load does). */
const POST_BODY = Buffer.from(`{"body": ${JSON.stringify(MESSAGE_BODY)}}`)

// ---------------------------------------------------------------------------------------------
// The subscriber: GET /api/projects/:id/stream with a bearer token, one connection

export interface Arrival {
  /** `performance.now()` when the chunk that completed the event's frame was read. */
  readonly at: number
  /** The frame's `id:`, the event's seq in the project's stream. */
  readonly seq: number
}

export interface Subscriber {
  /** Resolves with the arrival of the event of `messageId`, or undefined at `deadline` (performance.now()). */
  readonly arrival: (messageId: string, deadline: number) => Promise<Arrival | undefined>
  /** `message.created` frames received so far. */
  readonly received: () => number
  /** Frames whose seq was not the one after the previous frame's (a gap or a repeat). */
  readonly outOfOrder: () => number
  /** Why the response ended before the bench closed it, if it did. */
  readonly endedEarly: () => string | undefined
}

const open = (target: Target) =>
  new Promise<{ subscriber: Subscriber; close: () => void }>((resolve, reject) => {
    const arrivals = new Map<string, Arrival>()
    const waiters = new Map<string, (a: Arrival | undefined) => void>()
    let received = 0
    let outOfOrder = 0
    let lastSeq: number | undefined
    let ended: string | undefined
    let closing = false
    const req = http.request({
      host: "127.0.0.1",
      port: target.port,
      method: "GET",
      path: `/api/projects/${target.projectId}/stream`,
      agent: false,
      headers: { authorization: `Bearer ${target.token}`, accept: "text/event-stream" }
    }, (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`GET /api/projects/:id/stream answered HTTP ${res.statusCode}`))
        res.resume()
        return
      }
      let live = false
      // Every frame completed by one chunk arrived when that chunk was read.
      let at = 0
      const push = sseFrames((frame) => {
        // `retry:` is written once the server has positioned the stream at its head: every later
        // commit of the stream reaches this connection.
        if (!live && frame.retry !== undefined) {
          live = true
          resolve({ subscriber, close })
        }
        if (frame.event !== "message.created" || frame.id === undefined) return
        // `id:` is opaque (`<seq>.<tag>`): the seq is the envelope's.
        const envelope = JSON.parse(frame.data.join("\n")) as { seq: number; data: { messageId: string } }
        const seq = envelope.seq
        if (lastSeq !== undefined && seq !== lastSeq + 1) outOfOrder++
        lastSeq = seq
        received++
        const messageId = envelope.data.messageId
        const arrival: Arrival = { at, seq }
        arrivals.set(messageId, arrival)
        waiters.get(messageId)?.(arrival)
      })
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => {
        at = performance.now()
        push(chunk)
      })
      const end = (why: string) => {
        if (closing || ended !== undefined) return
        ended = why
        for (const w of [...waiters.values()]) w(undefined)
      }
      res.on("end", () => end("the server ended the response"))
      res.on("error", (e) => end(e.message))
      res.on("close", () => end("the connection closed"))
    })
    req.on("error", reject)
    req.end()
    const close = () => {
      closing = true
      req.destroy()
    }
    const subscriber: Subscriber = {
      arrival: (messageId, deadline) => {
        const known = arrivals.get(messageId)
        if (known !== undefined || ended !== undefined) return Promise.resolve(known)
        return new Promise((ok) => {
          const done = (a: Arrival | undefined) => {
            clearTimeout(timer)
            waiters.delete(messageId)
            ok(a)
          }
          const timer = setTimeout(() => done(undefined), Math.max(0, deadline - performance.now()))
          waiters.set(messageId, done)
        })
      },
      received: () => received,
      outOfOrder: () => outOfOrder,
      endedEarly: () => ended
    }
  })

/** The subscriber, open (and live) once this succeeds; closed with the scope. */
export const subscribe = (target: Target) =>
  Effect.acquireRelease(
    attempt("opening the SSE subscriber (GET /api/projects/:id/stream)", () => open(target)),
    ({ close }) => Effect.sync(close)
  ).pipe(Effect.map(({ subscriber }) => subscriber))

// ---------------------------------------------------------------------------------------------
// The poster: POST /api/projects/:id/messages, one after another, over one keep-alive socket

export interface Poster {
  /** One post; resolves once its 201 is in whole, with its message id. */
  readonly post: () => Promise<{ readonly sentAt: number; readonly answeredAt: number; readonly messageId: string }>
  /** Sockets the agent has opened so far (1 unless the server closed one between posts). */
  readonly sockets: () => number
}

export const poster = (target: Target) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
      const seen = new WeakSet<net.Socket>()
      let sockets = 0
      const path = `/api/projects/${target.projectId}/messages`
      const post: Poster["post"] = () =>
        new Promise((resolve, reject) => {
          const sentAt = performance.now()
          const req = http.request({
            host: "127.0.0.1",
            port: target.port,
            method: "POST",
            path,
            agent,
            timeout: REQUEST_TIMEOUT_MS,
            headers: {
              authorization: `Bearer ${target.token}`,
              "content-type": "application/json",
              "content-length": POST_BODY.length
            }
          }, (res) => {
            const chunks: Array<Buffer> = []
            res.on("data", (chunk: Buffer) => chunks.push(chunk))
            res.on("error", reject)
            res.on("end", () => {
              const answeredAt = performance.now()
              const text = Buffer.concat(chunks).toString()
              if (res.statusCode !== 201) {
                reject(new Error(`POST ${path}: HTTP ${res.statusCode} (expected 201): ${text}`))
                return
              }
              try {
                const { message } = JSON.parse(text) as { message: { id: string } }
                resolve({ sentAt, answeredAt, messageId: message.id })
              } catch (e) {
                reject(e)
              }
            })
          })
          req.on("socket", (socket: net.Socket) => {
            if (!seen.has(socket)) {
              seen.add(socket)
              sockets++
            }
          })
          req.on("timeout", () => req.destroy(new Error(`POST ${path} timed out`)))
          req.on("error", reject)
          req.end(POST_BODY)
        })
      return { poster: { post, sockets: () => sockets } satisfies Poster, agent }
    }),
    ({ agent }) => Effect.sync(() => agent.destroy())
  ).pipe(Effect.map(({ poster }) => poster))

// ---------------------------------------------------------------------------------------------
// A run of posts

export interface Receipt {
  readonly sentAt: number
  readonly answeredAt: number
  /** When its event's frame arrived; undefined: missing (not within MISSING_AFTER_MS of the 201). */
  readonly arrival: Arrival | undefined
}

/**
 * `count` posts, one at a time: each is sent once the previous one's 201 and event have both
 * arrived (or its event was given up on), so no post's delivery overlaps the next one's request.
 */
export const postAll = (poster: Poster, subscriber: Subscriber, count: number) =>
  attempt(`${count} sequential posts`, async () => {
    const receipts: Array<Receipt> = []
    for (let i = 0; i < count; i++) {
      const { answeredAt, messageId, sentAt } = await poster.post()
      const arrival = await subscriber.arrival(messageId, answeredAt + MISSING_AFTER_MS)
      receipts.push({ sentAt, answeredAt, arrival })
    }
    return receipts
  })
