import { Config, Console, Duration, Effect } from "effect"
import * as http from "node:http"
import { SERVER } from "../../../test-support/Process.js"
import { type Verdict, verdictLine } from "./deliver/common.js"
import { clusterSnapshot, machineBusyTicks, postmasterPid, readStat, ticksToMs } from "./proc.js"
import { buildServer, type HeraldProcess, heraldProcess } from "./serverProcess.js"
import { type Client, clientProcess, sseConnectionsMetric } from "./sse/children.js"
import { createLayout } from "./sse/layout.js"
import { type DraftSeen, eventKey, now } from "./sse/protocol.js"
import {
  ascending,
  attempt,
  BenchError,
  count,
  embeddedCluster,
  fixed,
  loadAverage,
  migrate,
  percentile,
  ranged,
  ratio,
  request,
  table,
  withinBudget
} from "./support.js"
import { MESSAGE_BODY } from "./wrk.js"

/**
 * Live drafts (SPEC §5, G10) next to the event path, on the compiled server (`node
 * packages/server/dist/main.js`, its own process, roomy limits, LOG_LEVEL=WARN) on an embedded
 * PostgreSQL: a member holds BENCH_SIGNALS_CONNECTIONS idle `GET /api/stream` connections (opened by
 * client processes, sse/client.ts), each carrying the project stream and that member's workspace
 * stream of one project. Whose workspace the worker writes its reply into is BENCH_SIGNALS_AUDIENCE:
 *
 *   members (the default, the issue's case: 1 000 idle connections carry the same project while a
 *           worker answers someone): the project owner's, who reads it on one connection of its own
 *           (`GET …/workspace/stream`) — the idle connections must get none of it;
 *   owner   (the worst case): the member's own, so every one of the connections gets every frame.
 *
 * In windows of the same length (2 s of traffic + 0.5 s), one of four loads:
 *
 *   idle          nothing;
 *   posts         the project's owner posts at BENCH_SIGNALS_POST_RATE a second;
 *   drafts        a worker streams a 2 000-character reply as 200 draft updates, each PUT 10
 *                 characters longer, one every 10 ms, each after the previous one's 204;
 *   posts+drafts  both at once.
 *
 * Figures: the event path's post → SSE receipt (POST sent → each connection's frame read, as in the
 * `sse` bench) p99 with drafts over without; server CPU (/proc/<pid>/stat) per draft update, over the
 * idle window's rate and over the posts' window's; the draft frames each connection read. A round
 * runs the four windows, reversed every other round so that drift weighs on both sides; the
 * ratio's target is on the median round.
 */

const TARGET_P99_RATIO = 1.1
const REPLY = "A worker's reply, streamed as it is being written, ten characters at a time. "
  .repeat(30)
  .slice(0, 2_000)
const UPDATES = 200
const STEP_CHARS = REPLY.length / UPDATES
const UPDATE_EVERY_MS = 10
/** SPEC §5: at most 10 draft frames a second, the latest body always going out (so up to this late). */
const DRAFT_FRAME_MS = 100
/** The traffic of a window, then this long for the last frames before its CPU is read. */
const TRAFFIC_MS = UPDATES * UPDATE_EVERY_MS
const TAIL_MS = 500
const PAUSE_MS = 500
const OPEN_TIMEOUT_MS = 60_000
const AWAIT_TIMEOUT_MS = 15_000
/** Other work on the machine above this, in cores, marks a window as disturbed (as in `deliver`). */
const DISTURBED_CORES = 0.2

const Settings = Config.all({
  connections: ranged(
    Config.integer("BENCH_SIGNALS_CONNECTIONS"),
    1_000,
    [10, 10_000],
    "Expected from 10 to 10000 connections"
  ),
  clients: ranged(Config.integer("BENCH_SIGNALS_CLIENTS"), 2, [1, 8], "Expected from 1 to 8 client processes"),
  rounds: ranged(Config.integer("BENCH_SIGNALS_ROUNDS"), 7, [1, 25], "Expected from 1 to 25 rounds"),
  postRate: ranged(Config.integer("BENCH_SIGNALS_POST_RATE"), 20, [1, 200], "Expected from 1 to 200 posts a second"),
  audience: Config.literal("members", "owner")("BENCH_SIGNALS_AUDIENCE").pipe(Config.withDefault("members" as const))
})
type Settings = Config.Config.Success<typeof Settings>

