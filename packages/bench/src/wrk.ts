import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { type Finished, runProcess } from "../../../test-support/Process.js"
import { attempt, BenchError } from "./support.js"

/**
 * The write load of the `write` and `deliver` benches: `wrk` with a Lua script that POSTs one message body to
 * `/api/projects/<id>/messages`, round-robin over the projects, with the user's bearer token, and
 * counts every answer that is not a 201. Its `done()` prints one line the bench parses.
 */

export const MESSAGE_BODY = "hello, this is a typical chat message body of moderate length"

const luaString = (s: string) => JSON.stringify(s) // a JSON string is a valid Lua string literal here (ASCII)

export const wrkScript = (projectIds: ReadonlyArray<string>, token: string) =>
  `-- written by packages/bench/src/wrk.ts for one run of \`npm run bench -- write\` or \`-- deliver\`
local paths = {
${projectIds.map((id) => `  ${luaString(`/api/projects/${id}/messages`)},`).join("\n")}
}
local body = ${luaString(`{"body": ${JSON.stringify(MESSAGE_BODY)}}`)}
local headers = {
  ["Content-Type"] = "application/json",
  ["Authorization"] = ${luaString(`Bearer ${token}`)}
}
local threads = {}

function setup(thread)
  -- Each thread starts at another project, so two threads do not walk in step.
  thread:set("counter", #threads * math.floor(#paths / 2))
  table.insert(threads, thread)
end

function init(args)
  created = 0
  non201 = 0
  sample = ""
end

function request()
  counter = counter + 1
  return wrk.format("POST", paths[(counter % #paths) + 1], headers, body)
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    non201 = non201 + 1
    if sample == "" then sample = tostring(status) .. " " .. string.sub(body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local created, non201, sample = 0, 0, ""
  for _, t in ipairs(threads) do
    created = created + t:get("created")
    non201 = non201 + t:get("non201")
    local s = t:get("sample")
    if sample == "" and s ~= nil then sample = s end
  end
  local e = summary.errors
  io.write(string.format(
    "herald-wrk requests=%d duration_us=%d created=%d non201=%d connect=%d read=%d write=%d timeout=%d " ..
      "p50_us=%d p90_us=%d p99_us=%d max_us=%d\\n",
    summary.requests, summary.duration, created, non201, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  io.write("herald-wrk-sample " .. (string.gsub(sample, "%s+", " ")) .. "\\n")
end
`

export const writeWrkScript = (dir: string, projectIds: ReadonlyArray<string>, token: string) =>
  attempt("writing the wrk script", async () => {
    const file = path.join(dir, "post.lua")
    await fs.writeFile(file, wrkScript(projectIds, token))
    return file
  })

export interface WrkResult {
  readonly connections: number
  readonly threads: number
  /** Answers received (any status), and the 201s among them. */
  readonly requests: number
  readonly created: number
  readonly non201: number
  /** A non-201 answer, `status body…`, when there was one. */
  readonly sample: string
  /** Socket errors and timeouts (wrk's own counts). */
  readonly errors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number }
  readonly seconds: number
  readonly p50Ms: number
  readonly p90Ms: number
  readonly p99Ms: number
  readonly maxMs: number
  /** wrk's own report (with --latency), for when something looks off. */
  readonly output: string
}

const field = (line: string, name: string) => {
  const m = new RegExp(`\\b${name}=(\\d+)`).exec(line)
  if (m === null) throw new Error(`no ${name}= in wrk's summary line: ${line}`)
  return Number(m[1])
}

export interface WrkOptions {
  readonly script: string
  readonly port: number
  readonly connections: number
  /** How long wrk runs unless it is stopped first (`startWrk`). */
  readonly seconds: number
  /** Default: one thread (it keeps up with a few thousand posts/s), a second one at 32 connections. */
  readonly threads?: number
}

const wrkArgs = (options: WrkOptions) => {
  const threads = options.threads ?? (options.connections >= 32 ? 2 : 1)
  return {
    threads,
    args: [
      `-t${threads}`,
      `-c${options.connections}`,
      `-d${options.seconds}s`,
      "--latency",
      "--timeout",
      "10s",
      "-s",
      options.script,
      `http://127.0.0.1:${options.port}/`
    ]
  }
}

