import {
  Config,
  ConfigError,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Either,
  Layer,
  LogLevel,
  Option,
  Redacted
} from "effect"
import { corsOrigins } from "./CorsOrigins.js"
import { parseDurationText } from "./DurationText.js"
import { parseRateText } from "./RateText.js"

const positiveInt = (name: string, fallback: number) =>
  Config.integer(name).pipe(
    Config.validate({ message: "Expected an integer greater than 0", validation: (n) => n > 0 }),
    Config.withDefault(fallback)
  )

/** The names people type for each level (matched in any case), first the one the error message shows. */
const LOG_LEVEL_NAMES: ReadonlyArray<readonly [LogLevel.LogLevel, ReadonlyArray<string>]> = [
  [LogLevel.All, ["all"]],
  [LogLevel.Trace, ["trace"]],
  [LogLevel.Debug, ["debug"]],
  [LogLevel.Info, ["info"]],
  [LogLevel.Warning, ["warn", "warning"]],
  [LogLevel.Error, ["error", "err"]],
  [LogLevel.Fatal, ["fatal"]],
  [LogLevel.None, ["none", "off", "silent"]]
]

const logLevelByName = new Map(LOG_LEVEL_NAMES.flatMap(([level, names]) => names.map((name) => [name, level] as const)))

/**
 * A log level by name. `Config.logLevel` knows only Effect's labels (`WARN`, not `warning`);
 * this takes the usual aliases too, in any case.
 */
export const logLevel = (name: string): Config.Config<LogLevel.LogLevel> =>
  Config.nested(
    Config.mapOrFail(Config.string(), (value) => {
      const level = logLevelByName.get(value.trim().toLowerCase())
      return level === undefined
        ? Either.left(ConfigError.InvalidData(
          [],
          `Expected a log level (${
            LOG_LEVEL_NAMES.map(([, names]) => names.join("/")).join(", ")
          }) but received "${value}"`
        ))
        : Either.right(level)
    }),
    name
  )

/**
 * A Redis URL (`redis://` or `rediss://`), kept redacted: it may carry a password. Unset or empty
 * is none; anything else that is not such a URL is refused, naming the variable.
 */
const redisUrl = (name: string) =>
  Config.nested(
    Config.option(Config.mapOrFail(Config.redacted(), (url) => {
      const text = Redacted.value(url).trim()
      let protocol: string | undefined
      try {
        protocol = new URL(text).protocol
      } catch {
        protocol = undefined
      }
      return text === "" || protocol === "redis:" || protocol === "rediss:"
        ? Either.right(url)
        : Either.left(ConfigError.InvalidData([], "Expected a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379"))
    })),
    name
  ).pipe(Config.map(Option.filter((url) => Redacted.value(url).trim() !== "")))

/**
 * How long event_log keeps events (`90d`), read as the CLI reads `--older-than`; unset or empty =
 * forever. Zero would drop every past month at once: refused.
 */
const retention = (name: string): Config.Config<Option.Option<Duration.Duration>> =>
  Config.mapOrFail(Config.option(Config.string(name)), (value) => {
    if (Option.isNone(value) || value.value.trim() === "") return Either.right(Option.none())
    const parsed = parseDurationText(value.value)
    return Either.isRight(parsed) && Duration.greaterThan(parsed.right, Duration.zero)
      ? Either.right(Option.some(parsed.right))
      : Either.left(ConfigError.InvalidData(
        [name],
        `Expected a duration greater than 0 such as 90d, 12h or "30 days", but received "${value.value}"`
      ))
  })

/**
 * A duration that must be set to something greater than 0 (`30d`), read as the CLI reads
 * `--older-than`; unset or empty = the default.
 */
const positiveDuration = (name: string, fallback: Duration.Duration): Config.Config<Duration.Duration> =>
  Config.mapOrFail(Config.option(Config.string(name)), (value) => {
    if (Option.isNone(value) || value.value.trim() === "") return Either.right(fallback)
    const parsed = parseDurationText(value.value)
    return Either.isRight(parsed) && Duration.greaterThan(parsed.right, Duration.zero)
      ? Either.right(parsed.right)
      : Either.left(ConfigError.InvalidData(
        [name],
        `Expected a duration greater than 0 such as 60s, 30d or "30 days", but received "${value.value}"`
      ))
  })

