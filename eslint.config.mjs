// One linter and formatter for the whole repository, in the Effect house style: ESLint with
// typescript-eslint and @effect/eslint-plugin's dprint rule (the formatter Effect itself uses).
// `npm run lint` checks; `npm run lint:fix` formats.
import effect from "@effect/eslint-plugin"
import eslint from "@eslint/js"
import globals from "globals"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["**/node_modules/**", "**/dist/**", "**/build/**", "**/*.md", "**/fixtures/**"] },
  eslint.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { "@effect": effect },
    languageOptions: { globals: globals.node },
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      // Effect's generators yield effects, not values, and often none (a plain `Effect.gen` body).
      "require-yield": "off",
      // `{}` is how Effect spells "no fields" (Data.TaggedError<{}>, a TaggedEnum case).
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }]
    }
  },
  {
    // The web client: plain ES modules for the browser, no build step.
    files: ["packages/server/web/**/*.js"],
    languageOptions: { globals: globals.browser }
  },
  {
    // Tests read loosely typed JSON answers.
    files: ["packages/*/test/**/*.ts", "test-support/**/*.ts"],
    rules: { "@typescript-eslint/no-explicit-any": "off" }
  }
)
