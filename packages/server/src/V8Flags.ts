import * as v8 from "node:v8"

/**
 * V8 settings the server process sets for itself as main.ts starts, so that `node packages/server/dist/main.js` — the production command, npm start and
 * the Dockerfile alike — runs with them and nothing outside the product has to remember a flag.
 *
 * `--semi-space-growth-factor=1`: the young generation stays at its initial size (two 1 MB
 * semi-spaces) instead of growing to 2 × 16 MB when allocation is heavy. A reconnect storm (10 000
 * SSE openings in bursts of 250) grew it to its maximum, and V8 never shrank it while the server
 * stayed busy: 30 MB of RSS, 3 KB per connection at 10 000, held for good. Scavenges of a small
 * young generation are short; what survives them is what an idle SSE connection keeps anyway
 * (docs/benchmarks.md, "sse"). Read by V8 at each growth decision, so setting it at run time works.
 */
export const setV8Flags = () => v8.setFlagsFromString("--semi-space-growth-factor=1")
