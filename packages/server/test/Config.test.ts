import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, LogLevel } from "effect"
import { AppConfig, formatConfigError } from "../src/config/AppConfig.js"

/** The app's settings read from `env` alone, as start-up would read them from the environment. */
const readFrom = (env: Record<string, string>) =>
  Effect.withConfigProvider(Effect.either(AppConfig.config), ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("configuration", () => {
  describe("LOG_LEVEL", () => {
    const cases: ReadonlyArray<readonly [string, LogLevel.LogLevel]> = [
      ["warning", LogLevel.Warning],
      ["WARN", LogLevel.Warning],
      ["Warn", LogLevel.Warning],
      ["WARNING", LogLevel.Warning],
      ["err", LogLevel.Error],
      ["error", LogLevel.Error],
      ["ERROR", LogLevel.Error],
      ["debug", LogLevel.Debug],
      ["Info", LogLevel.Info],
      ["trace", LogLevel.Trace],
      ["fatal", LogLevel.Fatal],
      ["all", LogLevel.All],
      ["none", LogLevel.None],
      ["OFF", LogLevel.None],
      [" debug ", LogLevel.Debug]
    ]
    for (const [value, level] of cases) {
      it.effect(`${JSON.stringify(value)} is ${level.label}`, () =>
        Effect.gen(function*() {
          const read = yield* readFrom({ LOG_LEVEL: value })
          expect(Either.getOrThrow(read).logLevel).toBe(level)
        }))
    }

    it.effect("unset is Info", () =>
      Effect.gen(function*() {
        expect(Either.getOrThrow(yield* readFrom({})).logLevel).toBe(LogLevel.Info)
      }))

    it.effect("an unknown level stops start-up with one line naming LOG_LEVEL and the accepted names", () =>
      Effect.gen(function*() {
        const read = yield* readFrom({ LOG_LEVEL: "loud" })
        expect(Either.isLeft(read)).toBe(true)
        if (Either.isRight(read)) return
        const message = formatConfigError(read.left)
        expect(message).toMatch(/^Invalid configuration: LOG_LEVEL: /)
        expect(message).toContain("\"loud\"")
        for (
          const name of ["warn", "warning", "err", "error", "debug", "info", "trace", "fatal", "all", "none", "off"]
        ) {
          expect(message).toContain(name)
        }
        expect(message).not.toContain("\n")
      }))
  })

  describe("HERALD_TICKET_TTL", () => {
    it.effect("unset is 60 s; a duration such as 2m is read", () =>
      Effect.gen(function*() {
        expect(Duration.toMillis(Either.getOrThrow(yield* readFrom({})).ticketTtl)).toBe(60_000)
        expect(Duration.toMillis(Either.getOrThrow(yield* readFrom({ HERALD_TICKET_TTL: "2m" })).ticketTtl)).toBe(
          120_000
        )
      }))

    for (const value of ["soon", "0s", "-5s"]) {
      it.effect(`${JSON.stringify(value)} stops start-up with one line naming HERALD_TICKET_TTL`, () =>
        Effect.gen(function*() {
          const read = yield* readFrom({ HERALD_TICKET_TTL: value })
          expect(Either.isLeft(read)).toBe(true)
          if (Either.isRight(read)) return
          expect(formatConfigError(read.left)).toMatch(/^Invalid configuration: HERALD_TICKET_TTL: Expected a duration/)
        }))
    }
  })
})
