import { NodeContext } from "@effect/platform-node"
import { SqlClient } from "@effect/sql"
import type { Ids } from "@herald/domain"
import { Effect, Layer } from "effect"
import { UsersRepo } from "../../src/chat/UsersRepo.js"
import { RequestPathLive } from "../../src/http/Server.js"
import { Wakeup } from "../../src/outbox/Wakeup.js"
import { TestDatabaseLive } from "./TestDatabase.js"

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
export const outboxRows = Effect.flatMap(SqlClient.SqlClient, (sql) =>
  Effect.orDie(sql<OutboxRow>`SELECT id, stream_id, seq, type, status FROM event_outbox ORDER BY stream_id, seq`))

/** Seqs of every stream, for contiguity checks. */
export const seqsByStream = Effect.map(outboxRows, (rows) => {
  const streams = new Map<string, Array<number>>()
  for (const row of rows) streams.set(row.streamId, [...(streams.get(row.streamId) ?? []), row.seq])
  return streams
})

export const expectContiguous = (seqs: ReadonlyArray<number>) => seqs.every((s, i) => s === i + 1)

export const messageCount = (projectId: Ids.ProjectId) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.orDie(Effect.map(sql<{ n: number }>`SELECT count(*)::int AS n FROM messages WHERE project_id = ${projectId}`, ([r]) => r!.n)))
