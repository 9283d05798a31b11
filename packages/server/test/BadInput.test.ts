/**
 * Bad input on every endpoint of the HTTP API, over real HTTP (docs/http.md): every malformed request
 * answers a JSON error with `_tag` and `message` (400 naming the field, 401, 413), and writes
 * nothing — text PostgreSQL cannot store (a NUL, an unpaired surrogate) included, in every text
 * field and parameter (domain Text.ts). The positive boundaries are checked too, so the rejections
 * cannot pass vacuously.
 */
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as net from "node:net"
import { MAX_BODY_BYTES } from "../src/http/Middleware.js"
import { chunkedRequest } from "./support/ChunkedRequest.js"
import { ADMIN_TOKEN, type RequestOptions, type Response, TestServer, TestServerLive } from "./support/TestServer.js"

// ---------------------------------------------------------------------------------------------
// Fixture: an owner (alice), a member (bob), a non-member (carol), a project with one message
// and one workspace message — all made through the API.

interface FixtureShape {
  readonly alice: { readonly id: string; readonly token: string }
  readonly bob: { readonly id: string; readonly token: string }
  readonly carol: { readonly id: string; readonly token: string }
  /** Values for the path parameters of a well-formed request. */
  readonly ids: {
    readonly projectId: string
    readonly messageId: string
    /** bob: a member of the project (only ever used with a request that must be rejected). */
    readonly userId: string
  }
}

class Fixture extends Context.Tag("test/BadInputFixture")<Fixture, FixtureShape>() {}

const FixtureLive = Layer.effect(
  Fixture,
  Effect.gen(function*() {
    const server = yield* TestServer
    const alice = yield* server.user("alice")
    const bob = yield* server.user("bob")
    const carol = yield* server.user("carol")
    const project = yield* server.request("POST", "/api/projects", { token: alice.token, json: { name: "fixture" } })
    expect(project.status).toBe(201)
    const projectId: string = project.body.id
    const added = yield* server.request("POST", `/api/projects/${projectId}/members`, {
      token: alice.token,
      json: { userId: bob.id }
    })
    expect(added.status).toBe(201)
    const posted = yield* server.request("POST", `/api/projects/${projectId}/messages`, {
      token: alice.token,
      json: { body: "the original body" }
    })
    expect(posted.status).toBe(201)
    const workspace = yield* server.request("POST", `/api/projects/${projectId}/workspace/messages`, {
      token: alice.token,
      json: { body: "a private note" }
    })
    expect(workspace.status).toBe(201)
    return { alice, bob, carol, ids: { projectId, messageId: posted.body.message.id, userId: bob.id } }
  })
)

const TestLive = FixtureLive.pipe(Layer.provideMerge(TestServerLive))

// ---------------------------------------------------------------------------------------------
// Helpers

const UNKNOWN_UUID = "7d8f2a51-1c7b-4e0a-9b3e-5f6a7b8c9d0e"

