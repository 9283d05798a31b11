import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * Traces (SPEC §9): an outbox row may carry the W3C `traceparent` of the request that wrote it,
 * so a publisher that claims the row — another process, or a retry — publishes the event in that
 * request's trace. Only written while tracing is on; NULL otherwise, and in every earlier row.
 * `herald_post_message` takes it as a last parameter that defaults to NULL: its eleven-argument
 * call (a server from before this migration, or one with tracing off) stays what it was.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE event_outbox ADD COLUMN trace_context text`
  yield* sql`DROP FUNCTION herald_post_message(text, uuid, uuid, uuid, uuid, text, text, text, text, jsonb, integer)`
  yield* sql`
    CREATE FUNCTION herald_post_message(
      p_stream text, p_event_id uuid, p_message_id uuid, p_project_id uuid, p_author_id uuid,
      p_scope text, p_role text, p_body text, p_client_message_id text, p_data jsonb, p_due_in_ms integer,
      p_trace_context text DEFAULT NULL
    ) RETURNS messages LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
      v_seq bigint;
      v_at timestamptz;
      v_message messages;
    BEGIN
      INSERT INTO event_streams AS s (stream_id, last_seq) VALUES (p_stream, 1)
      ON CONFLICT (stream_id) DO UPDATE SET last_seq = s.last_seq + 1
      RETURNING last_seq, clock_timestamp() INTO v_seq, v_at;

      INSERT INTO messages (id, project_id, author_id, scope, role, body, client_message_id,
                            created_event_id, created_event_seq, created_at)
      SELECT p_message_id, p_project_id, p_author_id, p_scope, p_role, p_body, p_client_message_id,
             p_event_id, v_seq, v_at
      WHERE EXISTS (SELECT 1 FROM project_members WHERE project_id = p_project_id AND user_id = p_author_id)
      RETURNING * INTO v_message;
      IF NOT FOUND THEN
        RAISE EXCEPTION 'not a member of the project' USING ERRCODE = 'HN404';
      END IF;

      INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data, next_attempt_at,
                                trace_context)
      VALUES (p_event_id, p_stream, v_seq, 'message.created', p_project_id, p_author_id, v_at, p_data,
              v_at + p_due_in_ms * interval '1 millisecond', p_trace_context);
      RETURN v_message;
    END $$`
})
