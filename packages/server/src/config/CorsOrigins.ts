import { Config, ConfigError, Either, Option } from "effect"

/**
 * An origin as a browser sends it in `Origin`: `http(s)://host[:port]`, lower-case, without the
 * scheme's default port (so `HTTPS://App.Example.com:443/` is `https://app.example.com`); anything
 * with a path, query, fragment or user part is not an origin.
 */
const origin = (entry: string): string | undefined => {
  let url: URL
  try {
    url = new URL(entry)
  } catch {
    return undefined
  }
  const plain = (url.protocol === "http:" || url.protocol === "https:") && url.username === "" &&
    url.password === "" && url.pathname === "/" && url.search === "" && url.hash === ""
  return plain ? url.origin : undefined
}

/**
 * The origins allowed to call the API from a browser: a comma-separated list of exact origins;
 * unset or empty is none. `*` is refused — each origin is listed, so the list says who may call.
 */
export const corsOrigins = (name: string): Config.Config<ReadonlyArray<string>> =>
  Config.mapOrFail(Config.option(Config.string(name)), (value) => {
    const entries = Option.getOrElse(value, () => "").split(",").map((e) => e.trim()).filter((e) => e !== "")
    const origins: Array<string> = []
    for (const entry of entries) {
      const parsed = entry === "*" ? undefined : origin(entry)
      if (parsed === undefined) {
        return Either.left(ConfigError.InvalidData(
          [name],
          entry === "*"
            ? `"*" is not accepted: list each origin, comma-separated, e.g. https://app.example.com,http://localhost:5173`
            : `Expected comma-separated origins (scheme://host[:port], e.g. https://app.example.com) but received "${entry}"`
        ))
      }
      if (!origins.includes(parsed)) origins.push(parsed)
    }
    return Either.right(origins)
  })
