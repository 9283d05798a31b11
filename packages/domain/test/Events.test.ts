import { describe, expect, it } from "@effect/vitest"
import { Effect, Either, Schema } from "effect"
import { Events } from "../src/index.js"

const base = {
  id: "6f1c3c1e-8a4e-4a57-9d55-2f1f5a0c9b11",
  stream: "project:0b6f2a8e-1c4d-4e7a-9a51-3d2e6f7a8b90",
  seq: 2,
  projectId: "0b6f2a8e-1c4d-4e7a-9a51-3d2e6f7a8b90",
  actorId: "1d2e3f40-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
  occurredAt: "2026-11-27T10:00:00.000Z"
}

describe("event envelope", () => {
  it.effect("every event type round-trips through its schema", () =>
    Effect.gen(function*() {
      const samples = [
        { type: "project.created", data: { name: "p", ownerId: base.actorId } },
        { type: "member.added", data: { userId: base.actorId, role: "member" } },
        { type: "member.removed", data: { userId: base.actorId } },
        {
          type: "message.created",
          data: { messageId: base.id, authorId: base.actorId, role: "worker", body: "hi", clientMessageId: "c" }
        },
        { type: "message.edited", data: { messageId: base.id, body: "hi!" } },
        { type: "message.deleted", data: { messageId: base.id } }
      ]
      for (const sample of samples) {
        const decoded = yield* Events.decodeEvent({ ...base, ...sample })
        expect(decoded.type).toBe(sample.type)
        expect(yield* Events.encodeEvent(decoded)).toEqual({ ...base, ...sample })
      }
    }))

  it.effect("an unknown type, a malformed stream or wrong data is a typed ParseError, never a crash", () =>
    Effect.gen(function*() {
      const bad = [
        { ...base, type: "message.exploded", data: {} },
        { ...base, type: "message.deleted", data: { messageId: "nope" } },
        { ...base, stream: "room:1", type: "member.removed", data: { userId: base.actorId } },
        { ...base, seq: -1, type: "member.removed", data: { userId: base.actorId } },
        "not an object",
        null
      ]
      for (const input of bad) {
        const result = yield* Effect.either(Events.decodeEvent(input))
        expect(Either.isLeft(result)).toBe(true)
        if (Either.isLeft(result)) expect(result.left._tag).toBe("ParseError")
      }
    }))

  it("stream ids are built per project and per (project, user) workspace", () => {
    const p = Schema.decodeSync(Schema.UUID)(base.projectId)
    expect(Events.projectStream(p as never)).toBe(`project:${base.projectId}`)
    expect(Events.workspaceStream(p as never, base.actorId as never)).toBe(
      `workspace:${base.projectId}:${base.actorId}`
    )
    expect(Schema.is(Events.StreamId)(`workspace:${base.projectId}:${base.actorId}`)).toBe(true)
  })
})
