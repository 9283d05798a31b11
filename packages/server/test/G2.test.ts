import { describe, expect, it } from "@effect/vitest"
import type { Layer } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type { BrokerPublisher } from "../src/broker/BrokerPublisher.js"
import type { ApiLive } from "../src/http/HttpApp.js"

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src")

/** Every module reachable through relative imports from `entry`. */
const reachable = (entry: string): Set<string> => {
  const seen = new Set<string>()
  const visit = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    const text = fs.readFileSync(file, "utf8")
    for (const [, spec] of text.matchAll(/(?:from|import)\s*\(?\s*["'](\.[^"']+)["']/g)) {
      visit(path.resolve(path.dirname(file), spec!.replace(/\.js$/, ".ts")))
    }
  }
  visit(entry)
  return seen
}

// Compile-time half: if a handler or the request path used the broker without providing it, the
// API layer would require BrokerPublisher and this assignment would not type-check (npm test runs tsc).
type ApiRequirements = Layer.Layer.Context<typeof ApiLive>
const apiRequiresNoBroker: [BrokerPublisher] extends [ApiRequirements] ? "G2 broken" : "ok" = "ok"

describe("G2: the request path cannot reach the broker", () => {
  it("the API layer does not require the broker publisher", () => {
    expect(apiRequiresNoBroker).toBe("ok")
  })

  it("no module the HTTP API is built from imports the broker's publishing side or an adapter", () => {
    const modules = reachable(path.join(src, "http/HttpApp.ts"))
    // the walk really follows the request path …
    expect(modules).toContain(path.join(src, "chat/ChatService.ts"))
    expect(modules).toContain(path.join(src, "outbox/OutboxWriter.ts"))
    expect(modules).toContain(path.join(src, "stream/SseHub.ts"))
    // … and of the broker it only ever sees the subscribing side (the SSE hub's)
    const broker = [...modules].filter((m) => m.startsWith(path.join(src, "broker"))).map((m) => path.basename(m))
      .sort()
    expect(broker).toEqual(["BrokerError.ts", "BrokerSubscriber.ts"])
  })
})
