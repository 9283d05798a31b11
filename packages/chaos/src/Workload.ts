import { Effect } from "effect"
import { type Answer, field, num, request, str } from "./Http.js"
import type { EventRef, Project, User, WriteKind, WriteRecord } from "./Records.js"
import type { Rng } from "./Rng.js"
import { anyNode, now, type Run, upNode } from "./Run.js"

/**
 * The seeded workload: users (created with the admin token), projects, owners adding and removing
 * members, members posting, editing and deleting project messages and posting to their workspace,
 * each request to a random node. A request that fails (no answer, 5xx, 429) is retried on another
 * node — a post with the same `clientMessageId`, so that a repeat answers 200 with the original
 * (SPEC §5) — and what was confirmed is recorded; an unconfirmed request may or may not have
 * committed, and the checker reads the truth from the database.
 */

/** Bodies over PostgreSQL's 8 000-byte NOTIFY limit: the postgres broker sends them as references. */
export const OVERSIZED = { min: 8_000, max: 10_000, chance: 0.08 }

const WORDS = ["herald", "stream", "seq", "commit", "outbox", "replay", "member", "chaos", "resume", "cursor", "gap"]

const text = (rng: Rng, prefix: string) => {
  if (rng.chance(OVERSIZED.chance)) {
    const length = rng.int(OVERSIZED.min, OVERSIZED.max)
    const unit = `${prefix} ${rng.pick(WORDS)} `
    return (prefix + " " + unit.repeat(Math.ceil(length / unit.length))).slice(0, length)
  }
  const words = Array.from({ length: rng.int(1, 20) }, () => rng.pick(WORDS))
  return `${prefix} ${words.join(" ")}`
}

const retryable = (status: number) => status === 0 || status === 429 || status >= 500

/**
 * Sends a request until it gets an answer that settles it (anything but no answer, 5xx or 429),
 * each try to a random node; `record.statuses` collects every status.
 */
const settle = (
  run: Run,
  rng: Rng,
  record: { readonly statuses: Array<number> },
  method: string,
  path: (attempt: number) => string,
  token: string,
  body: unknown,
  tries = 8
) =>
  Effect.gen(function*() {
    for (let i = 0; i < tries; i++) {
      const answer = yield* request(anyNode(run, rng).url, method, path(i), token, body)
      record.statuses.push(answer.status)
      if (!retryable(answer.status)) return answer
      yield* Effect.sleep(Math.min(2_000, 100 * 2 ** i) + rng.int(0, 100))
    }
    return undefined
  })

const eventRef = (body: unknown): EventRef | undefined => {
  const id = str(field(body, "event", "id"))
  const stream = str(field(body, "event", "stream"))
  const seq = num(field(body, "event", "seq"))
  return id !== undefined && stream !== undefined && seq !== undefined ? { id, stream, seq } : undefined
}

const newRecord = (
  run: Run,
  kind: WriteKind,
  user: User,
  projectId: string,
  extra: Partial<Pick<WriteRecord, "clientMessageId" | "bodyLength" | "target" | "member">> = {}
): WriteRecord => {
  const record: WriteRecord = {
    kind,
    user: user.index,
    projectId,
    at: now(run),
    ...extra,
    statuses: [],
    outcome: "unconfirmed",
    answeredMessageIds: []
  }
  run.writes.push(record)
  return record
}

