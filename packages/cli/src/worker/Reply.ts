/**
 * The demo worker's reply to a user message: deterministic (the same message always gets the same
 * text, draft id and draft steps), so a worker that meets a message again posts the same reply with
 * the same `clientMessageId`, which the server answers with the original (nothing written twice).
 */

/** At most this many characters (code points) of the user's message are quoted back. */
const EXCERPT = 60

/**
 * The draft's id, also the reply's `clientMessageId`: `reply-` and the user message id's 32 hex
 * digits (38 characters of the 1–64 `[A-Za-z0-9_-]` a draft id allows). All of them: a prefix of a
 * time-ordered id would be shared by two messages written in the same millisecond.
 */
export const draftIdOf = (messageId: string): string => `reply-${messageId.replace(/-/g, "").toLowerCase()}`

/** Whitespace runs (newlines included) as one space, and at most EXCERPT code points — never half a surrogate pair. */
const excerpt = (body: string): string => {
  const points = Array.from(body.replace(/\s+/g, " ").trim())
  return points.length <= EXCERPT ? points.join("") : `${points.slice(0, EXCERPT).join("")}…`
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`

/**
 * The reply to a user message: an acknowledgement quoting its start, 200–400 characters whatever
 * the message (the quote is bounded), and storable text whenever the message is.
 */
export const replyText = (body: string): string => {
  const words = body.split(/\s+/).filter((w) => w !== "").length
  const characters = Array.from(body).length
  return `Thanks, I read your message (${plural(words, "word")}, ${plural(characters, "character")}): ` +
    `"${excerpt(body)}". I am Herald's demo worker. I wrote this reply as a live draft, a few words at a ` +
    "time, then posted it to your workspace as a worker message whose clientMessageId is the draft's id, " +
    "so posting it again changes nothing."
}

/**
 * The bodies of the draft's updates: the reply's text up to the end of every `wordsPerStep`-th
 * word, the last one the whole text — so `steps` updates, one every interval, write it at an even pace.
 */
export const draftSteps = (text: string, steps: number): ReadonlyArray<string> => {
  // Where each word ends (the index just past it).
  const ends = Array.from(text.matchAll(/\S+/g), (m) => m.index + m[0].length)
  const perStep = Math.max(1, Math.ceil(ends.length / Math.max(1, steps)))
  const bodies: Array<string> = []
  for (let i = perStep - 1; i < ends.length - 1; i += perStep) bodies.push(text.slice(0, ends[i]))
  bodies.push(text)
  return bodies
}
