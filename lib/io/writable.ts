/**
 * Fail at the start of a long job, not at its first save: check that a directory can be created
 * and written (a probe file is written and removed). Permissions, a read-only file system or a
 * path through a regular file all show up here.
 */
import * as fs from "node:fs";
import * as path from "node:path";

/** Create `dir` if needed and check that a file can be written in it; else an Error naming `what` and the directory. */
export function checkWritableDir(dir: string, what: string): void {
  const probe = path.join(dir, `.write-probe-${process.pid}-${Date.now()}`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(probe, "");
    fs.rmSync(probe);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`${what}: cannot write to ${path.resolve(dir)} (${err.code ?? err.message})`);
  }
}
