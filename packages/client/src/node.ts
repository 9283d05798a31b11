/** The Node entry: Node 20 has no `EventSource`, so the `eventsource` package's WHATWG one is the default here. */
import { EventSource } from "eventsource"
import { registerEventSource } from "./EventSources.js"

registerEventSource(EventSource)

export * from "./index.js"
