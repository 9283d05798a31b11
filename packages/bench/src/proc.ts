import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"

/**
 * What the benches read from /proc about other processes: resident memory, and CPU time of one
 * process or of a whole PostgreSQL cluster (the postmaster and every process it forked).
 */

/** Clock ticks per second of the times in /proc/<pid>/stat (USER_HZ: 100 on Linux). */
export const CLOCK_TICKS = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim())
    return Number.isInteger(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
})()

export const ticksToMs = (ticks: number) => (ticks * 1000) / CLOCK_TICKS

export interface ProcStat {
  readonly pid: number
  readonly ppid: number
  /** utime + stime: CPU time the process (all its threads) has used, in ticks. */
  readonly ticks: number
  /** cutime + cstime: CPU time of the children it has waited for (reaped), in ticks. */
  readonly childTicks: number
}

/** /proc/<pid>/stat, or undefined once the process is gone (reaped). */
export const readStat = (pid: number): ProcStat | undefined => {
  let text: string
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined
  }
  // The fields after the command name (which may hold spaces and parentheses) start at state, field 3.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ")
  // Fields 4 (ppid), 14-17 (utime, stime, cutime, cstime), counted from 1; f[0] is field 3.
  return {
    pid,
    ppid: Number(f[1]),
    ticks: Number(f[11]) + Number(f[12]),
    childTicks: Number(f[13]) + Number(f[14])
  }
}

export const readRss = (pid: number) => {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
  if (kb === null) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(kb[1]) * 1024
}

/** utime + stime of a process from /proc/<pid>/stat, in ms (10 ms resolution). */
export const readCpuMs = (pid: number) => {
  const stat = readStat(pid)
  if (stat === undefined) throw new Error(`no process ${pid}`)
  return ticksToMs(stat.ticks)
}

/** Every live process whose parent is `ppid` (one scan of /proc). */
export const childrenOf = (ppid: number): Array<ProcStat> => {
  const found: Array<ProcStat> = []
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const stat = readStat(Number(name))
    if (stat !== undefined && stat.ppid === ppid) found.push(stat)
  }
  return found
}

/** The postmaster's pid: the first line of `<pgdata>/postmaster.pid`. */
export const postmasterPid = (pgdata: string) => {
  const pid = Number(fs.readFileSync(path.join(pgdata, "postmaster.pid"), "utf8").split("\n")[0])
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`no postmaster pid in ${pgdata}/postmaster.pid`)
  return pid
}

/**
 * CPU time of a whole cluster at one moment, in ticks: the postmaster's own, that of its children
 * it has already reaped (its cutime + cstime: a backend that exits mid-run still counts, once the
 * postmaster has waited for it), and that of every live child — except the `excluded` pids (the
 * bench's own connections), which are left out.
 */
export interface ClusterSnapshot {
  readonly ticks: number
  /** The postmaster's cutime + cstime alone: what its children that have exited used. */
  readonly reapedTicks: number
  /** Every live child (but the excluded) and its ticks. */
  readonly live: ReadonlyMap<number, number>
}

export const clusterSnapshot = (postmaster: number, excluded: ReadonlySet<number> = new Set()): ClusterSnapshot => {
  // Children first, then the postmaster: a child reaped in between is counted twice (once live,
  // once in cutime), never missed; at 10 ms per tick that race is below the resolution anyway.
  const children = childrenOf(postmaster).filter((c) => !excluded.has(c.pid))
  const pm = readStat(postmaster)
  if (pm === undefined) throw new Error(`the postmaster (${postmaster}) is gone`)
  const live = new Map(children.map((c) => [c.pid, c.ticks]))
  let ticks = pm.ticks + pm.childTicks
  for (const t of live.values()) ticks += t
  return { ticks, reapedTicks: pm.childTicks, live }
}

export interface ClusterDelta {
  readonly cpuMs: number
  /** Children that were not there at the first snapshot / that were gone by the second. */
  readonly appeared: number
  readonly exited: number
  /**
   * The part of `cpuMs` used by children that exited between the two snapshots (whether or not
   * they were there at the first), which only the postmaster's cutime/cstime still shows.
   */
  readonly exitedMs: number
}

export const clusterDelta = (before: ClusterSnapshot, after: ClusterSnapshot): ClusterDelta => {
  const gone = [...before.live].filter(([pid]) => !after.live.has(pid))
  const ticksBefore = gone.reduce((n, [, t]) => n + t, 0)
  return {
    cpuMs: ticksToMs(after.ticks - before.ticks),
    appeared: [...after.live.keys()].filter((pid) => !before.live.has(pid)).length,
    exited: gone.length,
    exitedMs: ticksToMs(after.reapedTicks - before.reapedTicks - ticksBefore)
  }
}

/**
 * User and system ticks of the whole machine so far (/proc/stat's first line: user, nice, system),
 * what the processes on it were charged, to tell what other work ran meanwhile. Interrupt time
 * is left out: it may be our own traffic's, charged to no process.
 */
export const machineBusyTicks = () => {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0]!
  const [user, nice, system] = line.trim().split(/\s+/).slice(1).map(Number)
  return user! + nice! + system!
}