const progress = (line: string) => Console.error(`  ${line}`)

type Kind = "idle" | "posts" | "drafts" | "posts+drafts"
const ORDER: ReadonlyArray<Kind> = ["idle", "posts", "posts+drafts", "drafts"]

/** What a window runs against: the server, its clients and who does what. */
interface Rig {
  readonly server: HeraldProcess
  readonly postmaster: number
  readonly clients: ReadonlyArray<Client>
  /** How many of the connections each client holds. */
  readonly perClient: ReadonlyArray<number>
  readonly connections: number
  readonly projectId: string
  /** The project's owner: the posts. */
  readonly ownerToken: string
  /** The member who holds the connections. */
  readonly holderToken: string
  /** Whose worker writes the drafts (into that user's workspace). */
  readonly drafterToken: string
  /** The connections that carry the drafted workspace: all of them, or the owner's one. */
  readonly receivers: number
  readonly agent: http.Agent
  readonly postRate: number
}

interface DraftFigures {
  /** First PUT sent → last PUT's 204. */
  readonly spanMs: number
  /** Most frames a connection may read: 10/s over the span and the last body's wait, plus the first. */
  readonly bound: number
  /** Update frames read, per connection that reported, ascending. */
  readonly frames: ReadonlyArray<number>
  /** Connections whose last frame carried the whole reply. */
  readonly full: number
  /** The shortest last body any connection read (the whole reply's length when every one has it). */
  readonly shortest: number
  /** Frames whose body was not longer than the one before, over all connections. */
  readonly notLonger: number
  /** Last PUT's 204 → the whole reply read, per connection that has it, ascending (ms). */
  readonly lastAfter: ReadonlyArray<number>
}

interface Window {
  readonly kind: Kind
  readonly ms: number
  readonly serverMs: number
  /** Cores' worth of CPU over the window: the client processes', and the rest of the machine's (neither server, clients, PostgreSQL nor this process). */
  readonly clientCores: number
  readonly otherCores: number
  readonly posts: number
  /** Post sent → frame read, every connection and post, ascending (ms). */
  readonly latencies: ReadonlyArray<number>
  readonly missing: number
  readonly draft?: DraftFigures
}

type Round = Readonly<Record<Kind, Window>> & { readonly reversed: boolean }

// ---------------------------------------------------------------------------------------------
// One window

const sleepUntil = (at: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, at - now())))

/** CPU ticks so far of the server, the client processes, the rest of the bench (this process, PostgreSQL) and the machine. */
const cpuNow = (rig: Rig) => {
  const server = readStat(rig.server.pid)
  if (server === undefined) throw new Error(`the server process (${rig.server.pid}) is gone`)
  const ticks = (pid: number) => readStat(pid)?.ticks ?? 0
  return {
    server: server.ticks,
    clients: rig.clients.reduce((n, c) => n + ticks(c.pid), 0),
    rest: ticks(process.pid) + clusterSnapshot(rig.postmaster).ticks,
    machine: machineBusyTicks(),
    at: now()
  }
}

/** The owner's posts, one every 1/postRate s from `t0` for the traffic's length, none waiting for another. */
const postSteadily = async (rig: Rig, t0: number) => {
  const n = Math.round((rig.postRate * TRAFFIC_MS) / 1000)
  const posts: Array<Promise<{ key: string; sentAt: number }>> = []
  for (let k = 0; k < n; k++) {
    await sleepUntil(t0 + (k * 1000) / rig.postRate)
    posts.push(
      request({
        port: rig.server.port,
        method: "POST",
        path: `/api/projects/${rig.projectId}/messages`,
        token: rig.ownerToken,
        body: { body: MESSAGE_BODY },
        agent: rig.agent,
        expected: 201
      }).then((answer) => {
        const { event } = JSON.parse(answer.body) as { event: { stream: string; seq: number } }
        return { key: eventKey(event.stream, event.seq), sentAt: performance.timeOrigin + answer.sentAt }
      })
    )
  }
  return Promise.all(posts)
}

