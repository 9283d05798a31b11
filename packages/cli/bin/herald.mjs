#!/usr/bin/env node
// The `herald` operator CLI: the compiled bundle (`npm install` and `npm run build` make it).
import { existsSync } from "node:fs"

const bundle = new URL("../dist/bin.js", import.meta.url)
if (!existsSync(bundle)) {
  console.error("herald: not built yet; run `npm run build` (or `npm install`) in the Herald checkout")
  process.exit(1)
}
await import(bundle.href)
