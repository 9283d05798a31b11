import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import type * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Api, type Chat, Errors, Events, type Ids } from "@herald/domain"
import { Effect, Option } from "effect"
import { PassThrough } from "node:stream"
import { asUser, Policy, withPolicy } from "../chat/Policy.js"
import { ProjectsRepo } from "../chat/ProjectsRepo.js"
import { Limits } from "../limits/Limits.js"
import * as Cursor from "../stream/Cursor.js"
import { CursorStore } from "../stream/CursorStore.js"
import { EventReader } from "../stream/EventReader.js"
import { type Position, same, untagged } from "../stream/Position.js"
import { resets } from "../stream/Reset.js"
import { type Mark, type Membership, SseHub, type SubRequest } from "../stream/SseHub.js"
import { type Opened, openStream, RETRY, SSE_HEADERS } from "../stream/SseStream.js"

const badCursor = (message: string) => new Errors.BadRequest({ message, field: "cursor" })

/** Last-Event-ID (sent by a reconnecting EventSource) wins over the URL's position. */
export const position = <A>(fromHeader: A | undefined, fromUrl: A | undefined) =>
  Option.orElse(Option.fromNullable(fromHeader), () => Option.fromNullable(fromUrl))

/** A per-stream position: `Last-Event-ID` (`<seq>.<tag>` or `<seq>`) over `?after=<seq>` (never tagged). */
export const streamPosition = (
  fromHeader: { readonly seq: number; readonly tag?: string | undefined } | undefined,
  after: number | undefined
): Option.Option<Position> =>
  position(
    fromHeader === undefined ? undefined : { seq: fromHeader.seq, tag: fromHeader.tag },
    after === undefined ? undefined : untagged(after)
  )

/**
 * Authorises and positions an SSE request — for the API's handlers and for the SSE door, which
 * serves the same requests below the HTTP app (SseDoor.ts). Visibility is checked at every
 * (re)connection; a position never grants access.
 */
