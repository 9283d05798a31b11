import * as fs from "node:fs/promises"
import { SourceMap } from "node:module"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { fixed, repoRoot, table } from "../support.js"

/**
 * `BENCH_PROFILE=1`: the server ran under `node --cpu-prof`; this reads the `.cpuprofile` it wrote on
 * SIGTERM and tells where its CPU went. Self time per sample is the time to the next sample
 * (`timeDeltas`), counted only for samples inside the given windows (the measured wrk runs: V8's
 * timestamps and `process.hrtime` share CLOCK_MONOTONIC, in µs). The server is one esbuild bundle,
 * so each frame's position is mapped back through `main.js.map` to the original file — that is how
 * Effect, the platform, @effect/sql, pg and Herald's own code are told apart.
 */

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
  readonly columnNumber: number
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<{ readonly id: number; readonly callFrame: CallFrame }>
  readonly startTime: number
  readonly endTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export type Window = readonly [startUs: number, endUs: number]

const CATEGORIES = [
  "Herald (packages/*)",
  "effect",
  "@effect/platform*",
  "@effect/sql*",
  "pg / pg-protocol",
  "other packages",
  "node internals (node:)",
  "V8 / native (no url)",
  "GC",
  "(program)",
  "bundle, unmapped"
] as const
type Category = (typeof CATEGORIES)[number]

const PG_FAMILY = new Set([
  "pg",
  "pg-protocol",
  "pg-pool",
  "pg-types",
  "pg-int8",
  "pg-connection-string",
  "pg-cursor",
  "pgpass",
  "postgres-array",
  "postgres-bytea",
  "postgres-date",
  "postgres-interval",
  "split2"
])

const packageOf = (file: string) => {
  const i = file.lastIndexOf("/node_modules/")
  if (i < 0) return undefined
  const parts = file.slice(i + "/node_modules/".length).split("/")
  return parts[0]!.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0]!
}

const categoryOfFile = (file: string): Category => {
  const pkg = packageOf(file)
  if (pkg === undefined) return file.startsWith(repoRoot) ? "Herald (packages/*)" : "other packages"
  if (pkg === "effect") return "effect"
  if (pkg.startsWith("@effect/platform")) return "@effect/platform*"
  if (pkg.startsWith("@effect/sql")) return "@effect/sql*"
  if (PG_FAMILY.has(pkg)) return "pg / pg-protocol"
  if (pkg.startsWith("@herald/")) return "Herald (packages/*)"
  return "other packages"
}

interface Frame {
  readonly name: string
  readonly where: string
  readonly category: Category | "(idle)"
}

/** Source maps of the bundles seen in the profile (`<file>.map` beside each), loaded once. */
const sourceMaps = new Map<string, { map: SourceMap; dir: string } | undefined>()
const sourceMapOf = async (file: string) => {
  if (!sourceMaps.has(file)) {
    const text = await fs.readFile(`${file}.map`, "utf8").catch(() => undefined)
    sourceMaps.set(
      file,
      text === undefined ? undefined : { map: new SourceMap(JSON.parse(text)), dir: path.dirname(file) }
    )
  }
  return sourceMaps.get(file)
}

const shortPath = (file: string) => {
  const pkg = packageOf(file)
  if (pkg !== undefined) return `${pkg}/…/${path.basename(file)}`
  return path.relative(repoRoot, file)
}

const resolveFrame = async (cf: CallFrame): Promise<Frame> => {
  const name = cf.functionName || "(anonymous)"
  if (cf.url === "") {
    if (name === "(idle)") return { name, where: "", category: "(idle)" }
    if (name === "(garbage collector)") return { name, where: "", category: "GC" }
    if (name === "(program)") return { name, where: "", category: "(program)" }
    return { name, where: "", category: "V8 / native (no url)" }
  }
  if (cf.url.startsWith("node:")) {
    return { name, where: `${cf.url}:${cf.lineNumber + 1}`, category: "node internals (node:)" }
  }
  const file = cf.url.startsWith("file://") ? fileURLToPath(cf.url) : cf.url
  const sm = await sourceMapOf(file)
  const entry = sm?.map.findEntry(cf.lineNumber, cf.columnNumber)
  if (sm !== undefined && entry !== undefined && "originalSource" in entry) {
    const original = path.resolve(sm.dir, entry.originalSource)
    return { name, where: `${shortPath(original)}:${entry.originalLine + 1}`, category: categoryOfFile(original) }
  }
  const category = sm === undefined ? categoryOfFile(file) : "bundle, unmapped"
  return { name, where: `${shortPath(file)}:${cf.lineNumber + 1}:${cf.columnNumber + 1}`, category }
}

