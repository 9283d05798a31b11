// Herald's web client: plain ES modules, no framework, bundled by esbuild (scripts/build.mjs).
//
// Built on @herald/client: its typed calls for every request, and its `subscribe` for the one
// connection on GET /api/stream, which carries every stream the user may read — the project stream
// of each of their projects and their own workspace stream in each. The library keeps that
// connection (stream tickets, the cursor, reconnects with backoff, `CursorExpired`) and hands on
// each event once per (stream, seq), in seq order; this page keeps what is on screen. A `heads`
// (a fresh start) reloads the state over HTTP; a `reset` reloads that stream.
//
// The same connection carries live signals (SPEC §5): who is present in each project, who is
// typing, and the drafts of the user's worker space. They are never events: they are kept apart
// from the per-stream seqs.
import uPlot from "/vendor/uplot.esm.js"
import { createClient } from "@herald/client"
import { DateTime } from "effect"

const $ = (selector, root = document) => root.querySelector(selector)
const PAGE_SIZE = 50
/** Frames held for a stream not shown yet. */
const MAX_HELD = 1_000
/** How far the unread count of a project not seen for long is counted exactly. */
const UNREAD_SCAN_LIMIT = 5_000
/** The longest a typing signal lasts (the server says `until`: now + 5 s). */
const TYPING_MS = 5_000
/** Typing in the project chat is told to the server at most this often. */
const TYPING_SEND_MS = 1_000
/** A draft not heard of for this long is dropped (the server ends it after 60 s without an update). */
const DRAFT_IDLE_MS = 60_000

const state = {
  token: localStorage.getItem("herald.token") ?? "",
  me: null,
  /** the @herald/client subscription (the one connection) */
  subscription: null,
  /** connecting | catching up | live | reconnecting | closed */
  connection: "connecting",
  quiet: null,
  /** stream id → the last seq applied (the library delivers each seq once, in order). */
  lastSeq: new Map(),
  /** project id → { id, name, ownerId, unread: Set<messageId> } for every project on the connection. */
  projects: new Map(),
  /** stream id → ChatStream, for the streams whose messages are held (opened once, kept current). */
  chats: new Map(),
  selected: null,
  /** true once the first heads frame has named the projects */
  ready: false,
  members: [],
  timer: null,
  chart: null,
  /** project id → Map(userId → since): who is present, from the connection's presence frames. */
  presence: new Map(),
  /** project id → Map(userId → until in ms): who is typing in the project chat. */
  typing: new Map(),
  /** workspace stream id → Map(draftId → { draftId, role, body, updatedAt, heardAt, li }), in arrival order. */
  drafts: new Map(),
  /** `stream draftId` → when its message arrived: a late update of that draft changes nothing. */
  draftsDone: new Map()
}

/** The @herald/client of the signed-in user (made at sign-in, with their token). */
let herald = null

/**
 * The HTTP status of a rejected call: the API's declared errors come decoded (their `_tag` names
 * the status the API annotates); any other answer is an HttpClient `ResponseError` holding it.
 */
const STATUS_OF_TAG = {
  BadRequest: 400,
  CursorExpired: 400,
  Unauthorized: 401,
  Forbidden: 403,
  NotFound: 404,
  Conflict: 409,
  TooManyRequests: 429,
  ServiceUnavailable: 503
}
const statusOf = (error) => error?.response?.status ?? STATUS_OF_TAG[error?._tag]

/** An API instant (an Effect `DateTime` once decoded) as ISO text, as the wire envelopes carry it. */
const iso = (t) => t === undefined || t === null ? undefined : DateTime.formatIso(t)

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Errors read as a sentence: what was being done, then the server's own message. */
const showError = (error, doing) => {
  const el = $("#error")
  if (!error) {
    el.hidden = true
    el.textContent = ""
    return
  }
  // Input the library refused before sending (a ParseError): its last line says what was wrong.
  const message = error._tag === "ParseError"
    ? `invalid input: ${String(error.message).trim().split("\n").at(-1).replace(/^[\s└├─│]+/, "")}`
    : String(error.message ?? error)
  el.textContent = doing ? `${doing}: ${message}` : message
  el.hidden = false
}
const failed = (doing) => (error) => showError(error, doing)

const names = new Map()
const nameOf = (userId) => userId === state.me?.id ? `${state.me.name} (you)` : names.get(userId) ?? userId.slice(0, 8)

const projectStream = (projectId) => `project:${projectId}`
const workspaceStream = (projectId) => `workspace:${projectId}:${state.me.id}`
const projectOf = (streamId) => streamId.split(":")[1]
const seqOf = (streamId) => state.lastSeq.get(streamId) ?? 0

// --- "last viewed": per user and project, the project stream's seq when it was last on screen --

const seenKey = () => `herald.seen.${state.me.id}`
const seenAll = () => {
  try {
    return JSON.parse(localStorage.getItem(seenKey()) ?? "{}")
  } catch {
    return {}
  }
}
const markSeen = (projectId) => {
  const seen = seenAll()
  seen[projectId] = seqOf(projectStream(projectId))
  localStorage.setItem(seenKey(), JSON.stringify(seen))
}

