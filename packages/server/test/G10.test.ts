/**
 * G10: the broker's signal side cannot carry an event envelope. Three halves: the port's type takes
 * a `Signal` only (compile time: npm test runs tsc), no member of `Signal` has a field of unknown or
 * open shape an envelope could hide in (the schema's AST), and what a node hears on the signal
 * channel is decoded as a `Signal` or dropped — an envelope is refused, with or without a `_tag`.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Events } from "@herald/domain"
import { type Context, Either, Schema, type SchemaAST } from "effect"
import { decodeSignal, encodeSignal, Signal, type SignalBus } from "../src/signals/SignalBus.js"

const envelope: Events.EventWire = {
  id: "2f1d7c0e-8c8e-4b8e-9a53-0a3f3f7d9a11",
  stream: "project:9b2f3c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
  seq: 7,
  type: "message.created",
  projectId: "9b2f3c4e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
  actorId: "3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9",
  occurredAt: "2026-12-07T12:00:00.000Z",
  data: { messageId: "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b", authorId: "x", role: "user", body: "hi" }
} as unknown as Events.EventWire

// Compile-time half: publishing an envelope on the signal side does not type-check.
type Publish = Context.Tag.Service<typeof SignalBus>["publish"]
const envelopeIsNoSignal: [Events.EventWire] extends [Parameters<Publish>[0]] ? "G10 broken" : "ok" = "ok"

/** Every property type reachable in `ast`, with where it is. */
const openFields = (ast: SchemaAST.AST, at: string): Array<string> => {
  switch (ast._tag) {
    case "UnknownKeyword":
    case "AnyKeyword":
    case "ObjectKeyword":
      return [`${at}: ${ast._tag}`]
    case "TypeLiteral":
      return [
        ...ast.indexSignatures.map(() => `${at}: an index signature`),
        ...ast.propertySignatures.flatMap((p) => openFields(p.type, `${at}.${String(p.name)}`))
      ]
    case "Union":
      return ast.types.flatMap((t, i) => openFields(t, `${at}|${i}`))
    case "TupleType":
      return [
        ...ast.elements.flatMap((e, i) => openFields(e.type, `${at}[${i}]`)),
        ...ast.rest.flatMap((r) => openFields(r.type, `${at}[]`))
      ]
    case "Refinement":
      return openFields(ast.from, at)
    case "Transformation":
      return [...openFields(ast.from, at), ...openFields(ast.to, at)]
    case "Suspend":
      return [`${at}: a recursive schema`]
    default:
      return []
  }
}

describe("G10: the signal side of the broker cannot carry an event envelope", () => {
  it("the port's publish does not take an envelope", () => {
    expect(envelopeIsNoSignal).toBe("ok")
  })

  it("no signal has a field of unknown or open shape", () => {
    expect(openFields(Signal.ast, "Signal")).toEqual([])
    // The walk does find such a field where there is one.
    const open = Schema.Struct({ _tag: Schema.Literal("X"), data: Schema.Unknown })
    expect(openFields(open.ast, "X")).toEqual(["X.data: UnknownKeyword"])
  })

  it("an envelope heard on the signal channel is refused, with or without a _tag", () => {
    expect(Either.isLeft(decodeSignal(JSON.stringify(envelope)))).toBe(true)
    for (const tag of ["Present", "Beat", "Hello", "Bye", "Typing", "Draft", "DraftEnded"]) {
      expect(Either.isLeft(decodeSignal(JSON.stringify({ ...envelope, _tag: tag }))), tag).toBe(true)
    }
    // Nor can an envelope ride inside a signal's fields.
    expect(
      Either.isLeft(decodeSignal(JSON.stringify({ _tag: "Hello", node: "n", event: envelope })))
    ).toBe(true)
    expect(
      Either.isLeft(decodeSignal(JSON.stringify({ _tag: "Beat", node: "n", entries: [[envelope, "u", 1]] })))
    ).toBe(true)
    // What a node really sends is heard.
    const typing = { _tag: "Typing", node: "n", projectId: "p", userId: "u", until: 1 } as const
    expect(decodeSignal(encodeSignal(typing))).toEqual(Either.right(typing))
  })
})
