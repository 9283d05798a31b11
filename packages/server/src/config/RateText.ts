import { Either } from "effect"

const PER_SECONDS = { s: 1, m: 60, h: 3600 } as const

/**
 * A rate as operators type it — `20/s`, `600/m`, `36000/h` (also `20/sec`, `600/min`, `20 / s`) —
 * in events per second, or the reason it is not one. The count may have a fraction (`0.5/s`); it
 * must be greater than 0: a limit cannot be switched off, only made roomy.
 */
export const parseRateText = (text: string): Either.Either<number, string> => {
  const m = /^(\d+(?:\.\d+)?)\s*\/\s*(s|sec|second|m|min|minute|h|hour)$/i.exec(text.trim())
  if (m === null) return Either.left(`Expected a rate such as 20/s, 600/m or 36000/h, but received "${text}"`)
  const perSecond = Number(m[1]) / PER_SECONDS[m[2]!.charAt(0).toLowerCase() as "s" | "m" | "h"]
  return perSecond > 0 && Number.isFinite(perSecond)
    ? Either.right(perSecond)
    : Either.left(`Expected a rate greater than 0, but received "${text}"`)
}