// --- the held state of one stream ------------------------------------------------------------------

const noticeText = (event) =>
  ({
    "project.created": () => `${nameOf(event.actorId)} created the project “${event.data.name}”`,
    "member.added": () => `${nameOf(event.data.userId)} joined`,
    "member.removed": () => `${nameOf(event.data.userId)} left`
  })[event.type]?.() ?? event.type

/**
 * The messages of one stream. Its frames are held from the start (in `buffer`); its newest page
 * comes over HTTP when it is first shown (a snapshot taken after the heads frame, so it reaches at
 * least the head), and the held frames are applied on top by messageId: a message in both the
 * snapshot and a frame shows once, with the frame's seq.
 */
class ChatStream {
  constructor(streamId, { empty = false, buffer = [] } = {}) {
    this.streamId = streamId
    this.projectId = projectOf(streamId)
    this.workspace = streamId.startsWith("workspace:")
    this.entries = [] // { kind: "message", id, authorId, role, body, seq?, editedAt?, deleted } | { kind: "notice", seq, event }
    this.byId = new Map()
    this.pending = new Map() // clientMessageId → { body, role }
    this.older = null
    this.loaded = empty
    this.loading = false
    this.buffer = buffer
  }

  /** Loads the snapshot the first time the stream is shown. */
  open() {
    if (this.loaded || this.loading) return
    this.loading = true
    void this.load()
  }

  /** The stream's messages group: the project chat's or the caller's worker space's. */
  get messages() {
    return this.workspace ? herald.workspace : herald.messages
  }

  page(before) {
    return this.messages.list({
      path: { projectId: this.projectId },
      urlParams: before ? { limit: PAGE_SIZE, before } : { limit: PAGE_SIZE }
    })
  }

  fromMessage(m) {
    return {
      kind: "message",
      id: m.id,
      authorId: m.authorId,
      role: m.role,
      body: m.body,
      clientMessageId: m.clientMessageId,
      editedAt: iso(m.editedAt),
      deleted: m.deletedAt !== undefined
    }
  }

  async load() {
    try {
      const page = await this.page()
      this.entries = page.items.slice().reverse().map((m) => this.fromMessage(m))
      this.byId = new Map(this.entries.map((e) => [e.id, e]))
      for (const e of this.entries) {
        if (!e.clientMessageId) continue
        this.pending.delete(e.clientMessageId)
        const draft = takeDraft(this.streamId, e.clientMessageId)
        if (draft) e.li = draft.li
      }
      this.older = page.nextCursor
    } catch (error) {
      // A project left meanwhile answers 404; its member.removed frame is on its way.
      if (statusOf(error) !== 404) showError(error, "Loading messages")
    }
    this.loaded = true
    const held = this.buffer ?? []
    this.buffer = []
    // Seqs first, so the notices among the held frames find their place between the messages.
    for (const event of held) {
      const known = event.type === "message.created" && this.byId.get(event.data.messageId)
      if (known) known.seq = event.seq
    }
    for (const event of held) this.applyLoaded(event)
    changed(this.streamId)
  }

  async loadOlder() {
    if (!this.older) return
    const page = await this.page(this.older)
    const older = page.items.slice().reverse().filter((m) => !this.byId.has(m.id)).map((m) => this.fromMessage(m))
    for (const e of older) this.byId.set(e.id, e)
    this.entries = [...older, ...this.entries]
    this.older = page.nextCursor
    changed(this.streamId)
  }

  apply(event) {
    if (this.loaded) return this.applyLoaded(event)
    // Not shown yet: hold the frames, up to a bound (past it the snapshot alone is shown, without seqs).
    if (this.buffer && this.buffer.length < MAX_HELD) this.buffer.push(event)
    else this.buffer = null
  }

  /** In seq order among the entries whose seq is known (snapshot entries without one stay put). */
  insert(entry) {
    const at = this.entries.findIndex((e) => e.seq !== undefined && e.seq > entry.seq)
    if (at === -1) this.entries.push(entry)
    else this.entries.splice(at, 0, entry)
  }

  applyLoaded(event) {
    const d = event.data
    switch (event.type) {
      case "message.created": {
        if (d.clientMessageId) this.pending.delete(d.clientMessageId)
        // A live draft with the message's clientMessageId becomes the message: its line is reused,
        // so the committed text takes the draft's place with nothing removed or added around it.
        const draft = d.clientMessageId ? takeDraft(this.streamId, d.clientMessageId) : undefined
        const known = this.byId.get(d.messageId)
        if (known) known.seq ??= event.seq // already in the snapshot: it shows once, now with its seq
        else {
          const entry = {
            kind: "message",
            id: d.messageId,
            authorId: d.authorId,
            role: d.role,
            body: d.body,
            clientMessageId: d.clientMessageId,
            seq: event.seq,
            deleted: false,
            li: draft?.li
          }
          this.byId.set(d.messageId, entry)
          this.insert(entry)
        }
        break
      }
      case "message.edited": {
        const m = this.byId.get(d.messageId)
        // The snapshot may already hold a later edit than a frame committed before it was taken.
        if (m && !(m.editedAt && Date.parse(m.editedAt) > Date.parse(event.occurredAt))) {
          m.body = d.body
          m.editedAt = event.occurredAt
        }
        break
      }
      case "message.deleted": {
        const m = this.byId.get(d.messageId)
        if (m) {
          m.deleted = true
          m.body = ""
        }
        break
      }
      default:
        this.insert({ kind: "notice", seq: event.seq, event })
    }
  }