/** Path parameter values that are not UUIDs. */
const BAD_IDS: ReadonlyArray<readonly [string, string]> = [
  ["a word", "not-a-uuid"],
  ["a number", "12345"],
  ["a uuid with an extra character", `${UNKNOWN_UUID}0`],
  ["a uuid one character short", UNKNOWN_UUID.slice(0, -1)],
  ["a uuid-shaped string of non-hex characters", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"],
  ["an SQL fragment", encodeURIComponent("' OR '1'='1")],
  // A NUL, which PostgreSQL cannot store (domain Text.ts).
  ["a NUL character", "%00"],
  ["a uuid followed by a NUL character", `${UNKNOWN_UUID}%00`]
]

/**
 * Path parameter values that are not UTF-8: the (WTF-8) bytes of a lone surrogate, the only way a
 * client can put one in a URL. The router cannot decode the path, so no route matches: a JSON 404
 * before any handler runs (nothing can reach the database), not a 400 naming the parameter.
 */
const UNDECODABLE_IDS: ReadonlyArray<readonly [string, string]> = [
  ["the bytes of a lone high surrogate", "%ED%A0%80"],
  ["a uuid followed by the bytes of a lone low surrogate", `${UNKNOWN_UUID}%ED%B0%80`]
]

/**
 * Text PostgreSQL cannot store (domain Text.ts): its `text` and `jsonb` refuse NUL and
 * unpaired surrogates, so each must be a 400 naming the field, never a 500 from the database.
 */
const UNSTORABLE: ReadonlyArray<readonly [string, string]> = [
  ["a NUL character", "\u0000"],
  ["a NUL character inside text", "hello\u0000world"],
  ["a lone high surrogate", "\ud800"],
  ["a lone high surrogate inside text", "hi \ud83d there"],
  ["a lone low surrogate", "\udc00"],
  ["a lone low surrogate after text", "ok\ude00"],
  ["a surrogate pair in the wrong order", "\ude00\ud83d"],
  ["two high surrogates", "\ud83d\ud83d"]
]

/** The UNSTORABLE texts in one field of a payload that is otherwise well-formed. */
const unstorableCases = (
  field: string,
  payload: (text: string) => unknown
): ReadonlyArray<readonly [string, unknown, string | undefined]> =>
  UNSTORABLE.map(([description, text]) => [`${description} in ${field}`, payload(text), field] as const)

/**
 * The same in a query parameter: `%00`, and the WTF-8 bytes of a lone surrogate (which arrive as
 * U+FFFD, since URL decoding cannot produce a lone surrogate). `valid` is a good value to append to.
 */
const unstorableQueries = (param: string, valid: string, prefix = ""): ReadonlyArray<readonly [string, string]> => [
  [`${prefix}${param}=%00`, param],
  [`${prefix}${param}=${valid}%00`, param],
  [`${prefix}${param}=%00${valid}`, param],
  [`${prefix}${param}=%ED%A0%80`, param],
  [`${prefix}${param}=${valid}%ED%B0%80`, param]
]

/** Substitutes `:param` placeholders from the fixture, with overrides. */
const fill = (template: string, f: FixtureShape, overrides: Record<string, string> = {}) =>
  template.replace(/:(\w+)/g, (_, key: string) => overrides[key] ?? (f.ids as Record<string, string>)[key]!)

const isJson = (res: Response) => (res.headers.get("content-type") ?? "").includes("application/json")

/**
 * Whether a 400 names the field. With schema `issues` (an `HttpApiDecodeError`), an issue's `path`
 * must hold it — the message alone would not do, as it prints the whole schema, every field's name
 * included; otherwise the error's `field` or its message must name it.
 */
const namesField = (body: any, field: string): boolean =>
  Array.isArray(body?.issues)
    ? body.issues.some((issue: any) => Array.isArray(issue?.path) && issue.path.includes(field))
    : body?.field === field || (typeof body?.message === "string" && body.message.includes(field))

const describeResponse = (res: Response) => `${res.status} ${JSON.stringify(res.body)}`

/** A JSON error with a non-empty `_tag` and `message`, of the given status (and tag, and field). */
const expectJsonError = (res: Response, expected: ExpectedError) => {
  const what = describeResponse(res)
  expect(res.status, what).toBe(expected.status)
  expect(isJson(res), `content-type of ${what}`).toBe(true)
  expect(typeof res.body, what).toBe("object")
  expect(res.body, what).not.toBeNull()
  expect(typeof res.body._tag, what).toBe("string")
  expect(res.body._tag.length, what).toBeGreaterThan(0)
  expect(typeof res.body.message, what).toBe("string")
  expect(res.body.message.length, what).toBeGreaterThan(0)
  if (expected.tag !== undefined) expect(res.body._tag, what).toBe(expected.tag)
  if (expected.field !== undefined) {
    expect(namesField(res.body, expected.field), `the response should name "${expected.field}": ${what}`).toBe(true)
  }
}

interface ExpectedError {
  readonly status: number
  readonly tag?: string
  readonly field?: string
}

/**
 * Everything a request could write: the rows of every table (through SQL, including the project's
 * events: stream heads and outbox rows) and what the API lists (through GET).
 */
const snapshot = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const server = yield* TestServer
  const f = yield* Fixture
  const get = (path: string) =>
    Effect.map(server.request("GET", path, { token: f.alice.token }), (res) => {
      expect(res.status, `GET ${path}: ${describeResponse(res)}`).toBe(200)
      return res.body
    })
  return {
    users: yield* sql`SELECT id, name FROM users ORDER BY id`,
    tokens: yield* sql`SELECT count(*)::int AS n FROM api_tokens`,
    projects: yield* sql`SELECT id, name, owner_id FROM projects ORDER BY id`,
    members: yield* sql`SELECT project_id, user_id, role FROM project_members ORDER BY project_id, user_id`,
    messages:
      yield* sql`SELECT id, scope, role, body, client_message_id, edited_at, deleted_at FROM messages ORDER BY position`,
    streams: yield* sql`SELECT stream_id, last_seq::text FROM event_streams ORDER BY stream_id`,
    outbox: yield* sql`SELECT stream_id, seq::text, type FROM event_outbox ORDER BY position`,
    // (event_log is left out: the background materializer fills it from the outbox compared above)
    apiProjects: yield* get("/api/projects"),
    apiMessages: yield* get(`/api/projects/${f.ids.projectId}/messages?limit=200`),
    apiWorkspace: yield* get(`/api/projects/${f.ids.projectId}/workspace/messages?limit=200`),
    apiMe: yield* get("/api/me")
  }
})

