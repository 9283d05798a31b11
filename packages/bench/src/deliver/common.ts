/** Pieces of the `deliver` bench its parts share (and `write` its verdicts): verdicts, the server under test. */

export interface Verdict {
  readonly target: string
  /** "open": the true figure lies between two bounds on either side of the target. */
  readonly met: boolean | "open" | "not measured"
  readonly measured: string
}

const VERDICT_LABEL = { true: "met", false: "NOT met", open: "open", "not measured": "not run" } as const

export const verdictLine = (v: Verdict) => `  ${VERDICT_LABEL[`${v.met}`].padEnd(7)}  ${v.target}: ${v.measured}`

/** What a bench needs to talk to one server: where it is, a member's token, their project. */
export interface Target {
  readonly port: number
  readonly token: string
  readonly projectId: string
}
