import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as Headers from "@effect/platform/Headers"
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import { Context, Effect, Layer, Option, Tracer } from "effect"
import type { IncomingMessage } from "node:http"
import { AppConfig } from "../config/AppConfig.js"

/**
 * Traces (SPEC §9): with OTEL_EXPORTER_OTLP_ENDPOINT set, Effect's own OTLP/HTTP exporter
 * (`@effect/opentelemetry`'s OtlpTracer: JSON over the platform's HttpClient, batched) is the
 * process's tracer. Unset, there is no tracer layer at all, and every span Herald adds itself is
 * behind `AppConfig.tracing` — the hot paths do not even make one (docs/tracing.md).
 *
 * A trace of a post: the request's server span (continuing an incoming `traceparent`) → its
 * `sql.execute` statement (`herald_post_message`) and a `herald.publish` span per event, whose
 * context travels with the event through the outbox row and the broker → a `herald.sse.fanout`
 * span on every node, with the number of connections the event was written to.
 */

/** The W3C `traceparent` of a span: what an event carries to the publisher and through the broker. */
export const traceparentOf = (span: Tracer.AnySpan): string =>
  `00-${span.traceId}-${span.spanId}-${span.sampled ? "01" : "00"}`

/** A `traceparent` read back (an outbox row, a broker message): the parent of the spans that follow it. */
export const parentOf = (traceparent: string | null | undefined): Tracer.AnySpan | undefined =>
  traceparent == null
    ? undefined
    : Option.getOrUndefined(HttpTraceContext.w3c(Headers.unsafeFromRecord({ traceparent })))

/**
 * A span with no effect around it: made from the tracer directly (the hub's fan-out is a plain
 * synchronous loop, the publish is one call for many events), ended with `end`.
 */
export const startSpan = (
  tracer: Tracer.Tracer,
  name: string,
  parent: Tracer.AnySpan,
  kind: Tracer.SpanKind,
  startTime: bigint
) => tracer.span(name, Option.some(parent), Context.empty(), [], startTime, kind)

/** Attributes of an event on a span. */
export const eventAttributes = (
  span: Tracer.Span,
  event: { readonly id: string; readonly stream: string; readonly seq: number; readonly type: string }
) => {
  span.attribute("herald.event.id", event.id)
  span.attribute("herald.event.stream", event.stream)
  span.attribute("herald.event.seq", event.seq)
  span.attribute("herald.event.type", event.type)
}

/**
 * One `herald.publish` span per event that has a parent (its post's span), around `publish` —
 * one broker call for the whole batch. `publish` is given each event's publish span as a
 * `traceparent` (by index), which the broker carries to every node's fan-out. `source`: whether
 * the batch was handed over by this process's commits or claimed from the outbox.
 */
export const publishSpans = <E, R>(
  events: ReadonlyArray<{ readonly id: string; readonly stream: string; readonly seq: number; readonly type: string }>,
  parents: ReadonlyArray<Tracer.AnySpan | undefined>,
  broker: string,
  source: "hand-off" | "claim",
  publish: (traceparents: ReadonlyArray<string | undefined> | undefined) => Effect.Effect<void, E, R>
): Effect.Effect<void, E, R> =>
  Effect.gen(function*() {
    if (!parents.some((p) => p !== undefined)) return yield* publish(undefined)
    const tracer = yield* Effect.tracer
    const clock = yield* Effect.clock
    const start = clock.unsafeCurrentTimeNanos()
    const spans = events.map((event, i) => {
      const parent = parents[i]
      if (parent === undefined) return undefined
      const span = startSpan(tracer, "herald.publish", parent, "producer", start)
      eventAttributes(span, event)
      span.attribute("messaging.system", broker)
      span.attribute("messaging.batch.message_count", events.length)
      span.attribute("herald.publish.source", source)
      return span
    })
    const exit = yield* Effect.exit(publish(spans.map((s) => s === undefined ? undefined : traceparentOf(s))))
    const end = clock.unsafeCurrentTimeNanos()
    for (const span of spans) span?.end(end, exit)
    return yield* exit
  })

