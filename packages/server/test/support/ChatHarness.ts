import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import type { Events, Ids } from "@herald/domain"
import { DateTime, Deferred, Effect, Fiber, Layer } from "effect"
import { randomUUID } from "node:crypto"
import { TestDatabaseLive } from "../../../../test-support/TestDatabase.js"
import { RequestPathLive } from "../../src/chat/RequestPath.js"
import { UsersRepo } from "../../src/chat/UsersRepo.js"
import { OutboxWriter } from "../../src/outbox/OutboxWriter.js"
import { Wakeup } from "../../src/outbox/Wakeup.js"

/** The request path's services over a fresh database (no HTTP). */
export const ChatTestLive = RequestPathLive.pipe(
  Layer.provideMerge(Wakeup.Default),
  Layer.provideMerge(TestDatabaseLive),
  Layer.provide(NodeContext.layer)
)

export const newUser = (name = "user") =>
  Effect.flatMap(UsersRepo, (users) => Effect.map(Effect.orDie(users.create(name)), ({ user }) => user))

export interface OutboxRow {
  readonly id: string
  readonly streamId: string
  readonly seq: number
  readonly type: string
  readonly status: string
}

/** The outbox as a reader sees it: every row, in stream and seq order. */
export const outboxRows = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    Effect.orDie(sql<OutboxRow>`SELECT id, stream_id, seq, type, status FROM event_outbox ORDER BY stream_id, seq`)
)

/** Seqs of every stream, for contiguity checks. */
export const seqsByStream = Effect.map(outboxRows, (rows) => {
  const streams = new Map<string, Array<number>>()
  for (const row of rows) streams.set(row.streamId, [...(streams.get(row.streamId) ?? []), row.seq])
  return streams
})

export const expectContiguous = (seqs: ReadonlyArray<number>) => seqs.every((s, i) => s === i + 1)

export const messageCount = (projectId: Ids.ProjectId) =>
  Effect.flatMap(
    SqlClient.SqlClient,
    (sql) =>
      Effect.orDie(
        Effect.map(
          sql<{ n: number }>`SELECT count(*)::int AS n FROM messages WHERE project_id = ${projectId}`,
          ([r]) => r!.n
        )
      )
  )

/**
 * An outbox event written in a transaction that stays open until `commit` is called: its row
 * exists (and holds its stream's lock) but is not committed — an in-flight writer.
 */
export const inFlightEvent = (
  stream: Events.StreamId,
  projectId: Ids.ProjectId,
  actorId: Ids.UserId,
  body = "in flight"
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const writer = yield* OutboxWriter
    const written = yield* Deferred.make<{ readonly id: string; readonly seq: number; readonly occurredAt: number }>()
    const release = yield* Deferred.make<void>()
    const fiber = yield* sql.withTransaction(Effect.gen(function*() {
      const { at, seq } = yield* writer.reserve(stream)
      const ref = { id: randomUUID() as Ids.EventId, stream, seq }
      yield* writer.insert({
        ref,
        at,
        projectId,
        actorId,
        // Not handed off: the claims take it (due at once).
        dueInMs: 0,
        payload: {
          type: "message.created",
          data: { messageId: randomUUID() as Ids.MessageId, authorId: actorId, role: "worker", body }
        }
      })
      yield* Deferred.succeed(written, { id: ref.id, seq, occurredAt: DateTime.toEpochMillis(at) })
      yield* Deferred.await(release)
    })).pipe(Effect.orDie, Effect.fork)
    const event = yield* Deferred.await(written)
    return { event, commit: Effect.zipRight(Deferred.succeed(release, undefined), Fiber.join(fiber)) }
  })

/**
 * Makes one step of a message post fail right after it wrote: a trigger that raises once the
 * message, or its outbox row, of a post with this `body` has been inserted — inside the post's
 * own statement, so what the failure must undo is already written. Dropped with the scope.
 */
export const failingAfter = (step: "outbox insert" | "message insert", body: string) =>
  Effect.acquireRelease(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const literal = `'${body.replaceAll("'", "''")}'`
      const [table, doomed] = step === "message insert"
        ? ["messages", `NEW.body = ${literal}`]
        : ["event_outbox", `NEW.data->>'body' = ${literal}`]
      yield* sql.unsafe(`
        CREATE FUNCTION test_injected_failure() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'injected failure after the ${step}'; END $$`)
      yield* sql.unsafe(`
        CREATE TRIGGER test_injected_failure AFTER INSERT ON ${table} FOR EACH ROW
        WHEN (${doomed}) EXECUTE FUNCTION test_injected_failure()`)
      return table
    }),
    (table) =>
      Effect.flatMap(SqlClient.SqlClient, (sql) =>
        Effect.zipRight(
          sql.unsafe(`DROP TRIGGER test_injected_failure ON ${table}`),
          sql.unsafe(`DROP FUNCTION test_injected_failure()`)
        )).pipe(Effect.orDie)
  ).pipe(Effect.orDie)
