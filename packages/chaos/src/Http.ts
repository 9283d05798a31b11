import { Effect } from "effect"

/**
 * One JSON request to a node, as the workload and the history readers make them. A request that
 * gets no answer (the node is down, frozen, or its database is) is not an error of the campaign:
 * it resolves as `{ status: 0 }` with what went wrong, and the caller decides whether to retry.
 */

export interface Answer {
  /** The HTTP status; 0 when no answer came (refused, reset, timed out). */
  readonly status: number
  readonly body: unknown
  readonly error?: string
}

export const REQUEST_TIMEOUT_MS = 8_000

export const request = (
  baseUrl: string,
  method: string,
  path: string,
  token: string,
  body?: unknown,
  timeoutMs = REQUEST_TIMEOUT_MS
): Effect.Effect<Answer> =>
  Effect.promise(async (signal) => {
    try {
      const res = await fetch(baseUrl + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" })
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
      })
      const text = await res.text()
      let parsed: unknown = text
      try {
        parsed = text.length > 0 ? JSON.parse(text) : undefined
      } catch {
        // not JSON: kept as text
      }
      return { status: res.status, body: parsed }
    } catch (error) {
      return {
        status: 0,
        body: undefined,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error)
      }
    }
  })

/** A field of a JSON object answer, if it is there. */
export const field = (body: unknown, ...keys: ReadonlyArray<string>): unknown => {
  let at: unknown = body
  for (const key of keys) {
    if (typeof at !== "object" || at === null) return undefined
    at = (at as Record<string, unknown>)[key]
  }
  return at
}

export const str = (value: unknown): string | undefined => typeof value === "string" ? value : undefined
export const num = (value: unknown): number | undefined => typeof value === "number" ? value : undefined
