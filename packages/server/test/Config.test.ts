import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Duration, Effect, Either, LogLevel, Option } from "effect"
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

  describe("HERALD_CURSOR_RETENTION", () => {
    const cases: ReadonlyArray<readonly [string | undefined, Duration.Duration]> = [
      [undefined, Duration.days(30)],
      ["", Duration.days(30)],
      ["7d", Duration.days(7)],
      ["12h", Duration.hours(12)],
      ["90s", Duration.seconds(90)],
      ["2w", Duration.weeks(2)],
      ["30 days", Duration.days(30)]
    ]
    for (const [value, expected] of cases) {
      it.effect(`${value === undefined ? "unset" : JSON.stringify(value)} is ${Duration.format(expected)}`, () =>
        Effect.gen(function*() {
          const read = yield* readFrom(value === undefined ? {} : { HERALD_CURSOR_RETENTION: value })
          expect(Duration.toMillis(Either.getOrThrow(read).cursorRetention)).toBe(Duration.toMillis(expected))
        }))
    }

    for (const value of ["0", "0d", "-1d", "soon", "30 parsecs", "1.5d"]) {
      it.effect(`${JSON.stringify(value)} stops start-up with one line naming HERALD_CURSOR_RETENTION`, () =>
        Effect.gen(function*() {
          const read = yield* readFrom({ HERALD_CURSOR_RETENTION: value })
          expect(Either.isLeft(read)).toBe(true)
          if (Either.isRight(read)) return
          const message = formatConfigError(read.left)
          expect(message).toMatch(/^Invalid configuration: HERALD_CURSOR_RETENTION: Expected a duration greater than 0/)
          expect(message).toContain(JSON.stringify(value))
          expect(message).not.toContain("\n")
        }))
    }
  })
})

describe("HERALD_CORS_ORIGINS", () => {
  const origins = (env: Record<string, string>) =>
    Effect.map(readFrom(env), (read) => Either.map(read, (c) => c.corsOrigins))

  it.effect("unset or empty is no origin at all", () =>
    Effect.gen(function*() {
      expect(yield* origins({})).toEqual(Either.right([]))
      expect(yield* origins({ HERALD_CORS_ORIGINS: "" })).toEqual(Either.right([]))
      expect(yield* origins({ HERALD_CORS_ORIGINS: " " })).toEqual(Either.right([]))
    }))

  it.effect("a comma-separated list of origins, each as a browser sends it in Origin", () =>
    Effect.gen(function*() {
      expect(yield* origins({ HERALD_CORS_ORIGINS: "https://app.example.com" })).toEqual(
        Either.right(["https://app.example.com"])
      )
      expect(
        yield* origins({
          HERALD_CORS_ORIGINS: " http://localhost:5173 , HTTPS://App.Example.com:443/,http://[::1]:8080,"
        })
      ).toEqual(Either.right(["http://localhost:5173", "https://app.example.com", "http://[::1]:8080"]))
    }))

  for (
    const [value, why] of [
      ["*", /\*/],
      ["https://app.example.com, *", /\*/],
      ["app.example.com", /"app\.example\.com"/],
      ["https://app.example.com/chat", /"https:\/\/app\.example\.com\/chat"/],
      ["https://app.example.com?x=1", /"https:\/\/app\.example\.com\?x=1"/],
      ["https://user@app.example.com", /"https:\/\/user@app\.example\.com"/],
      ["ftp://app.example.com", /"ftp:\/\/app\.example\.com"/],
      ["null", /"null"/]
    ] as const
  ) {
    it.effect(`${JSON.stringify(value)} stops start-up with one line naming HERALD_CORS_ORIGINS`, () =>
      Effect.gen(function*() {
        const read = yield* readFrom({ HERALD_CORS_ORIGINS: value })
        expect(Either.isLeft(read)).toBe(true)
        if (Either.isRight(read)) return
        const message = formatConfigError(read.left)
        expect(message).toMatch(/^Invalid configuration: HERALD_CORS_ORIGINS: /)
        expect(message).toMatch(why)
        expect(message).not.toContain("\n")
      }))
  }
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

describe("traces (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME)", () => {
  const tracingOf = (env: Record<string, string>) =>
    Effect.map(readFrom(env), (read) => Option.getOrUndefined(Either.getOrThrow(read).tracing))

  it.effect("unset or empty is no tracing at all", () =>
    Effect.gen(function*() {
      expect(yield* tracingOf({})).toBeUndefined()
      expect(yield* tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "", OTEL_SERVICE_NAME: "x" })).toBeUndefined()
    }))

  it.effect("an endpoint is the base of the OTLP/HTTP traces path; the service is herald unless named", () =>
    Effect.gen(function*() {
      expect(yield* tracingOf({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/" })).toEqual({
        url: "http://collector:4318/v1/traces",
        serviceName: "herald",
        exportIntervalMs: 5_000
      })
      expect(
        yield* tracingOf({
          OTEL_EXPORTER_OTLP_ENDPOINT: "https://otel.example.com/base",
          OTEL_SERVICE_NAME: "herald-eu-1",
          OTEL_BSP_SCHEDULE_DELAY: "250"
        })
      ).toEqual({ url: "https://otel.example.com/base/v1/traces", serviceName: "herald-eu-1", exportIntervalMs: 250 })
    }))

  it.effect("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the traces URL itself, and wins", () =>
    Effect.gen(function*() {
      const tracing = yield* tracingOf({
        OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://traces:9999/custom"
      })
      expect(tracing?.url).toBe("http://traces:9999/custom")
    }))

  for (
    const [name, value] of [
      ["OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"],
      ["OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"],
      ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://collector:4317"],
      ["OTEL_BSP_SCHEDULE_DELAY", "soon"]
    ] as const
  ) {
    it.effect(`${name}=${JSON.stringify(value)} stops start-up with one line naming ${name}`, () =>
      Effect.gen(function*() {
        const read = yield* readFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318", [name]: value })
        expect(Either.isLeft(read)).toBe(true)
        if (Either.isRight(read)) return
        const message = formatConfigError(read.left)
        expect(message).toMatch(new RegExp(`^Invalid configuration: ${name}: `))
        expect(message).not.toContain("\n")
      }))
  }
})

describe("HERALD_HEAP_GROWTH_PERCENT", () => {
  it.effect("unset is 30; 0 (V8's own policy) and any whole percentage up to 300 are read", () =>
    Effect.gen(function*() {
      expect(Either.getOrThrow(yield* readFrom({})).heapGrowthPercent).toBe(30)
      for (const value of [0, 50, 300]) {
        expect(Either.getOrThrow(yield* readFrom({ HERALD_HEAP_GROWTH_PERCENT: String(value) })).heapGrowthPercent)
          .toBe(value)
      }
    }))

  for (const value of ["-1", "301", "12.5", "lots"]) {
    it.effect(`${JSON.stringify(value)} stops start-up with one line naming HERALD_HEAP_GROWTH_PERCENT`, () =>
      Effect.gen(function*() {
        const read = yield* readFrom({ HERALD_HEAP_GROWTH_PERCENT: value })
        expect(Either.isLeft(read)).toBe(true)
        if (Either.isRight(read)) return
        const message = formatConfigError(read.left)
        expect(message).toMatch(/^Invalid configuration: HERALD_HEAP_GROWTH_PERCENT: Expected/)
        expect(message).not.toContain("\n")
      }))
  }
})