/** The worker's reply as UPDATES draft updates, one at a time, each due UPDATE_EVERY_MS after the last. */
const streamReply = async (rig: Rig, draftId: string, t0: number) => {
  let firstSentAt = NaN
  let lastAnsweredAt = NaN
  for (let k = 1; k <= UPDATES; k++) {
    await sleepUntil(t0 + (k - 1) * UPDATE_EVERY_MS)
    const answer = await request({
      port: rig.server.port,
      method: "PUT",
      path: `/api/projects/${rig.projectId}/workspace/drafts/${draftId}`,
      token: rig.drafterToken,
      body: { body: REPLY.slice(0, k * STEP_CHARS), role: "worker" },
      agent: rig.agent,
      expected: 204
    })
    if (k === 1) firstSentAt = performance.timeOrigin + answer.sentAt
    lastAnsweredAt = performance.timeOrigin + answer.answeredAt
  }
  return { firstSentAt, lastAnsweredAt }
}

/** When each connection read each post's frame (every client holds `perClient[c]` connections that carry it). */
const receipts = async (rig: Rig, posts: ReadonlyArray<{ key: string; sentAt: number }>) => {
  if (posts.length === 0) return { latencies: [], missing: 0 }
  const answers = await Promise.all(rig.clients.map((client, c) =>
    client.call((id) => ({
      type: "await",
      id,
      expected: Object.fromEntries(posts.map((p) => [p.key, rig.perClient[c]!])),
      timeoutMs: AWAIT_TIMEOUT_MS
    }), AWAIT_TIMEOUT_MS * 2)
  ))
  const latencies: Array<number> = []
  let missing = 0
  for (const post of posts) {
    let got = 0
    for (const answer of answers) {
      if (answer.type !== "received") throw new Error(`a client answered ${answer.type}`)
      for (const t of answer.times[post.key] ?? []) latencies.push(t - post.sentAt)
      got += answer.times[post.key]?.length ?? 0
    }
    missing += Math.max(0, rig.connections - got)
  }
  return { latencies: ascending(latencies), missing }
}

const draftFigures = async (
  rig: Rig,
  draftId: string,
  sent: { firstSentAt: number; lastAnsweredAt: number }
): Promise<DraftFigures> => {
  const answers = await Promise.all(
    rig.clients.map((client) => client.call((id) => ({ type: "drafts", id, draftId }), 30_000))
  )
  const all: Array<DraftSeen> = answers.flatMap((a) => {
    if (a.type !== "drafts") throw new Error(`a client answered ${a.type}`)
    return a.connections
  })
  // The receivers read frames of it; with the owner as audience, no idle connection may have read any (G10).
  const seen = all.filter((s) => s.frames > 0)
  if (seen.length > rig.receivers) {
    throw new Error(`${seen.length} connections read draft frames; only ${rig.receivers} carry that workspace`)
  }
  const spanMs = sent.lastAnsweredAt - sent.firstSentAt
  const full = seen.filter((s) => s.lastLength === REPLY.length)
  return {
    spanMs,
    bound: Math.floor((10 * (spanMs + DRAFT_FRAME_MS)) / 1000) + 1,
    frames: ascending(seen.map((s) => s.frames)),
    full: full.length,
    shortest: Math.min(...seen.map((s) => s.lastLength)),
    notLonger: seen.reduce((n, s) => n + s.notLonger, 0),
    lastAfter: ascending(full.map((s) => s.lastAt - sent.lastAnsweredAt))
  }
}

const runWindow = (rig: Rig, kind: Kind, draftId: string) =>
  attempt(`the ${kind} window`, async (): Promise<Window> => {
    const posting = kind === "posts" || kind === "posts+drafts"
    const drafting = kind === "drafts" || kind === "posts+drafts"
    const a = cpuNow(rig)
    const [posts, reply] = await Promise.all([
      posting ? postSteadily(rig, a.at) : [],
      drafting ? streamReply(rig, draftId, a.at) : undefined
    ])
    // Late traffic (a slow server) lengthens the window: the CPU is compared as a rate.
    await sleepUntil(Math.max(a.at + TRAFFIC_MS, now()) + TAIL_MS)
    const b = cpuNow(rig)
    const ms = b.at - a.at
    const serverMs = ticksToMs(b.server - a.server)
    const clientMs = ticksToMs(b.clients - a.clients)
    const otherMs = ticksToMs(b.machine - a.machine) - serverMs - clientMs - ticksToMs(b.rest - a.rest)
    const got = await receipts(rig, posts)
    const draft = reply === undefined ? undefined : await draftFigures(rig, draftId, reply)
    if (drafting) {
      // Ended between windows, so that no draft outlives its window (the server would end it after 60 s).
      await request({
        port: rig.server.port,
        method: "DELETE",
        path: `/api/projects/${rig.projectId}/workspace/drafts/${draftId}`,
        token: rig.drafterToken,
        agent: rig.agent,
        expected: 204
      })
    }
    await new Promise((resolve) => setTimeout(resolve, PAUSE_MS))
    return {
      kind,
      ms,
      serverMs,
      clientCores: clientMs / ms,
      otherCores: Math.max(0, otherMs) / ms,
      posts: posts.length,
      ...got,
      ...(draft === undefined ? {} : { draft })
    }
  })

