import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { Redis } from "ioredis"
import * as fs from "node:fs/promises"
import * as http from "node:http"
import * as os from "node:os"
import * as path from "node:path"
import { afterAll } from "vitest"
import { parse } from "yaml"
import {
  api,
  freePort,
  readiness,
  repoRoot,
  type Spawned,
  spawnProcess,
  withoutHeraldSettings
} from "../../../test-support/Process.js"
import { type RedisServer, startRedis } from "../../../test-support/Redis.js"
import { connectSse } from "../../../test-support/SseClient.js"
import { freshDatabaseUrl } from "../../../test-support/TestDatabase.js"
import { runtimeStage } from "./support/Dockerfile.js"

/**
 * compose.yaml (the fleet to try: two Herald nodes on the redis broker behind one nginx, Redis,
 * PostgreSQL, Jaeger) checked without a Docker engine: its services, variables, ports and start
 * order against the Dockerfile, docs/configuration.md, deploy/nginx.conf and docs/deploy.md; then
 * its commands run outside Docker with its environment, as Launch.test runs the Dockerfile's.
 */

// ------------------------------------------------------------------------------------------------
// compose.yaml, read as Compose reads the parts we use

interface Service {
  readonly image?: string
  readonly build?: string | { readonly context: string; readonly dockerfile?: string }
  readonly command?: string | Array<string>
  readonly entrypoint?: string | Array<string>
  readonly environment?: Record<string, string | number | boolean | null>
  readonly ports?: Array<string | number>
  readonly volumes?: Array<string>
  readonly depends_on?: Record<string, { readonly condition: string }> | Array<string>
  readonly healthcheck?: { readonly test?: unknown; readonly disable?: boolean }
  readonly restart?: string
  readonly stop_grace_period?: string
}

const readText = (file: string) => fs.readFile(path.join(repoRoot, file), "utf8")

// `merge: true`: Compose reads YAML merge keys (`<<: *anchor`), so we do too.
const compose = parse(await readText("compose.yaml"), { merge: true }) as { services: Record<string, Service> }
const services = compose.services
const service = (name: string) => {
  const s = services[name]
  if (s === undefined) throw new Error(`compose.yaml has no service ${name}`)
  return s
}
const environment = (name: string): Record<string, string> =>
  Object.fromEntries(Object.entries(service(name).environment ?? {}).map(([k, v]) => [k, String(v ?? "")]))
const byImage = (prefix: string) => Object.keys(services).filter((n) => services[n]!.image?.startsWith(prefix))

const NODES = ["herald-1", "herald-2"] as const
const MIGRATE = "migrate"
const LB = "lb"
/** Every service built from the repository's Dockerfile: the nodes and the one-shot migration. */
const HERALD_SERVICES = [MIGRATE, ...NODES]

/** `[ip:]host:container` of the short syntax. */
const publishedPorts = (s: Service) =>
  (s.ports ?? []).map((p) => {
    const parts = String(p).split(":")
    return { ip: parts.length === 3 ? parts[0]! : undefined, host: parts.at(-2), container: parts.at(-1)! }
  })

/** Jaeger's OTLP/HTTP receiver in the all-in-one image (4317 is OTLP/gRPC, 16686 its UI). */
const JAEGER_OTLP_HTTP_PORT = "4318"
const JAEGER_UI_PORT = "16686"

/** The variable names of docs/configuration.md's table: the backticked names in each row's first cell. */
const documentedVariables = async () => {
  const names = new Set<string>()
  for (const line of (await readText("docs/configuration.md")).split("\n")) {
    const first = line.match(/^\|([^|]+)\|/)?.[1]
    for (const m of first?.matchAll(/`([A-Z][A-Z0-9_]*)`/g) ?? []) names.add(m[1]!)
  }
  return names
}

