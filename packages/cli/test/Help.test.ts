import { spawnSync } from "node:child_process"
import * as path from "node:path"
import { describe, expect, it } from "vitest"
import { type CliResult, herald, heraldAll, repoRoot } from "./support/Cli.js"

const ESC = "\u001b["

const describeRun = (r: CliResult) =>
  `herald ${r.args.join(" ")} → exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`

/** The `$ …` lines under USAGE. */
const usageLines = (text: string) => text.split("\n").filter((line) => line.startsWith("$ "))

const HELP: ReadonlyArray<readonly [args: ReadonlyArray<string>, usage: string]> = [
  [["--help"], "$ herald <command>"],
  [["outbox", "--help"], "$ herald outbox <command>"],
  [["outbox", "list", "--help"], "$ herald outbox list [--json]"],
  [["outbox", "list", "-h"], "$ herald outbox list [--json]"],
  [["users", "create", "--help"], "$ herald users create [--json] <name>"],
  // A group without its subcommand answers with the group's help, as @effect/cli does.
  [["outbox"], "$ herald outbox <command>"]
]

const USAGE_ERRORS: ReadonlyArray<readonly [args: ReadonlyArray<string>, message: RegExp]> = [
  [["outbox", "list", "--bogus"], /unknown argument: '--bogus'/],
  [["outbox", "list", "--limit", "many"], /'many' is not a integer/],
  [["outbox", "list", "--status", "lost"], /Expected one of the following cases: pending, published, dead/],
  [["users", "create"], /Missing argument <name>/],
  [["nope"], /Invalid subcommand for herald/]
]

describe("herald help and usage errors", () => {
  it("help with stdout piped: exit 0, the whole command in USAGE, no escape codes", async () => {
    const runs = await heraldAll(HELP.map(([args]) => [args, {}]))
    for (const [i, [, usage]] of HELP.entries()) {
      const r = runs[i]!
      expect(r.code, describeRun(r)).toBe(0)
      expect(r.stdout, describeRun(r)).not.toContain(ESC)
      expect(r.stderr, describeRun(r)).not.toContain(ESC)
      expect(r.stdout, describeRun(r)).toMatch(/^USAGE$/m)
      expect(usageLines(r.stdout)[0], describeRun(r)).toMatch(new RegExp(`^${usage.replace(/[[\]$]/g, "\\$&")}`))
    }
    const list = runs[2]!
    expect(usageLines(list.stdout)).toEqual([
      "$ herald outbox list [--json] [--status pending | published | dead] [--stream text] [--type text] [--limit integer]"
    ])
    expect(list.stdout).toContain("outbox rows, newest first")
    expect(list.stdout).toMatch(/^--status pending \| published \| dead$/m)
    // The groups' pages still list their commands.
    expect(runs[0]!.stdout).toMatch(/^COMMANDS$/m)
    expect(runs[0]!.stdout).toContain("outbox list [--json]")
    expect(runs[1]!.stdout).toMatch(/^ {2}- list \[--json\]/m)
  })

  it("a usage error with output piped: exit 2, the problem on stderr, no escape codes", async () => {
    const runs = await heraldAll(USAGE_ERRORS.map(([args]) => [args, {}]))
    for (const [i, [, message]] of USAGE_ERRORS.entries()) {
      const r = runs[i]!
      expect(r.code, describeRun(r)).toBe(2)
      expect(r.stderr, describeRun(r)).toMatch(message)
      expect(r.stderr, describeRun(r)).not.toContain(ESC)
      expect(r.stdout, describeRun(r)).not.toContain(ESC)
    }
  })

  it("NO_COLOR changes nothing off a terminal: still plain", async () => {
    const r = await herald(["outbox", "list", "--help"], { NO_COLOR: "1" })
    expect(r.code, describeRun(r)).toBe(0)
    expect(r.stdout).not.toContain(ESC)
    expect(usageLines(r.stdout)[0]).toMatch(/^\$ herald outbox list /)
  })

  // On a terminal (a pseudo-terminal from util-linux `script`) help is styled, unless NO_COLOR.
  const script = spawnSync("script", ["--version"], { encoding: "utf8" })
  it.skipIf(process.platform !== "linux" || script.status !== 0)(
    "on a terminal help is styled, unless NO_COLOR is set",
    () => {
      const bin = path.join(repoRoot, "packages/cli/bin/herald.mjs")
      const onTerminal = (env: Record<string, string>) =>
        spawnSync("script", [
          "-qec",
          `${JSON.stringify(process.execPath)} ${JSON.stringify(bin)} outbox list --help`,
          "/dev/null"
        ], {
          cwd: repoRoot,
          encoding: "utf8",
          env: { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => key !== "NO_COLOR")), ...env },
          timeout: 30_000
        })
      const styled = onTerminal({})
      expect(styled.status, styled.stderr).toBe(0)
      expect(styled.stdout).toContain(ESC)
      expect(styled.stdout).toContain("$ herald outbox list ")
      const plain = onTerminal({ NO_COLOR: "1" })
      expect(plain.status, plain.stderr).toBe(0)
      expect(plain.stdout).not.toContain(ESC)
      expect(plain.stdout).toContain("$ herald outbox list ")
    }
  )
})
