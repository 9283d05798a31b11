import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { request as httpRequest } from "node:http"
import { MAX_BODY_BYTES } from "../src/http/Middleware.js"
import { NodeServer } from "../src/http/NodeServer.js"
import { TestServer, testServerLayer, TestServerLive } from "./support/TestServer.js"

/**
 * HERALD_CORS_ORIGINS (SPEC §5, §7): a browser page on a listed origin may call the API; on any
 * other origin it gets no CORS headers, so the browser keeps the answer from it. Every request is
 * sent raw over node:http, so the test controls the Origin header, Content-Length or chunked, and
 * sees the answer's headers as the browser would — including the SSE and post doors' answers,
 * which never reach the HTTP app.
 */

const LISTED = "http://127.0.0.1:5173"
const ALSO_LISTED = "https://app.example.com"
const UNLISTED = "http://127.0.0.1:5174"

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

interface Raw {
  readonly headers?: Record<string, string>
  readonly body?: string
  /** Send the body without a Content-Length (the post door leaves it to the HTTP app). */
  readonly chunked?: boolean
  /** An SSE stream: resolve on the head and close the connection. */
  readonly headOnly?: boolean
}

const raw = (url: string, method: string, path: string, options: Raw = {}) =>
  Effect.async<Answer>((resume) => {
    const headers: Record<string, string> = { ...options.headers }
    if (options.body !== undefined) {
      headers["content-type"] = "application/json"
      if (options.chunked) headers["transfer-encoding"] = "chunked"
      else headers["content-length"] = String(Buffer.byteLength(options.body))
    }
    const req = httpRequest(url + path, { method, headers })
    req.on("response", (res) => {
      if (options.headOnly) {
        resume(Effect.succeed({ status: res.statusCode!, headers: res.headers, body: "" }))
        req.destroy()
        return
      }
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode!, headers: res.headers, body })))
    })
    req.on("error", (error) => resume(Effect.die(error)))
    if (options.body !== undefined && options.chunked) {
      // Two chunks, so the body really is chunked.
      const half = Math.floor(options.body.length / 2)
      req.write(options.body.slice(0, half))
      setImmediate(() => req.end(options.body!.slice(half)))
    } else {
      req.end(options.body)
    }
    return Effect.sync(() => req.destroy())
  })

/** The CORS headers of an answer (`access-control-*`), none when the browser must not read it. */
const corsHeaders = (answer: Answer) =>
  Object.fromEntries(Object.entries(answer.headers).filter(([name]) => name.startsWith("access-control-")))

const list = (value: string | Array<string> | undefined) =>
  (Array.isArray(value) ? value.join(",") : value ?? "").split(",").map((s) => s.trim().toLowerCase()).filter((s) =>
    s !== ""
  )

/** The headers a listed origin's page gets on every answer, whatever its status. */
const expectReadableBy = (answer: Answer, origin: string, what: string) => {
  expect(answer.headers["access-control-allow-origin"], `${what}: ${answer.status} ${answer.body}`).toBe(origin)
  expect(list(answer.headers["vary"]), what).toContain("origin")
  expect(list(answer.headers["access-control-expose-headers"]), what).toContain("retry-after")
  // Bearer tokens, never cookies: nothing for the browser to send along.
  expect(answer.headers["access-control-allow-credentials"], what).toBeUndefined()
}

const expectNoCors = (answer: Answer, what: string) =>
  expect(corsHeaders(answer), `${what}: ${answer.status} ${answer.body}`).toEqual({})

/** Counts the requests each door takes, so a test can tell a door's answer from the app's. */
const countDoors = Effect.gen(function*() {
  const node = yield* NodeServer
  const taken = { sse: 0, post: 0 }
  node.doors.forEach((door, i) => {
    node.doors[i] = (req, res) => {
      const took = door(req, res)
      if (took && req.method === "POST") taken.post++
      else if (took) taken.sse++
      return took
    }
  })
  return taken
})

