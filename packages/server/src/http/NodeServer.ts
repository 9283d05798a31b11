import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Context, Effect, Layer } from "effect"
import { type IncomingMessage, Server, type ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import { AppConfig } from "../config/AppConfig.js"
import { corsFront } from "./Cors.js"

/**
 * The most request-header bytes (request line included) a request may carry; more is a JSON 431.
 * Node's default, 16 KB, is less than a `?streams=` naming the 200 workspace streams the docs
 * allow (about 17 KB of URL).
 */
export const MAX_HEADER_BYTES = 64 * 1024

const HEADERS_TOO_LARGE = JSON.stringify({
  _tag: "RequestHeaderFieldsTooLarge",
  message: `request headers (with the URL) are larger than ${MAX_HEADER_BYTES} bytes`
})

/** What Node itself answers to the other client errors (node:_http_server \`socketOnError\`). */
const plainAnswer = (code: string | undefined) =>
  code === "HPE_CHUNK_EXTENSIONS_OVERFLOW"
    ? "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\n\r\n"
    : code === "ERR_HTTP_REQUEST_TIMEOUT"
    ? "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"
    : "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n"

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
  /** Called for each request refused for its headers' size (the limits count it). */
  onHeadersTooLarge: () => void = () => undefined

  constructor(readonly front: Door = () => false) {
    super({ maxHeaderSize: MAX_HEADER_BYTES })
    // Node answers a header overflow with a bare 431; the API's errors are JSON (SPEC §5).
    this.on("clientError", (error: Error & { readonly code?: string }, socket: Duplex) => {
      const busy = (socket as Duplex & { _httpMessage?: { _headerSent?: boolean } })._httpMessage?._headerSent === true
      if (socket.writable && !busy) {
        if (error.code === "HPE_HEADER_OVERFLOW") {
          this.onHeadersTooLarge()
          socket.write(
            "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n" +
              `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(HEADERS_TOO_LARGE)}\r\n\r\n` +
              HEADERS_TOO_LARGE
          )
        } else {
          socket.write(plainAnswer(error.code))
        }
      }
      socket.destroy(error)
    })
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