  /** Optimistic: shown at once as pending, reconciled when its message.created arrives. */
  async post(body, extra = {}) {
    const clientMessageId = crypto.randomUUID()
    this.pending.set(clientMessageId, { body, role: extra.role ?? "user" })
    changed(this.streamId)
    try {
      await this.messages.post({ path: { projectId: this.projectId }, payload: { body, clientMessageId, ...extra } })
    } catch (error) {
      this.pending.delete(clientMessageId)
      changed(this.streamId)
      throw error
    }
  }
}

const chatFor = (streamId, options) => {
  let chat = state.chats.get(streamId)
  if (!chat) {
    chat = new ChatStream(streamId, options)
    state.chats.set(streamId, chat)
  }
  return chat
}

// --- the one connection ----------------------------------------------------------------------------

// @herald/client keeps it: a stream ticket per connection (the long-lived token never goes into a
// URL), the last cursor, reconnects with backoff, and a fresh start when the cursor cannot be
// resumed (then a new `heads` follows). The page reloads on `heads` and `reset`, applies events,
// and shows where the connection stands.

const connect = () => {
  state.subscription?.close()
  // Callbacks of a subscription closed meanwhile (its "closed" comes after the next one starts) are not ours.
  const connection = {}
  state.connectionId = connection
  const ours = (handler) => (frame) => {
    if (state.connectionId === connection) handler(frame)
  }
  setConnection("connecting")
  state.subscription = herald.subscribe({}, {
    onHeads: ours(({ streams }) => onHeads(streams).catch(failed("Loading projects"))),
    onReset: ours(onReset),
    onEvent: ours(onFrame),
    onPresence: ours(onPresence),
    onTyping: ours(onTyping),
    onDraft: ours(onDraft),
    onStatus: ours((status) => {
      if (status === "live") setConnection("catching up")
      else if (status === "connecting") setConnection(state.ready ? "reconnecting" : "connecting")
      else setConnection("closed")
    }),
    // Refused for good: a revoked token (401), or a stream no longer visible.
    onError: ours((error) =>
      error.status === 401
        ? showError({ message: "the token was refused" }, "Signed out")
        : showError(error, "Live updates stopped")
    )
  })
}

const setConnection = (label) => {
  state.connection = label
  clearTimeout(state.quiet)
  // "live" once the catch-up burst after (re)connecting is over: no frame for a moment.
  if (label === "catching up") state.quiet = setTimeout(() => setConnection("live"), 250)
  renderStatus()
}

const onActivity = () => {
  if (state.connection === "catching up" || state.connection === "connecting") setConnection("catching up")
}

/** A fresh connection: every stream starts after its head; what we held before is started over. */
const onHeads = async (heads) => {
  onActivity()
  state.lastSeq = new Map(Object.entries(heads).map(([id, seq]) => [id, Number(seq)]))
  state.chats.clear()
  // The signals start over too: the connection sends who is present and the live drafts after this frame.
  state.presence.clear()
  state.typing.clear()
  state.drafts.clear()
  // The set of projects is the connection's from here on (frames may add and remove some while
  // the names load); the list only names them.
  const previous = state.projects
  state.projects = new Map()
  for (const id of Object.keys(heads).filter((s) => s.startsWith("project:")).map(projectOf)) {
    const p = previous.get(id)
    state.projects.set(id, { id, name: p?.name ?? "…", ownerId: p?.ownerId, unread: new Set() })
    chatFor(projectStream(id))
    chatFor(workspaceStream(id))
  }
  renderSwitcher()
  const listed = new Map((await herald.projects.list()).items.map((p) => [p.id, p]))
  for (const held of state.projects.values()) {
    const p = listed.get(held.id)
    if (p) Object.assign(held, { name: p.name, ownerId: p.ownerId })
    else if (held.ownerId === undefined) fetchProject(held.id)
  }
  state.ready = true
  const remembered = localStorage.getItem("herald.project")
  const chosen = state.projects.has(state.selected)
    ? state.selected
    : state.projects.has(remembered)
    ? remembered
    : sortedProjects()[0]?.id ?? null
  for (const p of state.projects.values()) {
    if (p.id !== chosen) countUnread(p, Number(heads[projectStream(p.id)] ?? 0)).catch(() => {})
  }
  select(chosen)
}

const fetchProject = (projectId) =>
  herald.projects.get({ path: { projectId } }).then((p) => {
    const held = state.projects.get(projectId)
    if (held) {
      held.name = p.name
      held.ownerId = p.ownerId
      renderSwitcher()
      if (state.selected === projectId) renderProject()
    }
  }, () => {})