/** deploy/nginx.conf without its comments. */
const nginxConf = async () =>
  (await readText("deploy/nginx.conf")).split("\n").map((l) => l.replace(/#.*$/, "")).join("\n")

const durationSeconds = (value: string) => {
  const m = value.match(/^(\d+)(ms|s|m|h|d)?$/)!
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 }[m[2] ?? "s"]!
}

/** docs/deploy.md's section on Compose: from its heading to the next `## `. */
const composeSection = async () => {
  const text = await readText("docs/deploy.md")
  const start = text.indexOf("## Trying a fleet with Docker Compose")
  expect(start, "docs/deploy.md has a section \"Trying a fleet with Docker Compose\"").toBeGreaterThanOrEqual(0)
  const end = text.indexOf("\n## ", start + 3)
  return text.slice(start, end === -1 ? undefined : end)
}

// ------------------------------------------------------------------------------------------------

describe("compose.yaml against the Dockerfile and the documented configuration", () => {
  it("its services: PostgreSQL, Redis, Jaeger, a one-shot migration, two Herald nodes and one load balancer", () => {
    expect(Object.keys(services).sort()).toEqual([...NODES, "jaeger", LB, MIGRATE, "postgres", "redis"].sort())
    expect(byImage("postgres:")).toEqual(["postgres"])
    expect(byImage("redis:")).toEqual(["redis"])
    expect(byImage("jaegertracing/all-in-one:")).toEqual(["jaeger"])
    expect(byImage("nginx:")).toEqual([LB])
  })

  it("the Herald services run the image of the repository's Dockerfile: the nodes its CMD, the migration `herald migrate`", async () => {
    const { copies, cmd } = await runtimeStage()
    for (const name of HERALD_SERVICES) {
      const { build, entrypoint } = service(name)
      const context = typeof build === "string" ? build : build?.context
      expect(context, `${name} is built from the repository`).toBe(".")
      expect(typeof build === "object" ? build.dockerfile ?? "Dockerfile" : "Dockerfile").toBe("Dockerfile")
      expect(entrypoint, `${name} keeps the image's entrypoint`).toBeUndefined()
    }
    for (const name of NODES) {
      // No command: the image's CMD, the production command (`node packages/server/dist/main.js`).
      expect(service(name).command ?? cmd, name).toEqual(cmd)
      expect(cmd).toEqual(["node", "packages/server/dist/main.js"])
    }
    const migrate = service(MIGRATE).command
    expect(migrate).toEqual(["node", "packages/cli/bin/herald.mjs", "migrate"])
    // …and the image holds that bin and its bundle.
    const copied = copies.map((c) => c.at(-1))
    expect(copied).toContain("packages/cli/bin")
    expect(copied).toContain("packages/cli/dist")
    expect(service(MIGRATE).restart ?? "no").toBe("no")
  })

  it("every variable a Herald service sets is in docs/configuration.md; the nodes differ only in OTEL_SERVICE_NAME", async () => {
    const documented = await documentedVariables()
    expect(documented.has("DATABASE_URL")).toBe(true) // the table was read
    for (const name of HERALD_SERVICES) {
      for (const variable of Object.keys(environment(name))) {
        expect(documented.has(variable), `${name} sets ${variable}, which docs/configuration.md does not name`).toBe(
          true
        )
      }
    }
    const [one, two] = NODES.map(environment) as [Record<string, string>, Record<string, string>]
    expect(one.HERALD_BROKER).toBe("redis")
    expect(Object.keys(one).sort()).toEqual(Object.keys(two).sort())
    expect(one.OTEL_SERVICE_NAME).not.toBe(two.OTEL_SERVICE_NAME)
    expect({ ...one, OTEL_SERVICE_NAME: "" }).toEqual({ ...two, OTEL_SERVICE_NAME: "" })
    for (const required of ["DATABASE_URL", "HERALD_BROKER", "REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"]) {
      expect(one[required], required).toBeDefined()
    }
    expect(environment(MIGRATE).DATABASE_URL).toBe(one.DATABASE_URL)
  })

  it("the URLs name the services: PostgreSQL with its user, password and database; Redis; Jaeger's OTLP/HTTP port", () => {
    const postgres = environment("postgres")
    const redis = service("redis")
    const jaeger = environment("jaeger")
    for (const name of HERALD_SERVICES) {
      const db = new URL(environment(name).DATABASE_URL!)
      expect(db.protocol).toBe("postgres:")
      expect(db.hostname).toBe("postgres")
      expect(db.port || "5432").toBe("5432")
      expect(decodeURIComponent(db.username)).toBe(postgres.POSTGRES_USER)
      expect(decodeURIComponent(db.password)).toBe(postgres.POSTGRES_PASSWORD)
      expect(db.pathname).toBe(`/${postgres.POSTGRES_DB}`)
    }
    for (const name of NODES) {
      const env = environment(name)
      const r = new URL(env.REDIS_URL!)
      expect(r.protocol).toBe("redis:")
      expect(r.hostname).toBe("redis")
      expect(r.port || "6379").toBe("6379")
      expect(JSON.stringify(redis.command ?? [])).not.toMatch(/--port/) // Redis on its default port
      const otlp = new URL(env.OTEL_EXPORTER_OTLP_ENDPOINT!)
      expect(otlp.protocol).toBe("http:")
      expect(otlp.hostname).toBe("jaeger")
      expect(otlp.port).toBe(JAEGER_OTLP_HTTP_PORT)
    }
    expect(jaeger.COLLECTOR_OTLP_ENABLED).toBe("true")
  })

  it("one published port for the API, the load balancer's, on loopback; Jaeger's UI on loopback; nothing else", () => {
    for (const [name, s] of Object.entries(services)) {
      const ports = publishedPorts(s)
      if (name === LB) {
        expect(ports).toHaveLength(1)
        expect(ports[0]).toMatchObject({ ip: "127.0.0.1", host: "3000" })
      } else if (name === "jaeger") {
        expect(ports).toEqual([{ ip: "127.0.0.1", host: JAEGER_UI_PORT, container: JAEGER_UI_PORT }])
      } else {
        expect(ports, `${name} publishes nothing`).toEqual([])
      }
    }
  })

  it("start order: PostgreSQL and Redis healthy, then the migration, then the nodes; the load balancer after healthy nodes", async () => {
    const { healthcheck } = await runtimeStage()
    const conditions = (name: string) => {
      const deps = service(name).depends_on
      expect(Array.isArray(deps), `${name}: depends_on with conditions`).toBe(false)
      return Object.fromEntries(Object.entries(deps ?? {}).map(([k, v]) => [k, v.condition]))
    }
    expect(service("postgres").healthcheck?.test).toBeDefined()
    expect(service("redis").healthcheck?.test).toBeDefined()
    expect(conditions(MIGRATE)).toEqual({ postgres: "service_healthy" })
    for (const name of NODES) {
      expect(conditions(name)).toMatchObject({
        postgres: "service_healthy",
        redis: "service_healthy",
        [MIGRATE]: "service_completed_successfully"
      })
      // The nodes' health is the image's HEALTHCHECK (GET /health/ready), unless the file gives one.
      expect(service(name).healthcheck?.disable ?? false).toBe(false)
      expect(healthcheck.join(" ")).toMatch(/\/health\/ready/)
      // G8: a node exits within 10 s of SIGTERM; Compose must wait that long before SIGKILL.
      expect(durationSeconds(service(name).stop_grace_period ?? "10s")).toBeGreaterThan(10)
    }
    expect(conditions(LB)).toEqual(Object.fromEntries(NODES.map((n) => [n, "service_healthy"])))
  })

  it("the load balancer's deploy/nginx.conf: both nodes on the image's port, SSE-safe proxying, listening where the port is published", async () => {
    const { env } = await runtimeStage()
    const conf = await nginxConf()
    expect(service(LB).volumes).toContain("./deploy/nginx.conf:/etc/nginx/nginx.conf:ro")
    const upstream = conf.match(/upstream\s+(\S+)\s*\{([^}]*)\}/)
    expect(upstream).not.toBeNull()
    const [, upstreamName, body] = upstream!
    const servers = [...body!.matchAll(/^\s*server\s+([^\s;:]+):(\d+)/gm)].map((m) => ({ host: m[1], port: m[2] }))
    expect(servers).toEqual(NODES.map((host) => ({ host, port: env.PORT })))
    expect(conf).toMatch(new RegExp(`proxy_pass\\s+http://${upstreamName};`))
    expect(conf).toMatch(/proxy_buffering\s+off;/)
    expect(conf).toMatch(/proxy_http_version\s+1\.1;/)
    expect(conf).toMatch(/proxy_set_header\s+Connection\s+"";/) // keepalive to the nodes, no "close"
    expect(conf).not.toMatch(/gzip\s+on;/)
    const readTimeout = conf.match(/proxy_read_timeout\s+(\S+);/)?.[1]
    expect(readTimeout).toBeDefined()
    expect(durationSeconds(readTimeout!)).toBeGreaterThanOrEqual(3600)
    const listen = conf.match(/listen\s+(\d+)/)?.[1]
    expect(publishedPorts(service(LB))[0]!.container).toBe(listen)
  })

  it("docs/deploy.md's Compose section: its commands name services of compose.yaml, its URLs the published ports", async () => {
    const section = await composeSection()
    expect(section).toContain("docker compose up --build")
    const api = publishedPorts(service(LB))[0]!
    expect(section).toContain(`http://${api.ip}:${api.host}/`)
    expect(section).toContain(`http://127.0.0.1:${JAEGER_UI_PORT}/`)
    const named = [
      ...section.matchAll(
        /docker compose (?:exec|stop|start|kill|restart|logs|pause|unpause)((?:\s+-\S+)*)\s+([a-z0-9-]+)/g
      )
    ].map((m) => m[2]!)
    expect(named.length).toBeGreaterThanOrEqual(3)
    for (const name of named) expect(Object.keys(services), `docs/deploy.md names ${name}`).toContain(name)
  })
})

