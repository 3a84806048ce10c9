/**
 * Injected write primitives for lib/io/atomic.ts (setFileOpsForTesting): short writes and a disk
 * that fills up. Shared by tests/io-full-writes.test.ts and tests/fault-injection.test.ts.
 */
import * as fs from "node:fs";
import { setFileOpsForTesting, type FileOps } from "../../lib/io/atomic";

export function errnoError(code: "ENOSPC" | "EIO"): NodeJS.ErrnoException {
  const text = code === "ENOSPC" ? "no space left on device" : "i/o error";
  const e = new Error(`${code}: ${text}, write`) as NodeJS.ErrnoException;
  e.code = code;
  e.errno = code === "ENOSPC" ? -28 : -5;
  e.syscall = "write";
  return e;
}

export interface Shim {
  ops: Partial<FileOps>;
  /** write calls made so far */
  calls: number;
}

/** Every write writes (really) at most `max` bytes and returns that count. */
export function shortWrites(max: number): Shim {
  const s: Shim = {
    calls: 0,
    ops: {
      writeSync: (fd, buf, off, len, pos) => {
        s.calls++;
        return fs.writeSync(fd, buf, off, Math.min(len, max), pos);
      },
    },
  };
  return s;
}

/**
 * Like a disk with `budget` bytes free: writes succeed (short when the budget runs out partway, as
 * the kernel does) until the budget is spent; the next write throws `code`.
 */
export function failAfter(budget: number, code: "ENOSPC" | "EIO"): Shim {
  let left = budget;
  const s: Shim = {
    calls: 0,
    ops: {
      writeSync: (fd, buf, off, len, pos) => {
        s.calls++;
        if (left <= 0) throw errnoError(code);
        const n = fs.writeSync(fd, buf, off, Math.min(len, left), pos);
        left -= n;
        return n;
      },
    },
  };
  return s;
}

export function withShim<T>(shim: Shim, fn: () => T): T {
  const restore = setFileOpsForTesting(shim.ops);
  try {
    return fn();
  } finally {
    restore();
  }
}

export async function withShimAsync<T>(shim: Shim, fn: () => Promise<T>): Promise<T> {
  const restore = setFileOpsForTesting(shim.ops);
  try {
    return await fn();
  } finally {
    restore();
  }
}
