// Herald's web client: plain ES modules, no framework, no build step.
// The view of each stream is built from its SSE events, applied strictly in seq order, so what
// the page shows is exactly what the server committed — across reconnects and server restarts.
import uPlot from "/vendor/uplot.esm.js"

const $ = (selector, root = document) => root.querySelector(selector)
const state = {
  token: localStorage.getItem("herald.token") ?? "",
  me: null,
  projectId: null,
  streams: [],
  timer: null,
  chart: null
}

const api = async (method, path, body) => {
  const res = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${state.token}`, ...(body ? { "content-type": "application/json" } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {})
  })
  const text = await res.text()
  const json = text ? JSON.parse(text) : undefined
  if (!res.ok) throw new Error(json?.message ?? `${res.status} ${res.statusText}`)
  return json
}

const showError = (error) => {
  const el = $("#error")
  el.textContent = error ? String(error.message ?? error) : ""
  el.hidden = !error
}

const names = new Map()
const nameOf = (userId) => names.get(userId) ?? userId.slice(0, 8)

/**
 * One chat stream: an EventSource on the SPEC's SSE endpoint with `?access_token=` (EventSource
 * cannot send headers). The browser reconnects on its own and sends `Last-Event-ID`, so the server
 * resumes right after the last seq we have; we still drop anything at or below it.
 */
class StreamView {
  constructor(section, path, postPath, canDelete) {
    this.section = section
    this.list = $(".messages", section)
    this.badge = $(".state", section)
    this.path = path
    this.postPath = postPath
    this.canDelete = canDelete
    this.lastSeq = 0
    this.messages = new Map() // messageId → { li, message }
    this.pending = new Map() // clientMessageId → li
    this.quiet = null
  }

  open() {
    const url = `${this.path}?after=0&access_token=${encodeURIComponent(state.token)}`
    this.source = new EventSource(url)
    this.setState("connecting")
    this.source.onopen = () => this.settle()
    this.source.onerror = () => this.setState(this.source.readyState === EventSource.CLOSED ? "closed" : "reconnecting")
    const onEvent = (e) => this.apply(JSON.parse(e.data))
    for (
      const type of [
        "project.created",
        "member.added",
        "member.removed",
        "message.created",
        "message.edited",
        "message.deleted"
      ]
    ) {
      this.source.addEventListener(type, onEvent)
    }
  }

  close() {
    this.source?.close()
    clearTimeout(this.quiet)
  }

  /** "caught up" once the replay burst is over: no event for a moment after connecting. */
  settle() {
    this.setState("catching up")
    clearTimeout(this.quiet)
    this.quiet = setTimeout(() => this.setState("live · caught up"), 250)
  }

  setState(label) {
    this.badge.dataset.state = label === "live · caught up" ? "live" : label
    this.badge.textContent = label === "live · caught up" ? `live · caught up at seq ${this.lastSeq}` : label
  }

  apply(event) {
    if (event.seq <= this.lastSeq) return // a duplicate: already shown
    if (event.seq !== this.lastSeq + 1) console.warn(`gap before seq ${event.seq} (had ${this.lastSeq})`)
    this.lastSeq = event.seq
    this.settle()
    const d = event.data
    switch (event.type) {
      case "message.created": {
        const pending = d.clientMessageId ? this.pending.get(d.clientMessageId) : undefined
        const li = pending ?? document.createElement("li")
        if (pending) this.pending.delete(d.clientMessageId)
        this.render(li, event.seq, { id: d.messageId, authorId: d.authorId, role: d.role, body: d.body })
        if (!pending) this.list.append(li)
        else this.list.append(li) // reconciled: it now sits at its committed position
        this.messages.set(d.messageId, {
          li,
          message: { id: d.messageId, authorId: d.authorId, role: d.role, body: d.body }
        })
        break
      }
      case "message.edited": {
        const m = this.messages.get(d.messageId)
        if (m) {
          m.message.body = d.body
          $(".body", m.li).textContent = d.body
          $(".body", m.li).classList.add("edited")
        }
        break
      }
      case "message.deleted": {
        const m = this.messages.get(d.messageId)
        if (m) {
          m.li.classList.add("deleted")
          $(".body", m.li).textContent = "message deleted"
          $(".actions", m.li).replaceChildren()
        }
        break
      }
      case "member.added":
        // Learn the newcomer's name for the lines that follow.
        api("GET", `/api/projects/${event.projectId}/members`)
          .then((m) => m.items.forEach((x) => names.set(x.userId, x.name)))
          .catch(() => {})
        this.notice(event)
        break
      default:
        this.notice(event)
    }
    this.list.scrollTop = this.list.scrollHeight
  }

  notice(event) {
    const li = document.createElement("li")
    li.className = "notice"
    li.dataset.seq = event.seq
    const text = {
      "project.created": () => `${nameOf(event.actorId)} created the project`,
      "member.added": () => `${nameOf(event.data.userId)} joined`,
      "member.removed": () => `${nameOf(event.data.userId)} was removed`
    }[event.type]?.() ?? event.type
    li.innerHTML = `<span class="seq"></span><span></span>`
    li.children[0].textContent = `#${event.seq}`
    li.children[1].textContent = text
    this.list.append(li)
  }

  render(li, seq, message) {
    li.className = `message role-${message.role}`
    li.dataset.seq = seq ?? ""
    li.dataset.messageId = message.id ?? ""
    li.innerHTML =
      `<span class="seq"></span><span><span class="author"></span><span class="body"></span></span><span class="actions"></span>`
    $(".seq", li).textContent = seq ? `#${seq}` : "…"
    $(".author", li).textContent = nameOf(message.authorId)
    $(".body", li).textContent = message.body
    if (!seq) li.classList.add("pending")
    const mine = message.authorId === state.me?.id
    const actions = $(".actions", li)
    if (seq && mine && this.postPath.endsWith("/messages") && !this.postPath.includes("workspace")) {
      actions.append(this.button("Edit", () => this.edit(message)))
    }
    if (seq && (mine || this.canDelete()) && !this.postPath.includes("workspace")) {
      actions.append(this.button("Delete", () => this.remove(message)))
    }
  }

  button(label, onClick) {
    const b = document.createElement("button")
    b.type = "button"
    b.className = "link"
    b.textContent = label
    b.addEventListener("click", () => onClick().catch(showError))
    return b
  }

  /** Optimistic: shown at once as pending, reconciled when its message.created event arrives. */
  async post(body, extra = {}) {
    const clientMessageId = crypto.randomUUID()
    const li = document.createElement("li")
    this.render(li, null, { authorId: state.me.id, role: extra.role ?? "user", body })
    this.pending.set(clientMessageId, li)
    this.list.append(li)
    try {
      await api("POST", this.postPath, { body, clientMessageId, ...extra })
    } catch (error) {
      li.remove()
      this.pending.delete(clientMessageId)
      throw error
    }
  }

  async edit(message) {
    const body = prompt("Edit message", message.body)
    if (body !== null && body !== message.body) await api("PATCH", `${this.postPath}/${message.id}`, { body })
  }

  async remove(message) {
    if (confirm("Delete this message?")) await api("DELETE", `${this.postPath}/${message.id}`)
  }
}