const noopSpan = (
  name: string,
  parent: Option.Option<Tracer.AnySpan>,
  context: Context.Context<never>,
  links: ReadonlyArray<Tracer.SpanLink>,
  startTime: bigint,
  kind: Tracer.SpanKind
): Tracer.Span => ({
  _tag: "Span",
  name,
  spanId: "0000000000000000",
  traceId: "00000000000000000000000000000000",
  parent,
  context,
  status: { _tag: "Started", startTime },
  attributes: new Map(),
  links,
  sampled: false,
  kind,
  end: () => undefined,
  attribute: () => undefined,
  event: () => undefined,
  addLinks: () => undefined
})

/**
 * The exporter's tracer, except for statements outside any trace: the publisher's claims and polls,
 * the materializer, the hub's gap fills, the signals' heartbeats run all the time and are not what
 * anyone traces (a statement of a request or of a publish has a parent, and is kept).
 */
const withoutStrayStatements = (inner: Tracer.Tracer): Tracer.Tracer =>
  Tracer.make({
    span: (name, parent, context, links, startTime, kind, options) =>
      parent._tag === "None" && name === "sql.execute"
        ? noopSpan(name, parent, context, links, startTime, kind)
        : inner.span(name, parent, context, links, startTime, kind, options),
    context: (f, fiber) => inner.context(f, fiber)
  })

/** The process's tracer as AppConfig says: OTLP/HTTP JSON to the configured endpoint, or none at all. */
export const TracingLive = Layer.unwrapEffect(Effect.map(AppConfig, (config) =>
  Option.match(config.tracing, {
    onNone: () => Layer.empty,
    onSome: (tracing) =>
      Layer.unwrapScoped(
        Effect.map(
          OtlpTracer.make({
            url: tracing.url,
            resource: { serviceName: tracing.serviceName },
            exportInterval: tracing.exportIntervalMs
          }),
          (tracer) => Layer.setTracer(withoutStrayStatements(tracer))
        )
      ).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
  })))

/** The header names whose values never go on a span (as the platform's tracer redacts them). */
const REDACTED_HEADERS = new Set(["authorization", "cookie", "set-cookie", "x-api-key"])

/**
 * A request a door serves, as a server span like the HTTP app's (HttpMiddleware's tracer):
 * continuing an incoming `traceparent`, named `http.server <METHOD>`, with the status it answered.
 * `url` is the URL as logged (credentials in the query redacted).
 */
export const doorSpan =
  (req: IncomingMessage, route: string, url: string) =>
  <E, R>(self: Effect.Effect<number, E, R>): Effect.Effect<number, E, R> =>
    Effect.useSpan(
      `http.server ${req.method}`,
      {
        parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(req.headers as Headers.Headers)),
        kind: "server",
        captureStackTrace: false
      },
      (span) => {
        span.attribute("http.request.method", req.method)
        span.attribute("http.route", route)
        span.attribute("url.path", pathOnly(url))
        span.attribute("url.full", `http://${req.headers.host ?? "localhost"}${url}`)
        const q = url.indexOf("?")
        if (q >= 0) span.attribute("url.query", url.slice(q + 1))
        span.attribute("url.scheme", "http")
        if (req.headers["user-agent"] !== undefined) span.attribute("user_agent.original", req.headers["user-agent"])
        for (const [name, value] of Object.entries(req.headers)) {
          if (!REDACTED_HEADERS.has(name)) span.attribute(`http.request.header.${name}`, String(value))
        }
        if (req.socket.remoteAddress !== undefined) span.attribute("client.address", req.socket.remoteAddress)
        return Effect.tap(
          Effect.withParentSpan(self, span),
          (status) => span.attribute("http.response.status_code", status)
        )
      }
    )

const pathOnly = (url: string) => {
  const q = url.indexOf("?")
  return q < 0 ? url : url.slice(0, q)
}
