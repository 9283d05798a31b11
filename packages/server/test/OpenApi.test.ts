import { expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { TestServer, TestServerLive } from "./support/TestServer.js"

const FIXTURE = fileURLToPath(new URL("./fixtures/openapi.json", import.meta.url))
const UPDATE = process.env.UPDATE_OPENAPI === "1"

const HOW_TO_UPDATE =
  "GET /openapi.json no longer matches packages/server/test/fixtures/openapi.json: the HTTP contract " +
  "changed. If that is deliberate, regenerate the fixture with\n" +
  "  UPDATE_OPENAPI=1 npx vitest run packages/server/test/OpenApi.test.ts\n" +
  "and commit it with the change; otherwise undo the change to packages/domain/src/Api.ts (or what feeds it)."

it.layer(TestServerLive)("the OpenAPI document", (it) => {
  it.effect("GET /openapi.json is the committed contract (test/fixtures/openapi.json)", () =>
    Effect.gen(function*() {
      const server = yield* TestServer
      const res = yield* server.request("GET", "/openapi.json")
      expect(res.status).toBe(200)
      if (UPDATE) {
        fs.writeFileSync(FIXTURE, JSON.stringify(res.body, null, 2) + "\n")
        return
      }
      if (!fs.existsSync(FIXTURE)) expect.fail(`${FIXTURE} is missing.\n${HOW_TO_UPDATE}`)
      expect(res.body, HOW_TO_UPDATE).toEqual(JSON.parse(fs.readFileSync(FIXTURE, "utf8")))
    }))
})