/** wrk's summary line (its script's `done()`) as a WrkResult; fails if wrk failed or wrote none. */
const parseWrk = (options: WrkOptions, args: ReadonlyArray<string>, r: Finished) =>
  Effect.gen(function*() {
    const line = r.stdout.split("\n").find((l) => l.startsWith("herald-wrk "))
    // A wrk stopped with SIGINT exits 0 after its summary, as one that ran its course.
    if (r.code !== 0 || line === undefined) {
      return yield* new BenchError({
        message: `wrk ${args.join(" ")} exited ${r.code ?? r.signal}:\n${r.stdout}${r.stderr}`
      })
    }
    const sample = r.stdout.split("\n").find((l) => l.startsWith("herald-wrk-sample "))?.slice(18).trim() ?? ""
    return yield* Effect.try({
      try: (): WrkResult => ({
        connections: options.connections,
        threads: wrkArgs(options).threads,
        requests: field(line, "requests"),
        created: field(line, "created"),
        non201: field(line, "non201"),
        sample,
        errors: {
          connect: field(line, "connect"),
          read: field(line, "read"),
          write: field(line, "write"),
          timeout: field(line, "timeout")
        },
        seconds: field(line, "duration_us") / 1e6,
        p50Ms: field(line, "p50_us") / 1000,
        p90Ms: field(line, "p90_us") / 1000,
        p99Ms: field(line, "p99_us") / 1000,
        maxMs: field(line, "max_us") / 1000,
        output: r.stdout
      }),
      catch: (e) => new BenchError({ message: `${e instanceof Error ? e.message : String(e)}\n${r.stdout}` })
    })
  })

/** `wrk -t<t> -c<n> -d<seconds>s --latency -s script url` to its end; fails if wrk does, not on non-201s. */
export const runWrk = (options: WrkOptions) =>
  Effect.gen(function*() {
    const { args } = wrkArgs(options)
    const r = yield* attempt(
      "wrk",
      () => runProcess("wrk", args, {}, { timeoutMs: (options.seconds + 30) * 1000 }).finished
    )
    return yield* parseWrk(options, args, r)
  })

export interface BackgroundWrk {
  readonly pid: number
  /** Whether wrk is still running (it ends by itself after `seconds`). */
  readonly running: () => boolean
  /**
   * SIGINT, on which wrk stops its connections, prints its summary and runs the script's `done()`;
   * then its result, over the time it ran. Fails if it had already ended (the load stopped early).
   */
  readonly stop: Effect.Effect<WrkResult, BenchError>
}

/**
 * wrk as a background load for as long as the caller needs it (at most `seconds`): it runs while
 * the caller measures something else, and `stop` ends it. Killed with the scope if still running.
 */
export const startWrk = (options: WrkOptions) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const { args } = wrkArgs(options)
      const run = runProcess("wrk", args, {}, { timeoutMs: (options.seconds + 30) * 1000 })
      let ended = false
      // A failure shows in `stop`; until then it must not be an unhandled rejection.
      run.finished.then(() => (ended = true), () => (ended = true))
      const stop = Effect.gen(function*() {
        if (ended) {
          const r = yield* attempt("wrk", () => run.finished)
          return yield* new BenchError({
            message: `wrk ${args.join(" ")} ended before it was stopped (exit ${r.code ?? r.signal}):\n` +
              `${r.stdout}${r.stderr}`
          })
        }
        run.spawned.child.kill("SIGINT")
        const r = yield* attempt("wrk", () => run.finished)
        return yield* parseWrk(options, args, r)
      })
      const handle: BackgroundWrk = { pid: run.spawned.child.pid!, running: () => !ended, stop }
      return { handle, kill: () => run.spawned.stop(5_000) }
    }),
    ({ kill }) => Effect.promise(kill)
  ).pipe(Effect.map(({ handle }) => handle))
