import { describe, expect, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

/**
 * The folders of packages/server/src depend on each other one way (docs/architecture.md, "The code"):
 * `http → chat → outbox → db`, `outbox/OutboxPublisher → broker`, `stream → broker, events`, and
 * anything may report to `observability/`. A module at the top of src/ counts as a node of its own.
 */

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../src")

const modules = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? modules(path.join(dir, entry.name))
      : entry.name.endsWith(".ts")
      ? [path.join(dir, entry.name)]
      : []
  )

/** `chat` for src/chat/ChatService.ts, `main.ts` for src/main.ts. */
const nodeOf = (file: string) => path.relative(src, file).split(path.sep)[0]!

const folderGraph = () => {
  const edges = new Map<string, Set<string>>()
  for (const file of modules(src)) {
    const from = nodeOf(file)
    for (const [, specifier] of fs.readFileSync(file, "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.[^"]+)"/g)) {
      const target = path.resolve(path.dirname(file), specifier!)
      if (!target.startsWith(src + path.sep)) continue
      const to = nodeOf(target)
      if (to !== from) edges.set(from, (edges.get(from) ?? new Set()).add(to))
    }
  }
  return edges
}

/** The nodes that can reach themselves. */
const inCycles = (edges: Map<string, Set<string>>) =>
  [...edges.keys()].filter((start) => {
    const seen = new Set<string>()
    const todo = [...(edges.get(start) ?? [])]
    while (todo.length > 0) {
      const next = todo.pop()!
      if (next === start) return true
      if (seen.has(next)) continue
      seen.add(next)
      todo.push(...(edges.get(next) ?? []))
    }
    return false
  })

describe("architecture", () => {
  it("no folder of packages/server/src takes part in an import cycle", () => {
    const edges = folderGraph()
    // The walk sees the real graph …
    expect(edges.get("http")).toContain("chat")
    expect(edges.get("chat")).toContain("outbox")
    expect(edges.get("stream")).toContain("broker")
    // … and it has no cycle.
    expect(inCycles(edges)).toEqual([])
  })

  it("the dependencies point the way docs/architecture.md draws them", () => {
    const edges = folderGraph()
    const never: ReadonlyArray<readonly [string, string]> = [
      ["chat", "http"],
      ["outbox", "chat"],
      ["outbox", "http"],
      ["db", "outbox"],
      ["broker", "stream"],
      ["broker", "outbox"],
      ["events", "outbox"],
      ["observability", "outbox"],
      ["observability", "http"]
    ]
    for (const [from, to] of never) {
      expect(edges.get(from)?.has(to) ?? false, `${from} must not import ${to}`).toBe(false)
    }
  })
})
