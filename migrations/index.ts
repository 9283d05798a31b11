import type { SqlClient } from "@effect/sql"
import type { Effect } from "effect"
import m0001 from "./0001_chat.js"
import m0002 from "./0002_events.js"
import m0003 from "./0003_event_log_watermark.js"
import m0004 from "./0004_event_log_covering_index.js"
import m0005 from "./0005_stream_cursors.js"
import m0006 from "./0006_post_message.js"
import m0007, { online as online0007 } from "./0007_event_log_partitions.js"
import m0008 from "./0008_event_log_rollups.js"
import m0009 from "./0009_tokens.js"
import m0010 from "./0010_cursor_bases.js"
import m0011 from "./0011_trace_context.js"
import m0012 from "./0012_event_log_hourly_bounds.js"

/** Every migration by `NNNN_name`, applied in order by the server at start-up and by `herald migrate`. */
export const migrations = {
  "0001_chat": m0001,
  "0002_events": m0002,
  "0003_event_log_watermark": m0003,
  "0004_event_log_covering_index": m0004,
  "0005_stream_cursors": m0005,
  "0006_post_message": m0006,
  "0007_event_log_partitions": m0007,
  "0008_event_log_rollups": m0008,
  "0009_tokens": m0009,
  "0010_cursor_bases": m0010,
  "0011_trace_context": m0011,
  "0012_event_log_hourly_bounds": m0012
}

/**
 * The online part of a migration, run before its transaction and outside any: long copies done in
 * short transactions while writers go on (db/Migrations.ts). Run again from the start if
 * interrupted, so each must be safe to repeat.
 */
export const online: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>> = {
  "0007_event_log_partitions": online0007
}