/** A stream's position is older than what the server still holds: reload it over HTTP. */
const onReset = ({ stream, from }) => {
  state.lastSeq.set(stream, Number(from) - 1)
  if (state.chats.has(stream)) {
    state.chats.delete(stream)
    const chat = chatFor(stream)
    if (state.selected === projectOf(stream)) chat.open()
  }
  changed(stream)
}

const onFrame = (event) => {
  onActivity()
  if (state.lastSeq.has(event.stream) && event.seq !== seqOf(event.stream) + 1) {
    console.warn(`${event.stream}: gap before seq ${event.seq} (had ${seqOf(event.stream)})`)
  }
  state.lastSeq.set(event.stream, event.seq)
  const projectId = projectOf(event.stream)
  const joined = event.stream.startsWith("project:") && onMembership(projectId, event)
  if (!state.projects.has(projectId)) return // the frames after leaving (there are none) or before joining
  if (!joined) state.chats.get(event.stream)?.apply(event)
  if (event.stream === projectStream(projectId)) {
    countFrame(projectId, event)
    // Whoever was typing has sent it.
    if (event.type === "message.created") stopTyping(projectId, event.data.authorId)
  }
  changed(event.stream)
}

/**
 * The connection's set of projects follows the user's membership: a project they create starts
 * with its project.created (seq 1), a project they are added to with the member.added that added
 * them, and a member.removed of them is that project's last frame. Returns true when the frame
 * opened the project on this connection (its chats were started with the frame in them).
 */
const onMembership = (projectId, event) => {
  const d = event.data
  const mine = d.userId === state.me.id
  if (event.type === "project.created" && !state.projects.has(projectId)) {
    state.projects.set(projectId, { id: projectId, name: d.name, ownerId: d.ownerId, unread: new Set() })
    // Born on this connection: the whole stream is in the frames, and the workspace is empty.
    chatFor(projectStream(projectId), { empty: true }).apply(event)
    chatFor(workspaceStream(projectId), { empty: true })
    renderSwitcher()
    return true
  }
  if (event.type === "member.added" && mine && !state.projects.has(projectId)) {
    state.projects.set(projectId, { id: projectId, name: "…", ownerId: undefined, unread: new Set() })
    fetchProject(projectId)
    chatFor(projectStream(projectId), { buffer: [event] })
    chatFor(workspaceStream(projectId))
    renderSwitcher()
    return true
  }
  if (event.type === "member.removed" && mine && state.projects.has(projectId)) {
    const project = state.projects.get(projectId)
    state.projects.delete(projectId)
    state.chats.delete(projectStream(projectId))
    state.chats.delete(workspaceStream(projectId))
    state.presence.delete(projectId)
    state.typing.delete(projectId)
    state.drafts.delete(workspaceStream(projectId))
    if (state.selected === projectId) {
      select(sortedProjects()[0]?.id ?? null)
      showNotice(`You were removed from “${project.name}”.`)
    }
    renderSwitcher()
    return true
  }
  if (event.type.startsWith("member.") && state.selected === projectId) loadMembers(projectId)
  return false
}

// --- unread counts ---------------------------------------------------------------------------------

const countFrame = (projectId, event) => {
  const project = state.projects.get(projectId)
  if (projectId === state.selected) return markSeen(projectId)
  if (event.type === "message.created" && event.data.authorId !== state.me.id) project.unread.add(event.data.messageId)
  if (event.type === "message.deleted") project.unread.delete(event.data.messageId)
}

/**
 * Messages by others between the last view (or, never viewed, the user's joining) and the head,
 * from the project's history; frames after the head are counted as they arrive.
 */
const countUnread = async (project, head) => {
  const from = Math.min(Number(seenAll()[project.id] ?? 0), head)
  let after = from
  const ids = new Set()
  let waited = 0
  while (after < head && after - from < UNREAD_SCAN_LIMIT) {
    const page = await herald.history.project({ path: { projectId: project.id }, urlParams: { after, limit: 1_000 } })
    if (page.items.length === 0) {
      // event_log trails the outbox by a moment: wait for it to reach the head we were given.
      if ((waited += 1) > 50) break
      await sleep(200)
      continue
    }
    for (const event of page.items) {
      if (event.seq > head) break
      if (event.type === "member.added" && event.data.userId === state.me.id) ids.clear()
      if (event.type === "message.created" && event.data.authorId !== state.me.id) ids.add(event.data.messageId)
      if (event.type === "message.deleted") ids.delete(event.data.messageId)
    }
    after = page.items[page.items.length - 1].seq
  }
  const held = state.projects.get(project.id)
  if (!held || held.id === state.selected) return
  for (const id of ids) held.unread.add(id)
  renderSwitcher()
}

// --- live signals: presence, typing, drafts --------------------------------------------------------

