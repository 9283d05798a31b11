import * as FetchHttpClient from "@effect/platform/FetchHttpClient"
import * as HttpApiClient from "@effect/platform/HttpApiClient"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import { Api, Events, Ids } from "@herald/domain"
import { Console, Duration, Effect, Option, Queue, Schedule, Schema } from "effect"
import { CliError } from "../Render.js"
import { draftIdOf, draftSteps, replyText } from "../worker/Reply.js"
import { followSse, type Refused, type SseFrame, StartOver } from "../worker/Sse.js"
import { decodeArgument } from "./Input.js"

/**
 * What `herald worker` does (`commands/Worker.ts` declares it): a demo worker, and a pure client of
 * the HTTP API — it never opens the database, so it runs wherever the server can be reached. It
 * follows the caller's workspace stream and answers every `user` message there: the reply is
 * written as a live draft, a few words every 100 ms (about 2 s in all), then posted as a `worker`
 * message whose `clientMessageId` is the draft's id — which ends the draft, and makes posting the
 * same reply again a no-op.
 */

/** The draft is updated this often, in this many steps. */
const DRAFT_INTERVAL = Duration.millis(100)
const DRAFT_STEPS = 20

type Client = Effect.Effect.Success<ReturnType<typeof makeClient>>

const makeClient = (baseUrl: string, token: string) =>
  HttpApiClient.make(Api.HeraldApi, {
    baseUrl,
    transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  })

interface Target {
  readonly projectId: Ids.ProjectId
  readonly token: string
  /** Without a trailing slash. */
  readonly baseUrl: string
}

// ---------------------------------------------------------------------------------------------
// Input

const projectIdOf = (text: string) =>
  Effect.mapError(
    decodeArgument(Ids.ProjectId, text),
    () => new CliError({ message: `--project must be a project id (a UUID): "${text}"` })
  )

/** What a header can carry: printable ASCII without spaces (what Herald's tokens are). */
const tokenOf = (text: string) =>
  text === ""
    ? Effect.fail(new CliError({ message: "--token must not be empty" }))
    : /^[\x21-\x7e]+$/.test(text)
    ? Effect.succeed(text)
    : Effect.fail(new CliError({ message: "--token must be a bearer token: printable ASCII, no spaces" }))

const baseUrlOf = (text: string) => {
  const refused = new CliError({
    message: `--url must be an http or https URL such as http://127.0.0.1:3000: "${text}"`
  })
  if (!URL.canParse(text)) return Effect.fail(refused)
  const url = new URL(text)
  return (url.protocol === "http:" || url.protocol === "https:") && url.search === "" && url.hash === "" &&
      url.username === "" && url.password === ""
    ? Effect.succeed(url.href.replace(/\/+$/, ""))
    : Effect.fail(refused)
}

// ---------------------------------------------------------------------------------------------
// Answers the worker cannot go on after

const serverMessage = (body: string) => {
  try {
    const parsed: unknown = JSON.parse(body)
    return typeof parsed === "object" && parsed !== null && "message" in parsed && typeof parsed.message === "string"
      ? parsed.message
      : undefined
  } catch {
    return undefined
  }
}

// Not the server's words: its SSE endpoints name every way to authenticate ("missing credential: …").
const unauthorized = new CliError({
  message: "the server refused the token (401 Unauthorized): --token must be a live token of a user of this server"
})
const notFound = (target: Target) =>
  new CliError({ message: `project not found or not visible: ${target.projectId} (404 at ${target.baseUrl})` })

/** The stream's refusals, as one line. */
const refusal = (target: Target, { body, status }: Refused) => {
  const message = serverMessage(body)
  return status === 401
    ? unauthorized
    : status === 404
    ? notFound(target)
    : new CliError({ message: `the server refused the workspace stream (${status})${message ? `: ${message}` : ""}` })
}

type CallError = Effect.Effect.Error<ReturnType<Client["workspace"]["post"]>>

/** A call's failure the worker waits out: the server unreachable or failing (5xx), or over a limit (429). */
const isPassing = (error: CallError) =>
  error._tag === "TooManyRequests" || error._tag === "RequestError" ||
  (error._tag === "ResponseError" && error.response.status >= 500)

/**
 * Retries of a call: a 429 after its `Retry-After`; the server unreachable or failing, with
 * exponential backoff (200 ms, jittered, at most 10 s). Posting again is safe: the reply's
 * `clientMessageId` makes a repeat a no-op.
 */
const calls = Schedule.identity<CallError>().pipe(
  Schedule.intersect(
    Schedule.delays(
      Schedule.exponential(Duration.millis(200)).pipe(
        Schedule.union(Schedule.spaced(Duration.seconds(10))),
        Schedule.jittered
      )
    )
  ),
  Schedule.modifyDelay(([error], delay) =>
    error._tag === "TooManyRequests" ? Duration.seconds(error.retryAfter) : delay
  )
)

