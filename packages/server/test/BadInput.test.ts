/**
 * Bad input on every endpoint of the HTTP API, over real HTTP (docs/http.md): every malformed request
 * answers a JSON error with `_tag` and `message` (400 naming the field, 401, 413), and writes
 * nothing — text PostgreSQL cannot store (a NUL, an unpaired surrogate) included, in every text
 * field and parameter (domain Text.ts). The positive boundaries are checked too, so the rejections
 * cannot pass vacuously.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as net from "node:net"
import { MAX_BODY_BYTES } from "../src/http/Middleware.js"
import {
  casesOf,
  describeResponse,
  ENDPOINTS,
  expectJsonError,
  fill,
  Fixture,
  snapshot,
  TestLive
} from "./support/BadInputCorpus.js"
import { chunkedRequest } from "./support/ChunkedRequest.js"
import { ADMIN_TOKEN, type Response, TestServer } from "./support/TestServer.js"
/** A message body of `characters` characters, sent chunked (the server learns its size only while reading). */
const streamedRequest = (url: string, method: string, path: string, token: string, characters: number) =>
  chunkedRequest(url, method, path, token, `{"name":"x","body":"${"x".repeat(characters)}"}`, 16 * 1024)

/**
 * One HTTP/1.1 request written byte for byte on a socket, for what `fetch` will not send: bytes
 * that are not UTF-8 in a body or a header, a NUL in a header. Answers the status line's code and
 * the body, parsed as JSON when it is.
 */
const rawRequest = (url: string, head: ReadonlyArray<string | Buffer>, body: Buffer = Buffer.alloc(0)) =>
  Effect.async<Response>((resume) => {
    const { hostname, port } = new URL(url)
    const socket = net.connect(Number(port), hostname)
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("error", () => socket.destroy())
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8")
      const [statusLine = "", ...rest] = text.split("\r\n")
      const raw = rest.slice(rest.indexOf("") + 1).join("\r\n")
      let parsed: unknown = raw
      try {
        parsed = raw === "" ? undefined : JSON.parse(raw)
      } catch {
        // not JSON: keep the text
      }
      const headers = new Headers()
      for (const line of rest.slice(0, rest.indexOf(""))) {
        const colon = line.indexOf(":")
        if (colon > 0) headers.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim())
      }
      resume(Effect.succeed({ status: Number(statusLine.split(" ")[1] ?? 0), headers, body: parsed as any }))
    })
    const lines = [...head, `Content-Length: ${body.length}`, "Connection: close", ""]
    const bytes = lines.flatMap((
      line
    ) => [Buffer.isBuffer(line) ? line : Buffer.from(line, "latin1"), Buffer.from("\r\n")])
    // Not `end()`: a half-closed connection may be dropped before the server has answered.
    socket.write(Buffer.concat([...bytes, body]))
    return Effect.sync(() => socket.destroy())
  })

/** The WTF-8 bytes of the lone high surrogate U+D800: what a buggy client would send for "\ud800". */
const LONE_SURROGATE_BYTES = Buffer.from([0xed, 0xa0, 0x80])

// ---------------------------------------------------------------------------------------------
// Bad input: one fresh database; every case checks its response and that nothing was written.

