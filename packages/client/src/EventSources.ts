import type { EventSourceConstructor } from "./Subscription.js"

/**
 * Which `EventSource` a subscription opens when the application names none: the browser's own
 * (`globalThis.EventSource`), else the one the Node entry (node.ts) registers — Node 20 has none.
 */
let registered: EventSourceConstructor | undefined

export const registerEventSource = (constructor: EventSourceConstructor) => {
  registered = constructor
}

export const resolveEventSource = (given: EventSourceConstructor | undefined): EventSourceConstructor => {
  const found = given ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource ?? registered
  if (found === undefined) {
    throw new Error(
      "@herald/client: no EventSource here; pass `EventSource` in the options (in Node, import \"@herald/client\" " +
        "through its Node entry, which brings one)"
    )
  }
  return found
}