// ---------------------------------------------------------------------------------------------
// Figures

/** Server CPU ms per second of the window. */
const rate = (w: Window) => (w.serverMs / w.ms) * 1000
/** Server CPU per draft update in `w`, over `base`'s rate for the same length. */
const perUpdate = (w: Window, base: Window) => ((rate(w) - rate(base)) * (w.ms / 1000)) / UPDATES
const perPost = (w: Window, base: Window) => ((rate(w) - rate(base)) * (w.ms / 1000)) / w.posts
const p99 = (w: Window) => percentile(w.latencies, 99)
const p99Ratio = (r: Round) => p99(r["posts+drafts"]) / p99(r.posts)
const disturbed = (r: Round) => ORDER.some((k) => r[k].otherCores > DISTURBED_CORES)
const median = (values: ReadonlyArray<number>) => percentile(ascending(values), 50)
const draftsOf = (rounds: ReadonlyArray<Round>) =>
  rounds.flatMap((r) => [r.drafts.draft, r["posts+drafts"].draft]).filter((d) => d !== undefined)

const eventTable = (rounds: ReadonlyArray<Round>, settings: Settings) => {
  /** One row over the rounds given: receipts pooled, the CPU of the server and the clients averaged. */
  const row = (label: string, order: string, of: ReadonlyArray<Round>) => {
    const latencies = (kind: Kind) => ascending(of.flatMap((r) => r[kind].latencies))
    const cores = (kind: Kind, f: (w: Window) => number) => fixed(of.reduce((n, r) => n + f(r[kind]), 0) / of.length)
    const without = latencies("posts")
    const withDrafts = latencies("posts+drafts")
    return [
      label,
      order,
      fixed(percentile(without, 50), 1),
      fixed(percentile(withDrafts, 50), 1),
      fixed(percentile(without, 99), 1),
      fixed(percentile(withDrafts, 99), 1),
      `${fixed(percentile(withDrafts, 99) / percentile(without, 99))}x`,
      `≤ ${TARGET_P99_RATIO}`,
      String(of.reduce((n, r) => n + r.posts.missing + r["posts+drafts"].missing, 0)),
      `${cores("posts", (w) => rate(w) / 1000)} / ${cores("posts+drafts", (w) => rate(w) / 1000)}`,
      `${cores("posts", (w) => w.clientCores)} / ${cores("posts+drafts", (w) => w.clientCores)}`
    ]
  }
  return table(
    [
      `signals 1: post → SSE receipt at ${count(settings.connections)} connections, posts alone (without) and ` +
      `next to a live draft (with), ms`,
      `the compiled server as its own process on an embedded PostgreSQL; load average ${loadAverage()}`
    ],
    [
      "round",
      "order",
      "p50 without",
      "p50 with",
      "p99 without",
      "p99 with",
      "p99 with/without",
      "target",
      "missing",
      "server cores",
      "clients' cores"
    ],
    [
      ...rounds.map((r, i) => row(String(i + 1), r.reversed ? "with first" : "without first", [r])),
      row("pooled", "", rounds)
    ],
    [
      `A window posts ${rounds[0]!.posts.posts} messages (${settings.postRate}/s for ${TRAFFIC_MS / 1000} s, none ` +
      `waiting for another) from the project's owner, over one keep-alive agent;`,
      `  "with": while the user's worker streams a ${count(REPLY.length)}-character reply as ${UPDATES} draft ` +
      `updates (PUT every ${UPDATE_EVERY_MS} ms, each ${STEP_CHARS} characters longer).`,
      `Receipt: POST sent (this process) → the frame read by a client process (performance.timeOrigin + now(), one ` +
      `machine), every connection, every post.`,
      `Connections: ${count(settings.connections)} × GET /api/stream of one member (project + workspace stream), ` +
      `from ${settings.clients} client processes. missing: receipts not in within ${AWAIT_TIMEOUT_MS / 1000} s.`,
      settings.audience === "members"
        ? `Audience "members": the worker writes into the project owner's workspace, read on one connection of ` +
          `the owner's (GET …/workspace/stream); the ${count(settings.connections)} idle connections carry the project.`
        : `Audience "owner": the worker writes into the member's own workspace: every connection gets every frame.`,
      `server cores, clients' cores: CPU of the server process and of the client processes over the window, ` +
      `without / with (the two cores are shared).`
    ]
  )
}

