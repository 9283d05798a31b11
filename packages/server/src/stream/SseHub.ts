import type { Events } from "@herald/domain"
import { Deferred, Effect, Queue, Schedule, type Scope, Stream } from "effect"
import { BrokerSubscriber } from "../broker/BrokerSubscriber.js"
import { AppConfig } from "../config/AppConfig.js"
import { Metrics } from "../http/Metrics.js"

/** One SSE connection's view of the hub: a bounded queue of live events of one stream. */
export interface Subscription {
  readonly queue: Queue.Dequeue<Events.EventWire>
  /** Completes when the queue overflowed: the connection must end (the client resumes from the database). */
  readonly overflow: Deferred.Deferred<void>
}

interface Connection {
  readonly queue: Queue.Queue<Events.EventWire>
  readonly overflow: Deferred.Deferred<void>
}

/**
 * The process's single broker subscription, fanned out to SSE connections by stream. Each
 * connection has a bounded buffer (`HERALD_SSE_BUFFER`); a connection that falls that far behind
 * is ended instead of growing memory — its client resumes from its last seq.
 */
export class SseHub extends Effect.Service<SseHub>()("Herald/SseHub", {
  scoped: Effect.gen(function*() {
    const broker = yield* BrokerSubscriber
    const { sseBuffer } = yield* AppConfig
    const metrics = yield* Metrics
    const streams = new Map<string, Set<Connection>>()
    let closed = false

    // Synchronous fan-out: one event to thousands of connections must not cost an effect each.
    const overflowed: Array<Connection> = []
    const dispatch = (event: Events.EventWire) =>
      Effect.suspend(() => {
        const targets = streams.get(event.stream)
        if (targets === undefined) return Effect.void
        for (const c of targets) {
          if (!c.queue.unsafeOffer(event)) overflowed.push(c)
        }
        if (overflowed.length === 0) return Effect.void
        const slow = overflowed.splice(0)
        return Effect.forEach(slow, (c) => Effect.zipRight(Deferred.succeed(c.overflow, undefined), Queue.shutdown(c.queue)), {
          discard: true
        })
      })

    // The one subscription; if the broker fails (e.g. the LISTEN connection drops) it is re-opened.
    // Events missed meanwhile are filled in from the database by each connection's gap check.
    yield* broker.events.pipe(
      Stream.runForEach(dispatch),
      Effect.tapErrorCause((cause) => Effect.logWarning("SSE hub: broker subscription failed; re-subscribing", cause)),
      Effect.retry(Schedule.exponential("100 millis").pipe(Schedule.union(Schedule.spaced("5 seconds")))),
      Effect.forkScoped
    )

    const subscribe = (stream: string): Effect.Effect<Subscription, never, Scope.Scope> =>
      Effect.acquireRelease(
        Effect.gen(function*() {
          const connection: Connection = {
            queue: yield* Queue.dropping<Events.EventWire>(sseBuffer),
            overflow: yield* Deferred.make<void>()
          }
          if (closed) yield* Queue.shutdown(connection.queue)
          const set = streams.get(stream) ?? new Set()
          set.add(connection)
          streams.set(stream, set)
          metrics.sseConnections.inc()
          return connection
        }),
        (connection) =>
          Effect.sync(() => {
            const set = streams.get(stream)
            set?.delete(connection)
            if (set?.size === 0) streams.delete(stream)
            metrics.sseConnections.dec()
          }).pipe(Effect.zipRight(Queue.shutdown(connection.queue)))
      )

    /** Ends every open SSE response (graceful shutdown) and refuses new ones. */
    const closeAll = Effect.suspend(() => {
      closed = true
      return Effect.forEach([...streams.values()].flatMap((s) => [...s]), (c) => Queue.shutdown(c.queue), { discard: true })
    })

    yield* Effect.addFinalizer(() => closeAll)
    return { subscribe, closeAll } as const
  })
}) {}
