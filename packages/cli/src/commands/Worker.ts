import { Command, Options } from "@effect/cli"
import { lazy } from "./Lazy.js"

const run = lazy(() => import("../run/Worker.js"))

const project = Options.text("project").pipe(Options.withDescription("the project's id (a UUID)"))
const token = Options.text("token").pipe(
  Options.withDescription("the bearer token of the user whose workspace the worker answers in")
)
const url = Options.text("url").pipe(
  Options.withDefault("http://127.0.0.1:3000"),
  Options.withDescription("the Herald server's base URL (default http://127.0.0.1:3000)")
)

/** A pure HTTP client of a running server: unlike the other commands it never opens the database. */
export const worker = Command.make("worker", { project, token, url }, (o) => run((m) => m.worker(o))).pipe(
  Command.withDescription(
    "a demo worker: answers each user message in that user's workspace with a reply written as a live draft, then posted as a worker message (the draft's id as clientMessageId); stops on Ctrl-C"
  )
)