export class StreamOpen extends Effect.Service<StreamOpen>()("Herald/StreamOpen", {
  effect: Effect.gen(function*() {
    const policy = yield* Policy
    const projects = yield* ProjectsRepo
    const reader = yield* EventReader
    const cursors = yield* CursorStore
    const hub = yield* SseHub
    const services = yield* Effect.context<SseHub | EventReader>()
    const limits = yield* Limits

    /**
     * An opening within the SSE connection caps (SPEC §5 "Limits"): a slot is taken first — one too
     * many is a 429 before anything is read or written — and given back when the connection ends
     * (its response closes: the client left, the server ended it, or shutdown), when the opening
     * fails, or when the opened stream is abandoned unattached.
     */
    const slotted = <E, R>(me: Chat.User, opening: Effect.Effect<Opened, E, R>) =>
      Effect.flatMap(limits.sseSlot(me.id), (slot) =>
        opening.pipe(
          Effect.onExit((exit) => exit._tag === "Success" ? Effect.void : Effect.sync(slot.release)),
          Effect.map((opened): Opened => ({
            attach: (out) =>
              Effect.suspend(() => {
                // `on`: a response closes once, and `once` would add a wrapper per connection.
                out.on("close", slot.release)
                if (out.destroyed) slot.release()
                return opened.attach(out)
              }),
            abandon: Effect.zipRight(Effect.sync(slot.release), opened.abandon)
          }))
        ))

    const project = (me: Api.Caller, projectId: Ids.ProjectId, after: Option.Option<Position>) =>
      openStream({
        stream: Events.projectStream(projectId),
        after,
        // Removed from the project: the member sees their removal, then the stream ends — or, added
        // back since, goes on from that add (G5).
        reader: me.id,
        tokenId: me.credential?.tokenId
      }).pipe(Effect.provide(services), withPolicy(policy.requireMember(projectId)), asUser(me))

    const workspace = (me: Api.Caller, projectId: Ids.ProjectId, after: Option.Option<Position>) =>
      openStream({
        stream: Events.workspaceStream(projectId, me.id),
        after,
        tokenId: me.credential?.tokenId,
        userId: me.id
      }).pipe(
        Effect.provide(services),
        withPolicy(policy.requireMember(projectId)),
        asUser(me)
      )

    /**
     * The positions a cursor stands for, if it is one of ours, unchanged, and the caller's. A
     * cursor whose base was deleted (unused for HERALD_CURSOR_RETENTION) but that still verifies
     * for the caller is CursorExpired; `touch`: the base counts as used (not for a HEAD).
     */
    const resume = (me: Chat.User, text: string, touch = true) =>
      Effect.gen(function*() {
        const parsed = Cursor.parse(text)
        if (parsed === undefined) return yield* badCursor("cursor is not a cursor of GET /api/stream")
        const base = yield* cursors.find(parsed.baseId, { touch })
        if (Option.isNone(base)) {
          return yield* (yield* cursors.expired(parsed, me.id))
            ? new Errors.CursorExpired({
              message: "cursor has expired (unused for longer than the server keeps cursors): " +
                "start again without a cursor and reload over HTTP"
            })
            : badCursor("cursor is unknown to this server")
        }
        if (base.value.userId !== me.id) return yield* badCursor("cursor was issued to another user")
        const at = Cursor.positions(base.value, parsed)
        if (at === undefined) return yield* badCursor("cursor has been altered")
        return { base: base.value, at }
      })

    /** The streams a multiplexed request carries: every one the caller may read, or those it names (one not visible: 404). */
    const carriedBy = (me: Chat.User, streams: Option.Option<string>) =>
      Effect.gen(function*() {
        const mine = yield* projects.projectIdsOf(me.id)
        const visible = new Set<string>(
          mine.flatMap((p) => [Events.projectStream(p), Events.workspaceStream(p, me.id)])
        )
        const narrowed = Option.isSome(streams)
        const carried = narrowed ? [...new Set(streams.value.split(","))] : [...visible]
        for (const stream of carried) {
          if (!visible.has(stream)) return yield* new Errors.NotFound({ message: `stream ${stream} not found` })
        }
        return { visible, narrowed, carried }
      })

    const multiplexed = (me: Api.Caller, streams: Option.Option<string>, cursor: Option.Option<string>) =>
      Effect.gen(function*() {
        // Before anything is read: what the hub dispatches from here on may be missing from it.
        const since = hub.mark()
        const { carried, narrowed, visible } = yield* carriedBy(me, streams)

        if (Option.isNone(cursor)) {
          const heads = yield* Effect.orDie(reader.headPositions(carried))
          const base = yield* cursors.create(me.id, heads)
          const data = JSON.stringify({
            streams: Object.fromEntries([...heads].map(([stream, at]) => [stream, at.seq]))
          })
          const subs = [...heads].map(([stream, at]) => ({ stream, start: at.seq, tag: at.tag, atHead: true }))
          return attachMultiplexed(me, narrowed, base, heads, subs, data, since)
        }

        const { at, base } = yield* resume(me, cursor.value)
        const isProject = (stream: string) => stream.startsWith("project:")
        const carriedSet = new Set(carried)
        const resumed = [...at].filter(([stream]) =>
          isProject(stream) && (carriedSet.has(stream) || !narrowed && !visible.has(stream))
        ).map(([stream, p]) => [stream, p.seq] as const)
        // The caller's last removal after the cursor, in the project streams it left (where their replay ends).
        const removals = narrowed ? new Map<string, number>() : yield* Effect.orDie(reader.latestMemberEvent(
          "removed",
          me.id,
          resumed.filter(([stream]) => !visible.has(stream))
        ))
        // Project streams whose last frame was the caller's removal: they go on from the add after it, if any.
        const removedAtStart = yield* Effect.orDie(reader.removedAt(me.id, resumed))
        // Where the caller joined, for project streams new to the cursor.
        const joins = yield* Effect.orDie(reader.latestMemberEvent(
          "joined",
          me.id,
          carried.filter((stream) => isProject(stream) && !at.has(stream)).map((stream) => [stream, 0] as const)
        ))
        const subs: Array<SubRequest> = []
        for (const stream of carried) {
          const known = at.get(stream)
          if (known === undefined) {
            subs.push({ stream, start: isProject(stream) ? (joins.get(stream) ?? 1) - 1 : 0 })
          } else {
            // Removals and re-adds since (or at) the position: the hub skips from each removal to the next add (G5).
            subs.push({ stream, start: known.seq, tag: known.tag, removedAtStart: removedAtStart.has(stream) })
          }
        }
        if (!narrowed) {
          // Left while away: the project's events up to and including the removal, the workspace's up to its end.
          const left = [...at].filter(([stream]) => !visible.has(stream) && removals.has(stream))
          const workspaces = left.map(([stream]) => Events.workspaceStream(stream.slice(8) as Ids.ProjectId, me.id))
          // One read of those workspaces' heads, however many projects were left.
          const wsHeads = yield* Effect.orDie(reader.heads(workspaces))
          for (const [i, [stream, known]] of left.entries()) {
            subs.push({
              stream,
              start: known.seq,
              tag: known.tag,
              until: removals.get(stream)!,
              removedAtStart: removedAtStart.has(stream)
            })
            const ws = workspaces[i]!
            const wsAt = at.get(ws) ?? untagged(0)
            const wsHead = wsHeads.get(ws) ?? 0
            if (wsHead > wsAt.seq) subs.push({ stream: ws, start: wsAt.seq, tag: wsAt.tag, until: wsHead })
          }
        }
        // Positions the database cannot continue from (past retention, ahead of the head, diverged): reset, per stream.
        const resetFrom = yield* Effect.orDie(
          resets(reader, subs.map((s) => [s.stream, { seq: s.start, tag: s.tag }] as const))
        )
        const served = subs.map((s): SubRequest => {
          const from = resetFrom.get(s.stream)
          return from === undefined ? s : { ...s, resetFrom: from }
        })
        const startOf = (s: SubRequest): Position =>
          s.resetFrom === undefined ? { seq: s.start, tag: s.tag } : untagged(s.resetFrom - 1)
        // A cursor that would start out past its budget gets a new base now, not a response ended at its first frame.
        const moved = new Map<string, Position>()
        for (const s of served) {
          const based = Cursor.basePosition(base, s.stream)
          if (based === undefined || !same(based, startOf(s))) moved.set(s.stream, startOf(s))
        }
        const encoded = Cursor.encode(base, moved)
        const fresh = encoded === undefined || encoded.entryBytes > Cursor.SOFT_ENTRY_BYTES
          ? yield* cursors.create(me.id, new Map([...at, ...served.map((s) => [s.stream, startOf(s)] as const)]))
          : base
        return attachMultiplexed(me, narrowed, fresh, at, served, undefined, since)
      })

    /**
     * A project the caller was added to after their projects were read, whose add the hub saw before
     * the connection was registered: joined now. Later adds the hub joins by itself. Only looked for
     * when the hub dispatched something that may be such an add since the opening began (`joinsMissed`).
     */
    const joinLate = (
      me: Chat.User,
      subs: ReadonlyArray<SubRequest>,
      join: (projectId: string, addedSeq: number) => Effect.Effect<void>
    ) =>
      Effect.gen(function*() {
        const added = yield* membership.missingJoins(me.id, new Set(subs.map((s) => s.stream)))
        for (const [projectId, seq] of added) yield* join(projectId, seq)
      })

    /**
     * The projects the user is a member of now whose streams `carried` lacks, each with the seq of
     * the add that made them a member: what a connection must join (opening, or at a broker's
     * Resync, when the add's delivery may have been lost).
     */
    const missingJoins = (userId: string, carried: ReadonlySet<string>) =>
      Effect.gen(function*() {
        const missing = (yield* projects.projectIdsOf(userId as Ids.UserId))
          .map((p): string => Events.projectStream(p))
          .filter((stream) => !carried.has(stream))
        if (missing.length === 0) return []
        const added = yield* Effect.orDie(
          reader.latestMemberEvent("joined", userId, missing.map((s) => [s, 0] as const))
        )
        return [...added].map(([stream, seq]) => [stream.slice(8), seq] as const)
      })

    /** What every multiplexed connection asks about its user's memberships: one object, not closures per connection. */
    const membership: Membership = {
      isMember: (userId, projectId) => projects.isMember(projectId as Ids.ProjectId, userId as Ids.UserId),
      rejoinAfter: (userId, projectId, removal) =>
        Effect.orDie(reader.firstJoinAfter(userId, Events.projectStream(projectId as Ids.ProjectId), removal)),
      missingJoins
    }

    const attachMultiplexed = (
      me: Api.Caller,
      narrowed: boolean,
      base: Cursor.Base,
      known: ReadonlyMap<string, Position>,
      subs: ReadonlyArray<SubRequest>,
      heads: string | undefined,
      since: Mark
    ): Opened => ({
      attach: (out) =>
        Effect.suspend(() => {
          out.write(RETRY)
          return hub.registerMultiplexed(out, {
            userId: me.id,
            narrowed,
            base,
            known,
            subs,
            ...(heads === undefined ? {} : { first: (id: string) => `id: ${id}\nevent: heads\ndata: ${heads}\n\n` }),
            membership,
            since
          }, me.credential?.tokenId).pipe(
            Effect.flatMap((registered) =>
              narrowed || !registered.joinsMissed ? Effect.void : joinLate(me, subs, registered.join)
            )
          )
        }),
      abandon: Effect.void
    })

    /**
     * For `HEAD`: each request authorised and positioned as its opening above would be — the same
     * 401, 404 and 400 — but nothing opened (no hub connection) and nothing written (no cursor base).
     */
    const check = {
      project: (me: Api.Caller, projectId: Ids.ProjectId, after: Option.Option<Position>) =>
        Effect.asVoid(project(me, projectId, after)),
      workspace: (me: Api.Caller, projectId: Ids.ProjectId, after: Option.Option<Position>) =>
        Effect.asVoid(workspace(me, projectId, after)),
      multiplexed: (me: Api.Caller, streams: Option.Option<string>, cursor: Option.Option<string>) =>
        Effect.zipRight(
          carriedBy(me, streams),
          Option.match(cursor, { onNone: () => Effect.void, onSome: (text) => Effect.asVoid(resume(me, text, false)) })
        )
    }

    return {
      project: (me: Chat.User, projectId: Ids.ProjectId, after: Option.Option<Position>) =>
        slotted(me, project(me, projectId, after)),
      workspace: (me: Chat.User, projectId: Ids.ProjectId, after: Option.Option<Position>) =>
        slotted(me, workspace(me, projectId, after)),
      multiplexed: (me: Chat.User, streams: Option.Option<string>, cursor: Option.Option<string>) =>
        slotted(me, multiplexed(me, streams, cursor)),
      check
    } as const
  })
}) {}

