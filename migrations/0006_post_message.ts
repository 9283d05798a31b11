import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/**
 * A message post as one statement: `SELECT * FROM herald_post_message(…)` is one round trip and
 * its own transaction, all or nothing, with no `BEGIN`/`COMMIT` around it. Inside, the steps are
 * those of every chat change (OutboxWriter): the stream's seq bump, which takes the stream's row
 * lock until commit (G4); then the message, inserted only while the author is still a member —
 * each statement of a plpgsql function takes a fresh snapshot, so it sees a removal committed
 * while the bump waited for the lock; then the `message.created` outbox row. A non-member raises
 * `HN404`, which rolls the whole statement back: the seq is not consumed. The statements' plans
 * are cached per connection, so PostgreSQL parses and plans only the one-line call. The outbox row
 * is due for claims `p_due_in_ms` after the commit: the event is handed to this process's publisher
 * (Wakeup), which publishes it without a claim meanwhile.
 */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`
    CREATE FUNCTION herald_post_message(
      p_stream text, p_event_id uuid, p_message_id uuid, p_project_id uuid, p_author_id uuid,
      p_scope text, p_role text, p_body text, p_client_message_id text, p_data jsonb, p_due_in_ms integer
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

      INSERT INTO event_outbox (id, stream_id, seq, type, project_id, actor_id, occurred_at, data, next_attempt_at)
      VALUES (p_event_id, p_stream, v_seq, 'message.created', p_project_id, p_author_id, v_at, p_data,
              v_at + p_due_in_ms * interval '1 millisecond');
      RETURN v_message;
    END $$`
})