/** Whatever does not pass, as one line. */
const fatal = (target: Target, what: string) => (error: CallError): CliError => {
  switch (error._tag) {
    case "Unauthorized":
      return unauthorized
    case "NotFound":
      return notFound(target)
    case "BadRequest":
      return new CliError({ message: `the server refused ${what} (400): ${error.message}` })
    case "ResponseError":
      return new CliError({ message: `the server answered ${error.response.status} to ${what}` })
    case "ParseError":
      return new CliError({ message: `unexpected answer to ${what} from ${target.baseUrl} (is it a Herald server?)` })
    default:
      return new CliError({ message: `${what} failed: ${error.message}` })
  }
}

const call = <A>(target: Target, what: string, effect: Effect.Effect<A, CallError>) =>
  effect.pipe(
    Effect.retry({ schedule: calls, while: isPassing }),
    Effect.mapError(fatal(target, what))
  )

// ---------------------------------------------------------------------------------------------
// The worker

type UserMessage = typeof Events.MessageCreated.Type

const decodeCreated = Schema.decodeUnknown(Schema.parseJson(Events.MessageCreated))

/** The user messages among the frames; signals (no `id:`) and every other event pass by. */
const userMessage = (frame: SseFrame) =>
  frame.event === "reset"
    // The stream would replay history from `from`: a worker answers what comes next, not that.
    ? Effect.fail(new StartOver({ reason: "the server reset the stream (restored or past retention)" }))
    : frame.event !== "message.created"
    ? Effect.succeed(Option.none<UserMessage>())
    : decodeCreated(frame.data).pipe(
      Effect.map((event) => event.data.role === "user" ? Option.some(event) : Option.none()),
      Effect.catchAll((error) =>
        Effect.as(
          Console.error(`herald worker: skipped a message.created frame it cannot read: ${error.message}`),
          Option.none()
        )
      )
    )

/** One reply: the draft, a few words every 100 ms, then the message that ends it; a line on stdout. */
const answer = (client: Client, target: Target, message: UserMessage) =>
  Effect.gen(function*() {
    const draftId = draftIdOf(message.data.messageId)
    const reply = replyText(message.data.body)
    const path = { projectId: target.projectId, draftId }
    yield* Effect.forEach(
      draftSteps(reply, DRAFT_STEPS),
      (body) =>
        Effect.zipRight(
          call(target, "a draft update", client.signals.putDraft({ path, payload: { body, role: "worker" } })),
          // After the last update too: the server sends at most 10 a second per draft, and the last
          // body goes out before the message ends the draft.
          Effect.sleep(DRAFT_INTERVAL)
        ),
      { discard: true }
    ).pipe(
      // Stopped mid-draft: end it now rather than leave it to the server's 60 s.
      Effect.onInterrupt(() =>
        client.signals.deleteDraft({ path }).pipe(Effect.timeout(Duration.seconds(2)), Effect.ignore)
      )
    )
    const posted = yield* call(
      target,
      "posting the reply",
      client.workspace.post({
        path: { projectId: target.projectId },
        payload: { body: reply, role: "worker", clientMessageId: draftId }
      })
    )
    yield* Console.log(
      posted instanceof Api.MessageReplayed
        ? `answered ${message.data.messageId}: already answered as ${posted.message.id} (${draftId})`
        : `answered ${message.data.messageId} with ${posted.message.id} (${draftId}, ${
          Array.from(reply).length
        } characters)`
    )
  })

export const worker = (o: { readonly project: string; readonly token: string; readonly url: string }) =>
  Effect.gen(function*() {
    const target: Target = {
      projectId: yield* projectIdOf(o.project),
      token: yield* tokenOf(o.token),
      baseUrl: yield* baseUrlOf(o.url)
    }
    const client = yield* makeClient(target.baseUrl, target.token)
    // The reader never waits for a reply: it keeps draining the stream (our own drafts come back on it).
    const pending = yield* Queue.unbounded<UserMessage>()
    let opened = false

    const reader = followSse({
      url: `${target.baseUrl}/api/projects/${target.projectId}/workspace/stream`,
      headers: { authorization: `Bearer ${target.token}` },
      onFrame: (frame) =>
        Effect.flatMap(
          userMessage(frame),
          Option.match({ onNone: () => Effect.void, onSome: (m) => pending.offer(m) })
        ),
      onOpen: (from) => {
        const first = !opened
        opened = true
        return first
          ? Console.error(
            `herald worker: answering user messages in the workspace of project ${target.projectId} at ${target.baseUrl} (Ctrl-C to stop)`
          )
          : Console.error(`herald worker: reconnected${Option.isSome(from) ? `, resuming after ${from.value}` : ""}`)
      },
      onRetry: (reason, delay) => Console.error(`herald worker: ${reason}; reconnecting in ${Duration.format(delay)}`)
    }).pipe(Effect.mapError((refused) => refusal(target, refused)))

    const replier = Effect.forever(Effect.flatMap(pending.take, (message) => answer(client, target, message)))

    return yield* Effect.all([reader, replier], { concurrency: "unbounded", discard: true })
  }).pipe(Effect.provide(FetchHttpClient.layer))
