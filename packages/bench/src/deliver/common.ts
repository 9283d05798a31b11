import type * as http from "node:http"
import { requestJson } from "../support.js"

/** Pieces of the `deliver` bench its parts share: verdicts, the server under test, its stream. */

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

export interface PostedMessage {
  readonly message: { readonly id: string }
  readonly event: { readonly id: string; readonly stream: string; readonly seq: number }
}

export const postMessage = (target: Target, body: string, agent?: http.Agent) =>
  requestJson<PostedMessage>({
    port: target.port,
    method: "POST",
    path: `/api/projects/${target.projectId}/messages`,
    token: target.token,
    body: { body },
    ...(agent === undefined ? {} : { agent })
  }, 201)

export const streamPath = (target: Target) =>
  `/api/projects/${target.projectId}/stream?access_token=${encodeURIComponent(target.token)}`
