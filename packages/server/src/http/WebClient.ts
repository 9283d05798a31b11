import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect } from "effect"
import { createRequire } from "node:module"
import * as path from "node:path"
import { packageRoot } from "../PackageRoot.js"

const web = path.join(packageRoot, "web")
/** web/app.js bundled with @herald/client by scripts/build.mjs (`npm run build`). */
const built = path.join(packageRoot, "dist", "web")
const uplot = path.dirname(createRequire(import.meta.url).resolve("uplot/dist/uPlot.esm.js"))

const files: ReadonlyArray<readonly [route: HttpRouter.PathInput, file: string, contentType: string]> = [
  ["/", path.join(web, "index.html"), "text/html; charset=utf-8"],
  ["/app.js", path.join(built, "app.js"), "text/javascript; charset=utf-8"],
  ["/app.js.map", path.join(built, "app.js.map"), "application/json; charset=utf-8"],
  ["/style.css", path.join(web, "style.css"), "text/css; charset=utf-8"],
  ["/vendor/uplot.esm.js", path.join(uplot, "uPlot.esm.js"), "text/javascript; charset=utf-8"],
  ["/vendor/uplot.min.css", path.join(uplot, "uPlot.min.css"), "text/css; charset=utf-8"]
]

/** The web client at `/`: static files next to the API, which stays under /api; its script is the built bundle. */
export const WebClientLive = HttpApiBuilder.Router.use((router) =>
  Effect.forEach(files, ([route, file, contentType]) =>
    router.get(
      route,
      HttpServerResponse.file(file, { headers: { "content-type": contentType, "cache-control": "no-cache" } }).pipe(
        Effect.orDie
      )
    ), { discard: true })
)