/** A token bucket's rate (`20/s`, `600/m`), in events per second; anything else stops start-up naming the variable. */
const rate = (name: string, fallback: string): Config.Config<number> =>
  Config.mapOrFail(
    Config.string(name).pipe(Config.withDefault(fallback)),
    (value) => Either.mapLeft(parseRateText(value), (message) => ConfigError.InvalidData([name], message))
  )

/** Where traces go and as whom: OTLP/HTTP (SPEC §7, §9). */
export interface TracingConfig {
  /** The traces endpoint itself (`…/v1/traces`). */
  readonly url: string
  readonly serviceName: string
  /** How long finished spans wait before they are sent, in a batch (OTEL_BSP_SCHEDULE_DELAY). */
  readonly exportIntervalMs: number
}

/** An http(s) URL, or none for unset or empty; anything else stops start-up naming the variable. */
const httpUrl = (name: string): Config.Config<Option.Option<string>> =>
  Config.mapOrFail(Config.option(Config.string(name)), (value) => {
    if (Option.isNone(value) || value.value.trim() === "") return Either.right(Option.none())
    const text = value.value.trim()
    let protocol: string | undefined
    try {
      protocol = new URL(text).protocol
    } catch {
      protocol = undefined
    }
    return protocol === "http:" || protocol === "https:"
      ? Either.right(Option.some(text))
      : Either.left(ConfigError.InvalidData(
        [name],
        `Expected an http:// or https:// URL such as http://127.0.0.1:4318, but received "${value.value}"`
      ))
  })

/**
 * Traces, as the OpenTelemetry variables say: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is the traces
 * URL itself; otherwise `OTEL_EXPORTER_OTLP_ENDPOINT` is the base the OTLP/HTTP path
 * `v1/traces` is added to. Neither set (or empty): no tracing at all.
 */
