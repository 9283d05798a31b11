import { Effect } from "effect"
import * as http from "node:http"
import { sseFrames } from "../../../../test-support/SseClient.js"
import { attempt, sleep } from "../support.js"

/**
 * One SSE subscriber in the bench process, open through every run: a plain node:http reader of
 * `GET /api/stream` (every stream of the user's projects), counting the frames it receives by
 * event type. The publisher thus fans every committed post out to a real connection, as in
 * production, and the count says whether it did.
 */

export interface Subscriber {
  /** Frames received so far, by `event:` type (`heads` is the first frame of /api/stream). */
  readonly counts: () => ReadonlyMap<string, number>
  readonly received: (type: string) => number
  /** Why the response ended before the bench closed it, if it did. */
  readonly endedEarly: () => string | undefined
  /** Resolves once `received(type) >= n`, or after `timeoutMs` (then with false). */
  readonly waitFor: (type: string, n: number, timeoutMs: number) => Promise<boolean>
}

export const subscriber = (port: number, token: string) =>
  Effect.acquireRelease(
    attempt("opening the SSE subscriber (GET /api/stream)", () =>
      new Promise<{ sub: Subscriber; close: () => void }>((resolve, reject) => {
        const counts = new Map<string, number>()
        let ended: string | undefined
        let closing = false
        const req = http.request({
          host: "127.0.0.1",
          port,
          method: "GET",
          path: "/api/stream",
          agent: false,
          headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" }
        }, (res) => {
          if (res.statusCode !== 200) {
            reject(new Error(`GET /api/stream: HTTP ${res.statusCode}`))
            res.resume()
            return
          }
          const push = sseFrames((frame) => {
            if (frame.event !== undefined) {
              counts.set(frame.event, (counts.get(frame.event) ?? 0) + 1)
            }
          })
          res.setEncoding("utf8").on("data", push)
          const end = (why: string) => {
            if (!closing && ended === undefined) {
              ended = why
            }
          }
          res.on("end", () =>
            end("the server ended the response"))
          res.on("error", (e) => end(e.message))
          res.on("close", () => end("the connection closed"))
          const received = (type: string) => counts.get(type) ?? 0
          const sub: Subscriber = {
            counts: () => counts,
            received,
            endedEarly: () => ended,
            waitFor: async (type, n, timeoutMs) => {
              const deadline = Date.now() + timeoutMs
              while (received(type) < n) {
                if (Date.now() > deadline || ended !== undefined) return false
                await sleep(20)
              }
              return true
            }
          }
          resolve({
            sub,
            close: () => {
              closing = true
              req.destroy()
            }
          })
        })
        req.on("error", reject)
        req.end()
      })),
    ({ close }) =>
      Effect.sync(close)
  ).pipe(Effect.map(({ sub }) => sub))
