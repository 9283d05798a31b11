import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Layer } from "effect"
import { type IncomingMessage, Server, type ServerResponse } from "node:http"

/**
 * Node's HTTP server with a door in front of the HTTP app: a request the door takes (it answers
 * true) never reaches the app. The SSE door (SseDoor.ts) serves the streams this way.
 */
export class HeraldServer extends Server {
  door: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined = undefined

  override emit(event: string | symbol, ...args: Array<unknown>): boolean {
    if (
      event === "request" && this.door !== undefined &&
      this.door(args[0] as IncomingMessage, args[1] as ServerResponse)
    ) return true
    return super.emit(event as string, ...args)
  }
}

/** The Node server under the HTTP layer, so shutdown can close its connections and the door can be hung. */
export class NodeServer extends Context.Tag("Herald/NodeServer")<NodeServer, HeraldServer>() {}

/** Node's HTTP server on `host:port` (0 = any free port), with its handle. */
export const nodeServerLayer = (options: { readonly port: number; readonly host: string }) =>
  Layer.unwrapEffect(Effect.sync(() => {
    const server = new HeraldServer()
    return Layer.merge(NodeHttpServer.layer(() => server, options), Layer.succeed(NodeServer, server))
  }))
