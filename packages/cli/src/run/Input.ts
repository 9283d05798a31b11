import { Text } from "@herald/domain"
import { Effect, ParseResult, Schema } from "effect"
import { CliError } from "../Render.js"

/** An argument decoded with the domain's schema; refused with the schema's own words, as over HTTP. */
export const decodeArgument = <A, I>(schema: Schema.Schema<A, I>, value: unknown): Effect.Effect<A, CliError> =>
  Schema.decodeUnknown(schema)(value).pipe(
    Effect.mapError((error) => new CliError({ message: ParseResult.ArrayFormatter.formatErrorSync(error)[0]!.message }))
  )

/**
 * Text the database can store, or one clear line naming the argument — the rule and the words of
 * the HTTP API. (argv itself cannot carry a NUL, and Node decodes bytes that are not UTF-8 as
 * U+FFFD, so this is the guard for whatever runs these commands with other strings.)
 */
export const storableText = (argument: string, text: string): Effect.Effect<string, CliError> =>
  Text.isStorable(text)
    ? Effect.succeed(text)
    : Effect.fail(new CliError({ message: Text.notStorableMessage(argument) }))

/** The same for an optional argument. */
export const storableOptional = (
  argument: string,
  text: string | undefined
): Effect.Effect<string | undefined, CliError> =>
  text === undefined ? Effect.succeed(undefined) : storableText(argument, text)