const range = (values: ReadonlyArray<number>) =>
  values.length === 0 ? "n/a" : `${values[0]}–${values[values.length - 1]}`

const cpuTable = (rounds: ReadonlyArray<Round>, settings: Settings) => {
  const draftCell = (d: DraftFigures | undefined) =>
    d === undefined ? "n/a" : `${range(d.frames)} (≤ ${d.bound}), ${count(d.full)} full` +
      (d.shortest < REPLY.length ? ` (last ${count(d.shortest)})` : "")
  return table(
    `signals 2: server CPU (ms per s of window, and per draft update / per post) and the draft frames each connection read`,
    [
      "round",
      "idle",
      "posts",
      "drafts",
      "posts+drafts",
      "ms/update (drafts − idle)",
      "ms/update (with − without)",
      "ms/post",
      "frames, drafts alone",
      "frames, with posts",
      "other cores"
    ],
    rounds.map((r, i) => [
      String(i + 1),
      fixed(rate(r.idle), 0),
      fixed(rate(r.posts), 0),
      fixed(rate(r.drafts), 0),
      fixed(rate(r["posts+drafts"]), 0),
      fixed(perUpdate(r.drafts, r.idle)),
      fixed(perUpdate(r["posts+drafts"], r.posts)),
      fixed(perPost(r.posts, r.idle)),
      draftCell(r.drafts.draft),
      draftCell(r["posts+drafts"].draft),
      fixed(Math.max(...ORDER.map((k) => r[k].otherCores)))
    ]),
    [
      `CPU: utime + stime of the server process (/proc/<pid>/stat, 10 ms ticks) over each window ` +
      `(${(TRAFFIC_MS + TAIL_MS) / 1000} s unless the traffic ran late), as a rate;`,
      `  ms/update = (the window's rate − the baseline's) × its length / ${UPDATES} updates; ms/post likewise, ` +
      `posts over idle. Windows of a round: ${ORDER.join(", ")}, reversed every other round.`,
      `frames: update frames read per connection, min–max (≤ the bound: 10/s over first PUT sent → last 204 plus the ` +
      `last body's ${DRAFT_FRAME_MS} ms, + 1), and the`,
      `  connections whose last frame carried the whole ${count(REPLY.length)} characters (of ` +
      `${count(settingsReceivers(settings))} carrying it).`,
      `other cores: the most CPU any window of the round saw used by processes other than the server, PostgreSQL, ` +
      `this one and its clients` +
      (rounds.some(disturbed)
        ? ` — ABOVE ${DISTURBED_CORES} somewhere: that round was disturbed.`
        : ".")
    ]
  )
}