// ---------------------------------------------------------------------------------------------
// The endpoints

type Auth = "user" | "admin"

interface Endpoint {
  readonly method: string
  readonly path: string
  readonly auth: Auth
  /** A well-formed payload, for the endpoints that take one. */
  readonly payload?: (f: FixtureShape) => unknown
  /** Bad payloads: [description, payload, the field it is about]. */
  readonly badPayloads?: ReadonlyArray<readonly [string, unknown, string | undefined]>
  /** A well-formed query string, for the endpoints that need one (without the `?`). */
  readonly query?: string
  /** Bad query strings (in place of `query`): [query, the field it is about]. */
  readonly badQueries?: ReadonlyArray<readonly [string, string]>
}

const nameCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
  ["a missing name", {}, "name"],
  ["an empty name", { name: "" }, "name"],
  ["a name of only spaces", { name: "   " }, "name"],
  ["a name of 201 characters", { name: "n".repeat(201) }, "name"],
  ["a number as name", { name: 42 }, "name"],
  ["an array as name", { name: ["alice"] }, "name"],
  ["null as name", { name: null }, "name"],
  ["an object as name", { name: { first: "a" } }, "name"],
  ["a boolean as name", { name: true }, "name"],
  ...unstorableCases("name", (name) => ({ name })),
  ["a NUL character between spaces as name (trimmed first)", { name: "  \u0000  " }, "name"]
]

const bodyCases = (field = "body"): ReadonlyArray<readonly [string, unknown, string | undefined]> => [
  ["a missing body", {}, field],
  ["an empty body", { body: "" }, field],
  ["a body of 10 001 characters", { body: "b".repeat(10_001) }, field],
  ["a body of 20 000 characters", { body: "b".repeat(20_000) }, field],
  ["a number as body", { body: 42 }, field],
  ["an array as body", { body: ["hello"] }, field],
  ["null as body", { body: null }, field],
  ["an object as body", { body: { text: "hello" } }, field],
  ["a boolean as body", { body: false }, field],
  ...unstorableCases(field, (body) => ({ body })),
  ["a NUL character at the end of a body of 10 000 characters", { body: "b".repeat(9_999) + "\u0000" }, field]
]

const clientMessageIdCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
  ["an empty clientMessageId", { body: "x", clientMessageId: "" }, "clientMessageId"],
  ["a clientMessageId of 201 characters", { body: "x", clientMessageId: "c".repeat(201) }, "clientMessageId"],
  ["a number as clientMessageId", { body: "x", clientMessageId: 7 }, "clientMessageId"],
  ["null as clientMessageId", { body: "x", clientMessageId: null }, "clientMessageId"],
  ["an array as clientMessageId", { body: "x", clientMessageId: ["c1"] }, "clientMessageId"],
  ...unstorableCases("clientMessageId", (clientMessageId) => ({ body: "x", clientMessageId })),
  [
    "a good body and a NUL character in clientMessageId",
    { body: "hello 😀", clientMessageId: "c\u0000" },
    "clientMessageId"
  ]
]

const userIdCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
  ["a missing userId", {}, "userId"],
  ["an empty userId", { userId: "" }, "userId"],
  ["a userId that is not a uuid", { userId: "bob" }, "userId"],
  ["a number as userId", { userId: 42 }, "userId"],
  ["null as userId", { userId: null }, "userId"],
  ["an array as userId", { userId: [UNKNOWN_UUID] }, "userId"],
  ["a NUL character as userId", { userId: "\u0000" }, "userId"],
  ["a uuid followed by a NUL character as userId", { userId: `${UNKNOWN_UUID}\u0000` }, "userId"],
  ["a lone surrogate as userId", { userId: "\ud800" }, "userId"]
]

const roleCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
  ["an unknown role", { body: "x", role: "admin" }, "role"],
  ["the role owner (a member role, not an author role)", { body: "x", role: "owner" }, "role"],
  ["an empty role", { body: "x", role: "" }, "role"],
  ["a role in the wrong case", { body: "x", role: "USER" }, "role"],
  ["a number as role", { body: "x", role: 1 }, "role"],
  ["null as role", { body: "x", role: null }, "role"],
  ["an array as role", { body: "x", role: ["user"] }, "role"],
  ["a NUL character as role", { body: "x", role: "\u0000" }, "role"],
  ["a role followed by a NUL character", { body: "x", role: "user\u0000" }, "role"],
  ["a role followed by a lone surrogate", { body: "x", role: "worker\udc00" }, "role"]
]

const pageQueryCases: ReadonlyArray<readonly [string, string]> = [
  ["limit=0", "limit"],
  ["limit=-1", "limit"],
  ["limit=201", "limit"],
  ["limit=abc", "limit"],
  ["limit=1.5", "limit"],
  ["limit=", "limit"],
  ["limit=NaN", "limit"],
  ["limit=Infinity", "limit"],
  ["limit=1&limit=2", "limit"],
  ["before=abc", "before"],
  ["before=0", "before"],
  ["before=-1", "before"],
  ["before=1.5", "before"],
  ["before=", "before"],
  ["before=01", "before"],
  [`before=${UNKNOWN_UUID}`, "before"],
  ["before=1234567890123456789", "before"],
  [`before=${encodeURIComponent("1 OR 1=1")}`, "before"],
  ["limit=10&before=abc", "before"],
  ["limit=0&before=5", "limit"],
  ...unstorableQueries("limit", "10"),
  ...unstorableQueries("before", "5"),
  ...unstorableQueries("before", "5", "limit=10&")
]

const streamQueryCases: ReadonlyArray<readonly [string, string]> = unstorableQueries("after", "0")

const multiplexQueryCases: ReadonlyArray<readonly [string, string]> = [
  ["cursor=", "cursor"],
  ["cursor=not%20a%20cursor", "cursor"],
  [`cursor=${"A".repeat(1025)}`, "cursor"],
  ["cursor=AAAA", "cursor"],
  ["cursor=a&cursor=b", "cursor"],
  ["streams=", "streams"],
  ["streams=project%3Ax", "streams"],
  [`streams=room%3A${UNKNOWN_UUID}`, "streams"],
  [`streams=project%3A${UNKNOWN_UUID}%2C`, "streams"],
  ...unstorableQueries("cursor", "AAAA"),
  ...unstorableQueries("streams", `project:${UNKNOWN_UUID}`)
]

const historyQueryCases: ReadonlyArray<readonly [string, string]> = [
  ...unstorableQueries("type", "message.created"),
  ...unstorableQueries("after", "0"),
  ...unstorableQueries("limit", "10"),
  ...unstorableQueries("type", "message.created", "after=0&limit=10&")
]

const rangeQueryCases = (prefix = ""): ReadonlyArray<readonly [string, string]> => [
  ...unstorableQueries("from", "2026-01-01", prefix),
  ...unstorableQueries("to", "2026-01-01T00:00:00Z", prefix)
]