const renderAnalytics = async () => {
  const base = `/api/projects/${state.projectId}/analytics`
  const to = new Date()
  const from = new Date(to.getTime() - 60 * 60 * 1000)
  const range = `from=${from.toISOString()}&to=${to.toISOString()}`
  const [summary, series] = await Promise.all([
    api("GET", `${base}/summary?${range}`),
    api("GET", `${base}/timeseries?bucket=minute&${range}`)
  ])
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
  const xs = series.points.map((p) => Date.parse(p.t) / 1000)
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
    ? `as of ${new Date(summary.asOf).toLocaleTimeString()} (every event committed before then is counted)`
    : "not yet materialized"
}

const openProject = async (projectId) => {
  for (const s of state.streams) s.close()
  clearInterval(state.timer)
  state.projectId = projectId
  localStorage.setItem("herald.project", projectId)
  const [project, members] = await Promise.all([
    api("GET", `/api/projects/${projectId}`),
    api("GET", `/api/projects/${projectId}/members`)
  ])
  for (const m of members.items) names.set(m.userId, m.name)
  $("#project-title").textContent = project.name
  for (const section of ["#project-chat", "#workspace-chat"]) $(".messages", $(section)).replaceChildren()
  const isOwner = () => project.ownerId === state.me.id
  const projectView = new StreamView(
    $("#project-chat"),
    `/api/projects/${projectId}/stream`,
    `/api/projects/${projectId}/messages`,
    isOwner
  )
  const workspaceView = new StreamView(
    $("#workspace-chat"),
    `/api/projects/${projectId}/workspace/stream`,
    `/api/projects/${projectId}/workspace/messages`,
    () => false
  )
  state.streams = [projectView, workspaceView]
  for (const s of state.streams) s.open()
  $("#project-chat .composer").onsubmit = (e) => submit(e, projectView)
  $("#workspace-chat .composer").onsubmit = (e) => submit(e, workspaceView, { role: $("#workspace-role").value })
  await renderAnalytics().catch(showError)
  state.timer = setInterval(() => renderAnalytics().catch(() => {}), 5_000)
}

const submit = (e, view, extra) => {
  e.preventDefault()
  const input = $("input[name=body]", e.target)
  const body = input.value
  if (!body.trim()) return
  input.value = ""
  view.post(body, extra).then(() => showError(null), showError)
}

const signIn = async () => {
  try {
    state.me = await api("GET", "/api/me")
  } catch (error) {
    localStorage.removeItem("herald.token")
    throw error
  }
  names.set(state.me.id, state.me.name)
  localStorage.setItem("herald.token", state.token)
  $("#signin").hidden = true
  $("#whoami").hidden = false
  $("#me").textContent = state.me.name
  const { items } = await api("GET", "/api/projects")
  const select = $("#project")
  select.replaceChildren(...items.map((p) => new Option(p.name, p.id)))
  $("#app").hidden = false
  if (items.length === 0) return showError("You are not in any project yet.")
  const remembered = localStorage.getItem("herald.project")
  const chosen = items.find((p) => p.id === remembered)?.id ?? items[0].id
  select.value = chosen
  select.onchange = () => openProject(select.value).catch(showError)
  await openProject(chosen)
}

$("#signin").addEventListener("submit", (e) => {
  e.preventDefault()
  state.token = $("#token").value.trim()
  signIn().then(() => showError(null), showError)
})
$("#signout").addEventListener("click", () => {
  localStorage.removeItem("herald.token")
  location.reload()
})
if (state.token) signIn().catch(showError)
