import * as fs from "node:fs/promises"
import * as path from "node:path"
import { repoRoot } from "../../../../test-support/Process.js"

/** The Dockerfile, read as Docker reads the parts we use (Launch.test and Compose.test run its commands outside Docker). */

export interface Stage {
  readonly name: string | undefined
  readonly instructions: Array<{ readonly op: string; readonly args: string }>
}

export const readDockerfile = async (): Promise<Array<Stage>> => {
  const text = (await fs.readFile(path.join(repoRoot, "Dockerfile"), "utf8")).replace(/\\\n/g, " ")
  const stages: Array<Stage> = []
  for (const line of text.split("\n")) {
    const m = line.trim().match(/^([A-Z]+)\s+(.*)$/)
    if (m === null || line.trim().startsWith("#")) continue
    const [, op, args] = m as unknown as [string, string, string]
    if (op === "FROM") stages.push({ name: args.match(/\s+AS\s+(\S+)/i)?.[1], instructions: [] })
    else stages.at(-1)!.instructions.push({ op, args })
  }
  return stages
}

/** `KEY=value KEY2=value2` of an ENV line. */
export const parseEnv = (args: string) =>
  Object.fromEntries(args.split(/\s+/).map((kv) => kv.split("=", 2) as [string, string]))

/** The exec form `["a", "b"]` of CMD / HEALTHCHECK … CMD. */
export const execForm = (args: string): Array<string> => JSON.parse(args.slice(args.indexOf("["))) as Array<string>

/** The runtime (last) stage's ENV, CMD and HEALTHCHECK command. */
export const runtimeStage = async () => {
  const stages = await readDockerfile()
  const runtime = stages.at(-1)!
  const env = Object.assign(
    {},
    ...runtime.instructions.filter((i) => i.op === "ENV").map((i) => parseEnv(i.args))
  ) as Record<string, string>
  const cmd = execForm(runtime.instructions.find((i) => i.op === "CMD")!.args)
  const healthcheck = execForm(runtime.instructions.find((i) => i.op === "HEALTHCHECK")!.args)
  const copies = runtime.instructions.filter((i) => i.op === "COPY").map((i) => i.args.split(/\s+/))
  return { runtime, env, cmd, healthcheck, copies }
}