const verdicts = (rounds: ReadonlyArray<Round>, settings: Settings): Array<Verdict> => {
  const ratios = rounds.map(p99Ratio)
  const quiet = rounds.filter((r) => !disturbed(r))
  const missing = rounds.reduce((n, r) => n + r.posts.missing + r["posts+drafts"].missing, 0)
  const receipts = rounds.reduce((n, r) => n + (r.posts.posts + r["posts+drafts"].posts) * settings.connections, 0)
  const drafts = draftsOf(rounds)
  const most = Math.max(...drafts.map((d) => d.frames[d.frames.length - 1] ?? 0))
  const over = drafts.filter((d) => (d.frames[d.frames.length - 1] ?? 0) > d.bound).length
  const full = drafts.reduce((n, d) => n + d.full, 0)
  const expected = drafts.length * settingsReceivers(settings)
  const notLonger = drafts.reduce((n, d) => n + d.notLonger, 0)
  const lastAfter = ascending(drafts.flatMap((d) => d.lastAfter))
  const cut = drafts.filter((d) => d.shortest < REPLY.length)
  return [
    {
      target: `event path p99 with a live draft / without ≤ ${TARGET_P99_RATIO}x (median of ${rounds.length} rounds)`,
      met: missing === 0 && median(ratios) <= TARGET_P99_RATIO,
      measured: `${fixed(median(ratios), 3)}x (rounds: ${ratios.map((r) => fixed(r)).join(", ")}); undisturbed ` +
        `rounds alone (other cores ≤ ${DISTURBED_CORES}): ` +
        (quiet.length === 0
          ? "none"
          : `${fixed(median(quiet.map(p99Ratio)), 3)}x (${quiet.length} of ${rounds.length})`)
    },
    {
      target: "every post's event reaches every connection",
      met: missing === 0,
      measured: `${count(missing)} missing of ${count(receipts)} receipts`
    },
    {
      target: `draft frames per connection ≤ 10/s × the updates' span + 1`,
      met: over === 0 && notLonger === 0,
      measured: `at most ${most} (bounds ${range(ascending(drafts.map((d) => d.bound)))}), ${over} of ` +
        `${drafts.length} drafts over; ${notLonger} frames not longer than the one before`
    },
    {
      target: `the last draft frame carries the whole ${count(REPLY.length)}-character body, on every connection ` +
        `carrying the workspace (and none on the others)`,
      met: full === expected,
      measured:
        `${count(full)} of ${count(expected)} (${drafts.length} drafts × ${
          count(settingsReceivers(settings))
        } connection${settingsReceivers(settings) === 1 ? "" : "s"})` +
        (cut.length === 0
          ? ""
          : `; ${cut.length} drafts never sent their last body (last frames ${
            cut.map((d) => count(d.shortest)).join(", ")
          } characters)`) +
        `; the whole body read ${fixed(percentile(lastAfter, 50), 0)} ms (p50) / ` +
        `${fixed(lastAfter[lastAfter.length - 1] ?? NaN, 0)} ms (max) after the last PUT's 204`
    }
  ]
}

const cpuSummary = (rounds: ReadonlyArray<Round>) => {
  const alone = median(rounds.map((r) => perUpdate(r.drafts, r.idle)))
  const withPosts = median(rounds.map((r) => perUpdate(r["posts+drafts"], r.posts)))
  const post = median(rounds.map((r) => perPost(r.posts, r.idle)))
  return `  figure   server CPU per draft update (median of ${rounds.length}): ${fixed(alone)} ms over an idle ` +
    `window, ${fixed(withPosts)} ms over the posts' window; a post: ${fixed(post)} ms ` +
    `(an update = ${ratio(alone, post)} a post)`
}

// ---------------------------------------------------------------------------------------------

/** The connections that carry the drafted workspace. */
const settingsReceivers = (settings: Settings) => settings.audience === "members" ? 1 : settings.connections

/** With the owner as audience: the owner's one connection to its workspace stream, where the drafts go. */
const openReceiver = (rig: Rig) =>
  attempt("opening the owner's workspace connection", async () => {
    const answer = await rig.clients[0]!.call((id) => ({
      type: "open",
      id,
      port: rig.server.port,
      connections: [{ path: `/api/projects/${rig.projectId}/workspace/stream`, token: rig.ownerToken }],
      ready: "retry",
      concurrency: 1,
      timeoutMs: OPEN_TIMEOUT_MS
    }), OPEN_TIMEOUT_MS * 2)
    if (answer.type !== "opened") throw new Error(`a client answered ${answer.type}`)
    if (answer.error !== undefined) throw new Error(answer.error)
  })

const openConnections = (rig: Rig) =>
  attempt(`opening ${count(rig.connections)} connections`, async () => {
    const spec = { path: "/api/stream", token: rig.holderToken }
    const answers = await Promise.all(rig.clients.map((client, c) =>
      client.call((id) => ({
        type: "open",
        id,
        port: rig.server.port,
        connections: Array.from({ length: rig.perClient[c]! }, () => spec),
        ready: "heads",
        concurrency: 32,
        timeoutMs: OPEN_TIMEOUT_MS
      }), OPEN_TIMEOUT_MS * 4)
    ))
    for (const answer of answers) {
      if (answer.type !== "opened") throw new Error(`a client answered ${answer.type}`)
      if (answer.error !== undefined) throw new Error(answer.error)
    }
    return sseConnectionsMetric(rig.server.port)
  })

