import { Events, Signals } from "@herald/domain"
import { Data, Either, Option, ParseResult, Schema } from "effect"

/**
 * What a subscription gives, in order: the frames of `GET /api/stream` as the application should
 * see them (duplicates already dropped), and where the connection stands.
 */
export type Frame = Data.TaggedEnum<{
  /** The first frame of a connection opened without a cursor: each stream's head seq. */
  Heads: { readonly streams: Readonly<Record<string, number>>; readonly cursor: string | undefined }
  /** An event, once per `(stream, seq)`: decoded, and as it was on the wire. */
  Event: {
    readonly event: Events.Event
    readonly envelope: Events.EventWire
    readonly cursor: string | undefined
  }
  /** The stream's position could not be resumed (a restore, retention): reload it from `from` over HTTP. */
  Reset: { readonly stream: string; readonly from: number; readonly cursor: string | undefined }
  Presence: { readonly frame: Signals.PresenceFrame }
  Typing: { readonly frame: Signals.TypingFrame }
  Draft: { readonly frame: Signals.DraftFrame }
  Status: { readonly status: Status }
}>
export const Frame = Data.taggedEnum<Frame>()

/** `connecting` (also while waiting to reconnect), `live` (a connection is open), `closed` (for good). */
export type Status = "connecting" | "live" | "closed"

/** The SSE `event:` names a subscription listens to. */
export const EVENT_TYPES: ReadonlyArray<Events.EventType> = Events.EventType.literals
export const SIGNAL_TYPES = ["presence", "typing", "draft"] as const
export const CONTROL_TYPES = ["heads", "reset"] as const

/** One message as an EventSource dispatched it. */
export interface RawFrame {
  readonly type: string
  readonly data: string
  /** `lastEventId`: the connection's cursor after this frame (signals, which carry none, repeat the previous one). */
  readonly id: string
}

const HeadsData = Schema.Struct({ streams: Schema.Record({ key: Schema.String, value: Events.Seq }) })
const ResetData = Schema.Struct({ stream: Schema.String, from: Events.Seq })

const json = <A, I>(schema: Schema.Schema<A, I>) => Schema.decodeUnknownEither(Schema.parseJson(schema))
const decodeHeads = json(HeadsData)
const decodeReset = json(ResetData)
const decodeEvent = Schema.decodeUnknownEither(Events.Event)
const parsed = Schema.decodeUnknownEither(Schema.parseJson())
const decodePresence = json(Signals.PresenceFrame)
const decodeTyping = json(Signals.TypingFrame)
const decodeDraft = json(Signals.DraftFrame)

/** A frame the server sent that this client cannot read (a newer server, or a bug): skipped, and said. */
export class UnreadableFrame extends Data.TaggedError("UnreadableFrame")<{
  readonly type: string
  readonly reason: string
}> {}

const cursorOf = (raw: RawFrame) => raw.id === "" ? undefined : raw.id

/** Decodes one dispatched message into a frame (before de-duplication). */
export const decodeFrame = (raw: RawFrame): Either.Either<Frame, UnreadableFrame> => {
  const failed = (e: ParseResult.ParseError) =>
    new UnreadableFrame({ type: raw.type, reason: ParseResult.TreeFormatter.formatErrorSync(e) })
  switch (raw.type) {
    case "heads":
      return Either.mapBoth(decodeHeads(raw.data), {
        onLeft: failed,
        onRight: ({ streams }) => Frame.Heads({ streams, cursor: cursorOf(raw) })
      })
    case "reset":
      return Either.mapBoth(decodeReset(raw.data), {
        onLeft: failed,
        onRight: ({ from, stream }) => Frame.Reset({ stream, from, cursor: cursorOf(raw) })
      })
    case "presence":
      return Either.mapBoth(decodePresence(raw.data), { onLeft: failed, onRight: (frame) => Frame.Presence({ frame }) })
    case "typing":
      return Either.mapBoth(decodeTyping(raw.data), { onLeft: failed, onRight: (frame) => Frame.Typing({ frame }) })
    case "draft":
      return Either.mapBoth(decodeDraft(raw.data), { onLeft: failed, onRight: (frame) => Frame.Draft({ frame }) })
    default:
      // Parsed once: the envelope as it was on the wire, and the event decoded from it.
      return Either.flatMap(
        parsed(raw.data),
        (envelope) =>
          Either.map(
            decodeEvent(envelope),
            (event) => Frame.Event({ event, envelope: envelope as Events.EventWire, cursor: cursorOf(raw) })
          )
      ).pipe(Either.mapLeft(failed))
  }
}

/**
 * What a subscription remembers between connections: the cursor to resume from and, per stream,
 * the last seq delivered — so an event is delivered once per `(stream, seq)` whatever the
 * connection replays.
 */
export class Position {
  cursor: string | undefined
  readonly delivered = new Map<string, number>()

  constructor(cursor: string | undefined) {
    this.cursor = cursor
  }

  /** Starting over without a cursor (it expired): the next connection's `heads` sets every stream. */
  forget() {
    this.cursor = undefined
    this.delivered.clear()
  }

  /** The frame to hand on, if any; moves the position past it. Signals never move it (they carry no `id:`). */
  accept(frame: Frame): Option.Option<Frame> {
    switch (frame._tag) {
      case "Heads": {
        this.delivered.clear()
        for (const [stream, seq] of Object.entries(frame.streams)) this.delivered.set(stream, seq)
        this.moveTo(frame.cursor)
        return Option.some(frame)
      }
      case "Reset": {
        this.delivered.set(frame.stream, frame.from - 1)
        this.moveTo(frame.cursor)
        return Option.some(frame)
      }
      case "Event": {
        this.moveTo(frame.cursor)
        const { seq, stream } = frame.event
        if (seq <= (this.delivered.get(stream) ?? 0)) return Option.none()
        this.delivered.set(stream, seq)
        return Option.some(frame)
      }
      default:
        return Option.some(frame)
    }
  }

  private moveTo(cursor: string | undefined) {
    if (cursor !== undefined) this.cursor = cursor
  }
}