/** Setup, before any fault: users, projects (owner = user i mod users), and the first members. */
export const setup = (run: Run, options: { readonly users: number; readonly projects: number }) =>
  Effect.gen(function*() {
    const rng = run.rng.fork("setup")
    const must = (answer: Answer | undefined, what: string, status: number) =>
      answer !== undefined && answer.status === status
        ? Effect.succeed(answer.body)
        : Effect.dieMessage(
          `setup: ${what} answered ${answer?.status} ${JSON.stringify(answer?.body ?? answer?.error)}`
        )
    const node = () => upNode(run, rng).url
    const users: Array<User> = []
    for (let i = 0; i < options.users; i++) {
      const name = `u${i + 1}`
      const body = yield* must(yield* request(node(), "POST", "/api/admin/users", run.adminToken, { name }), name, 201)
      users.push({ index: i, id: str(field(body, "id"))!, name, token: str(field(body, "token"))! })
    }
    const projects: Array<Project> = []
    for (let j = 0; j < options.projects; j++) {
      const owner = users[j % users.length]!
      const name = `p${j + 1}`
      const body = yield* must(yield* request(node(), "POST", "/api/projects", owner.token, { name }), name, 201)
      const project: Project = { id: str(field(body, "id"))!, name, owner: owner.index }
      projects.push(project)
      const members = new Set([owner.index])
      for (const user of users) {
        if (user.index === owner.index || !rng.chance(0.6)) continue
        yield* must(
          yield* request(node(), "POST", `/api/projects/${project.id}/members`, owner.token, { userId: user.id }),
          `${name} + ${user.name}`,
          201
        )
        members.add(user.index)
      }
      run.believed.set(project.id, members)
    }
    run.users = users
    run.projects = projects
  })

interface Mine {
  readonly projectId: string
  readonly messageId: string
}

/** A post's answer on its record: confirmed (with its message and event) or refused; the message id if any. */
const recordAnswer = (record: WriteRecord, answer: Answer) => {
  if (answer.status !== 201 && answer.status !== 200) {
    record.outcome = "refused"
    return undefined
  }
  record.outcome = "confirmed"
  const messageId = str(field(answer.body, "message", "id"))
  if (messageId !== undefined) record.answeredMessageIds.push(messageId)
  record.messageId = messageId
  const event = eventRef(answer.body)
  if (event !== undefined) record.event = event
  return messageId
}

