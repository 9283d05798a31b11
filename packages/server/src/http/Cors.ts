import type { IncomingMessage, ServerResponse } from "node:http"

/**
 * CORS for HERALD_CORS_ORIGINS, in front of everything the Node server answers (the doors and
 * the HTTP app alike, see NodeServer.ts): a request from a listed origin gets its headers set
 * before anyone answers it — Node's `writeHead` merges them into whatever status and headers the
 * answer then has, errors included — and a preflight is answered here. Any other origin gets no
 * CORS header, so the browser keeps the answer from the page. The API authenticates with bearer
 * tokens, never cookies: no `Access-Control-Allow-Credentials`.
 */

/** Every method the API has; HEAD and GET need no preflight, the list says them anyway. */
const ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
/** A bearer token, a JSON body, and the id an EventSource resumes from. */
const ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
/** What a page reads beyond the safelisted headers: how long to wait after a 429. */
const EXPOSE_HEADERS = "Retry-After"
/** How long a browser may reuse a preflight's answer (Chromium caps it at 2 hours). */
const MAX_AGE_SECONDS = "600"

const notAllowed = (origin: string) =>
  JSON.stringify({
    _tag: "Forbidden",
    message: `the origin ${
      JSON.stringify(origin)
    } may not call this API from a browser: it is not in HERALD_CORS_ORIGINS`
  })

/**
 * The CORS front for `origins` (exact origins, as AppConfig reads them): sets the headers of a
 * listed origin and answers a preflight (true: the request is answered), or leaves the request
 * to the doors and the app (false).
 */
export const corsFront = (origins: ReadonlyArray<string>) => {
  const listed = new Set(origins)
  return (req: IncomingMessage, res: ServerResponse): boolean => {
    const origin = req.headers.origin
    const preflight = req.method === "OPTIONS" && origin !== undefined &&
      req.headers["access-control-request-method"] !== undefined
    // A cache must not hand one origin's answer to another.
    if (listed.size > 0) res.setHeader("vary", "Origin")
    if (origin !== undefined && listed.has(origin)) {
      res.setHeader("access-control-allow-origin", origin)
      if (!preflight) {
        res.setHeader("access-control-expose-headers", EXPOSE_HEADERS)
        return false
      }
      res.writeHead(204, {
        "access-control-allow-methods": ALLOW_METHODS,
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-max-age": MAX_AGE_SECONDS
      })
      res.end()
      return true
    }
    if (!preflight) return false
    // A preflight from an origin not listed: refused here, with nothing a browser would accept.
    const body = notAllowed(origin)
    res.writeHead(403, { "content-type": "application/json", "content-length": Buffer.byteLength(body) })
    res.end(body)
    return true
  }
}
