import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { runCampaign } from "../src/Campaign.js"
import { formatCampaign } from "../src/Report.js"

/**
 * `npm run chaos`, bounded: both brokers, three compiled servers each on the campaign's own
 * PostgreSQL, 15 s of workload and faults from a fixed seed (every kind of fault of the broker at
 * least once), then quiescence and the checker, which must find nothing. About 90 s of wall time.
 * `CHAOS_SEED=20261207 npm run chaos -- --minutes 0.25` replays the same schedule.
 */

const SEED = 20261207
const MINUTES = 0.25

describe("chaos campaign", () => {
  it.live(
    "a fixed schedule of faults on both brokers: the checker finds no violation",
    () =>
      Effect.gen(function*() {
        const report = yield* runCampaign({
          seed: SEED,
          brokers: ["postgres", "redis"],
          nodes: 3,
          durationMs: MINUTES * 60_000,
          quiescenceMs: 12_000
        })
        const text = formatCampaign(
          report,
          (broker) => `CHAOS_SEED=${SEED} npm run chaos -- --minutes ${MINUTES} --broker ${broker} --nodes 3`
        )
        for (const run of report.runs) {
          // The schedule holds every kind of fault of the broker.
          const kinds = run.broker === "postgres"
            ? ["kill-9", "pause", "listen-terminate", "pg-restart-fast", "pg-restart-immediate"] as const
            : ["kill-9", "pause", "redis-kill", "pg-restart-fast", "pg-restart-immediate"] as const
          expect(new Set(run.schedule.map((f) => f.kind)), run.broker).toEqual(new Set(kinds))
        }
        const violations = report.runs.flatMap((r) => r.violations.map((v) => `${r.broker} ${v.kind}: ${v.message}`))
        expect(violations, text).toEqual([])
      }),
    240_000
  )
})
