import { randomInt } from "node:crypto"
import * as net from "node:net"

/**
 * A free 127.0.0.1 port below the ephemeral range (32768–60999 here). A node, PostgreSQL or Redis
 * that the nemesis kills is restarted on the same port: in the ephemeral range, one of the
 * thousands of client sockets of the campaign could have taken it meanwhile (EADDRINUSE).
 */
const LOW = 20_000
const HIGH = 32_000
const taken = new Set<number>()

const bindable = (port: number) =>
  new Promise<boolean>((resolve) => {
    const server = net.createServer()
    server.once("error", () => resolve(false))
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)))
  })

export const lowPort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = randomInt(LOW, HIGH)
    if (taken.has(port)) continue
    if (await bindable(port)) {
      taken.add(port)
      return port
    }
  }
  throw new Error(`no free port between ${LOW} and ${HIGH}`)
}
