import { Console, Effect } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { runProcess } from "../../../test-support/Process.js"
import { attempt, BenchError } from "./support.js"

/**
 * The load generator and `write`'s baseline are Debian's: `wrk` (package `wrk`) and `pgbench` (on
 * bookworm in the server package `postgresql-15`, which `postgresql-contrib` depends on; the
 * `/usr/bin/pgbench` of `postgresql-client-common` is only a wrapper that needs it). Installed
 * with apt-get when missing, and only then.
 */

const onPath = (command: string) =>
  (process.env.PATH ?? "").split(path.delimiter).some((dir) => {
    try {
      fs.accessSync(path.join(dir, command), fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })

const run = (command: string, args: ReadonlyArray<string>, timeoutMs: number) =>
  attempt(
    `${command} ${args.join(" ")}`,
    () => runProcess(command, args, { DEBIAN_FRONTEND: "noninteractive" }, { timeoutMs }).finished
  )

/** Whether `command --version` (or whatever `probe` runs) works: a wrapper alone does not. */
const works = (command: string, probeArgs: ReadonlyArray<string>, okCodes: ReadonlyArray<number>) =>
  onPath(command)
    ? run(command, probeArgs, 10_000).pipe(
      Effect.map((r) => okCodes.includes(r.code ?? -1) && !/not found|must install/i.test(r.stderr)),
      Effect.orElseSucceed(() => false)
    )
    : Effect.succeed(false)

const install = (debianPackage: string, command: string) =>
  Effect.gen(function*() {
    yield* Console.error(
      `bench: ${command} is missing; installing Debian's ${debianPackage} ` +
        `(apt-get update && apt-get install -y ${debianPackage})…`
    )
    for (const args of [["update"], ["install", "-y", "--no-install-recommends", debianPackage]]) {
      const r = yield* run("apt-get", args, 600_000)
      if (r.code !== 0) {
        return yield* new BenchError({
          message: `apt-get ${args.join(" ")} failed (exit ${r.code}); install ${debianPackage} by hand ` +
            `to get ${command}:\n${r.stderr.trim()}`
        })
      }
    }
  })

/**
 * Makes sure `command` works, installing `debianPackage` if not; its version line.
 * `probeArgs` and `okCodes`: how to ask it (`wrk -v` exits 1).
 */
export const ensureTool = (
  command: string,
  debianPackage: string,
  probeArgs: ReadonlyArray<string>,
  okCodes: ReadonlyArray<number> = [0]
) =>
  Effect.gen(function*() {
    if (!(yield* works(command, probeArgs, okCodes))) {
      yield* install(debianPackage, command)
      if (!(yield* works(command, probeArgs, okCodes))) {
        return yield* new BenchError({ message: `${command} still does not run after installing ${debianPackage}` })
      }
    }
    const r = yield* run(command, probeArgs, 10_000)
    return `${r.stdout}${r.stderr}`.split("\n").find((l) => l.trim() !== "")?.trim() ?? command
  })
