/**
 * Fault injection by preload (`node --import tsx --import ./tests/helpers/kill-at-write.ts …`),
 * for tests/fault-injection.test.ts. Every project write goes through the primitives of
 * lib/io/atomic.ts (writeSync, fsyncSync); this module replaces them:
 *   IS_FAULT_KILL_AT=N      at the N-th primitive call the process kills itself with SIGKILL (a
 *                           kill -9 at a reproducible point; a write is cut in half first, leaving a
 *                           torn temporary file behind);
 *   IS_FAULT_SHORT_MAX=B    every write writes at most B bytes (short writes, which the writers must loop over);
 *   IS_FAULT_LOG=FILE       on exit, write there a JSON list with the file each call wrote or
 *                           synced (from /proc/self/fd), in call order: the points a run offers;
 *   IS_FAULT_KILLED=FILE    before the kill, write there the file the fatal call was writing.
 */
import * as fs from "node:fs";
import { setFileOpsForTesting } from "../../lib/io/atomic";

const killAt = Number(process.env.IS_FAULT_KILL_AT ?? "0");
const shortMax = Number(process.env.IS_FAULT_SHORT_MAX ?? "0");
const logFile = process.env.IS_FAULT_LOG;
const calls: string[] = [];
let n = 0;

function target(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return `fd ${fd}`;
  }
}

function point(fd: number): boolean {
  n++;
  if (logFile) calls.push(target(fd));
  if (killAt > 0 && n === killAt) {
    if (process.env.IS_FAULT_KILLED) fs.writeFileSync(process.env.IS_FAULT_KILLED, target(fd));
    return true;
  }
  return false;
}

function die(): never {
  process.kill(process.pid, "SIGKILL");
  for (;;) {
    // SIGKILL to oneself is delivered before kill() returns; never reached
  }
}

setFileOpsForTesting({
  writeSync(fd, buffer, offset, length, position) {
    const len = shortMax > 0 ? Math.min(length, shortMax) : length;
    if (point(fd)) {
      const half = Math.floor(len / 2);
      if (half > 0) fs.writeSync(fd, buffer, offset, half, position);
      die();
    }
    return fs.writeSync(fd, buffer, offset, len, position);
  },
  fsyncSync(fd) {
    if (point(fd)) die();
    fs.fsyncSync(fd);
  },
});

if (logFile) process.on("exit", () => fs.writeFileSync(logFile, JSON.stringify(calls)));
