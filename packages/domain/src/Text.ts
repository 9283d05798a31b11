import { Schema } from "effect"

declare global {
  // ES2024 (Node ≥ 20 has it); the project's `lib` is ES2022, which does not declare it yet.
  interface String {
    isWellFormed(): boolean
  }
}

/**
 * Whether PostgreSQL can store `text`: its `text` and `jsonb` refuse NUL (U+0000) and unpaired
 * surrogates (a lone `\ud800`..`\udfff` code unit), so such input would fail as a 500 at the
 * database instead of a 400 at the boundary. A well-formed surrogate pair (an emoji) is text.
 */
export const isStorable = (text: string): boolean => text.isWellFormed() && !text.includes("\u0000")

/** Why `field` was refused; the same words over HTTP and in the CLI. */
export const notStorableMessage = (field: string) => `${field} must not contain NUL characters or unpaired surrogates`

/**
 * Refines any string schema to storable text; `field` names the input in the message. Apply it to
 * every free-text input (names, bodies, `clientMessageId`, …).
 */
export const storable = (field: string) => <S extends Schema.Schema<string, string>>(self: S): Schema.filter<S> =>
  Schema.filter<S>((text) => isStorable(text), { message: () => notStorableMessage(field) })(self)