/** `{stream, users}` (who is present now: the first for a project stream) or `{stream, userId, present, at}`. */
const onPresence = (frame) => {
  const projectId = projectOf(frame.stream)
  if (Array.isArray(frame.users)) {
    state.presence.set(projectId, new Map(frame.users.map((u) => [u.userId, u.since])))
  } else {
    const users = state.presence.get(projectId) ?? new Map()
    state.presence.set(projectId, users)
    if (frame.present) {
      if (!users.has(frame.userId)) users.set(frame.userId, frame.at)
    } else {
      users.delete(frame.userId)
      stopTyping(projectId, frame.userId)
    }
  }
  if (projectId === state.selected) renderPresence()
}

/**
 * `{stream, userId, until}`: shown until `until`, by this browser's clock — never longer than a
 * typing signal lasts, should that clock be behind the server's.
 */
const onTyping = ({ stream, userId, until }) => {
  if (userId === state.me.id) return
  const projectId = projectOf(stream)
  const typing = state.typing.get(projectId) ?? new Map()
  state.typing.set(projectId, typing)
  typing.set(userId, Math.min(Date.parse(until), Date.now() + TYPING_MS))
  if (projectId === state.selected) renderTyping()
  expireTypingLater()
}

const stopTyping = (projectId, userId) => {
  if (state.typing.get(projectId)?.delete(userId) && projectId === state.selected) renderTyping()
}

let typingTimer = null
/** One timer, for the earliest `until`: it takes off whoever stopped and sets itself again. */
const expireTypingLater = () => {
  clearTimeout(typingTimer)
  const untils = [...state.typing.values()].flatMap((m) => [...m.values()])
  if (untils.length === 0) return
  typingTimer = setTimeout(() => {
    const now = Date.now()
    for (const [projectId, typing] of state.typing) {
      for (const [userId, until] of typing) if (until <= now) typing.delete(userId)
      if (typing.size === 0) state.typing.delete(projectId)
    }
    renderTyping()
    expireTypingLater()
  }, Math.max(0, Math.min(...untils) - Date.now()) + 20)
}

/** Tells the server the user is typing in the open project's chat: at most once a second. */
let typingSentAt = 0
$("#project-body").addEventListener("input", (e) => {
  const now = Date.now()
  if (!state.selected || !e.target.value.trim() || now - typingSentAt < TYPING_SEND_MS) return
  typingSentAt = now
  herald.signals.typing({ path: { projectId: state.selected } }).catch(() => {}) // best-effort, as the signal is
})

/**
 * `{stream, draftId, role, body, updatedAt}` (a worker's reply so far, the whole text) or
 * `{stream, draftId, ended: true}`. A draft shows where its message will go, after the stream's
 * messages; the message (its `clientMessageId` is the draft's id) takes over the draft's line.
 */
const onDraft = (frame) => {
  const { stream, draftId } = frame
  if (frame.ended) return dropDraft(stream, draftId)
  if (state.draftsDone.has(`${stream} ${draftId}`)) return // its message is here already
  const drafts = state.drafts.get(stream) ?? new Map()
  state.drafts.set(stream, drafts)
  const known = drafts.get(draftId)
  if (known && Date.parse(known.updatedAt) > Date.parse(frame.updatedAt)) return
  const draft = known ?? { draftId, li: null }
  Object.assign(draft, { role: frame.role, body: frame.body, updatedAt: frame.updatedAt, heardAt: Date.now() })
  drafts.set(draftId, draft)
  redraw(stream)
}

/** The draft whose message arrived, taken out of the drafts (its line becomes the message's). */
const takeDraft = (stream, draftId) => {
  state.draftsDone.set(`${stream} ${draftId}`, Date.now())
  const drafts = state.drafts.get(stream)
  const draft = drafts?.get(draftId)
  if (!draft) return undefined
  drafts.delete(draftId)
  if (drafts.size === 0) state.drafts.delete(stream)
  return draft
}

const dropDraft = (stream, draftId) => {
  const drafts = state.drafts.get(stream)
  if (!drafts?.delete(draftId)) return
  if (drafts.size === 0) state.drafts.delete(stream)
  redraw(stream)
}

// Drafts not heard of for a minute are dropped (their end may have been lost with a connection).
setInterval(() => {
  const now = Date.now()
  for (const [stream, drafts] of state.drafts) {
    for (const draft of drafts.values()) if (now - draft.heardAt > DRAFT_IDLE_MS) dropDraft(stream, draft.draftId)
  }
  for (const [key, at] of state.draftsDone) if (now - at > DRAFT_IDLE_MS) state.draftsDone.delete(key)
}, 5_000)

// --- rendering -------------------------------------------------------------------------------------

const sortedProjects = () =>
  [...state.projects.values()].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))

/**
 * Puts `nodes` in `parent` in order, touching the DOM only where it differs: frames arrive at any
 * moment, and a button replaced between a press and its release would swallow the click.
 */
const syncChildren = (parent, nodes) => {
  const current = [...parent.children]
  if (current.length === nodes.length && current.every((n, i) => n === nodes[i])) return
  if (current.length < nodes.length && current.every((n, i) => n === nodes[i])) {
    parent.append(...nodes.slice(current.length))
  } else parent.replaceChildren(...nodes)
}

const switcherItems = new Map() // project id → li

