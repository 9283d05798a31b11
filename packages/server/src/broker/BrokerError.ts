import { Data } from "effect"

export class BrokerError
  extends Data.TaggedError("BrokerError")<{ readonly message: string; readonly cause?: unknown }>
{}