it.layer(TestLive)("bad input", (it) => {
  for (const endpoint of ENDPOINTS) {
    describe(`${endpoint.method} ${endpoint.path}`, () => {
      for (const c of casesOf(endpoint)) {
        it.effect(c.name, () =>
          Effect.gen(function*() {
            const server = yield* TestServer
            const f = yield* Fixture
            const before = yield* snapshot
            const res = yield* server.request(endpoint.method, c.path(f), c.options(f))
            expectJsonError(res, c.expected)
            expect(yield* snapshot, `${endpoint.method} ${c.path(f)} must write nothing`).toEqual(before)
          }))
      }

      if (endpoint.payload !== undefined) {
        // Without a Content-Length the server only learns the size while reading: still a 413
        // (docs/http.md), and nothing is written.
        it.effect(`a chunked body streamed past ${MAX_BODY_BYTES} bytes answers 413`, () =>
          Effect.gen(function*() {
            const server = yield* TestServer
            const f = yield* Fixture
            const before = yield* snapshot
            const token = endpoint.auth === "admin" ? ADMIN_TOKEN : f.alice.token
            const res = yield* streamedRequest(
              server.url,
              endpoint.method,
              fill(endpoint.path, f),
              token,
              MAX_BODY_BYTES + 1
            )
            expectJsonError(res, { status: 413, tag: "PayloadTooLarge" })
            expect(yield* snapshot).toEqual(before)
          }))
      }
    })
  }

  it.effect("a body exactly at the size limit is parsed (400 for a too-long body, not 413)", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const before = yield* snapshot
      const prefix = "{\"body\":\""
      const suffix = "\"}"
      const raw = prefix + "b".repeat(MAX_BODY_BYTES - prefix.length - suffix.length) + suffix
      expect(Buffer.byteLength(raw)).toBe(MAX_BODY_BYTES)
      const res = yield* server.request("POST", `/api/projects/${f.ids.projectId}/messages`, {
        token: f.alice.token,
        raw
      })
      expectJsonError(res, { status: 400, field: "body" })
      const over = yield* server.request("POST", `/api/projects/${f.ids.projectId}/messages`, {
        token: f.alice.token,
        raw: prefix + "b".repeat(MAX_BODY_BYTES - prefix.length - suffix.length + 1) + suffix
      })
      expectJsonError(over, { status: 413, tag: "PayloadTooLarge" })
      expect(yield* snapshot).toEqual(before)
    }))

  it.effect("a NUL or non-UTF-8 bytes in ?access_token= are an invalid token (401), never a database error", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const before = yield* snapshot
      for (const stream of ["stream", "workspace/stream"]) {
        for (const token of ["%00", `${f.alice.token}%00`, "%ED%A0%80", `${f.alice.token}%ED%B0%80`]) {
          const res = yield* server.request("GET", `/api/projects/${f.ids.projectId}/${stream}?access_token=${token}`)
          expectJsonError(res, { status: 401, tag: "Unauthorized" })
        }
      }
      expect(yield* snapshot).toEqual(before)
    }))

  it.effect("headers fetch will not send: a NUL is refused by the HTTP parser, non-UTF-8 bytes are a 400 or 401", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const before = yield* snapshot
      const stream = `/api/projects/${f.ids.projectId}/stream`
      const get = (...headers: ReadonlyArray<string | Buffer>) =>
        rawRequest(server.url, [`GET ${stream} HTTP/1.1`, "Host: localhost", ...headers])
      const bearer = `Authorization: Bearer ${f.alice.token}`

      // The controls: a raw request reaches the app, which reads the header and the token.
      expectJsonError(yield* get(bearer, "Last-Event-ID: x"), { status: 400, field: "last-event-id" })
      expectJsonError(yield* get("Authorization: Bearer nope"), { status: 401, tag: "Unauthorized" })

      // A NUL in a header never gets past Node's HTTP parser.
      const nul = yield* get(bearer, "Last-Event-ID: 1\u00002")
      expect(nul.status, describeResponse(nul)).toBe(400)
      const nulToken = yield* get(`${bearer}\u0000`)
      expect(nulToken.status, describeResponse(nulToken)).toBe(400)

      // Bytes that are not UTF-8 arrive as Latin-1 text: not a stream position, not a token.
      const position = yield* get(bearer, Buffer.concat([Buffer.from("Last-Event-ID: 1"), LONE_SURROGATE_BYTES]))
      expectJsonError(position, { status: 400, field: "last-event-id" })
      const token = yield* get(Buffer.concat([Buffer.from(bearer), LONE_SURROGATE_BYTES]))
      expectJsonError(token, { status: 401, tag: "Unauthorized" })
      expect(yield* snapshot).toEqual(before)
    }))

  it.effect("the fixture is intact after every rejected request", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const messages = yield* server.request("GET", `/api/projects/${f.ids.projectId}/messages`, {
        token: f.alice.token
      })
      expect(messages.status).toBe(200)
      expect(messages.body.items.map((m: any) => [m.id, m.body, m.editedAt, m.deletedAt])).toEqual([
        [f.ids.messageId, "the original body", undefined, undefined]
      ])
      const workspace = yield* server.request("GET", `/api/projects/${f.ids.projectId}/workspace/messages`, {
        token: f.alice.token
      })
      expect(workspace.body.items.map((m: any) => m.body)).toEqual(["a private note"])
      const projects = yield* server.request("GET", "/api/projects", { token: f.bob.token })
      expect(projects.body.items.map((p: any) => p.id)).toEqual([f.ids.projectId])
      const carols = yield* server.request("GET", "/api/projects", { token: f.carol.token })
      expect(carols.body.items).toEqual([])
    }))
})