const renderSwitcher = () => {
  let total = 0
  const items = sortedProjects().map((p) => {
    let li = switcherItems.get(p.id)
    if (!li) {
      li = document.createElement("li")
      li.innerHTML =
        `<button type="button" class="project"><span class="name"></span><span class="unread"></span></button>`
      $("button", li).dataset.projectId = p.id
      $("button", li).addEventListener("click", () => select(p.id))
      switcherItems.set(p.id, li)
    }
    const button = $("button", li)
    if (p.id === state.selected) button.setAttribute("aria-current", "page")
    else button.removeAttribute("aria-current")
    const count = p.id === state.selected ? 0 : p.unread.size
    total += count
    $(".name", li).textContent = p.name
    const badge = $(".unread", li)
    badge.textContent = count > 99 ? "99+" : String(count)
    badge.hidden = count === 0
    badge.title = `${count} unread`
    li.dataset.unread = String(count)
    return li
  })
  for (const id of switcherItems.keys()) if (!state.projects.has(id)) switcherItems.delete(id)
  syncChildren($("#projects"), items)
  document.title = total > 0 ? `(${total}) Herald` : "Herald"
  $("#no-projects").hidden = state.projects.size > 0 || !state.ready
  renderStatus()
}

const renderStatus = () => {
  const streams = [...state.lastSeq.keys()].filter((id) => state.projects.has(projectOf(id))).length
  $("#connection").dataset.state = state.connection
  $("#connection").textContent = `one connection · ${streams} streams · ${state.connection}`
  for (const [section, streamOf] of [["#project-chat", projectStream], ["#workspace-chat", workspaceStream]]) {
    const badge = $(`${section} .state`)
    const chat = state.selected ? state.chats.get(streamOf(state.selected)) : undefined
    const label = chat && !chat.loaded ? "loading" : state.connection
    badge.dataset.state = label
    badge.textContent = label === "live" ? `live · caught up at seq ${seqOf(streamOf(state.selected))}` : label
  }
}

const sectionOf = (streamId) => streamId.startsWith("workspace:") ? "#workspace-chat" : "#project-chat"

const changed = (streamId) => {
  renderSwitcher()
  if (state.selected && projectOf(streamId) === state.selected) {
    // The figures follow the events (once the materializer has them); the 5 s refresh covers the rest.
    clearTimeout(state.analyticsSoon)
    state.analyticsSoon = setTimeout(() => renderAnalytics().catch(() => {}), 1_000)
    renderChat(sectionOf(streamId), state.chats.get(streamId))
  }
}

/** A stream's chat drawn again, for a signal (no event: the counts and analytics stay as they are). */
const redraw = (streamId) => {
  if (state.selected && projectOf(streamId) === state.selected) {
    renderChat(sectionOf(streamId), state.chats.get(streamId))
  }
}

const button = (label, onClick) => {
  const b = document.createElement("button")
  b.type = "button"
  b.className = "link"
  b.textContent = label
  b.addEventListener("click", () => onClick().then(() => showError(null), showError))
  return b
}

/** An entry's line, rebuilt only when what it shows has changed. */
const lineFor = (chat, entry, owner) => {
  // Names are learnt as members load: a line is redrawn when its author's name arrives.
  const text = entry.kind === "notice" ? noticeText(entry.event) : nameOf(entry.authorId)
  const shown = JSON.stringify([entry.seq, entry.body, entry.deleted, entry.editedAt, owner, text])
  if (entry.li && entry.shown === shown) return entry.li
  const li = entry.li ?? document.createElement("li")
  entry.li = li
  entry.shown = shown
  if (entry.kind === "notice") {
    li.className = "notice"
    li.dataset.seq = entry.seq
    li.innerHTML = `<span class="seq"></span><span></span>`
    li.children[0].textContent = `#${entry.seq}`
    li.children[1].textContent = text
    return li
  }
  li.className = `message role-${entry.role}${entry.deleted ? " deleted" : ""}`
  delete li.dataset.draftId // the line was its draft's
  if (entry.seq) li.dataset.seq = entry.seq
  li.dataset.messageId = entry.id
  li.innerHTML =
    `<span class="seq"></span><span><span class="author"></span><span class="body"></span></span><span class="actions"></span>`
  $(".seq", li).textContent = entry.seq ? `#${entry.seq}` : ""
  $(".seq", li).title = entry.seq ? "its seq in this stream" : "loaded with the page"
  $(".author", li).textContent = text
  $(".body", li).textContent = entry.deleted ? "message deleted" : entry.body
  if (entry.editedAt && !entry.deleted) $(".body", li).classList.add("edited")
  const mine = entry.authorId === state.me.id
  if (!chat.workspace && !entry.deleted) {
    const actions = $(".actions", li)
    const path = { projectId: chat.projectId, messageId: entry.id }
    if (mine) {
      actions.append(button("Edit", async () => {
        const body = prompt("Edit message", entry.body)
        if (body !== null && body !== entry.body) await herald.messages.edit({ path, payload: { body } })
      }))
    }
    if (mine || owner) {
      actions.append(button("Delete", async () => {
        if (confirm("Delete this message?")) await herald.messages.delete({ path })
      }))
    }
  }
  return li
}

