import type { CampaignReport, RunReport } from "./Campaign.js"
import type { Violation } from "./Checker.js"
import { FAULT_KINDS, type FaultRecord } from "./Records.js"

/** The campaign's report as text: per run the faults injected, the workload, the clients, and each violation in context. */

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

/** Violations of one kind printed in full; the rest counted (and written to a file: see index.ts). */
export const SHOWN_PER_KIND = 8

/** The faults in effect around `at`: from 5 s before it to 1 s after. */
const faultsAround = (faults: ReadonlyArray<FaultRecord>, at: number) =>
  faults.filter((f) => !f.skipped && f.at <= at + 1_000 && (f.until ?? Infinity) >= at - 5_000)

const describeFault = (f: FaultRecord) =>
  `${f.kind} ${f.target} at ${seconds(f.at)}${
    f.until === undefined ? " (never recovered)" : f.until > f.at ? `–${seconds(f.until)}` : ""
  }${f.detail === "" ? "" : ` (${f.detail})`}`

const describeViolation = (report: RunReport, v: Violation) => {
  const lines = [`- ${v.at === undefined ? "" : `[${seconds(v.at)}] `}${v.message}`]
  if (v.at !== undefined) {
    const around = faultsAround(report.run.faults, v.at)
    lines.push(`    faults around: ${around.length === 0 ? "none" : around.map(describeFault).join("; ")}`)
  }
  return lines.join("\n")
}

export const formatRun = (report: RunReport, replay: string, shownPerKind = SHOWN_PER_KIND): string => {
  const { run } = report
  const out: Array<string> = []
  out.push(
    "",
    `=== ${report.broker} broker · ${report.nodes} nodes · ${
      seconds(report.durationMs)
    } of faults · seed ${report.seed} · ${seconds(report.wallMs)} wall ===`
  )
  const counts = FAULT_KINDS.filter((k) =>
    report.faultCounts[k] > 0 || (k !== "redis-kill" && k !== "listen-terminate")
  )
    .map((k) => `${k} ${report.faultCounts[k]}`)
  const skipped = run.faults.filter((f) => f.skipped).length
  out.push(
    `faults injected: ${counts.join(", ")}${
      report.listenTerminated > 0 ? ` (${report.listenTerminated} LISTEN connections terminated)` : ""
    }${skipped > 0 ? `; ${skipped} skipped` : ""}`,
    `  and all along: publish failures on ${
      report.publishFailureNodes.join(", ") || "no node"
    }; ${report.oversizedPosts} oversized bodies (8 000–10 000 characters, over the NOTIFY limit)`
  )
  out.push(`fault log: ${run.faults.map(describeFault).join("; ") || "none"}`)
  const kinds = [...new Set(run.writes.map((w) => w.kind))]
  out.push(
    `workload: ${
      kinds.map((k) => {
        const ws = run.writes.filter((w) => w.kind === k)
        const n = (o: string) => ws.filter((w) => w.outcome === o).length
        return `${k} ${n("confirmed")}/${n("refused")}/${n("unconfirmed")}`
      }).join(", ")
    } (confirmed/refused/unconfirmed)`
  )
  const connections = run.clients.reduce((n, c) => n + c.connections.length, 0)
  const frames = run.clients.reduce((n, c) => n + c.connections.reduce((m, k) => m + k.frames.length, 0), 0)
  const pages = run.histories.reduce((n, h) => n + h.pages.length, 0)
  const signals = (kind: string) =>
    run.clients.reduce(
      (n, c) => n + c.connections.reduce((m, k) => m + k.frames.filter((f) => f.event === kind).length, 0),
      0
    )
  out.push(
    `clients: ${run.clients.length} SSE clients (${
      ["multiplexed", "project", "workspace"].map((k) => `${run.clients.filter((c) => c.kind === k).length} ${k}`).join(
        ", "
      )
    }), ${connections} connections, ${frames} frames (live signals among them: ${
      ["presence", "typing", "draft"].map((k) => `${k} ${signals(k)}`).join(", ")
    }); ${run.histories.length} history readers, ${pages} pages`
  )
  for (const note of report.notes) out.push(`note: ${note}`)
  if (report.violations.length === 0) {
    out.push("checker: no violation")
  } else {
    out.push(`checker: ${report.violations.length} violation${report.violations.length === 1 ? "" : "s"}`)
    const byKind = new Map<string, Array<Violation>>()
    for (const v of report.violations) byKind.set(v.kind, [...(byKind.get(v.kind) ?? []), v])
    for (const [kind, vs] of byKind) {
      out.push(`${kind} (${vs.length}):`)
      for (const v of vs.slice(0, shownPerKind)) out.push(describeViolation(report, v))
      if (vs.length > shownPerKind) out.push(`- … and ${vs.length - shownPerKind} more`)
    }
    out.push(`replay: ${replay}`)
  }
  return out.join("\n")
}

export const formatCampaign = (report: CampaignReport, replay: (broker: string) => string): string =>
  report.runs.map((r) => formatRun(r, replay(r.broker))).join("\n")

/** One line per run: how many violations of each kind. */
export const summary = (report: CampaignReport): string =>
  report.runs.map((r) => {
    const byKind = new Map<string, number>()
    for (const v of r.violations) byKind.set(v.kind, (byKind.get(v.kind) ?? 0) + 1)
    return `${r.broker}: ${
      r.violations.length === 0 ? "no violation" : [...byKind].map(([k, n]) => `${k} ${n}`).join(", ")
    }`
  }).join("\n")