// ---------------------------------------------------------------------------------------------
// The positive boundaries: what the rejections are measured against is accepted.

it.layer(TestLive)("accepted boundaries", (it) => {
  /**
   * Well-formed text beyond the rejections: surrogate pairs (emoji, a ZWJ sequence, a musical
   * symbol), the code points on either side of the surrogate range, U+FFFD, and the control
   * characters other than NUL — all storable, all to be kept exactly as sent.
   */
  const STORABLE: ReadonlyArray<string> = [
    "😀",
    "hello 👩‍👩‍👧 world 𝄞",
    "\ud7ff\ue000\ufffd\uffff",
    "tab\tbell\u0007 unit\u001f del\u007f"
  ]

  it.effect("well-formed text beyond the BMP is accepted in every text field and stored as sent", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const f = yield* Fixture
      const eventData = (stream: string, seq: number) =>
        Effect.map(
          sql<{ data: any }>`SELECT data FROM event_outbox WHERE stream_id = ${stream} AND seq = ${seq}`,
          (rows) => rows[0]?.data
        )
      for (const [i, text] of STORABLE.entries()) {
        const user = yield* server.request("POST", "/api/admin/users", { token: ADMIN_TOKEN, json: { name: text } })
        expect(user.status, describeResponse(user)).toBe(201)
        expect(user.body.name).toBe(text)
        const me = yield* server.request("GET", "/api/me", { token: user.body.token })
        expect(me.body.name).toBe(text)
        expect(yield* sql`SELECT name FROM users WHERE id = ${user.body.id}`).toEqual([{ name: text }])

        const project = yield* server.request("POST", "/api/projects", { token: user.body.token, json: { name: text } })
        expect(project.status, describeResponse(project)).toBe(201)
        expect(project.body.name).toBe(text)
        const projectId: string = project.body.id
        const stream = `project:${projectId}`
        expect(yield* eventData(stream, 1)).toMatchObject({ name: text })

        const clientMessageId = `${text} ${i}`
        const path = `/api/projects/${projectId}/messages`
        const posted = yield* server.request("POST", path, {
          token: user.body.token,
          json: { body: text, clientMessageId }
        })
        expect(posted.status, describeResponse(posted)).toBe(201)
        expect(posted.body.message).toMatchObject({ body: text, clientMessageId })
        expect(yield* eventData(stream, posted.body.event.seq)).toMatchObject({ body: text, clientMessageId })
        // The repeat is found by the same text: 200, the original, nothing written.
        const repeated = yield* server.request("POST", path, {
          token: user.body.token,
          json: { body: "other", clientMessageId }
        })
        expect(repeated.status, describeResponse(repeated)).toBe(200)
        expect(repeated.body.message.id).toBe(posted.body.message.id)

        const edited = yield* server.request("PATCH", `${path}/${posted.body.message.id}`, {
          token: user.body.token,
          json: { body: `${text}!` }
        })
        expect(edited.status, describeResponse(edited)).toBe(200)
        expect(edited.body.message.body).toBe(`${text}!`)
        expect(yield* eventData(stream, edited.body.event.seq)).toMatchObject({ body: `${text}!` })

        const workspace = yield* server.request("POST", `/api/projects/${projectId}/workspace/messages`, {
          token: user.body.token,
          json: { body: text, role: "worker", clientMessageId }
        })
        expect(workspace.status, describeResponse(workspace)).toBe(201)
        expect(workspace.body.message).toMatchObject({ body: text, clientMessageId, role: "worker" })

        const listed = yield* server.request("GET", `${path}?limit=10`, { token: user.body.token })
        expect(listed.body.items.map((m: any) => [m.body, m.clientMessageId])).toEqual([[`${text}!`, clientMessageId]])
      }
      // A name is trimmed; what is left of it is kept whole.
      const padded = yield* server.request("POST", "/api/projects", { token: f.alice.token, json: { name: "  😀  " } })
      expect(padded.status, describeResponse(padded)).toBe(201)
      expect(padded.body.name).toBe("😀")
    }))

  it.effect("bytes that are not UTF-8 in a JSON body arrive as U+FFFD, never as a lone surrogate", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const f = yield* Fixture
      const body = Buffer.concat([Buffer.from("{\"body\":\"a"), LONE_SURROGATE_BYTES, Buffer.from("b\"}")])
      const res = yield* rawRequest(server.url, [
        `POST /api/projects/${f.ids.projectId}/messages HTTP/1.1`,
        "Host: localhost",
        `Authorization: Bearer ${f.alice.token}`,
        "Content-Type: application/json"
      ], body)
      expect(res.status, describeResponse(res)).toBe(201)
      const stored: string = res.body.message.body
      expect(stored.isWellFormed()).toBe(true)
      expect(stored).toMatch(/^a\ufffd+b$/)
      expect(yield* sql`SELECT body FROM messages WHERE id = ${res.body.message.id}`).toEqual([{ body: stored }])
    }))

  it.effect("a property the payload does not declare is dropped, whatever text it holds", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const sql = yield* SqlClient.SqlClient
      const f = yield* Fixture
      const res = yield* server.request("POST", `/api/projects/${f.ids.projectId}/messages`, {
        token: f.alice.token,
        json: { body: "declared", note: "\u0000\ud800", "\udc00": "x" }
      })
      expect(res.status, describeResponse(res)).toBe(201)
      const [row] = yield* sql<{ data: any }>`SELECT data FROM event_outbox WHERE id = ${res.body.event.id}`
      expect(Object.keys(row!.data).sort()).toEqual(["authorId", "body", "messageId", "role"])
      expect(row!.data.body).toBe("declared")
    }))

  it.effect("a message body of exactly 10 000 characters is accepted (201) and stored whole; 10 001 is not", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const path = `/api/projects/${f.ids.projectId}/messages`
      const body = "a".repeat(9_999) + "z"
      const posted = yield* server.request("POST", path, { token: f.alice.token, json: { body } })
      expect(posted.status, describeResponse(posted)).toBe(201)
      expect(posted.body.message.body).toBe(body)
      const listed = yield* server.request("GET", path, { token: f.alice.token })
      expect(listed.body.items[0].id).toBe(posted.body.message.id)
      expect(listed.body.items[0].body).toHaveLength(10_000)

      const rejected = yield* server.request("POST", path, { token: f.alice.token, json: { body: body + "!" } })
      expectJsonError(rejected, { status: 400, field: "body" })
      const after = yield* server.request("GET", path, { token: f.alice.token })
      expect(after.body).toEqual(listed.body)
    }))

  it.effect("a one-character body and a 200-character clientMessageId are accepted", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const posted = yield* server.request("POST", `/api/projects/${f.ids.projectId}/messages`, {
        token: f.alice.token,
        json: { body: "x", clientMessageId: "c".repeat(200) }
      })
      expect(posted.status, describeResponse(posted)).toBe(201)
      expect(posted.body.message.clientMessageId).toBe("c".repeat(200))
    }))

  it.effect("an edit to exactly 10 000 characters is accepted; 10 001 leaves the message unchanged", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const path = `/api/projects/${f.ids.projectId}/messages/${f.ids.messageId}`
      const body = "e".repeat(10_000)
      const edited = yield* server.request("PATCH", path, { token: f.alice.token, json: { body } })
      expect(edited.status, describeResponse(edited)).toBe(200)
      expect(edited.body.message.body).toBe(body)

      const rejected = yield* server.request("PATCH", path, { token: f.alice.token, json: { body: body + "e" } })
      expectJsonError(rejected, { status: 400, field: "body" })
      const listed = yield* server.request("GET", `/api/projects/${f.ids.projectId}/messages?limit=200`, {
        token: f.alice.token
      })
      const message = listed.body.items.find((m: any) => m.id === f.ids.messageId)
      expect(message.body).toBe(body)
    }))

  it.effect("a workspace message of exactly 10 000 characters, and each role, are accepted", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const path = `/api/projects/${f.ids.projectId}/workspace/messages`
      const long = yield* server.request("POST", path, { token: f.alice.token, json: { body: "w".repeat(10_000) } })
      expect(long.status, describeResponse(long)).toBe(201)
      expect(long.body.message.role).toBe("user")
      for (const role of ["user", "worker"] as const) {
        const posted = yield* server.request("POST", path, { token: f.alice.token, json: { body: role, role } })
        expect(posted.status, describeResponse(posted)).toBe(201)
        expect(posted.body.message.role).toBe(role)
        expect(posted.body.message.scope).toBe("workspace")
      }
    }))

  it.effect("a name of exactly 200 characters is accepted for a project and a user", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const name = "p".repeat(200)
      const project = yield* server.request("POST", "/api/projects", { token: f.alice.token, json: { name } })
      expect(project.status, describeResponse(project)).toBe(201)
      expect(project.body.name).toBe(name)
      const user = yield* server.request("POST", "/api/admin/users", { token: ADMIN_TOKEN, json: { name } })
      expect(user.status, describeResponse(user)).toBe(201)
      expect(user.body.name).toBe(name)
      const me = yield* server.request("GET", "/api/me", { token: user.body.token })
      expect(me.status).toBe(200)
      expect(me.body.id).toBe(user.body.id)
    }))

  it.effect("limit=1 and limit=200 are accepted", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      for (const scope of ["messages", "workspace/messages"]) {
        const path = `/api/projects/${f.ids.projectId}/${scope}`
        const max = yield* server.request("GET", `${path}?limit=200`, { token: f.alice.token })
        expect(max.status, describeResponse(max)).toBe(200)
        expect(max.body.items.length).toBeGreaterThan(1)
        expect(max.body.nextCursor).toBeNull()
        const one = yield* server.request("GET", `${path}?limit=1`, { token: f.alice.token })
        expect(one.status, describeResponse(one)).toBe(200)
        expect(one.body.items).toHaveLength(1)
        expect(one.body.items[0]).toEqual(max.body.items[0])
        expect(typeof one.body.nextCursor).toBe("string")
      }
    }))

  it.effect("limit=200 returns 200 of 201 messages, and the nextCursor the last one", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const project = yield* server.request("POST", "/api/projects", { token: f.alice.token, json: { name: "many" } })
      expect(project.status).toBe(201)
      const path = `/api/projects/${project.body.id}/messages`
      yield* Effect.forEach(Array.from({ length: 201 }, (_, i) => i), (i) =>
        Effect.map(server.request("POST", path, { token: f.alice.token, json: { body: `m${i}` } }), (res) =>
          expect(res.status).toBe(201)), { concurrency: 8, discard: true })
      const first = yield* server.request("GET", `${path}?limit=200`, { token: f.alice.token })
      expect(first.status, describeResponse(first)).toBe(200)
      expect(first.body.items).toHaveLength(200)
      expect(typeof first.body.nextCursor).toBe("string")
      const rest = yield* server.request("GET", `${path}?limit=200&before=${first.body.nextCursor}`, {
        token: f.alice.token
      })
      expect(rest.status, describeResponse(rest)).toBe(200)
      expect(rest.body.items).toHaveLength(1)
      expect(rest.body.nextCursor).toBeNull()
      const ids = new Set([...first.body.items, ...rest.body.items].map((m: any) =>
        m.id
      ))
      expect(ids.size).toBe(201)
    }))

  it.effect("a chunked body under the size limit is accepted (the control of the streamed 413 cases)", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const path = `/api/projects/${f.ids.projectId}/messages`
      const res = yield* streamedRequest(server.url, "POST", path, f.alice.token, 10_000)
      expect(res.status, describeResponse(res)).toBe(201)
      expect(res.body.message.body).toBe("x".repeat(10_000))
      const tooLong = yield* streamedRequest(server.url, "POST", path, f.alice.token, 10_001)
      expectJsonError(tooLong, { status: 400, field: "body" })
    }))

  it.effect("paging with the returned nextCursor walks every message once, newest first", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const f = yield* Fixture
      const project = yield* server.request("POST", "/api/projects", { token: f.alice.token, json: { name: "paging" } })
      expect(project.status).toBe(201)
      for (const scope of ["messages", "workspace/messages"]) {
        const path = `/api/projects/${project.body.id}/${scope}`
        const posted: Array<string> = []
        for (let i = 0; i < 5; i++) {
          const res = yield* server.request("POST", path, { token: f.alice.token, json: { body: `m${i}` } })
          expect(res.status).toBe(201)
          posted.push(res.body.message.id)
        }
        const pages: Array<Array<string>> = []
        let query = "?limit=2"
        for (let guard = 0; guard < 10; guard++) {
          const page = yield* server.request("GET", path + query, { token: f.alice.token })
          expect(page.status, describeResponse(page)).toBe(200)
          pages.push(page.body.items.map((m: any) => m.id))
          if (page.body.nextCursor === null) break
          expect(page.body.nextCursor).toMatch(/^[1-9][0-9]*$/)
          query = `?limit=2&before=${page.body.nextCursor}`
        }
        expect(pages.map((p) => p.length)).toEqual([2, 2, 1])
        expect(pages.flat()).toEqual([...posted].reverse())
      }
    }))
})