const renderChat = (sectionSelector, chat) => {
  const list = $(`${sectionSelector} .messages`)
  if (!chat) return list.replaceChildren()
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40
  const items = []
  if (chat.older) {
    if (!chat.olderLine) {
      chat.olderLine = Object.assign(document.createElement("li"), { className: "older" })
      chat.olderLine.append(button("Load older messages", () => chat.loadOlder()))
    }
    items.push(chat.olderLine)
  }
  const owner = state.projects.get(chat.projectId)?.ownerId === state.me.id
  for (const entry of chat.entries) items.push(lineFor(chat, entry, owner))
  // Live drafts where their messages will go: after the committed ones.
  for (const draft of state.drafts.get(chat.streamId)?.values() ?? []) items.push(draftLine(draft))
  for (const p of chat.pending.values()) {
    if (!p.li) {
      p.li = document.createElement("li")
      p.li.className = `message pending role-${p.role}`
      p.li.innerHTML = `<span class="seq">…</span><span><span class="author"></span><span class="body"></span></span>`
      $(".author", p.li).textContent = nameOf(state.me.id)
      $(".body", p.li).textContent = p.body
    }
    items.push(p.li)
  }
  syncChildren(list, items)
  if (atBottom) list.scrollTop = list.scrollHeight
  renderStatus()
}

/** A live draft's line: made once, its text updated as the draft grows. */
const draftLine = (draft) => {
  if (!draft.li) {
    const li = document.createElement("li")
    li.innerHTML =
      `<span class="seq">writing…</span><span><span class="author"></span><span class="body"></span></span>`
    $(".seq", li).title = "a live draft: not a message yet"
    draft.li = li
  }
  const li = draft.li
  li.className = `message draft role-${draft.role}`
  li.dataset.draftId = draft.draftId
  $(".author", li).textContent = nameOf(state.me.id)
  if ($(".body", li).textContent !== draft.body) $(".body", li).textContent = draft.body
  return li
}

/** Who is present in the open project: their names once the members are known, short ids before. */
const renderPresence = () => {
  const users = [...(state.presence.get(state.selected) ?? new Map())]
    .sort(([a, since], [b, other]) => since.localeCompare(other) || a.localeCompare(b))
  $("#presence .users").replaceChildren(...users.map(([userId, since]) => {
    const span = document.createElement("span")
    span.className = "present"
    span.dataset.userId = userId
    span.textContent = nameOf(userId)
    span.title = `here since ${new Date(since).toLocaleTimeString()} · ${userId}`
    return span
  }))
  $("#presence").hidden = users.length === 0
}

/** "bob is typing…" under the open project's chat, while anyone but the user is. */
const renderTyping = () => {
  const typing = [...(state.typing.get(state.selected) ?? new Map()).keys()].map(nameOf).sort()
  $("#project-chat .typing").textContent = typing.length === 0
    ? ""
    : typing.length === 1
    ? `${typing[0]} is typing…`
    : typing.length <= 3
    ? `${typing.slice(0, -1).join(", ")} and ${typing.at(-1)} are typing…`
    : `${typing.length} people are typing…`
}

const showNotice = (text) => {
  const el = $("#notice")
  el.textContent = text
  el.hidden = !text
}

// --- the selected project --------------------------------------------------------------------------

/** Switching projects changes what is on screen, never the connection. */
const select = (projectId) => {
  if (state.selected && state.projects.has(state.selected)) markSeen(state.selected)
  state.selected = projectId
  clearInterval(state.timer)
  $("#project-view").hidden = !projectId
  if (!projectId) {
    renderSwitcher()
    return
  }
  localStorage.setItem("herald.project", projectId)
  state.projects.get(projectId).unread.clear()
  markSeen(projectId)
  showNotice("")
  chatFor(projectStream(projectId)).open()
  chatFor(workspaceStream(projectId)).open()
  renderSwitcher()
  renderProject()
  loadMembers(projectId)
  renderAnalytics().catch(() => {})
  state.timer = setInterval(() => renderAnalytics().catch(() => {}), 5_000)
}

const renderProject = () => {
  const project = state.projects.get(state.selected)
  if (!project) return
  $("#project-title").textContent = project.name
  $("#project-id").textContent = project.id
  renderChat("#project-chat", state.chats.get(projectStream(project.id)))
  renderChat("#workspace-chat", state.chats.get(workspaceStream(project.id)))
  renderMembers()
  renderPresence()
  renderTyping()
}

const loadMembers = (projectId) =>
  herald.projects.members({ path: { projectId } }).then((m) => {
    for (const x of m.items) names.set(x.userId, x.name)
    if (state.selected !== projectId) return
    state.members = m.items
    renderProject()
  }, () => {})

const renderMembers = () => {
  const project = state.projects.get(state.selected)
  $("#members ul").replaceChildren(...state.members.map((m) => {
    const li = document.createElement("li")
    li.innerHTML = `<span class="name"></span> <small class="role"></small>`
    $(".name", li).textContent = m.userId === state.me.id ? `${m.name} (you)` : m.name
    $(".role", li).textContent = m.role
    li.title = m.userId
    return li
  }))
  const owner = project?.ownerId === state.me.id
  $("#add-member").hidden = !owner
  $("#members .not-owner").hidden = owner
}

