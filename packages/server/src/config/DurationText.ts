import { Duration, Either, Option } from "effect"

/**
 * A duration as operators type it — `7d`, `12h`, `30m`, `90s`, `500ms`, `2w`, or anything Effect's
 * Duration reads (`7 days`) — or the reason it is not one. One reader for every place that takes
 * an age: `herald outbox prune --older-than`, `herald eventlog drop --older-than` and
 * `HERALD_EVENT_LOG_RETENTION`.
 */
export const parseDurationText = (text: string): Either.Either<Duration.Duration, string> => {
  if (text.includes("-")) return Either.left(`a duration cannot be negative: "${text}"`)
  const m = /^(\d+)\s*(ms|s|m|h|d|w)$/.exec(text.trim())
  if (m) {
    const unit = {
      ms: Duration.millis,
      s: Duration.seconds,
      m: Duration.minutes,
      h: Duration.hours,
      d: Duration.days,
      w: Duration.weeks
    }[m[2] as "ms"]
    return Either.right(unit(Number(m[1])))
  }
  return Option.match(Duration.decodeUnknown(text), {
    onNone: () => Either.left(`not a duration: "${text}" (try 7d, 12h, 30m)`),
    onSome: Either.right
  })
}
