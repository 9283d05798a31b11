import { SqlClient } from "@effect/sql"
import { Effect } from "effect"

/** Users, tokens, projects, memberships and messages: the chat side of every write. */
export default Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient

  yield* sql`
    CREATE TABLE users (
      id uuid PRIMARY KEY,
      name text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()
    )`

  // Only a SHA-256 of the bearer token is stored.
  yield* sql`
    CREATE TABLE api_tokens (
      token_hash bytea PRIMARY KEY,
      user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      created_at timestamptz NOT NULL DEFAULT now()
    )`
  yield* sql`CREATE INDEX api_tokens_user_idx ON api_tokens (user_id)`

  yield* sql`
    CREATE TABLE projects (
      id uuid PRIMARY KEY,
      name text NOT NULL,
      owner_id uuid NOT NULL REFERENCES users (id),
      created_at timestamptz NOT NULL DEFAULT now()
    )`

  yield* sql`
    CREATE TABLE project_members (
      project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
      user_id uuid NOT NULL REFERENCES users (id),
      role text NOT NULL CHECK (role IN ('owner', 'member')),
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (project_id, user_id)
    )`
  yield* sql`CREATE INDEX project_members_user_idx ON project_members (user_id)`

  // position: a per-database order for cursor paging (newest first), exact where timestamps tie.
  // created_event_*: the event a repeated clientMessageId answers with, even after the outbox is pruned.
  yield* sql`
    CREATE TABLE messages (
      id uuid PRIMARY KEY,
      position bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
      project_id uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
      author_id uuid NOT NULL REFERENCES users (id),
      scope text NOT NULL CHECK (scope IN ('project', 'workspace')),
      role text NOT NULL CHECK (role IN ('user', 'worker')),
      body text NOT NULL,
      client_message_id text,
      created_event_id uuid NOT NULL,
      created_event_seq bigint NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      edited_at timestamptz,
      deleted_at timestamptz,
      CHECK (scope = 'workspace' OR role = 'user')
    )`
  yield* sql`
    CREATE UNIQUE INDEX messages_client_message_id_key
      ON messages (project_id, author_id, scope, client_message_id)
      WHERE client_message_id IS NOT NULL`
  yield* sql`
    CREATE INDEX messages_project_page_idx ON messages (project_id, position DESC)
      WHERE scope = 'project'`
  yield* sql`
    CREATE INDEX messages_workspace_page_idx ON messages (project_id, author_id, position DESC)
      WHERE scope = 'workspace'`
})
