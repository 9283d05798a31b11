import * as path from "node:path"
import { fileURLToPath } from "node:url"

/** `packages/server`: one level above this module, and above the compiled bundle in `dist/` alike. */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
