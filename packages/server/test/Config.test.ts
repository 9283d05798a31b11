import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, LogLevel } from "effect"
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

  describe("limits (HERALD_SSE_MAX_*, HERALD_*_RATE)", () => {
    /** The one-line start-up error for `env`, or fails the test if it reads. */
    const refused = (env: Record<string, string>) =>
      Effect.map(readFrom(env), (read) => {
        expect(Either.isLeft(read)).toBe(true)
        return Either.isLeft(read) ? formatConfigError(read.left) : ""
      })

    it.effect("unset are the SPEC's defaults: 16 and 50000 connections, 20/s, 200/s and 10/s", () =>
      Effect.gen(function*() {
        const c = Either.getOrThrow(yield* readFrom({}))
        expect([c.sseMaxPerUser, c.sseMaxConnections, c.writeRate, c.draftRate, c.authFailureRate]).toEqual([
          16,
          50_000,
          20,
          200,
          10
        ])
      }))

    const rates: ReadonlyArray<readonly [string, number]> = [
      ["20/s", 20],
      ["20 / s", 20],
      ["20/sec", 20],
      ["600/m", 10],
      ["600/min", 10],
      ["36000/h", 10],
      ["0.5/s", 0.5],
      [" 5/S ", 5]
    ]
    for (const [value, perSecond] of rates) {
      it.effect(`HERALD_WRITE_RATE=${JSON.stringify(value)} is ${perSecond} a second`, () =>
        Effect.gen(function*() {
          expect(Either.getOrThrow(yield* readFrom({ HERALD_WRITE_RATE: value })).writeRate).toBe(perSecond)
        }))
    }

    for (const name of ["HERALD_WRITE_RATE", "HERALD_DRAFT_RATE", "HERALD_AUTH_FAILURE_RATE"]) {
      for (const value of ["fast", "20", "0/s", "-5/s", "20/d", "off", ""]) {
        it.effect(`${name}=${JSON.stringify(value)} stops start-up naming ${name}`, () =>
          Effect.gen(function*() {
            const message = yield* refused({ [name]: value })
            expect(message).toMatch(new RegExp(`^Invalid configuration: ${name}: `))
            expect(message).toContain(`"${value}"`)
            expect(message).not.toContain("\n")
          }))
      }
    }

    for (const name of ["HERALD_SSE_MAX_PER_USER", "HERALD_SSE_MAX_CONNECTIONS"]) {
      for (const value of ["0", "-1", "many", "1.5"]) {
        it.effect(`${name}=${JSON.stringify(value)} stops start-up naming ${name}`, () =>
          Effect.gen(function*() {
            expect(yield* refused({ [name]: value })).toMatch(new RegExp(`^Invalid configuration: ${name}: `))
          }))
      }
    }
  })
})