describe("CORS", () => {
  it.layer(testServerLayer({ corsOrigins: [LISTED, ALSO_LISTED] }))("with HERALD_CORS_ORIGINS set", (it) => {
    it.effect("a preflight from a listed origin is answered 204 with what the browser needs; from another, 403 with no CORS headers", () =>
      Effect.gen(function*() {
        const { url } = yield* TestServer
        for (const origin of [LISTED, ALSO_LISTED]) {
          for (
            const [method, path] of [["GET", "/api/me"], ["POST", "/api/projects/x/messages"], ["GET", "/api/stream"], [
              "DELETE",
              "/api/nope"
            ]]
          ) {
            const pre = yield* raw(url, "OPTIONS", path, {
              headers: {
                origin,
                "access-control-request-method": method!,
                "access-control-request-headers": "authorization,content-type"
              }
            })
            const what = `preflight ${method} ${path} from ${origin}`
            expect(pre.status, `${what}: ${pre.body}`).toBe(204)
            expect(pre.body).toBe("")
            expect(pre.headers["access-control-allow-origin"], what).toBe(origin)
            expect(list(pre.headers["access-control-allow-methods"]), what).toEqual(
              expect.arrayContaining(["get", "post", "put", "patch", "delete"])
            )
            expect(list(pre.headers["access-control-allow-headers"]), what).toEqual(
              expect.arrayContaining(["authorization", "content-type", "last-event-id"])
            )
            expect(pre.headers["access-control-max-age"], what).toBe("600")
            expect(list(pre.headers["vary"]), what).toContain("origin")
            expect(pre.headers["access-control-allow-credentials"], what).toBeUndefined()
          }
        }
        for (const origin of [UNLISTED, "null", "https://app.example.com.evil.test", "HTTPS://APP.EXAMPLE.COM"]) {
          const pre = yield* raw(url, "OPTIONS", "/api/me", {
            headers: {
              origin,
              "access-control-request-method": "GET",
              "access-control-request-headers": "authorization"
            }
          })
          expect(pre.status, `preflight from ${origin}: ${pre.body}`).toBe(403)
          expectNoCors(pre, `preflight from ${origin}`)
          expect(JSON.parse(pre.body)).toEqual({
            _tag: "Forbidden",
            message: expect.stringContaining("HERALD_CORS_ORIGINS")
          })
        }
      }))

    it.effect("every answer to a listed origin carries its CORS headers — through the app, the post door and the SSE door, errors too; another origin's carry none", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const taken = yield* countDoors
        const { url } = server
        const alice = yield* server.user("alice")
        const project = yield* alice.api.projects.create({ payload: { name: "cors" } })
        const bearer = { authorization: `Bearer ${alice.token}` }
        const messages = `/api/projects/${project.id}/messages`

        const requests: ReadonlyArray<{ what: string; method: string; path: string; options: Raw; status: number }> = [
          {
            what: "GET /api/me with a bearer token",
            method: "GET",
            path: "/api/me",
            options: { headers: bearer },
            status: 200
          },
          { what: "GET /api/me without a token", method: "GET", path: "/api/me", options: {}, status: 401 },
          {
            what: "GET /api/me with a wrong token",
            method: "GET",
            path: "/api/me",
            options: { headers: { authorization: "Bearer hrld_wrong" } },
            status: 401
          },
          { what: "an unknown path", method: "GET", path: "/api/nope", options: { headers: bearer }, status: 404 },
          {
            what: "a post with a Content-Length (the post door)",
            method: "POST",
            path: messages,
            options: { headers: bearer, body: `{"body":"door"}` },
            status: 201
          },
          {
            what: "a post with a wrong token (the post door)",
            method: "POST",
            path: messages,
            options: { headers: { authorization: "Bearer hrld_wrong" }, body: `{"body":"door"}` },
            status: 401
          },
          {
            what: "a post that is not JSON (the post door)",
            method: "POST",
            path: messages,
            options: { headers: bearer, body: `{"body":` },
            status: 400
          },
          {
            what: "a chunked post (the app)",
            method: "POST",
            path: messages,
            options: { headers: bearer, body: `{"body":"app"}`, chunked: true },
            status: 201
          },
          {
            what: "a chunked post too large (the app)",
            method: "POST",
            path: messages,
            options: { headers: bearer, body: `{"body":"${"x".repeat(MAX_BODY_BYTES)}"}`, chunked: true },
            status: 413
          },
          {
            what: "a post to a project that is not there (the app)",
            method: "POST",
            path: "/api/projects/nope/messages",
            options: { headers: bearer, body: `{"body":"x"}`, chunked: true },
            status: 400
          },
          {
            what: "GET /api/stream?access_token= (the SSE door)",
            method: "GET",
            path: `/api/stream?access_token=${alice.token}`,
            options: { headOnly: true },
            status: 200
          },
          {
            what: "GET /api/stream with a bearer token (the SSE door)",
            method: "GET",
            path: "/api/stream",
            options: { headers: bearer, headOnly: true },
            status: 200
          },
          {
            what: "GET /api/stream with a wrong token (the SSE door)",
            method: "GET",
            path: "/api/stream?access_token=hrld_wrong",
            options: {},
            status: 401
          },
          { what: "the health check", method: "GET", path: "/health/live", options: {}, status: 200 }
        ]
        for (const { method, options, path, status, what } of requests) {
          const listed = yield* raw(url, method, path, { ...options, headers: { ...options.headers, origin: LISTED } })
          expect(listed.status, `${what} from ${LISTED}: ${listed.body.slice(0, 300)}`).toBe(status)
          expectReadableBy(listed, LISTED, `${what} from ${LISTED}`)
          const unlisted = yield* raw(url, method, path, {
            ...options,
            headers: { ...options.headers, origin: UNLISTED }
          })
          expect(unlisted.status, `${what} from ${UNLISTED}`).toBe(status)
          expectNoCors(unlisted, `${what} from ${UNLISTED}`)
          const noOrigin = yield* raw(url, method, path, options)
          expect(noOrigin.status, `${what} with no Origin`).toBe(status)
          expectNoCors(noOrigin, `${what} with no Origin`)
        }
        // The doors did answer what they take: the SSE opens and the posts with a Content-Length.
        expect(taken.sse).toBeGreaterThanOrEqual(3 * 3)
        expect(taken.post).toBeGreaterThanOrEqual(3 * 3)
      }))
  })

  it.layer(TestServerLive)("with HERALD_CORS_ORIGINS unset", (it) => {
    it.effect("no origin gets CORS headers, on the app, the doors or a preflight", () =>
      Effect.gen(function*() {
        const server = yield* TestServer
        const taken = yield* countDoors
        const alice = yield* server.user("alice")
        const project = yield* alice.api.projects.create({ payload: { name: "cors" } })
        const headers = { origin: LISTED, authorization: `Bearer ${alice.token}` }
        const answers = [
          yield* raw(server.url, "GET", "/api/me", { headers }),
          yield* raw(server.url, "GET", "/api/me", { headers: { origin: LISTED } }),
          yield* raw(server.url, "POST", `/api/projects/${project.id}/messages`, { headers, body: `{"body":"door"}` }),
          yield* raw(server.url, "GET", `/api/stream?access_token=${alice.token}`, {
            headers: { origin: LISTED },
            headOnly: true
          })
        ]
        expect(answers.map((a) => a.status)).toEqual([200, 401, 201, 200])
        answers.forEach((a, i) => expectNoCors(a, `request ${i}`))
        expect(taken).toEqual({ sse: 1, post: 1 })
        const pre = yield* raw(server.url, "OPTIONS", "/api/me", {
          headers: { origin: LISTED, "access-control-request-method": "GET" }
        })
        expect(pre.status).toBe(403)
        expectNoCors(pre, "preflight")
      }))
  })
})