const ENDPOINTS: ReadonlyArray<Endpoint> = [
  {
    method: "POST",
    path: "/api/admin/users",
    auth: "admin",
    payload: () => ({ name: "dave" }),
    badPayloads: nameCases
  },
  { method: "GET", path: "/api/me", auth: "user" },
  {
    method: "POST",
    path: "/api/projects",
    auth: "user",
    payload: () => ({ name: "another project" }),
    badPayloads: nameCases
  },
  { method: "GET", path: "/api/projects", auth: "user" },
  { method: "GET", path: "/api/projects/:projectId", auth: "user" },
  {
    method: "POST",
    path: "/api/projects/:projectId/members",
    auth: "user",
    payload: (f) => ({ userId: f.carol.id }),
    badPayloads: userIdCases
  },
  { method: "DELETE", path: "/api/projects/:projectId/members/:userId", auth: "user" },
  {
    method: "POST",
    path: "/api/projects/:projectId/messages",
    auth: "user",
    payload: () => ({ body: "hello" }),
    badPayloads: [...bodyCases(), ...clientMessageIdCases]
  },
  { method: "GET", path: "/api/projects/:projectId/messages", auth: "user", badQueries: pageQueryCases },
  {
    method: "PATCH",
    path: "/api/projects/:projectId/messages/:messageId",
    auth: "user",
    payload: () => ({ body: "edited" }),
    badPayloads: bodyCases()
  },
  { method: "DELETE", path: "/api/projects/:projectId/messages/:messageId", auth: "user" },
  {
    method: "POST",
    path: "/api/projects/:projectId/workspace/messages",
    auth: "user",
    payload: () => ({ body: "hello", role: "worker" }),
    badPayloads: [...bodyCases(), ...roleCases, ...clientMessageIdCases]
  },
  { method: "GET", path: "/api/projects/:projectId/workspace/messages", auth: "user", badQueries: pageQueryCases },
  { method: "GET", path: "/api/projects/:projectId/members", auth: "user" },
  // The rest take no payload; their free strings are query parameters (none may reach
  // the database unchecked).
  { method: "GET", path: "/api/projects/:projectId/stream", auth: "user", badQueries: streamQueryCases },
  { method: "GET", path: "/api/projects/:projectId/workspace/stream", auth: "user", badQueries: streamQueryCases },
  { method: "GET", path: "/api/stream", auth: "user", badQueries: multiplexQueryCases },
  { method: "GET", path: "/api/projects/:projectId/events", auth: "user", badQueries: historyQueryCases },
  { method: "GET", path: "/api/projects/:projectId/workspace/events", auth: "user", badQueries: historyQueryCases },
  { method: "GET", path: "/api/projects/:projectId/analytics/summary", auth: "user", badQueries: rangeQueryCases() },
  {
    method: "GET",
    path: "/api/projects/:projectId/analytics/timeseries",
    auth: "user",
    query: "bucket=hour",
    badQueries: [
      ...unstorableQueries("bucket", "hour"),
      ...unstorableQueries("type", "message.created", "bucket=hour&"),
      ...rangeQueryCases("bucket=hour&")
    ]
  }
]

// ---------------------------------------------------------------------------------------------
// The cases, derived from the endpoints

interface Case {
  readonly name: string
  readonly path: (f: FixtureShape) => string
  readonly options: (f: FixtureShape) => RequestOptions
  readonly expected: ExpectedError
}

const credentials = (endpoint: Endpoint, f: FixtureShape): RequestOptions =>
  endpoint.auth === "admin" ? { token: ADMIN_TOKEN } : { token: f.alice.token }

const withPayload = (endpoint: Endpoint, f: FixtureShape): RequestOptions =>
  endpoint.payload === undefined
    ? credentials(endpoint, f)
    : { ...credentials(endpoint, f), json: endpoint.payload(f) }

const pathParams = (endpoint: Endpoint) => Array.from(endpoint.path.matchAll(/:(\w+)/g), (m) => m[1]!)