/** One user's actions until interrupted: a write every 150–500 ms. */
export const actor = (run: Run, user: User) =>
  Effect.gen(function*() {
    const rng = run.rng.fork(`user:${user.index}`)
    // Which node each try goes to: a generator of its own, so that retries (which depend on the faults) leave the user's choices alone.
    const route = run.rng.fork(`route:${user.index}`)
    let n = 0
    const mine: Array<Mine> = []
    const memberOf = () => run.projects.filter((p) => run.believed.get(p.id)?.has(user.index))
    const owned = () => run.projects.filter((p) => p.owner === user.index)

    const post = (project: Project, scope: "project" | "workspace") =>
      Effect.gen(function*() {
        const clientMessageId = `${user.name}-${run.broker}-${++n}`
        const body = text(rng, `${user.name}#${n}`)
        const record = newRecord(run, scope === "project" ? "post" : "workspace-post", user, project.id, {
          clientMessageId,
          bodyLength: body.length
        })
        const path = scope === "project"
          ? `/api/projects/${project.id}/messages`
          : `/api/projects/${project.id}/workspace/messages`
        const payload = scope === "project"
          ? { body, clientMessageId }
          : { body, clientMessageId, role: rng.pick(["user", "worker"]) }
        const answer = yield* settle(run, route, record, "POST", () => path, user.token, payload)
        if (answer === undefined) return
        const messageId = recordAnswer(record, answer)
        if (scope === "project" && messageId !== undefined) mine.push({ projectId: project.id, messageId })
      })

    /** A draft written in three steps through random nodes, then posted as a message (or deleted). */
    const draft = (project: Project) =>
      Effect.gen(function*() {
        const draftId = `${user.name}-${run.broker}-d${++n}`
        const path = `/api/projects/${project.id}/workspace/drafts/${draftId}`
        let body = ""
        for (let i = 0; i < 3; i++) {
          body += `${rng.pick(WORDS)} `
          yield* request(anyNode(run, route).url, "PUT", path, user.token, { body, role: "worker" })
        }
        if (rng.chance(0.3)) {
          yield* request(anyNode(run, route).url, "DELETE", path, user.token)
          return
        }
        const record = newRecord(run, "workspace-post", user, project.id, {
          clientMessageId: draftId,
          bodyLength: body.length
        })
        const answer = yield* settle(
          run,
          route,
          record,
          "POST",
          () => `/api/projects/${project.id}/workspace/messages`,
          user.token,
          { body, clientMessageId: draftId, role: "worker" }
        )
        if (answer !== undefined) recordAnswer(record, answer)
      })

    /** A repeat of an earlier confirmed post (same clientMessageId): 200 with the original, nothing written. */
    const repeat = Effect.gen(function*() {
      const earlier = run.writes.filter((w) =>
        w.user === user.index && w.kind === "post" && w.outcome === "confirmed" && w.clientMessageId !== undefined
      )
      if (earlier.length === 0) return
      const original = rng.pick(earlier)
      const record = newRecord(run, "post", user, original.projectId, {
        clientMessageId: original.clientMessageId!,
        bodyLength: 5
      })
      const answer = yield* settle(
        run,
        route,
        record,
        "POST",
        () => `/api/projects/${original.projectId}/messages`,
        user.token,
        { body: "again", clientMessageId: original.clientMessageId! }
      )
      if (answer === undefined) return
      const messageId = str(field(answer.body, "message", "id"))
      if (messageId !== undefined) record.answeredMessageIds.push(messageId, ...original.answeredMessageIds)
      record.outcome = answer.status === 200 || answer.status === 201 ? "confirmed" : "refused"
      if (record.outcome === "confirmed") {
        record.messageId = messageId
        const event = eventRef(answer.body)
        if (event !== undefined) record.event = event
      }
    })

    const edit = Effect.gen(function*() {
      if (mine.length === 0) return
      const { messageId, projectId } = rng.pick(mine)
      const body = text(rng, `${user.name} edit`)
      const record = newRecord(run, "edit", user, projectId, { target: messageId, bodyLength: body.length })
      const answer = yield* settle(
        run,
        route,
        record,
        "PATCH",
        () => `/api/projects/${projectId}/messages/${messageId}`,
        user.token,
        { body },
        4
      )
      if (answer === undefined) return
      record.outcome = answer.status === 200 ? "confirmed" : "refused"
      const event = eventRef(answer.body)
      if (event !== undefined) record.event = event
    })

    const remove = Effect.gen(function*() {
      if (mine.length === 0) return
      const i = rng.int(0, mine.length - 1)
      const { messageId, projectId } = mine[i]!
      mine.splice(i, 1)
      const record = newRecord(run, "delete", user, projectId, { target: messageId })
      const answer = yield* settle(
        run,
        route,
        record,
        "DELETE",
        () => `/api/projects/${projectId}/messages/${messageId}`,
        user.token,
        undefined,
        4
      )
      if (answer === undefined) return
      record.outcome = answer.status === 204 ? "confirmed" : "refused"
    })

    const membership = Effect.gen(function*() {
      const projects = owned()
      if (projects.length === 0) return
      const project = rng.pick(projects)
      const members = run.believed.get(project.id)!
      const others = run.users.filter((u) => u.index !== user.index)
      const adding = rng.chance(0.5)
      const candidates = others.filter((u) => members.has(u.index) !== adding)
      if (candidates.length === 0) return
      const target = rng.pick(candidates)
      const record = newRecord(run, adding ? "add-member" : "remove-member", user, project.id, {
        member: target.index
      })
      const answer = adding
        ? yield* settle(run, route, record, "POST", () => `/api/projects/${project.id}/members`, user.token, {
          userId: target.id
        })
        : yield* settle(
          run,
          route,
          record,
          "DELETE",
          () => `/api/projects/${project.id}/members/${target.id}`,
          user.token,
          undefined
        )
      if (answer === undefined) return
      const done = adding ? answer.status === 201 : answer.status === 204
      record.outcome = done ? "confirmed" : "refused"
      // A refusal (409 already a member, 404 not one) also tells where things stand.
      if (done || answer.status === 409 || answer.status === 404) {
        if (adding) members.add(target.index)
        else members.delete(target.index)
      }
    })

    for (;;) {
      yield* Effect.sleep(rng.int(150, 500))
      const projects = memberOf()
      const op = rng.weighted(
        [
          ["post", 40],
          ["workspace", 18],
          ["edit", 12],
          ["delete", 6],
          ["repeat", 4],
          // Several posts at once to one project through different nodes: concurrent writers, publishers and materializers on one stream.
          ["burst", 5],
          ["membership", owned().length > 0 ? 14 : 0],
          // A post to a project the user is not in: a 404, and nothing written (G5).
          ["intrude", 3],
          // Live signals (G10): typing in a project, a draft in the user's workspace (updated, then
          // ended by its message or deleted). Best-effort: not recorded as writes.
          ["typing", 6],
          ["draft", 4]
        ] as const
      )
      switch (op) {
        case "post":
          if (projects.length > 0) yield* post(rng.pick(projects), "project")
          break
        case "workspace":
          if (projects.length > 0) yield* post(rng.pick(projects), "workspace")
          break
        case "edit":
          yield* edit
          break
        case "delete":
          yield* remove
          break
        case "burst":
          if (projects.length > 0) {
            const project = rng.pick(projects)
            yield* Effect.all(Array.from({ length: rng.int(3, 6) }, () => post(project, "project")), {
              concurrency: "unbounded",
              discard: true
            })
          }
          break
        case "repeat":
          yield* repeat
          break
        case "membership":
          yield* membership
          break
        case "typing":
          if (projects.length > 0) {
            yield* request(anyNode(run, route).url, "POST", `/api/projects/${rng.pick(projects).id}/typing`, user.token)
          }
          break
        case "draft":
          if (projects.length > 0) yield* draft(rng.pick(projects))
          break
        case "intrude": {
          const outside = run.projects.filter((p) => !run.believed.get(p.id)?.has(user.index))
          if (outside.length > 0) yield* post(rng.pick(outside), "project")
          break
        }
      }
    }
  })

