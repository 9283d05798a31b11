import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import type { Chat, Ids } from "@herald/domain"
import { Cause, Effect, Exit, FastCheck, Fiber, Option, Queue, Runtime } from "effect"
import { ChatService } from "../src/chat/ChatService.js"
import { asUser } from "../src/chat/Policy.js"
import type { UsersRepo } from "../src/chat/UsersRepo.js"
import { Wakeup } from "../src/outbox/Wakeup.js"
import {
  ChatTestLive,
  expectContiguous,
  failingAfter,
  messageCount,
  newUser,
  outboxRows,
  seqsByStream
} from "./support/ChatHarness.js"

describe("write path", () => {
  it.layer(ChatTestLive)("atomicity (G1)", (it) => {
    for (const step of ["outbox insert", "message insert"] as const) {
      it.effect(`a failure after the ${step} leaves neither message nor event, and the seq is not consumed`, () =>
        Effect.gen(function*() {
          const chat = yield* ChatService
          const alice = yield* newUser("alice")
          const project = yield* chat.createProject("atomic").pipe(asUser(alice))
          const before = yield* outboxRows

          yield* failingAfter(step, "doomed")
          const exit = yield* Effect.exit(chat.postMessage(project.id, { body: "doomed" }).pipe(asUser(alice)))
          // It failed where the test made it fail: in the trigger, once the step had written.
          const failure = Exit.isFailure(exit) ? JSON.stringify(Cause.squash(exit.cause)) : ""
          expect(failure).toContain("function test_injected_failure()")
          expect(failure).toContain(`INSERT INTO ${step === "message insert" ? "messages" : "event_outbox"} (`)

          expect(yield* messageCount(project.id)).toBe(0)
          expect(yield* outboxRows).toEqual(before)
          // The next write takes the next seq: the failed one left no hole.
          const ok = yield* chat.postMessage(project.id, { body: "fine" }).pipe(asUser(alice))
          expect(ok.event.seq).toBe(2)
          expect(expectContiguous((yield* seqsByStream).get(`project:${project.id}`)!)).toBe(true)
        }).pipe(Effect.scoped))
    }

    it.effect("a write does not wake the publisher until it has committed, and a failed one never does", () =>
      Effect.gen(function*() {
        const chat = yield* ChatService
        const wakeup = yield* Wakeup
        const alice = yield* newUser("alice")
        const project = yield* chat.createProject("signals").pipe(asUser(alice))
        const subscription = yield* wakeup.subscribe
        yield* subscription.drain
        yield* failingAfter("message insert", "doomed")
        yield* Effect.exit(chat.postMessage(project.id, { body: "doomed" }).pipe(asUser(alice)))
        const waiting = yield* Effect.fork(subscription.take)
        yield* Effect.yieldNow().pipe(Effect.repeatN(20))
        expect(Option.isNone(yield* Fiber.poll(waiting))).toBe(true)
        yield* chat.postMessage(project.id, { body: "committed" }).pipe(asUser(alice))
        yield* Fiber.join(waiting)
      }).pipe(Effect.scoped))

    it.effect("every subscriber gets its own wake-up: one that drains twice cannot take the other's", () =>
      Effect.gen(function*() {
        const chat = yield* ChatService
        const wakeup = yield* Wakeup
        const alice = yield* newUser("alice")
        const project = yield* chat.createProject("two subscribers").pipe(asUser(alice))
        // The publisher and the materializer, as the server has them; the materializer lags behind.
        const publisher = yield* wakeup.subscribe
        const materializer = yield* wakeup.subscribe
        yield* chat.postMessage(project.id, { body: "one" }).pipe(asUser(alice))
        yield* chat.postMessage(project.id, { body: "two" }).pipe(asUser(alice))
        yield* materializer.drain
        const again = yield* Effect.fork(materializer.take)
        yield* Effect.yieldNow().pipe(Effect.repeatN(20))
        // Nothing new since its drain: the materializer waits, and the publisher still has its signal.
        expect(Option.isNone(yield* Fiber.poll(again))).toBe(true)
        const woken = yield* Effect.fork(publisher.take)
        yield* Effect.yieldNow().pipe(Effect.repeatN(20))
        expect(Option.isSome(yield* Fiber.poll(woken))).toBe(true)
        yield* publisher.drain
        // A third commit wakes both.
        yield* chat.postMessage(project.id, { body: "three" }).pipe(asUser(alice))
        yield* Fiber.join(again)
        yield* publisher.take
      }).pipe(Effect.scoped))
  })

  it.layer(ChatTestLive)("seq assignment (G4)", (it) => {
    it.effect("50 concurrent writers on one stream get seqs exactly 1..50", () =>
      Effect.gen(function*() {
        const chat = yield* ChatService
        const alice = yield* newUser("alice")
        const project = yield* chat.createProject("busy").pipe(asUser(alice))
        const results = yield* Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i),
          (i) =>
            chat.postWorkspaceMessage(project.id, { body: `m${i}`, role: i % 2 ? "worker" : "user" }).pipe(
              asUser(alice)
            ),
          { concurrency: "unbounded" }
        )
        expect(results.map((r) => r.event.seq).sort((a, b) => a - b)).toEqual(
          Array.from({ length: 50 }, (_, i) => i + 1)
        )
        const rows = (yield* outboxRows).filter((r) => r.streamId === `workspace:${project.id}:${alice.id}`)
        expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1))
        // commit order = seq order: each message's creation time follows seq order
        const sql = yield* SqlClient.SqlClient
        const times = yield* sql<{ seq: number; occurredAt: Date }>`
          SELECT seq, occurred_at FROM event_outbox WHERE stream_id = ${`workspace:${project.id}:${alice.id}`} ORDER BY seq`
        for (let i = 1; i < times.length; i++) {
          expect(times[i]!.occurredAt.getTime()).toBeGreaterThanOrEqual(times[i - 1]!.occurredAt.getTime())
        }
      }))

    type Op =
      | { readonly _tag: "post"; readonly actor: number; readonly workspace: boolean }
      | { readonly _tag: "edit"; readonly actor: number }
      | { readonly _tag: "delete"; readonly actor: number }
      | { readonly _tag: "add"; readonly target: number }
      | { readonly _tag: "remove"; readonly target: number }
    const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
      FastCheck.record({
        _tag: FastCheck.constant("post" as const),
        actor: FastCheck.nat(3),
        workspace: FastCheck.boolean()
      }),
      FastCheck.record({ _tag: FastCheck.constant("edit" as const), actor: FastCheck.nat(3) }),
      FastCheck.record({ _tag: FastCheck.constant("delete" as const), actor: FastCheck.nat(3) }),
      FastCheck.record({ _tag: FastCheck.constant("add" as const), target: FastCheck.integer({ min: 1, max: 3 }) }),
      FastCheck.record({ _tag: FastCheck.constant("remove" as const), target: FastCheck.integer({ min: 1, max: 3 }) })
    )

    it.effect("random concurrent interleavings of posts, edits, deletes and member changes keep every stream contiguous", () =>
      Effect.gen(function*() {
        const chat = yield* ChatService
        const run = (ops: ReadonlyArray<Op>) =>
          Effect.gen(function*() {
            const users = yield* Effect.forEach([0, 1, 2, 3], (i) => newUser(`u${i}`))
            const owner = users[0]!
            const project = yield* chat.createProject("prop").pipe(asUser(owner))
            const posted = yield* Queue.unbounded<{ author: Chat.User; id: Ids.MessageId }>()
            const step = (o: Op): Effect.Effect<unknown, unknown> => {
              switch (o._tag) {
                case "post":
                  return (o.workspace ? chat.postWorkspaceMessage : chat.postMessage)(project.id, { body: "x" }).pipe(
                    asUser(users[o.actor]!),
                    Effect.tap((w) =>
                      o.workspace ? Effect.void : Queue.offer(posted, { author: users[o.actor]!, id: w.message.id })
                    )
                  )
                case "edit":
                case "delete":
                  return Queue.poll(posted).pipe(
                    Effect.flatMap(Option.match({
                      onNone: () => Effect.void,
                      onSome: (m): Effect.Effect<unknown, unknown> =>
                        o._tag === "edit"
                          ? chat.editMessage(project.id, m.id, "edited").pipe(asUser(m.author))
                          : chat.deleteMessage(project.id, m.id).pipe(asUser(users[o.actor]!))
                    }))
                  )
                case "add":
                  return chat.addMember(project.id, users[o.target]!.id).pipe(asUser(owner))
                case "remove":
                  return chat.removeMember(project.id, users[o.target]!.id).pipe(asUser(owner))
              }
            }
            // Refusals (not a member, not the author, already a member …) are expected; only the log matters.
            yield* Effect.forEach(ops, (o) => Effect.exit(step(o)), { concurrency: 8 })
            const streams = yield* seqsByStream
            expect(streams.get(`project:${project.id}`)?.[0]).toBe(1)
            for (const [stream, seqs] of streams) {
              if (!stream.includes(project.id)) continue
              expect(expectContiguous(seqs), `${stream}: ${seqs.join(",")}`).toBe(true)
            }
            // Every committed change has its event: one message.created per message row.
            const sql = yield* SqlClient.SqlClient
            const [counts] = yield* sql<{ messages: number; created: number }>`
              SELECT (SELECT count(*)::int FROM messages WHERE project_id = ${project.id}) AS messages,
                     (SELECT count(*)::int FROM event_outbox WHERE project_id = ${project.id} AND type = 'message.created') AS created`
            expect(counts!.messages).toBe(counts!.created)
          })
        const runtime = yield* Effect.runtime<ChatService | SqlClient.SqlClient | UsersRepo>()
        yield* Effect.promise(() =>
          FastCheck.assert(
            FastCheck.asyncProperty(
              FastCheck.array(op, { minLength: 1, maxLength: 40 }),
              (ops) => Runtime.runPromise(runtime)(run(ops))
            ),
            { numRuns: 25 }
          )
        )
      }))
  })
})
