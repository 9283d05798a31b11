import { Text } from "@herald/domain"
import { Effect } from "effect"
import { CliError } from "../Render.js"

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