/** What a streams endpoint's handler is given, decoded (by the app, or by the SSE door from the same definition). */
export interface StreamRequest {
  readonly path?: { readonly projectId: Ids.ProjectId } | undefined
  readonly headers: {
    readonly "last-event-id"?: typeof Api.StreamEventId.Type | typeof Api.StreamCursor.Type | undefined
  }
  readonly urlParams: {
    readonly after?: number | undefined
    readonly cursor?: string | undefined
    readonly streams?: string | undefined
  }
}

export type StreamEndpoint = "project" | "workspace" | "multiplexed"

/**
 * The handler of each streams endpoint, for the app's group and the SSE door alike: a GET opens
 * the stream; a HEAD is checked, not opened (the GET's status and headers, no body, no connection).
 */
export const openStreamOf = (
  open: StreamOpen,
  endpoint: StreamEndpoint,
  head: boolean,
  me: Chat.User,
  r: StreamRequest
): Effect.Effect<
  Opened | void,
  Errors.NotFound | Errors.BadRequest | Errors.CursorExpired | Errors.TooManyRequests
> => {
  const streams = head ? open.check : open
  switch (endpoint) {
    case "project":
    case "workspace":
      return streams[endpoint](
        me,
        r.path!.projectId,
        streamPosition(r.headers["last-event-id"] as typeof Api.StreamEventId.Type | undefined, r.urlParams.after)
      )
    case "multiplexed":
      return streams.multiplexed(
        me,
        Option.fromNullable(r.urlParams.streams),
        position(r.headers["last-event-id"] as string | undefined, r.urlParams.cursor)
      )
  }
}