const closeConnections = (rig: Rig) =>
  attempt("closing the connections", async () => {
    const answers = await Promise.all(rig.clients.map((client) => client.call((id) => ({ type: "close", id }), 30_000)))
    return answers.reduce((n, a) => n + (a.type === "closed" ? a.closedByServer : 0), 0)
  })

const bench = Effect.gen(function*() {
  const settings = yield* Settings
  const started = performance.now()
  yield* Console.error("signals: building the server (node scripts/build.mjs)…")
  yield* buildServer
  yield* Console.error("signals: starting an embedded PostgreSQL and the compiled server…")
  const db = yield* embeddedCluster
  yield* migrate(db.url)
  const server = yield* heraldProcess(db.url, { args: SERVER })
  const postmaster = yield* Effect.try({
    try: () => postmasterPid(db.pgdata),
    catch: (e) => new BenchError({ message: String(e) })
  })
  const layout = yield* attempt(
    "creating the users and the project",
    () => createLayout(server.port, server.adminToken, { users: 1, projects: 1, memberships: 1 })
  )
  const clients = yield* Effect.all(Array.from({ length: settings.clients }, () => clientProcess))
  const agent = yield* Effect.acquireRelease(
    // Idle sockets dropped after 2 s, before the server's keep-alive timeout (5 s) could close one under a request.
    Effect.sync(() => new http.Agent({ keepAlive: true, timeout: 2_000 })),
    (a) => Effect.sync(() => a.destroy())
  )
  const rig: Rig = {
    server,
    postmaster,
    clients,
    perClient: clients.map((_, c) => Math.floor((settings.connections + settings.clients - 1 - c) / settings.clients)),
    connections: settings.connections,
    projectId: layout.projects[0]!,
    ownerToken: layout.ownerToken,
    holderToken: layout.users[0]!.token,
    drafterToken: settings.audience === "members" ? layout.ownerToken : layout.users[0]!.token,
    receivers: settingsReceivers(settings),
    agent,
    postRate: settings.postRate
  }

  const opened = performance.now()
  const counted = yield* openConnections(rig)
  if (settings.audience === "members") yield* openReceiver(rig)
  yield* progress(
    `${count(settings.connections)} connections open in ${fixed((performance.now() - opened) / 1000, 1)} s ` +
      `(the server counts ${count(counted)})`
  )
  yield* runWindow(rig, "posts+drafts", "warm-up-1")
  yield* runWindow(rig, "posts", "warm-up-2")

  const rounds: Array<Round> = []
  for (let i = 0; i < settings.rounds; i++) {
    const reversed = i % 2 === 1
    const windows: Partial<Record<Kind, Window>> = {}
    for (const kind of reversed ? [...ORDER].reverse() : ORDER) {
      windows[kind] = yield* runWindow(rig, kind, `reply-${i + 1}-${kind === "drafts" ? "alone" : "with-posts"}`)
    }
    const round = { ...(windows as Record<Kind, Window>), reversed }
    rounds.push(round)
    yield* progress(
      `round ${i + 1}/${settings.rounds}: p99 ${fixed(p99(round.posts), 1)} → ${
        fixed(p99(round["posts+drafts"]), 1)
      } ms ` +
        `(${fixed(p99Ratio(round))}x), ${fixed(perUpdate(round.drafts, round.idle))} ms CPU per update`
    )
  }
  const closedByServer = yield* closeConnections(rig)

  yield* Console.log(eventTable(rounds, settings))
  yield* Console.log(cpuTable(rounds, settings))
  yield* Console.log(
    [
      "",
      `signals: targets (${
        fixed((performance.now() - started) / 1000, 0)
      } s in all; shared 2-core machine, so compare ratios)`,
      ...verdicts(rounds, settings).map(verdictLine),
      cpuSummary(rounds),
      ...(closedByServer > 0 ? [`  ${count(closedByServer)} connections were closed by the server during the run`] : [])
    ].join("\n")
  )
}).pipe(
  Effect.scoped,
  // Every step has its own timeout; this is the backstop.
  withinBudget(Duration.minutes(15))
)

export default bench
