import { Effect } from "effect"
import { request as httpRequest } from "node:http"
import type { Response } from "./TestServer.js"

/**
 * Sends `body` chunked (no Content-Length) in pieces of `chunkBytes`, one per event-loop turn,
 * through node:http, which reads a response even while the body is still being sent. The body is
 * parsed as JSON when it is. A connection closed without an answer resolves as status 0 with the
 * error in `error`.
 */
export const chunkedRequest = (
  url: string,
  method: string,
  path: string,
  token: string,
  body: string,
  chunkBytes = 32 * 1024
) =>
  Effect.async<Response & { readonly error: string | undefined }>((resume) => {
    let settled = false
    const settle = (res: Response & { readonly error: string | undefined }) => {
      if (settled) return
      settled = true
      resume(Effect.succeed(res))
    }
    const req = httpRequest(url + path, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", "transfer-encoding": "chunked" }
    })
    req.on("response", (res) => {
      let text = ""
      res.setEncoding("utf8")
      res.on("data", (data: string) => (text += data))
      res.on("end", () => {
        let parsed: unknown = text === "" ? undefined : text
        try {
          parsed = JSON.parse(text)
        } catch {
          // not JSON: keep the text
        }
        const headers = new Headers()
        for (const [key, value] of Object.entries(res.headers)) {
          if (typeof value === "string") headers.set(key, value)
        }
        settle({ status: res.statusCode ?? 0, headers, body: parsed, error: undefined })
      })
    })
    req.on("error", (error) => settle({ status: 0, headers: new Headers(), body: undefined, error: error.message }))
    const write = (offset: number): void => {
      if (settled || req.destroyed) return
      if (offset >= body.length) {
        req.end()
        return
      }
      const next = () => write(offset + chunkBytes)
      if (req.write(body.slice(offset, offset + chunkBytes))) setImmediate(next)
      else req.once("drain", next)
    }
    write(0)
    return Effect.sync(() => req.destroy())
  })
