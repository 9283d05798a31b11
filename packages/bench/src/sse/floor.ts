import { randomUUID } from "node:crypto"
import * as http from "node:http"
import type { FromFloor, ToFloor } from "./protocol.js"

/**
 * The floor of the `sse` bench (`node --import tsx floor.ts`, with an IPC channel): a plain
 * `node:http` server that holds idle `text/event-stream` responses on the same paths as Herald's
 * and does nothing else — the `retry:` line (and, on `/api/stream`, a `heads` frame), one shared
 * timer that writes `: keepalive` to every response each HERALD_SSE_HEARTBEAT_MS, and on the
 * bench's word one event frame (the size of Herald's envelope) to every response of a project.
 * What Node's own HTTP costs per connection, with no database, no auth, no Effect.
 */

const HEARTBEAT_MS = Number(process.env.HERALD_SSE_HEARTBEAT_MS ?? "15000")
const KEEPALIVE = Buffer.from(": keepalive\n\n")
const RETRY = Buffer.from("retry: 2000\n\n")

/** Project id → its open responses (per-stream paths, and every multiplexed one that carries it). */
const byProject = new Map<string, Set<http.ServerResponse>>()
const all = new Set<http.ServerResponse>()
/** Token → the projects its multiplexed connection carries (from the bench). */
let members: Readonly<Record<string, ReadonlyArray<string>>> = {}

const send = (message: FromFloor) => process.send!(message)

const hold = (res: http.ServerResponse, projects: ReadonlyArray<string>) => {
  res.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache, no-transform",
    "x-accel-buffering": "no"
  })
  res.write(RETRY)
  all.add(res)
  for (const p of projects) {
    let set = byProject.get(p)
    if (set === undefined) byProject.set(p, set = new Set())
    set.add(res)
  }
  res.on("close", () => {
    all.delete(res)
    for (const p of projects) byProject.get(p)?.delete(res)
  })
}

const PER_STREAM = /^\/api\/projects\/([^/]+)\/stream(?:\?|$)/

const server = http.createServer((req, res) => {
  const perStream = PER_STREAM.exec(req.url ?? "")
  if (req.method === "GET" && perStream !== null) return hold(res, [perStream[1]!])
  if (req.method === "GET" && (req.url === "/api/stream" || req.url?.startsWith("/api/stream?"))) {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ??
      new URL(req.url, "http://floor").searchParams.get("access_token") ?? ""
    const projects = members[token]
    if (projects === undefined) {
      res.writeHead(401).end()
      return
    }
    hold(res, projects)
    const heads = Object.fromEntries(projects.map((p) => [`project:${p}`, 0]))
    res.write(`id: 0\nevent: heads\ndata: ${JSON.stringify({ streams: heads })}\n\n`)
    return
  }
  res.writeHead(404).end()
})

setInterval(() => {
  for (const res of all) res.write(KEEPALIVE)
}, HEARTBEAT_MS).unref()

process.on("message", (message: ToFloor) => {
  switch (message.type) {
    case "members":
      members = message.projects
      break
    case "publish": {
      const stream = `project:${message.projectId}`
      const envelope = {
        id: randomUUID(),
        stream,
        seq: message.seq,
        type: "message.created",
        projectId: message.projectId,
        actorId: randomUUID(),
        occurredAt: new Date().toISOString(),
        data: { body: "fan-out", role: "user", authorId: randomUUID(), messageId: randomUUID() }
      }
      const frame = Buffer.from(`id: ${message.seq}\nevent: message.created\ndata: ${JSON.stringify(envelope)}\n\n`)
      const targets = byProject.get(message.projectId) ?? new Set()
      for (const res of targets) res.write(frame)
      send({ type: "done", id: message.id, stream, seq: message.seq, count: targets.size })
      break
    }
  }
})

process.on("disconnect", () => process.exit(0))

server.listen(0, "127.0.0.1", () => send({ type: "listening", port: (server.address() as { port: number }).port }))