const tracing: Config.Config<Option.Option<TracingConfig>> = Config.all({
  endpoint: httpUrl("OTEL_EXPORTER_OTLP_ENDPOINT"),
  tracesEndpoint: httpUrl("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
  serviceName: Config.string("OTEL_SERVICE_NAME").pipe(
    Config.map((name) => name.trim()),
    Config.withDefault(""),
    Config.map((name) => name === "" ? "herald" : name)
  ),
  exportIntervalMs: positiveInt("OTEL_BSP_SCHEDULE_DELAY", 5_000)
}).pipe(Config.map(({ endpoint, exportIntervalMs, serviceName, tracesEndpoint }) => {
  const url = Option.orElse(
    tracesEndpoint,
    () => Option.map(endpoint, (base) => `${base.replace(/\/+$/, "")}/v1/traces`)
  )
  return Option.map(url, (url): TracingConfig => ({ url, serviceName, exportIntervalMs }))
}))

const config = Config.all({
  // An empty DATABASE_URL (e.g. `DATABASE_URL= npm start`) means unset: the embedded cluster.
  databaseUrl: Config.option(Config.redacted("DATABASE_URL")).pipe(
    Config.map(Option.filter((url) => Redacted.value(url).trim() !== ""))
  ),
  dataDir: Config.string("HERALD_DATA_DIR").pipe(Config.withDefault("./.herald")),
  host: Config.string("HOST").pipe(Config.withDefault("127.0.0.1")),
  port: Config.port("PORT").pipe(Config.withDefault(3000)),
  broker: Config.literal("memory", "postgres", "redis")("HERALD_BROKER").pipe(Config.withDefault("memory" as const)),
  redisUrl: redisUrl("REDIS_URL"),
  adminToken: Config.option(Config.redacted("HERALD_ADMIN_TOKEN")),
  eventLogRetention: retention("HERALD_EVENT_LOG_RETENTION"),
  cursorRetention: positiveDuration("HERALD_CURSOR_RETENTION", Duration.days(30)),
  publishBatchSize: positiveInt("HERALD_PUBLISH_BATCH_SIZE", 500),
  publishMaxAttempts: positiveInt("HERALD_PUBLISH_MAX_ATTEMPTS", 25),
  publishBackoffBaseMs: positiveInt("HERALD_PUBLISH_BACKOFF_BASE_MS", 100),
  publishBackoffMaxMs: positiveInt("HERALD_PUBLISH_BACKOFF_MAX_MS", 300_000),
  claimLeaseMs: positiveInt("HERALD_CLAIM_LEASE_MS", 30_000),
  pollIntervalMs: positiveInt("HERALD_POLL_INTERVAL_MS", 1_000),
  chaosPublishFailureRate: Config.number("HERALD_CHAOS_PUBLISH_FAILURE_RATE").pipe(
    Config.validate({ message: "Expected a number from 0 to 1", validation: (n) => n >= 0 && n <= 1 }),
    Config.withDefault(0)
  ),
  sseHeartbeatMs: positiveInt("HERALD_SSE_HEARTBEAT_MS", 15_000),
  sseBuffer: positiveInt("HERALD_SSE_BUFFER", 1_000),
  corsOrigins: corsOrigins("HERALD_CORS_ORIGINS"),
  ticketTtl: positiveDuration("HERALD_TICKET_TTL", Duration.seconds(60)),
  presenceTtl: positiveDuration("HERALD_PRESENCE_TTL", Duration.seconds(30)),
  /**
   * How far V8's old generation may grow past what its last full collection kept before it
   * collects again, in percent; 0 leaves V8's own policy, which lets it grow up to four times
   * while allocation is fast — a reconnect storm's garbage, then kept for minutes (main.ts).
   */
  heapGrowthPercent: Config.integer("HERALD_HEAP_GROWTH_PERCENT").pipe(
    Config.validate({
      message: "Expected a whole percentage from 0 to 300 (0: V8's own policy)",
      validation: (n) => n >= 0 && n <= 300
    }),
    Config.withDefault(30)
  ),

  // Limits (SPEC §5 "Limits"), each per server process.
  sseMaxPerUser: positiveInt("HERALD_SSE_MAX_PER_USER", 16),
  sseMaxConnections: positiveInt("HERALD_SSE_MAX_CONNECTIONS", 50_000),
  writeRate: rate("HERALD_WRITE_RATE", "20/s"),
  draftRate: rate("HERALD_DRAFT_RATE", "200/s"),
  authFailureRate: rate("HERALD_AUTH_FAILURE_RATE", "10/s"),
  tracing,
  logLevel: logLevel("LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info)),
  logFormat: Config.literal("pretty", "json")("LOG_FORMAT").pipe(Config.withDefault("pretty" as const))
}).pipe(
  Config.validate({
    message: "HERALD_PUBLISH_BACKOFF_MAX_MS must not be below HERALD_PUBLISH_BACKOFF_BASE_MS",
    validation: (c) => c.publishBackoffMaxMs >= c.publishBackoffBaseMs
  }),
  Config.validate({
    message: "REDIS_URL: required with HERALD_BROKER=redis (e.g. redis://127.0.0.1:6379)",
    validation: (c) => c.broker !== "redis" || Option.isSome(c.redisUrl)
  })
)

export type AppConfigShape = Config.Config.Success<typeof config>

/** Every setting of the README's configuration table, read once at start-up; defaults live here and nowhere else. */
export class AppConfig extends Context.Tag("Herald/AppConfig")<AppConfig, AppConfigShape>() {
  /** How the settings are read (run it under a ConfigProvider to read them from elsewhere). */
  static readonly config: Config.Config<AppConfigShape> = config

  static readonly layer = Layer.effect(AppConfig, config)

  /** A config for tests and tools: the defaults, with some values replaced. */
  static readonly make = (overrides: Partial<AppConfigShape> = {}): Effect.Effect<AppConfigShape> =>
    Effect.map(Effect.orDie(Effect.withConfigProvider(config, emptyProvider)), (c) => ({ ...c, ...overrides }))

  static readonly layerWith = (overrides: Partial<AppConfigShape> = {}) =>
    Layer.effect(AppConfig, AppConfig.make(overrides))
}

const emptyProvider = ConfigProvider.fromMap(new Map())

/** One line naming the variable, e.g. `PORT: Expected a network port …`. */
const leaf = (_: unknown, path: Array<string>, message: string): ReadonlyArray<string> => [
  `${path.length > 0 ? path.join(".") + ": " : ""}${message}`
]
const both = (_: unknown, left: ReadonlyArray<string>, right: ReadonlyArray<string>) => [...left, ...right]

export const formatConfigError = (error: ConfigError.ConfigError): string =>
  `Invalid configuration: ${
    ConfigError.reduceWithContext(error, undefined, {
      andCase: both,
      orCase: both,
      invalidDataCase: leaf,
      missingDataCase: leaf,
      sourceUnavailableCase: leaf,
      unsupportedCase: leaf
    }).join("; ")
  }`