/** The newest `.cpuprofile` in `dir`. */
export const findProfile = async (dir: string) => {
  const names = (await fs.readdir(dir)).filter((n) => n.endsWith(".cpuprofile"))
  if (names.length === 0) throw new Error(`no .cpuprofile in ${dir} (did the server exit on SIGTERM?)`)
  const stats = await Promise.all(names.map(async (n) => ({ n, t: (await fs.stat(path.join(dir, n))).mtimeMs })))
  return path.join(dir, stats.sort((a, b) => b.t - a.t)[0]!.n)
}

/** Header and rows with their first `n` columns padded to the right, so `table` shows them left-aligned. */
const leftAligned = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  n: number
): [ReadonlyArray<string>, ReadonlyArray<ReadonlyArray<string>>] => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const pad = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i < n ? c.padEnd(widths[i]!) : c))
  return [pad(header), rows.map(pad)]
}

export const analyzeProfile = async (file: string, windows: ReadonlyArray<Window>, top = 25): Promise<string> => {
  const profile = JSON.parse(await fs.readFile(file, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n.callFrame]))

  // Self time per node, within the windows.
  const selfUs = new Map<number, number>()
  let t = profile.startTime
  const times = profile.timeDeltas.map((d) => (t += d))
  const inWindow = (ts: number) => windows.length === 0 || windows.some(([a, b]) => ts >= a && ts < b)
  let sampled = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const at = times[i]!
    const until = i + 1 < times.length ? times[i + 1]! : profile.endTime
    if (!inWindow(at)) continue
    const d = Math.max(0, until - at)
    sampled += d
    selfUs.set(profile.samples[i]!, (selfUs.get(profile.samples[i]!) ?? 0) + d)
  }
  if (sampled === 0 && windows.length > 0) {
    const whole = await analyzeProfile(file, [], top)
    return `(no samples inside the measured runs' windows: the whole profile instead)\n${whole}`
  }

  // Folded by function (one function appears under many call paths).
  const byFrame = new Map<string, { frame: Frame; us: number }>()
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!
    const key = `${cf.functionName}\u0000${cf.url}\u0000${cf.lineNumber}\u0000${cf.columnNumber}`
    const entry = byFrame.get(key)
    if (entry !== undefined) entry.us += us
    else byFrame.set(key, { frame: await resolveFrame(cf), us })
  }
  const entries = [...byFrame.values()]
  const idleUs = entries.filter((e) => e.frame.category === "(idle)").reduce((n, e) => n + e.us, 0)
  const busyUs = sampled - idleUs
  const pct = (us: number) => busyUs > 0 ? `${fixed((100 * us) / busyUs, 1)}%` : "n/a"
  const ms = (us: number) => fixed(us / 1000, 1)

  const busy = entries.filter((e) => e.frame.category !== "(idle)").sort((a, b) => b.us - a.us)
  const topTable = table(
    [
      `server CPU profile: top ${top} functions by self time, ` +
      `${windows.length === 0 ? "over the whole profile" : "in the measured wrk runs"} ` +
      `(${ms(sampled)} ms sampled, ${ms(idleUs)} ms idle, ${ms(busyUs)} ms busy = 100%)`,
      "locations are the original sources, through the bundle's source map"
    ],
    ...leftAligned(
      ["function", "where", "category", "self ms", "% busy"],
      busy.slice(0, top).map((e) => [e.frame.name, e.frame.where, e.frame.category, ms(e.us), pct(e.us)]),
      3
    )
  )

  const shares = new Map<string, number>(CATEGORIES.map((c) => [c, 0]))
  for (const e of busy) shares.set(e.frame.category, (shares.get(e.frame.category) ?? 0) + e.us)
  const others = new Map<string, number>()
  for (const e of busy) {
    if (e.frame.category !== "other packages") continue
    const pkg = e.frame.where.split("/…/")[0]!
    others.set(pkg, (others.get(pkg) ?? 0) + e.us)
  }
  const shareTable = table(
    "server CPU profile: busy time by category ((idle) excluded)",
    ["category", "self ms", "% busy"],
    [...shares].filter(([, us]) => us > 0).sort((a, b) => b[1] - a[1]).map(([c, us]) => [c, ms(us), pct(us)]),
    others.size === 0 ? [] : [
      "other packages: " +
      [...others].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([p, us]) => `${p} ${pct(us)}`).join(", ")
    ]
  )
  return [topTable, shareTable, "", `profile: ${file}`].join("\n")
}