const renderAnalytics = async () => {
  const projectId = state.selected
  const to = DateTime.unsafeNow()
  const range = { from: DateTime.subtract(to, { hours: 1 }), to }
  const [summary, series] = await Promise.all([
    herald.analytics.summary({ path: { projectId }, urlParams: range }),
    herald.analytics.timeseries({ path: { projectId }, urlParams: { ...range, bucket: "minute" } })
  ])
  if (state.selected !== projectId) return
  const figures = [
    ["events", summary.events.total],
    ["messages", summary.messages.created],
    ["edits", summary.messages.edited],
    ["deletions", summary.messages.deleted],
    ["active users", summary.activeUsers],
    ["my worker space", summary.workspace.events]
  ]
  $("#analytics .summary").replaceChildren(...figures.map(([label, value]) => {
    const div = document.createElement("div")
    div.innerHTML = "<dt></dt><dd></dd>"
    div.children[0].textContent = label
    div.children[1].textContent = value
    return div
  }))
  const xs = series.points.map((p) => DateTime.toEpochMillis(p.t) / 1000)
  const ys = series.points.map((p) => p.count)
  const el = $("#chart")
  if (!state.chart) {
    state.chart = new uPlot(
      {
        width: Math.max(320, el.clientWidth || 800),
        height: 160,
        series: [{}, { label: "events / minute", stroke: "#3856d6", fill: "rgba(56,86,214,.12)" }],
        axes: [{}, { size: 40 }]
      },
      [xs, ys],
      el
    )
  } else state.chart.setData([xs, ys])
  $("#analytics .asof").textContent = summary.asOf
    ? `as of ${DateTime.toDate(summary.asOf).toLocaleTimeString()} (every event committed before then is counted)`
    : "not yet materialized"
}

// --- forms -----------------------------------------------------------------------------------------

const onSubmit = (selector, handler) =>
  $(selector).addEventListener("submit", (e) => {
    e.preventDefault()
    handler(e.target)
  })

const send = (form, streamOf, extra) => {
  const input = $("input[name=body]", form)
  const body = input.value
  if (!body.trim() || !state.selected) return
  input.value = ""
  state.chats.get(streamOf(state.selected)).post(body, extra()).then(() => showError(null), failed("Sending"))
}
onSubmit("#project-chat .composer", (form) => send(form, projectStream, () => ({})))
onSubmit(
  "#workspace-chat .composer",
  (form) => send(form, workspaceStream, () => ({ role: $("#workspace-role").value }))
)

onSubmit("#new-project", async (form) => {
  const input = $("input[name=name]", form)
  try {
    const project = await herald.projects.create({ payload: { name: input.value } })
    input.value = ""
    showError(null)
    // Its project.created arrives on the connection (perhaps already has); show it when it does.
    if (!state.projects.has(project.id)) {
      state.projects.set(project.id, {
        id: project.id,
        name: project.name,
        ownerId: project.ownerId,
        unread: new Set()
      })
    }
    select(project.id)
  } catch (error) {
    showError(error, "Could not create the project")
  }
})

onSubmit("#add-member", async (form) => {
  const input = $("input[name=userId]", form)
  const projectId = state.selected
  try {
    const userId = input.value.trim()
    await herald.projects.addMember({ path: { projectId }, payload: { userId } })
    input.value = ""
    showError(null)
    loadMembers(projectId)
  } catch (error) {
    const status = statusOf(error)
    const hint = status === 404
      ? " (no user has that id: ask them for the id shown under their name)"
      : status === 409
      ? " (already a member)"
      : ""
    showError(hint ? { message: `${error.message}${hint}` } : error, "Could not add the member")
  }
})

$("#copy-id").addEventListener("click", () => {
  navigator.clipboard?.writeText(state.me.id).then(() => ($("#copy-id").textContent = "Copied"), () => {})
})

// --- signing in ------------------------------------------------------------------------------------

const signIn = async () => {
  herald = createClient({ baseUrl: location.origin, token: state.token })
  try {
    state.me = await herald.me.me()
  } catch (error) {
    localStorage.removeItem("herald.token")
    throw statusOf(error) === 401
      ? new Error("that token was not accepted; check it was copied whole (it starts with hrld_)")
      : error
  }
  names.set(state.me.id, state.me.name)
  localStorage.setItem("herald.token", state.token)
  $("#welcome").hidden = true
  $("#whoami").hidden = false
  $("#me").textContent = state.me.name
  $("#my-id").textContent = state.me.id
  $("#app").hidden = false
  renderSwitcher()
  connect()
}

onSubmit("#signin", () => {
  state.token = $("#token").value.trim()
  signIn().then(() => showError(null), failed("Could not sign in"))
})
$("#signout").addEventListener("click", () => {
  localStorage.removeItem("herald.token")
  state.subscription?.close()
  location.reload()
})
if (state.token) signIn().catch(failed("Could not sign in"))
else $("#welcome").hidden = false