/**
 * The streams group on the HTTP app: the same requests as the SSE door, for an HTTP server
 * without one (the response body is then a stream the platform pipes, held by its request fiber).
 */
export const StreamsLive = HttpApiBuilder.group(Api.HeraldApi, "streams", (handlers) =>
  Effect.gen(function*() {
    const open = yield* StreamOpen

    const respond =
      (endpoint: StreamEndpoint) => (r: StreamRequest & { readonly request: HttpServerRequest.HttpServerRequest }) =>
        Effect.gen(function*() {
          const me = yield* Api.CurrentUser
          const opened = yield* openStreamOf(open, endpoint, r.request.method === "HEAD", me, r)
          const node = NodeHttpServerRequest.toServerResponse(r.request)
          node.removeHeader("connection")
          if (opened === undefined) return HttpServerResponse.empty({ status: 200, headers: SSE_HEADERS })
          const body = new PassThrough({ objectMode: true })
          yield* opened.attach(body)
          const { "content-type": contentType, ...headers } = SSE_HEADERS
          return HttpServerResponse.raw(body, { contentType, headers })
        })

    return handlers
      // Only a multiplexed cursor can have expired.
      .handle("project", (r) => Effect.catchTag(respond("project")(r), "CursorExpired", Effect.die))
      .handle("workspace", (r) => Effect.catchTag(respond("workspace")(r), "CursorExpired", Effect.die))
      .handle("multiplexed", respond("multiplexed"))
  }))
