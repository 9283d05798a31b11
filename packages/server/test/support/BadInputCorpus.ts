/**
 * The hostile corpus of BadInput.test.ts, shared with DoorDifferential.test.ts: a fixture made
 * through the API, every endpoint with its bad paths, payloads, queries and credentials, and the
 * checks of a JSON error and of "nothing written".
 */
import { SqlClient } from "@effect/sql"
import { expect } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { MAX_BODY_BYTES } from "../../src/http/Middleware.js"
import { ADMIN_TOKEN, type RequestOptions, type Response, TestServer, TestServerLive } from "./TestServer.js"

// ---------------------------------------------------------------------------------------------
// Fixture: an owner (alice), a member (bob), a non-member (carol), a project with one message
// and one workspace message — all made through the API.

export interface FixtureShape {
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

export class Fixture extends Context.Tag("test/BadInputFixture")<Fixture, FixtureShape>() {}

export const FixtureLive = Layer.effect(
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

export const TestLive = FixtureLive.pipe(Layer.provideMerge(TestServerLive))

// ---------------------------------------------------------------------------------------------
// Helpers

export const UNKNOWN_UUID = "7d8f2a51-1c7b-4e0a-9b3e-5f6a7b8c9d0e"

/** Path parameter values that are not UUIDs. */
export const BAD_IDS: ReadonlyArray<readonly [string, string]> = [
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
export const UNDECODABLE_IDS: ReadonlyArray<readonly [string, string]> = [
  ["the bytes of a lone high surrogate", "%ED%A0%80"],
  ["a uuid followed by the bytes of a lone low surrogate", `${UNKNOWN_UUID}%ED%B0%80`]
]

/**
 * Text PostgreSQL cannot store (domain Text.ts): its `text` and `jsonb` refuse NUL and
 * unpaired surrogates, so each must be a 400 naming the field, never a 500 from the database.
 */
export const UNSTORABLE: ReadonlyArray<readonly [string, string]> = [
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
export const unstorableCases = (
  field: string,
  payload: (text: string) => unknown
): ReadonlyArray<readonly [string, unknown, string | undefined]> =>
  UNSTORABLE.map(([description, text]) => [`${description} in ${field}`, payload(text), field] as const)

/**
 * The same in a query parameter: `%00`, and the WTF-8 bytes of a lone surrogate (which arrive as
 * U+FFFD, since URL decoding cannot produce a lone surrogate). `valid` is a good value to append to.
 */
export const unstorableQueries = (
  param: string,
  valid: string,
  prefix = ""
): ReadonlyArray<readonly [string, string]> => [
  [`${prefix}${param}=%00`, param],
  [`${prefix}${param}=${valid}%00`, param],
  [`${prefix}${param}=%00${valid}`, param],
  [`${prefix}${param}=%ED%A0%80`, param],
  [`${prefix}${param}=${valid}%ED%B0%80`, param]
]

/** Substitutes `:param` placeholders from the fixture, with overrides. */
export const fill = (template: string, f: FixtureShape, overrides: Record<string, string> = {}) =>
  template.replace(/:(\w+)/g, (_, key: string) => overrides[key] ?? (f.ids as Record<string, string>)[key]!)

export const isJson = (res: Response) => (res.headers.get("content-type") ?? "").includes("application/json")

/**
 * Whether a 400 names the field. With schema `issues` (an `HttpApiDecodeError`), an issue's `path`
 * must hold it — the message alone would not do, as it prints the whole schema, every field's name
 * included; otherwise the error's `field` or its message must name it.
 */
export const namesField = (body: any, field: string): boolean =>
  Array.isArray(body?.issues)
    ? body.issues.some((issue: any) => Array.isArray(issue?.path) && issue.path.includes(field))
    : body?.field === field || (typeof body?.message === "string" && body.message.includes(field))

export const describeResponse = (res: Response) => `${res.status} ${JSON.stringify(res.body)}`

/** A JSON error with a non-empty `_tag` and `message`, of the given status (and tag, and field). */
export const expectJsonError = (res: Response, expected: ExpectedError) => {
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

export interface ExpectedError {
  readonly status: number
  readonly tag?: string
  readonly field?: string
}

/**
 * Everything a request could write: the rows of every table (through SQL, including the project's
 * events: stream heads and outbox rows) and what the API lists (through GET).
 */
export const snapshot = Effect.gen(function*() {
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

export type Auth = "user" | "admin"

export interface Endpoint {
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

export const nameCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
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

export const bodyCases = (field = "body"): ReadonlyArray<readonly [string, unknown, string | undefined]> => [
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

export const clientMessageIdCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
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

export const userIdCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
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

export const roleCases: ReadonlyArray<readonly [string, unknown, string | undefined]> = [
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

export const pageQueryCases: ReadonlyArray<readonly [string, string]> = [
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

export const streamQueryCases: ReadonlyArray<readonly [string, string]> = unstorableQueries("after", "0")

export const multiplexQueryCases: ReadonlyArray<readonly [string, string]> = [
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

export const historyQueryCases: ReadonlyArray<readonly [string, string]> = [
  ...unstorableQueries("type", "message.created"),
  ...unstorableQueries("after", "0"),
  ...unstorableQueries("limit", "10"),
  ...unstorableQueries("type", "message.created", "after=0&limit=10&")
]

export const rangeQueryCases = (prefix = ""): ReadonlyArray<readonly [string, string]> => [
  ...unstorableQueries("from", "2026-01-01", prefix),
  ...unstorableQueries("to", "2026-01-01T00:00:00Z", prefix)
]

export const ENDPOINTS: ReadonlyArray<Endpoint> = [
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
  // Live signals. A draft's body may be empty; its id's own bad values are in Signals.test.ts.
  { method: "GET", path: "/api/projects/:projectId/presence", auth: "user" },
  { method: "POST", path: "/api/projects/:projectId/typing", auth: "user" },
  {
    method: "PUT",
    path: "/api/projects/:projectId/workspace/drafts/reply-1",
    auth: "user",
    payload: () => ({ body: "thinking", role: "worker" }),
    badPayloads: [...bodyCases().filter(([description]) => description !== "an empty body"), ...roleCases]
  },
  { method: "DELETE", path: "/api/projects/:projectId/workspace/drafts/reply-1", auth: "user" },
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

export interface Case {
  readonly name: string
  readonly path: (f: FixtureShape) => string
  readonly options: (f: FixtureShape) => RequestOptions
  readonly expected: ExpectedError
}

export const credentials = (endpoint: Endpoint, f: FixtureShape): RequestOptions =>
  endpoint.auth === "admin" ? { token: ADMIN_TOKEN } : { token: f.alice.token }

export const withPayload = (endpoint: Endpoint, f: FixtureShape): RequestOptions =>
  endpoint.payload === undefined
    ? credentials(endpoint, f)
    : { ...credentials(endpoint, f), json: endpoint.payload(f) }

export const pathParams = (endpoint: Endpoint) => Array.from(endpoint.path.matchAll(/:(\w+)/g), (m) => m[1]!)

export const casesOf = (endpoint: Endpoint): ReadonlyArray<Case> => {
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
export const emptyFixture: FixtureShape = {
  alice: { id: UNKNOWN_UUID, token: "" },
  bob: { id: UNKNOWN_UUID, token: "" },
  carol: { id: UNKNOWN_UUID, token: "" },
  ids: { projectId: UNKNOWN_UUID, messageId: UNKNOWN_UUID, userId: UNKNOWN_UUID }
}
