/**
 * `HEAD` on the three SSE paths (SPEC §5, "Resume"): it answers the status and headers a `GET`
 * would — 200 with the SSE headers, or the GET's 400, 401 or 404 — with no body, and it opens
 * nothing and writes nothing: no connection in the hub (`herald_sse_connections` stays put) and no
 * cursor base (`stream_cursors` stays put). Both ways a request can be served are checked: the SSE
 * door below the HTTP app (what the server does) and the HTTP app itself (the door unhung).
 */
import { SqlClient } from "@effect/sql"
import { expect, layer } from "@effect/vitest"
import { Events } from "@herald/domain"
import { Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import * as net from "node:net"
import { addMember, createProject, eventually } from "./support/HttpTesting.js"
import { fetchSse, sseConnectionsGauge, withoutSseDoor } from "./support/SseTesting.js"
import { TestServer, TestServerLive } from "./support/TestServer.js"

// `layer` rather than `it.layer`: the same function, but only its signature accepts this option.
const live = { excludeTestServices: true } as const

interface Answer {
  readonly status: number
  readonly headers: Record<string, string>
}

/**
 * Headers that are not the answer's: the date; the framing of a body (`transfer-encoding`), which a
 * HEAD may leave out (RFC 9110, 9.3.2); and the connection's own (`connection`, `keep-alive`): Node
 * closes the connection after any HEAD answered with a Content-Length, and says so.
 */
const NOT_COMPARED = new Set(["date", "transfer-encoding", "connection", "keep-alive"])

const answerOf = (res: { readonly status: number; readonly headers: Headers }): Answer => {
  const headers: Record<string, string> = {}
  res.headers.forEach((value, name) => {
    if (!NOT_COMPARED.has(name)) headers[name] = value
  })
  return { status: res.status, headers }
}

/** A GET, read up to its first bytes (an SSE response is then aborted). */
const getAnswer = (path: string, headers: Record<string, string>) =>
  Effect.flatMap(
    TestServer,
    (server) => Effect.map(fetchSse(server.url, path, { headers, until: (text) => text.length > 0 }), answerOf)
  )

const headAnswer = (path: string, headers: Record<string, string>) =>
  Effect.flatMap(TestServer, (server) =>
    Effect.promise(async () => {
      const res = await fetch(server.url + path, {
        method: "HEAD",
        headers: { accept: "text/event-stream", ...headers }
      })
      return answerOf(res)
    }))

/**
 * A HEAD on a socket of its own (`Connection: close`): everything the server sent until it closed
 * the connection, or what it had sent when `ms` passed without it closing.
 */
const rawHead = (path: string, headers: Record<string, string>, ms = 3_000) =>
  Effect.flatMap(
    TestServer,
    (server) =>
      Effect.promise(() =>
        new Promise<{ readonly text: string; readonly closed: boolean }>((resolve) => {
          const url = new URL(server.url)
          const socket = net.connect(Number(url.port), url.hostname)
          let text = ""
          const timer = setTimeout(() => {
            socket.destroy()
            resolve({ text, closed: false })
          }, ms)
          socket.setEncoding("utf8")
          socket.on("data", (chunk) => (text += chunk))
          socket.on("close", () => {
            clearTimeout(timer)
            resolve({ text, closed: true })
          })
          socket.on("error", () => undefined)
          const lines = Object.entries({ host: url.host, connection: "close", ...headers })
            .map(([k, v]) => `${k}: ${v}\r\n`)
            .join("")
          socket.write(`HEAD ${path} HTTP/1.1\r\n${lines}\r\n`)
        })
      )
  )

const cursorBases = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) => Effect.orDie(Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM stream_cursors`, ([r]) => r!.n))
)

/**
 * alice owns a project, bob is in another one only; a cursor of alice's from a GET on
 * `/api/stream` (its heads frame), for HEADs that resume.
 */
const fixture = Effect.gen(function*() {
  const server = yield* TestServer
  const alice = yield* server.user("alice")
  const bob = yield* server.user("bob")
  const carol = yield* server.user("carol")
  const projectId = (yield* createProject(alice, "heads")).id
  yield* addMember(alice, projectId, carol)
  yield* createProject(bob, "bob's")
  const first = yield* fetchSse(server.url, "/api/stream", {
    headers: { authorization: `Bearer ${alice.token}` },
    until: (text) => /^id: (\S+)\nevent: heads$/m.test(text)
  })
  const cursor = /^id: (\S+)\nevent: heads$/m.exec(first.text)![1]!
  return { alice, bob, carol, projectId, cursor }
})

const bearer = (user: { readonly token: string }) => ({ authorization: `Bearer ${user.token}` })

layer(TestServerLive, live)("HEAD on the SSE paths", (it) => {
  it.scoped(
    "answers the status and headers the GET answers, on all three paths, both ways",
    () =>
      Effect.gen(function*() {
        const { alice, bob, carol, cursor, projectId } = yield* fixture
        const project = `/api/projects/${projectId}/stream`
        const workspace = `/api/projects/${projectId}/workspace/stream`
        const unknown = randomUUID()
        const cases: ReadonlyArray<{
          readonly what: string
          readonly path: string
          readonly headers: Record<string, string>
          readonly status: number
        }> = [
          { what: "project stream", path: project, headers: bearer(alice), status: 200 },
          { what: "project stream, ?after=1", path: `${project}?after=1`, headers: bearer(alice), status: 200 },
          {
            what: "project stream, ?access_token=",
            path: `${project}?access_token=${alice.token}`,
            headers: {},
            status: 200
          },
          { what: "workspace stream", path: workspace, headers: bearer(carol), status: 200 },
          {
            what: "workspace stream, Last-Event-ID",
            path: workspace,
            headers: { ...bearer(alice), "last-event-id": "0" },
            status: 200
          },
          { what: "multiplexed", path: "/api/stream", headers: bearer(alice), status: 200 },
          {
            what: "multiplexed, ?streams=",
            path: `/api/stream?streams=${Events.projectStream(projectId)}`,
            headers: bearer(alice),
            status: 200
          },
          { what: "multiplexed, a cursor", path: `/api/stream?cursor=${cursor}`, headers: bearer(alice), status: 200 },
          {
            what: "multiplexed, Last-Event-ID",
            path: "/api/stream",
            headers: { ...bearer(alice), "last-event-id": cursor },
            status: 200
          },
          { what: "project stream, no token", path: project, headers: {}, status: 401 },
          { what: "workspace stream, no token", path: workspace, headers: {}, status: 401 },
          { what: "multiplexed, no token", path: "/api/stream", headers: {}, status: 401 },
          {
            what: "multiplexed, a bad token",
            path: "/api/stream",
            headers: { authorization: "Bearer nope" },
            status: 401
          },
          { what: "project stream, a non-member", path: project, headers: bearer(bob), status: 404 },
          { what: "workspace stream, a non-member", path: workspace, headers: bearer(bob), status: 404 },
          {
            what: "project stream, an unknown project",
            path: `/api/projects/${unknown}/stream`,
            headers: bearer(bob),
            status: 404
          },
          {
            what: "multiplexed, a stream not visible",
            path: `/api/stream?streams=${Events.projectStream(projectId)}`,
            headers: bearer(bob),
            status: 404
          },
          { what: "project stream, ?after=abc", path: `${project}?after=abc`, headers: bearer(alice), status: 400 },
          { what: "project stream, ?after=-1", path: `${project}?after=-1`, headers: bearer(alice), status: 400 },
          {
            what: "workspace stream, Last-Event-ID: x",
            path: workspace,
            headers: { ...bearer(alice), "last-event-id": "x" },
            status: 400
          },
          {
            what: "multiplexed, a malformed cursor",
            path: "/api/stream?cursor=garbage",
            headers: bearer(alice),
            status: 400
          },
          {
            what: "multiplexed, another user's cursor",
            path: `/api/stream?cursor=${cursor}`,
            headers: bearer(bob),
            status: 400
          },
          { what: "project stream, not a uuid", path: "/api/projects/nope/stream", headers: bearer(alice), status: 400 }
        ]
        const runAll = (way: string) =>
          Effect.forEach(cases, (c) =>
            Effect.gen(function*() {
              const get = yield* getAnswer(c.path, c.headers)
              expect(get.status, `${way}: GET, ${c.what}`).toBe(c.status)
              const head = yield* headAnswer(c.path, c.headers)
              expect({ what: c.what, ...head }, `${way}: HEAD, ${c.what}`).toEqual({ what: c.what, ...get })
              if (c.status === 200) {
                expect(head.headers["content-type"]).toBe("text/event-stream")
                expect(head.headers["cache-control"]).toBe("no-cache, no-transform")
                expect(head.headers["x-accel-buffering"]).toBe("no")
              }
            }), { discard: true })

        yield* runAll("the door")
        yield* Effect.scoped(Effect.zipRight(withoutSseDoor, runAll("the HTTP app")))
      }),
    60_000
  )

  it.scoped("a HEAD's answer is its head alone, and the response ends", () =>
    Effect.gen(function*() {
      const { alice, projectId } = yield* fixture
      for (
        const path of [
          `/api/projects/${projectId}/stream`,
          `/api/projects/${projectId}/workspace/stream`,
          "/api/stream"
        ]
      ) {
        for (const way of ["the door", "the HTTP app"] as const) {
          const { closed, text } = way === "the door"
            ? yield* rawHead(path, bearer(alice))
            : yield* Effect.scoped(Effect.zipRight(withoutSseDoor, rawHead(path, bearer(alice))))
          expect(closed, `${way}, ${path}: the server ended the response and closed the connection`).toBe(true)
          expect(text, `${way}, ${path}`).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
          expect(text, `${way}, ${path}`).toMatch(/^content-type: text\/event-stream\r$/m)
          // As on a GET: never a Connection header (HTTP/2 forbids it).
          expect(text, `${way}, ${path}`).not.toMatch(/^connection:/im)
          // Everything after the head's blank line would be a body.
          expect(text.indexOf("\r\n\r\n"), `${way}, ${path}: ${JSON.stringify(text)}`).toBe(text.length - 4)
        }
      }
    }))
})

// A server of its own: nothing another test opened is still closing while the gauge is read.
layer(TestServerLive, live)("HEAD opens and writes nothing", (it) => {
  it.scoped("30 HEADs on each path open no connection and write no cursor base", () =>
    Effect.gen(function*() {
      const { alice, cursor, projectId } = yield* fixture
      // The fixture's GET has ended: wait until the hub has let it go.
      yield* eventually(
        "no SSE connection open",
        Effect.map(sseConnectionsGauge, (n) => Option.liftPredicate(n, (x) => x === 0))
      )
      const bases = yield* cursorBases
      const paths = [
        `/api/projects/${projectId}/stream`,
        `/api/projects/${projectId}/workspace/stream`,
        "/api/stream",
        `/api/stream?cursor=${cursor}`
      ]
      const heads = (way: string) =>
        Effect.forEach(paths, (path) =>
          Effect.forEach(Array.from({ length: 30 }), () =>
            Effect.map(headAnswer(path, bearer(alice)), (res) =>
              expect(res.status, `${way}: ${path}`).toBe(200)), {
            concurrency: 5,
            discard: true
          }), { discard: true })
      yield* heads("the door")
      yield* Effect.scoped(Effect.zipRight(withoutSseDoor, heads("the HTTP app")))
      // Let anything a HEAD might have started settle before looking.
      yield* Effect.sleep("200 millis")
      expect({ herald_sse_connections: yield* sseConnectionsGauge, stream_cursors: yield* cursorBases }).toEqual({
        herald_sse_connections: 0,
        stream_cursors: bases
      })
    }))
})