// ------------------------------------------------------------------------------------------------
// The fleet's commands outside Docker

const cleanups: Array<() => Promise<void>> = []
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined)
}, 60_000)

/** One exported span, as the stand-in for Jaeger read it: which service sent it, its trace, its name. */
interface ExportedSpan {
  readonly service: string
  readonly traceId: string
  readonly name: string
}

/** A stand-in for Jaeger's OTLP/HTTP receiver: answers every export 200 and keeps its spans (OTLP JSON). */
const otlpSink = async () => {
  const paths: Array<string> = []
  const spans: Array<ExportedSpan> = []
  const server = http.createServer((req, res) => {
    paths.push(req.url ?? "")
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          resourceSpans?: Array<{
            resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> }
            scopeSpans?: Array<{ spans?: Array<{ traceId: string; name: string }> }>
          }>
        }
        for (const r of body.resourceSpans ?? []) {
          const service = r.resource?.attributes?.find((a) => a.key === "service.name")?.value.stringValue ?? ""
          for (const scope of r.scopeSpans ?? []) {
            for (const span of scope.spans ?? []) spans.push({ service, traceId: span.traceId, name: span.name })
          }
        }
      } catch {
        // not JSON: counted by its path only
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  cleanups.push(() => new Promise((resolve) => server.close(() => resolve())))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, paths, spans }
}

