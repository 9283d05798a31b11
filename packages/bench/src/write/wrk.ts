import { Effect } from "effect"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { runProcess } from "../../../../test-support/Process.js"
import { attempt, BenchError } from "../support.js"

/**
 * The load: `wrk` with a Lua script that POSTs one message body to
 * `/api/projects/<id>/messages`, round-robin over the projects, with the user's bearer token, and
 * counts every answer that is not a 201. Its `done()` prints one line the bench parses.
 */

export const MESSAGE_BODY = "hello, this is a typical chat message body of moderate length"

const luaString = (s: string) => JSON.stringify(s) // a JSON string is a valid Lua string literal here (ASCII)

export const wrkScript = (projectIds: ReadonlyArray<string>, token: string) =>
  `-- written by packages/bench/src/write/wrk.ts for one run of \`npm run bench -- write\`
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

/** `wrk -t<t> -c<n> -d<seconds>s --latency -s script url`; fails if wrk does, not on non-201s. */
export const runWrk = (options: {
  readonly script: string
  readonly port: number
  readonly connections: number
  readonly seconds: number
}) =>
  Effect.gen(function*() {
    // One thread keeps up with a few thousand posts/s; a second one at 32 connections.
    const threads = options.connections >= 32 ? 2 : 1
    const args = [
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
    const r = yield* attempt(
      "wrk",
      () => runProcess("wrk", args, {}, { timeoutMs: (options.seconds + 30) * 1000 }).finished
    )
    const line = r.stdout.split("\n").find((l) => l.startsWith("herald-wrk "))
    if (r.code !== 0 || line === undefined) {
      return yield* new BenchError({
        message: `wrk ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`
      })
    }
    const sample = r.stdout.split("\n").find((l) => l.startsWith("herald-wrk-sample "))?.slice(18).trim() ?? ""
    return yield* Effect.try({
      try: (): WrkResult => ({
        connections: options.connections,
        threads,
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
