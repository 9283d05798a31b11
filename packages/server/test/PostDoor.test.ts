import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { NodeServer } from "../src/http/NodeServer.js"
import { chunkedRequest } from "./support/ChunkedRequest.js"
import { type Response, TestServer, TestServerLive } from "./support/TestServer.js"

/**
 * The post door (http/PostDoor.ts) answers message posts below the HTTP app. A client must not be
 * able to tell which of the two answered: every post below is sent twice, once as clients send
 * it (JSON with a Content-Length: the door takes it) and once chunked (no Content-Length: the door
 * leaves it to the HTTP app), and both answers must be the same status and the same body — ids
 * and times aside — with the same effect on the stream.
 */

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/

/** The body with what differs between two posts (new ids, times, the next seq, the twin's key) replaced by its kind. */
const shape = (body: unknown, path: Array<string> = []): unknown => {
  if (Array.isArray(body)) return body.map((b) => shape(b, path))
  if (body !== null && typeof body === "object") {
    return Object.fromEntries(Object.entries(body).map(([k, v]) => [k, shape(v, [...path, k])]))
  }
  if (typeof body === "string" && ID.test(body)) return "<id>"
  if (typeof body === "string" && TIME.test(body)) return "<time>"
  if (typeof body === "number" && path.at(-1) === "seq") return "<seq>"
  if (path.at(-1) === "clientMessageId") return "<twin's key>"
  return body
}

it.layer(TestServerLive)("the post door", (it) => {
  it.effect("answers every kind of post exactly as the HTTP app does", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      // Which requests a door took: the POSTs below without a Content-Length must not be among them.
      const node = yield* NodeServer
      let taken = 0
      node.doors.forEach((door, i) => {
        node.doors[i] = (req, res) => {
          const took = door(req, res)
          if (took && req.method === "POST") taken++
          return took
        }
      })
      const alice = yield* server.user("alice")
      const bob = yield* server.user("bob")
      const project = yield* alice.api.projects.create({ payload: { name: "doors" } })
      const bobs = yield* bob.api.projects.create({ payload: { name: "not alice's" } })
      const project_ = `/api/projects/${project.id}`
      // Each twin has its own clientMessageId, so each replays its own first post.
      const cases: ReadonlyArray<
        { what: string; path: string; token?: string; raw: string | ((twin: string) => string) }
      > = [
        { what: "a post", path: `${project_}/messages`, raw: `{"body": "hello"}` },
        { what: "extra keys", path: `${project_}/messages`, raw: `{"body": "hello", "extra": 1}` },
        { what: "a workspace post", path: `${project_}/workspace/messages`, raw: `{"body": "w", "role": "worker"}` },
        {
          what: "a clientMessageId",
          path: `${project_}/messages`,
          raw: (t) => `{"body": "k", "clientMessageId": "${t}"}`
        },
        { what: "its replay", path: `${project_}/messages`, raw: (t) => `{"body": "k", "clientMessageId": "${t}"}` },
        { what: "a body that is not JSON", path: `${project_}/messages`, raw: `{"body": ` },
        { what: "an empty body", path: `${project_}/messages`, raw: `` },
        { what: "a payload of the wrong type", path: `${project_}/messages`, raw: `{"body": 5}` },
        { what: "an empty message", path: `${project_}/messages`, raw: `{"body": ""}` },
        { what: "a bad role", path: `${project_}/workspace/messages`, raw: `{"body": "w", "role": "boss"}` },
        { what: "a project id that is no uuid", path: `/api/projects/nope/messages`, raw: `{"body": "x"}` },
        { what: "another user's project", path: `/api/projects/${bobs.id}/messages`, raw: `{"body": "x"}` },
        { what: "an unknown token", path: `${project_}/messages`, token: "hrld_nobody", raw: `{"body": "x"}` },
        { what: "bad JSON and a bad token", path: `/api/projects/nope/messages`, token: "nope", raw: `{"` }
      ]
      for (const c of cases) {
        const token = c.token ?? alice.token
        const raw = (twin: string) => typeof c.raw === "string" ? c.raw : c.raw(twin)
        const viaDoor: Response = yield* server.request("POST", c.path, { token, raw: raw("door") })
        const viaApp = yield* chunkedRequest(server.url, "POST", c.path, token, raw("app"))
        expect({ what: c.what, status: viaDoor.status, body: shape(viaDoor.body) }).toEqual({
          what: c.what,
          status: viaApp.status,
          body: shape(viaApp.body)
        })
        expect(viaDoor.headers.get("content-type")).toBe(viaApp.headers.get("content-type"))
      }
      expect(taken).toBe(cases.length)
      // Both kinds of post landed on the stream, one seq each, in order.
      const page = yield* alice.api.messages.list({ path: { projectId: project.id }, urlParams: {} })
      expect(page.items.map((m) => m.body)).toEqual(["k", "k", "hello", "hello", "hello", "hello"])
      expect(page.items.map((m) => m.clientMessageId)).toEqual([
        "app",
        "door",
        undefined,
        undefined,
        undefined,
        undefined
      ])
    }))
})
