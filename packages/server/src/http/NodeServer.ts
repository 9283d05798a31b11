import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Layer } from "effect"
import { type IncomingMessage, Server, type ServerResponse } from "node:http"
import { AppConfig } from "../config/AppConfig.js"
import { corsFront } from "./Cors.js"

/** Takes a request (answers true) or leaves it to the next door and, in the end, the HTTP app. */
export type Door = (req: IncomingMessage, res: ServerResponse) => boolean

/**
 * Node's HTTP server with doors in front of the HTTP app: a request a door takes never reaches
 * the app. The SSE door (SseDoor.ts) serves the streams this way, the post door (PostDoor.ts) the
 * message posts. In front of them all, `front` (CORS, Cors.ts): what it sets holds for every
 * answer, a door's or the app's.
 */
export class HeraldServer extends Server {
  readonly doors: Array<Door> = []

  constructor(readonly front: Door = () => false) {
    super()
  }

  /** Hangs `door` in front of the app while the scope lasts. */
  readonly hang = (door: Door) =>
    Effect.acquireRelease(
      Effect.sync(() => this.doors.push(door)),
      () => Effect.sync(() => this.doors.splice(this.doors.indexOf(door), 1))
    ).pipe(Effect.asVoid)

  override emit(event: string | symbol, ...args: Array<unknown>): boolean {
    if (event === "request") {
      if (this.front(args[0] as IncomingMessage, args[1] as ServerResponse)) return true
      for (const door of this.doors) if (door(args[0] as IncomingMessage, args[1] as ServerResponse)) return true
    }
    return super.emit(event as string, ...args)
  }
}

/** The Node server under the HTTP layer, so shutdown can close its connections and the door can be hung. */
export class NodeServer extends Context.Tag("Herald/NodeServer")<NodeServer, HeraldServer>() {}

/** Node's HTTP server on `host:port` (0 = any free port), with its handle; CORS as AppConfig says. */
export const nodeServerLayer = (options: { readonly port: number; readonly host: string }) =>
  Layer.unwrapEffect(Effect.map(AppConfig, (config) => {
    const server = new HeraldServer(corsFront(config.corsOrigins))
    return Layer.merge(NodeHttpServer.layer(() => server, options), Layer.succeed(NodeServer, server))
  }))