/**
 * After the faults: one post in every project and one in every member's workspace, so that every
 * stream a client may read moves once more with the whole fleet healthy. Each is retried until
 * confirmed (the run fails loudly otherwise).
 */
export const probes = (run: Run) =>
  Effect.gen(function*() {
    const rng = run.rng.fork("probes")
    const rows = yield* Effect.promise(() =>
      run.db.query<{ project_id: string; user_id: string }>(
        "SELECT project_id::text, user_id::text FROM project_members ORDER BY project_id, user_id"
      )
    )
    const posted = new Set<string>()
    for (const row of rows) {
      const user = run.users.find((u) => u.id === row.user_id)
      const project = run.projects.find((p) => p.id === row.project_id)
      if (user === undefined || project === undefined) continue
      const writes: Array<readonly ["project" | "workspace", string]> = [["workspace", "workspace/messages"]]
      if (!posted.has(project.id)) writes.push(["project", "messages"])
      posted.add(project.id)
      for (const [scope, path] of writes) {
        const clientMessageId = `probe-${scope}-${run.broker}-${user.name}-${project.name}`
        const record = newRecord(run, scope === "project" ? "post" : "workspace-post", user, project.id, {
          clientMessageId,
          bodyLength: 5
        })
        const answer = yield* settle(
          run,
          rng,
          record,
          "POST",
          () => `/api/projects/${project.id}/${path}`,
          user.token,
          { body: "probe", clientMessageId },
          20
        )
        if (answer === undefined || (answer.status !== 201 && answer.status !== 200)) {
          return yield* Effect.dieMessage(
            `probe ${scope} post by ${user.name} in ${project.name} was not confirmed: ${record.statuses.join(",")}`
          )
        }
        recordAnswer(record, answer)
      }
    }
  })