const casesOf = (endpoint: Endpoint): ReadonlyArray<Case> => {
  const cases: Array<Case> = []
  const wellFormedQuery = endpoint.query === undefined ? "" : `?${endpoint.query}`
  const path = (overrides: Record<string, string> = {}, query = wellFormedQuery) => (f: FixtureShape) =>
    fill(endpoint.path, f, overrides) + query

  // Path parameters that are not UUIDs: 400 naming the parameter. A well-formed unknown id is a
  // 404 (the control: the 400s come from the format, not from the lookup).
  for (const param of pathParams(endpoint)) {
    for (const [description, id] of BAD_IDS) {
      cases.push({
        name: `${param} is ${description} → 400`,
        path: path({ [param]: id }),
        options: (f) => withPayload(endpoint, f),
        expected: { status: 400, field: param }
      })
    }
    for (const [description, id] of UNDECODABLE_IDS) {
      cases.push({
        name: `${param} is ${description} → 404 (no route: the path is not UTF-8)`,
        path: path({ [param]: id }),
        options: (f) => withPayload(endpoint, f),
        expected: { status: 404, tag: "NotFound" }
      })
    }
    cases.push({
      name: `${param} is a well-formed unknown uuid → 404 (control)`,
      path: path({ [param]: UNKNOWN_UUID }),
      options: (f) => withPayload(endpoint, f),
      expected: { status: 404, tag: "NotFound" }
    })
  }

  // Payloads.
  if (endpoint.payload !== undefined) {
    for (const [description, json, field] of endpoint.badPayloads ?? []) {
      cases.push({
        name: `${description} → 400`,
        path: path(),
        options: (f) => ({ ...credentials(endpoint, f), json }),
        expected: field === undefined ? { status: 400 } : { status: 400, field }
      })
    }
    const whole: ReadonlyArray<readonly [string, RequestOptions]> = [
      ["malformed JSON {bad", { raw: "{bad" }],
      ["truncated JSON", { raw: "{\"name\": \"x\", \"body\": \"x\"" }],
      ["JSON followed by garbage", { raw: "{\"name\": \"x\", \"body\": \"x\"} trailing" }],
      ["an empty request body", { raw: "" }],
      ["no request body at all", {}],
      ["null as the payload", { json: null }],
      ["an array as the payload", { json: [endpoint.payload(emptyFixture)] }],
      ["a string as the payload", { json: "hello" }],
      ["a number as the payload", { json: 42 }],
      // JSON itself forbids an unescaped control character in a string.
      ["a raw NUL byte inside a JSON string", { raw: "{\"name\": \"a\u0000b\", \"body\": \"a\u0000b\"}" }]
    ]
    for (const [description, options] of whole) {
      cases.push({
        name: `${description} → 400`,
        path: path(),
        options: (f) => ({ ...credentials(endpoint, f), ...options }),
        expected: { status: 400 }
      })
    }
    // Over the size limit: 413 before anything is parsed.
    cases.push({
      name: `a body over ${MAX_BODY_BYTES} bytes → 413`,
      path: path(),
      options: (f) => ({
        ...credentials(endpoint, f),
        raw: JSON.stringify({ name: "x", userId: f.carol.id, body: "x".repeat(MAX_BODY_BYTES) })
      }),
      expected: { status: 413, tag: "PayloadTooLarge" }
    })
  }

  // Query parameters.
  for (const [query, field] of endpoint.badQueries ?? []) {
    cases.push({
      name: `?${query} → 400`,
      path: path({}, `?${query}`),
      options: (f) => credentials(endpoint, f),
      expected: { status: 400, field }
    })
  }

  // Credentials: the request is otherwise well-formed.
  const noAuth = (f: FixtureShape): RequestOptions => {
    const { token: _, ...rest } = withPayload(endpoint, f)
    return rest
  }
  const authCases: ReadonlyArray<readonly [string, (f: FixtureShape) => RequestOptions]> = endpoint.auth === "admin"
    ? [
      ["no Authorization header", noAuth],
      ["a wrong admin token", (f) => ({ ...withPayload(endpoint, f), token: "not-the-admin-token" })],
      ["a user's token instead of the admin token", (f) => ({ ...withPayload(endpoint, f), token: f.alice.token })],
      ["an empty bearer token", (f) => ({ ...noAuth(f), headers: { authorization: "Bearer " } })],
      [
        "the admin token under another scheme",
        (f) => ({ ...noAuth(f), headers: { authorization: `Basic ${ADMIN_TOKEN}` } })
      ],
      ["the admin token without a scheme", (f) => ({ ...noAuth(f), headers: { authorization: ADMIN_TOKEN } })],
      ["the admin token with a suffix", (f) => ({ ...withPayload(endpoint, f), token: `${ADMIN_TOKEN}x` })]
    ]
    : [
      ["no Authorization header", noAuth],
      ["an invalid token", (f) => ({ ...withPayload(endpoint, f), token: "not-a-token" })],
      ["an empty bearer token", (f) => ({ ...noAuth(f), headers: { authorization: "Bearer " } })],
      [
        "a valid token under another scheme",
        (f) => ({ ...noAuth(f), headers: { authorization: `Basic ${f.alice.token}` } })
      ],
      ["a valid token without a scheme", (f) => ({ ...noAuth(f), headers: { authorization: f.alice.token } })],
      ["the admin token as a user token", (f) => ({ ...withPayload(endpoint, f), token: ADMIN_TOKEN })],
      ["a valid token with a suffix", (f) => ({ ...withPayload(endpoint, f), token: `${f.alice.token}x` })]
    ]
  for (const [description, options] of authCases) {
    cases.push({
      name: `${description} → 401`,
      path: path(),
      options,
      expected: { status: 401, tag: "Unauthorized" }
    })
  }
  return cases
}

/** Only for building a payload's shape where no fixture exists yet. */
const emptyFixture: FixtureShape = {
  alice: { id: UNKNOWN_UUID, token: "" },
  bob: { id: UNKNOWN_UUID, token: "" },
  carol: { id: UNKNOWN_UUID, token: "" },
  ids: { projectId: UNKNOWN_UUID, messageId: UNKNOWN_UUID, userId: UNKNOWN_UUID }
}

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
