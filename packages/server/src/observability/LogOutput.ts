import { Cause, Effect, FiberId, HashMap, Inspectable, List, Logger, LogSpan } from "effect"
import { writeSync } from "node:fs"
import { formatWithOptions } from "node:util"

/**
 * Where the server's log lines go: each entry is formatted into one string, and the entries of one
 * turn of the event loop reach stdout in one write. (Effect's pretty logger makes a `console.log`
 * per line and per annotation, which is a system call each: five per access-log entry, more CPU
 * than the post they describe.) What is waiting is written synchronously when the process exits.
 */
const pending: Array<string> = []
let scheduled = false

const flush = () => {
  scheduled = false
  if (pending.length === 0) return
  const text = pending.join("")
  pending.length = 0
  process.stdout.write(text)
}

process.once("exit", () => {
  if (pending.length === 0) return
  writeSync(1, pending.join(""))
  pending.length = 0
})

/** Queues `text` (whole lines) for stdout, after the log entries before it; written after this turn of the event loop. */
export const writeOut = (text: string) => {
  pending.push(text)
  if (!scheduled) {
    scheduled = true
    setImmediate(flush)
  }
}

const twoDigits = (n: number) => n.toString().padStart(2, "0")
const clock = (date: Date) =>
  `${twoDigits(date.getHours())}:${twoDigits(date.getMinutes())}:${twoDigits(date.getSeconds())}.${
    date.getMilliseconds().toString().padStart(3, "0")
  }`

const colored = process.stdout.isTTY === true
const LEVEL_COLORS: Record<string, string> = {
  Trace: "\x1b[2m",
  Debug: "\x1b[34m",
  Info: "\x1b[32m",
  Warning: "\x1b[33m",
  Error: "\x1b[31m",
  Fatal: "\x1b[1;31m"
}
const paint = (text: string, color: string | undefined) => colored && color ? `${color}${text}\x1b[0m` : text
const show = (value: unknown) =>
  typeof value === "string" ? value : formatWithOptions({ colors: colored, depth: 4 }, Inspectable.redact(value))
const indent = (text: string) => text.replace(/^/gm, "  ")

/**
 * `LOG_FORMAT=pretty`: what Effect's pretty logger shows — time, level, fiber, log spans and the
 * message on the first line; the cause, further message parts and the annotations indented below —
 * as one string.
 */
export const prettyLine = Logger.make(({ annotations, cause, date, fiberId, logLevel, message, spans }) => {
  const parts = Array.isArray(message) ? message : [message]
  let text = `[${clock(date)}] ${paint(logLevel.label, LEVEL_COLORS[logLevel._tag])} (${FiberId.threadName(fiberId)})`
  if (List.isCons(spans)) {
    const render = LogSpan.render(date.getTime())
    for (const span of spans) text += " " + render(span)
  }
  text += ":"
  let next = 0
  if (typeof parts[0] === "string") {
    text += " " + parts[0]
    next = 1
  }
  text += "\n"
  if (!Cause.isEmpty(cause)) text += indent(Cause.pretty(cause, { renderErrorCause: true })) + "\n"
  for (; next < parts.length; next++) text += indent(show(parts[next])) + "\n"
  for (const [key, value] of HashMap.toEntries(annotations)) text += `  ${key}: ${show(value)}\n`
  writeOut(text)
})

/** `LOG_FORMAT=json`: Effect's JSON entry, one line each. */
export const jsonLine = Logger.map(Logger.jsonLogger, (line) => writeOut(line + "\n"))

/** A line for the person at the terminal (start-up), in order with the log entries around it. */
export const printLine = (line: string) => Effect.sync(() => writeOut(line + "\n"))
