import { Chat } from "@herald/domain"
import { Context, Duration, Effect, Fiber, Layer, Queue, Schema, Stream } from "effect"

/**
 * What travels between nodes on the broker's signal side (G10): presence, typing and drafts —
 * and nothing else. Every member is a closed struct of plain fields with a `_tag`; none has a
 * field of unknown shape, so no event envelope can ride in one (an envelope has no `_tag`, and a
 * decoded signal refuses excess properties). `node` is the sending process.
 */
const Node = Schema.String
export const Signal = Schema.Union(
  /** A user's first (or last) connection on `node` carrying the project's stream opened (closed). */
  Schema.TaggedStruct("Present", {
    node: Node,
    projectId: Schema.String,
    userId: Schema.String,
    since: Schema.Number,
    present: Schema.Boolean
  }),
  /** Every user present on `node` (a part of them when there are many), now: refreshes the TTL. */
  Schema.TaggedStruct("Beat", {
    node: Node,
    entries: Schema.Array(Schema.Tuple(Schema.String, Schema.String, Schema.Number))
  }),
  /** A node started: the others send their beat now, so it knows who is present at once. */
  Schema.TaggedStruct("Hello", { node: Node }),
  /** A node is shutting down: its users' presence goes with it now rather than after the TTL. */
  Schema.TaggedStruct("Bye", { node: Node }),
  Schema.TaggedStruct("Typing", {
    node: Node,
    projectId: Schema.String,
    userId: Schema.String,
    until: Schema.Number
  }),
  Schema.TaggedStruct("Draft", {
    node: Node,
    projectId: Schema.String,
    userId: Schema.String,
    draftId: Schema.String,
    role: Chat.AuthorRole,
    body: Schema.String,
    updatedAt: Schema.Number
  }),
  Schema.TaggedStruct("DraftEnded", {
    node: Node,
    projectId: Schema.String,
    userId: Schema.String,
    draftId: Schema.String
  })
)
export type Signal = typeof Signal.Type

/** A signal as JSON text, and back: anything else (an envelope, a stray payload) is refused. */
export const encodeSignal = Schema.encodeSync(Schema.parseJson(Signal))
export const decodeSignal = Schema.decodeUnknownEither(Schema.parseJson(Signal), { onExcessProperty: "error" })

/**
 * The broker's signal side, apart from `BrokerPublisher`/`BrokerSubscriber`: it carries `Signal`s
 * only. Best-effort and bounded: `publish` queues and never waits (a full queue drops the oldest),
 * a failed send is dropped, and `signals` never fails (a lost connection is re-made behind it). So
 * a slow or failed signal never delays an event, which travels on the other side.
 */
export class SignalBus extends Context.Tag("Herald/SignalBus")<SignalBus, {
  readonly publish: (signal: Signal) => void
  /** Signals heard from the fleet (a node may hear its own: callers skip them by `node`). */
  readonly signals: Stream.Stream<Signal>
}>() {}

/** Signals waiting to be sent, at most; beyond, the oldest are dropped. */
const OUTGOING = 1_000
/** Signals sent per round trip, at most. */
const BATCH = 100

/** On shutdown, how long what is still queued (a node's bye) may take to go out. */
const FLUSH_TIMEOUT = Duration.seconds(1)

/**
 * A bounded outgoing queue drained by one fiber into `send`: a failure is logged (once per outage)
 * and the batch dropped — signals are best-effort (G10). On shutdown what is still queued goes out
 * before the connection closes: the last signals of a stopping node are its users leaving and its
 * bye, published just before, which the other nodes would otherwise wait a TTL for.
 */
export const outgoing = (name: string, send: (payloads: ReadonlyArray<string>) => Effect.Effect<void, unknown>) =>
  Effect.gen(function*() {
    const queue = yield* Effect.acquireRelease(Queue.sliding<Signal>(OUTGOING), Queue.shutdown)
    const sendAll = (batch: Iterable<Signal>) => send(Array.from(batch, (signal) => encodeSignal(signal)))
    let failing = false
    const sender = yield* Queue.takeBetween(queue, 1, BATCH).pipe(
      Effect.flatMap(sendAll),
      Effect.matchCauseEffect({
        onSuccess: () => Effect.sync(() => failing = false),
        onFailure: (cause) =>
          failing ? Effect.void : Effect.zipRight(
            Effect.sync(() => failing = true),
            Effect.logWarning(`${name}: sending signals failed; dropped until it works again`, cause)
          )
      }),
      Effect.forever,
      Effect.forkScoped
    )
    // Runs before the scope interrupts the sender: a batch it was sending is on the wire already.
    yield* Effect.addFinalizer(() =>
      Fiber.interrupt(sender).pipe(
        Effect.zipRight(Queue.takeAll(queue)),
        Effect.flatMap((rest) => rest.length === 0 ? Effect.void : sendAll(rest)),
        Effect.timeout(FLUSH_TIMEOUT),
        Effect.ignore
      )
    )
    return (signal: Signal) => void queue.unsafeOffer(signal)
  })

/** Incoming signals, bounded (the oldest dropped past it), with the JSON each arrived as decoded or skipped. */
export const incoming = Effect.gen(function*() {
  const queue = yield* Effect.acquireRelease(Queue.sliding<Signal>(10_000), Queue.shutdown)
  return {
    heard: (payload: string) => {
      const decoded = decodeSignal(payload)
      if (decoded._tag === "Right") queue.unsafeOffer(decoded.right)
    },
    signals: Stream.fromQueue(queue)
  }
})

/**
 * One process: every connection is on this node, so signals are delivered in process by `Signals`
 * itself and there is no one to tell.
 */
export const MemorySignalBusLive = Layer.succeed(SignalBus, {
  publish: () => {},
  signals: Stream.never
})