const run = (argv: ReadonlyArray<string>, env: Record<string, string | undefined>) => {
  expect(argv[0]).toBe("node")
  return spawnProcess(process.execPath, argv.slice(1), env)
}

describe.sequential("compose.yaml's commands and environment, run outside Docker", () => {
  it(
    "the migration, then both nodes at once on the redis broker: ready, the HEALTHCHECK passes, deploy.md's user command works, a post on one node reaches a stream on the other, SIGTERM exits 0, and the post's trace reached Jaeger's stand-in from both nodes",
    async () => {
      const { cmd, env: imageEnv, healthcheck } = await runtimeStage()
      const scope = Effect.runSync(Scope.make())
      cleanups.push(() => Effect.runPromise(Scope.close(scope, Exit.void)))
      const databaseUrl = await Effect.runPromise(Scope.extend(freshDatabaseUrl, scope))
      const redis: RedisServer = await startRedis()
      cleanups.push(() => redis.stop())
      const sink = await otlpSink()
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), "herald-compose-"))
      cleanups.push(() => fs.rm(dataDir, { recursive: true, force: true }))

      // Each service of compose.yaml that a URL names, and what stands in for it here.
      const standIns: Record<string, string> = { postgres: databaseUrl, redis: redis.url, jaeger: sink.url }
      const envOf = (name: string, port?: number) => {
        const env: Record<string, string | undefined> = { ...withoutHeraldSettings(), ...imageEnv }
        for (const [key, value] of Object.entries(environment(name))) {
          const host = URL.canParse(value) ? new URL(value).hostname : undefined
          if (host !== undefined && host in services) {
            expect(standIns[host], `${name}'s ${key} names ${host}, which has no stand-in here`).toBeDefined()
            env[key] = standIns[host]
          } else env[key] = value
        }
        env.HERALD_DATA_DIR = path.join(dataDir, name)
        // A node: loopback and a free port instead of the image's 0.0.0.0:3000.
        return port === undefined ? env : { ...env, HOST: "127.0.0.1", PORT: String(port) }
      }

      const migrate = run(service(MIGRATE).command as Array<string>, envOf(MIGRATE))
      expect((await migrate.exited).code, migrate.output()).toBe(0)
      expect(migrate.output()).toMatch(/applied: 0001_/)

      const nodes: Array<{ name: string; env: Record<string, string | undefined>; url: string; proc: Spawned }> = []
      for (const name of NODES) {
        const port = await freePort()
        const env = envOf(name, port)
        nodes.push({ name, env, url: `http://127.0.0.1:${port}`, proc: run(cmd, env) })
      }
      cleanups.push(async () => {
        for (const n of nodes) await n.proc.stop()
      })
      await Promise.all(nodes.map((n) => n.proc.waitFor(/Herald is up/, 60_000)))
      for (const n of nodes) {
        const probe = run(healthcheck, n.env)
        expect((await probe.exited).code, probe.output()).toBe(0)
        expect(await readiness(n.url)).toEqual({
          status: 200,
          checks: { database: "ok", publisher: "ok", broker: "ok" }
        })
      }

      // deploy.md's way to create a user: `docker compose exec <node> <command>`, here with the node's environment.
      const exec = (await composeSection()).match(
        /docker compose exec\s+([a-z0-9-]+)\s+(node [^`\n]*users create[^`\n]*)/
      )
      expect(exec, "docs/deploy.md: docker compose exec … users create").not.toBeNull()
      const node = nodes.find((n) => n.name === exec![1])!
      expect(node).toBeDefined()
      const create = run(exec![2]!.trim().split(/\s+/), node.env)
      expect((await create.exited).code, create.output()).toBe(0)
      const token = create.output().match(/token:\s+(\S+)/)?.[1]
      expect(token).toBeDefined()

      const [one, two] = nodes as [(typeof nodes)[number], (typeof nodes)[number]]
      const project = await api(one.url, "POST", "/api/projects", token!, { name: "Fleet" })
      expect(project.status).toBe(201)
      const stream = await connectSse(two.url, `/api/projects/${project.body.id}/stream`, { token: token!, after: "0" })
      const post = await api(one.url, "POST", `/api/projects/${project.body.id}/messages`, token!, { body: "hi" })
      expect(post.status).toBe(201)
      const events = await stream.waitForEvents(2)
      expect(events.map((e) => e.event)).toEqual(["project.created", "message.created"])
      // …through Redis, the broker compose.yaml names: the fan-out stream is there.
      const client = new Redis(redis.url)
      try {
        expect(await client.keys("*")).not.toEqual([])
      } finally {
        client.disconnect()
      }

      for (const n of nodes) {
        n.proc.child.kill("SIGTERM")
        expect((await n.proc.exited).code, n.proc.output()).toBe(0)
      }
      await stream.ended

      // Jaeger's stand-in got the traces, each node under its own service name, and the post's
      // trace crosses nodes: its request on one, the frames written to the reader on the other.
      expect(sink.paths.every((p) => p === "/v1/traces")).toBe(true)
      const postSpan = sink.spans.find((span) =>
        span.service === one.env.OTEL_SERVICE_NAME && span.name === "http.server POST"
      )
      expect(postSpan, JSON.stringify(sink.spans.slice(0, 20))).toBeDefined()
      expect(sink.spans).toContainEqual({
        service: two.env.OTEL_SERVICE_NAME,
        traceId: postSpan!.traceId,
        name: "herald.sse.fanout"
      })
    },
    180_000
  )
})
