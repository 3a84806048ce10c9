/**
 * Cross-process step lock (issue 19, item 7): while one process computes a cache step, a second
 * `reproduce` or notebook asking for the same step waits for it and then reuses its result instead
 * of computing it again.
 *
 * A lock is a small JSON file `{ pid, startTime, host, token, what, acquiredAt }`, created whole:
 * written to a temporary name, then hard-linked to the lock name (link fails with EEXIST when the
 * lock exists, so exactly one creator wins and no reader ever sees a half-written lock).
 *
 * A holder killed with SIGKILL cannot remove its lock, so a lock is *stale* when, on this host, its
 * pid no longer runs or runs a different process: the process start time (field 22 of
 * /proc/<pid>/stat, clock ticks since boot) differs from the recorded one (pids are reused). Where
 * /proc is missing (macOS), only the pid is checked. A lock from another host (a shared file
 * system) is never judged stale: it is waited for.
 *
 * Taking over a stale lock: rename it to a unique name, then check that the renamed file is the
 * stale lock judged (not a fresh lock another waiter created in between; that one is linked back).
 * The remaining race (a live holder losing its lock file to a misjudged takeover) can only make a
 * step be computed twice; every artifact write is atomic and steps are deterministic, so the
 * result stays correct.
 *
 * No npm library fits: proper-lockfile and lockfile judge staleness by mtime age, not by pid and
 * start time, so they either wait out a long timeout after kill -9 or steal a slow holder's lock.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { writeAllSync } from "../io/atomic";

export interface LockInfo {
  pid: number;
  /** /proc/<pid>/stat field 22 (start time in clock ticks since boot) as a string; null where unknown. */
  startTime: string | null;
  host: string;
  /** Random, so that a holder releases only its own lock. */
  token: string;
  what: string;
  acquiredAt: string;
}

/** Start time of a process (/proc/<pid>/stat field 22), null when it does not run or /proc is unavailable. */
export function processStartTime(pid: number): string | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // field 2 (comm) is parenthesised and may contain spaces or ")": split after the last ")".
  const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so field 22 is rest[19]
  return rest[19] ?? null;
}

const hasProc = (() => {
  try {
    return fs.existsSync(`/proc/${process.pid}/stat`);
  } catch {
    return false;
  }
})();

function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** Whether the process that wrote `info` is gone (see the file comment); false for another host's lock. */
export function isStale(info: LockInfo): boolean {
  if (info.host !== os.hostname()) return false;
  if (!Number.isInteger(info.pid) || info.pid <= 0) return true;
  if (hasProc) {
    const now = processStartTime(info.pid);
    return now === null || (info.startTime !== null && now !== info.startTime);
  }
  return !pidRuns(info.pid);
}

/** The lock's content, or null when it is absent; a lock file that does not parse counts as stale garbage. */
export function readLock(file: string): { info: LockInfo | null; text: string } | null {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  try {
    const info = JSON.parse(text) as LockInfo;
    return { info: info && typeof info === "object" ? info : null, text };
  } catch {
    return { info: null, text };
  }
}

export interface HeldLock {
  file: string;
  info: LockInfo;
  release(): void;
}

/** Create `file` whole, failing (false) when it exists. */
function createExclusive(file: string, text: string): boolean {
  const tmp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  const fd = fs.openSync(tmp, "wx");
  try {
    writeAllSync(fd, Buffer.from(text, "utf8"), tmp);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw e;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/**
 * Try once to take the lock: creates it when absent, takes it over when stale (calling onStale with
 * the dead holder), else returns the live holder.
 */
export function tryLock(
  file: string,
  what: string,
  onStale: (holder: LockInfo | null) => void = () => {},
): { held: HeldLock } | { holder: LockInfo } {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 8; attempt++) {
    const info: LockInfo = {
      pid: process.pid,
      startTime: processStartTime(process.pid),
      host: os.hostname(),
      token: randomBytes(8).toString("hex"),
      what,
      acquiredAt: new Date().toISOString(),
    };
    const text = JSON.stringify(info) + "\n";
    if (createExclusive(file, text)) return { held: { file, info, release: () => releaseLock(file, info.token) } };
    const cur = readLock(file);
    if (!cur) continue; // released in between: try again
    if (cur.info && !isStale(cur.info)) return { holder: cur.info };
    // stale (or unparseable: a lock is created whole, so this is not a lock being written)
    const aside = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.stale`;
    try {
      fs.renameSync(file, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue; // another waiter took it over first
      throw e;
    }
    const moved = fs.readFileSync(aside, "utf8");
    if (moved !== cur.text) {
      // a fresh lock created after our read: put it back (unless yet another one exists) and look again
      try {
        fs.linkSync(aside, file);
      } catch {
        // a newer lock exists; the one we moved loses its file (at worst a step computed twice)
      }
    } else {
      onStale(cur.info);
    }
    fs.rmSync(aside, { force: true });
  }
  throw new Error(`lock ${file}: could not be taken or read after repeated attempts (contention?)`);
}

/** Remove the lock if it is still ours (same token). */
export function releaseLock(file: string, token: string): void {
  const cur = readLock(file);
  if (cur?.info?.token === token) fs.rmSync(file, { force: true });
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Run `fn` holding the lock `file`, waiting (polling every `pollMs`) while a live process holds it;
 * a stale lock is taken over. `onWait` is called once per holder waited for.
 */
export async function withLock<T>(
  file: string,
  what: string,
  fn: () => Promise<T>,
  onWait: (holder: LockInfo) => void = () => {},
  pollMs = 200,
): Promise<T> {
  let waitingFor: number | null = null;
  for (;;) {
    const got = tryLock(file, what);
    if ("held" in got) {
      try {
        return await fn();
      } finally {
        got.held.release();
      }
    }
    if (waitingFor !== got.holder.pid) {
      waitingFor = got.holder.pid;
      onWait(got.holder);
    }
    await sleep(pollMs);
  }
}
