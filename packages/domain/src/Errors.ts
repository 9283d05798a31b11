import * as HttpApiSchema from "@effect/platform/HttpApiSchema"
import { Schema } from "effect"

export class Unauthorized extends Schema.TaggedError<Unauthorized>()(
  "Unauthorized",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 401 })
) {}

export class Forbidden extends Schema.TaggedError<Forbidden>()(
  "Forbidden",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 403 })
) {}

/** Unknown **or not visible**: a non-member cannot tell a hidden project from a missing one. */
export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

export class BadRequest extends Schema.TaggedError<BadRequest>()(
  "BadRequest",
  { message: Schema.String, field: Schema.optional(Schema.String) },
  HttpApiSchema.annotations({ status: 400 })
) {}

export class ServiceUnavailable extends Schema.TaggedError<ServiceUnavailable>()(
  "ServiceUnavailable",
  { message: Schema.String, checks: Schema.Record({ key: Schema.String, value: Schema.String }) },
  HttpApiSchema.annotations({ status: 503 })
) {}

/**
 * A multiplexed stream's cursor whose base was deleted after `HERALD_CURSOR_RETENTION` unused: the
 * client starts over without a cursor and reloads over HTTP. (A malformed, forged or another
 * user's cursor is a BadRequest.)
 */
export class CursorExpired extends Schema.TaggedError<CursorExpired>()(
  "CursorExpired",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/**
 * Over a limit (SPEC §5 "Limits", G11): `limit` names which, `retryAfter` is in whole seconds and
 * is also sent as the `Retry-After` header.
 */
export class TooManyRequests extends Schema.TaggedError<TooManyRequests>()(
  "TooManyRequests",
  {
    message: Schema.String,
    limit: Schema.String,
    retryAfter: Schema.Int.pipe(Schema.positive())
  },
  HttpApiSchema.annotations({ status: 429 })
) {}
