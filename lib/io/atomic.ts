/**
 * File writes that are complete or absent: the one owner of write/fsync/rename logic in the project.
 *
 * `fs.writeSync` may write fewer bytes than asked (a full disk, a quota, a signal); it reports how
 * many it did write and, on the next call, the error (ENOSPC, EDQUOT, EIO). Every writer here loops
 * until the whole buffer is written (`writeAllSync`), and the atomic writers go further:
 *
 *   1. write to a temporary name in the target's directory (`.NAME.PID.RAND.tmp`),
 *   2. fsync the file, close it (a close error counts as a failed write),
 *   3. rename it over the target, then fsync the directory so the rename itself is durable.
 *
 * Any failure before the rename removes the temporary file and throws a `WriteError` that names
 * the target path and keeps the errno `code`; the target is then untouched (absent, or its
 * previous content). A reader never sees a half-written file, and a crash leaves the previous
 * version intact.
 *
 * Tests swap the write and fsync primitives with `setFileOpsForTesting` to simulate short writes,
 * ENOSPC and EIO (tests/io-full-writes.test.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";

/** The primitives the writers call; replaceable in tests. */
export interface FileOps {
  /** Like fs.writeSync(fd, buffer, offset, length, position): returns the number of bytes written. */
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number | null): number;
  fsyncSync(fd: number): void;
}

const realOps: FileOps = {
  writeSync: (fd, buffer, offset, length, position) => fs.writeSync(fd, buffer, offset, length, position),
  fsyncSync: (fd) => fs.fsyncSync(fd),
};
let ops: FileOps = realOps;

/** Replace some of the write primitives (tests only). Returns a function that restores the previous ones. */
export function setFileOpsForTesting(replacement: Partial<FileOps>): () => void {
  const previous = ops;
  ops = { ...previous, ...replacement };
  return () => {
    ops = previous;
  };
}

/** A failed write: `path` is the file the caller asked for, `code` the errno code (ENOSPC, EIO, ...) when there was
 * one. */
export class WriteError extends Error {
  readonly path: string;
  readonly code: string | undefined;
  constructor(message: string, file: string, code: string | undefined, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "WriteError";
    this.path = file;
    this.code = code;
  }
}

function errCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === "string" ? c : undefined;
}

const HINTS: Record<string, string> = {
  ENOSPC: "the disk is full",
  EDQUOT: "the disk quota is exhausted",
  EIO: "an I/O error",
  EFBIG: "the file is too large for this file system",
};

function explain(e: unknown): string {
  const code = errCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  return code && HINTS[code] ? `${HINTS[code]} (${msg})` : msg;
}

/** Wrap any error as a WriteError naming `file` (an error that already is one passes through). */
function asWriteError(e: unknown, file: string, what: string): WriteError {
  if (e instanceof WriteError) return e;
  return new WriteError(`${what} ${file} failed: ${explain(e)}`, file, errCode(e), e);
}

interface Progress {
  /** The path named in errors. */
  file: string;
  written: number;
  /** NaN when unknown (a streamed write). */
  total: number;
}

/** The loop: write data[0..] at `position` (null: the current file position), retrying short writes. */
function writeLoop(fd: number, data: Uint8Array, position: number | null, p: Progress): void {
  let off = 0;
  while (off < data.length) {
    const want = data.length - off;
    let n: number;
    try {
      n = ops.writeSync(fd, data, off, want, position === null ? null : position + off);
    } catch (e) {
      throw new WriteError(
        `writing ${p.file} failed after ${p.written} of ${Number.isFinite(p.total) ? p.total : "(streamed)"} bytes: ` +
          `${explain(e)}`,
        p.file,
        errCode(e),
        e,
      );
    }
    if (!Number.isInteger(n) || n <= 0 || n > want) {
      throw new WriteError(
        `writing ${p.file} failed after ${p.written} of ${Number.isFinite(p.total) ? p.total : "(streamed)"} bytes: ` +
          `the write of ${want} bytes returned ${n}`,
        p.file,
        undefined,
      );
    }
    off += n;
    p.written += n;
  }
}

/**
 * Write all of `data` to `fd`, looping over short writes. `position`: where in the file (omitted:
 * the current position, which advances). Errors are WriteErrors naming `file`.
 */
export function writeAllSync(fd: number, data: Uint8Array, file: string, position?: number): void {
  writeLoop(fd, data, position ?? null, { file, written: 0, total: data.length });
}

/** fsync an open file; errors are WriteErrors naming `file`. */
export function fsyncFileSync(fd: number, file: string): void {
  try {
    ops.fsyncSync(fd);
  } catch (e) {
    throw asWriteError(e, file, "fsync of");
  }
}

/** Errors from fsync on a directory that mean "not supported here" (Windows, some file systems), not "failed". */
const DIR_FSYNC_UNSUPPORTED = new Set(["EISDIR", "EINVAL", "EPERM", "EACCES", "ENOTSUP", "EBADF"]);

/** fsync a directory, so that a rename or a new entry in it survives a crash. No-op where unsupported. */
export function fsyncDirSync(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, "r");
  } catch (e) {
    if (DIR_FSYNC_UNSUPPORTED.has(errCode(e) ?? "")) return;
    throw asWriteError(e, dir, "opening directory");
  }
  try {
    ops.fsyncSync(fd);
  } catch (e) {
    if (!DIR_FSYNC_UNSUPPORTED.has(errCode(e) ?? "")) throw asWriteError(e, dir, "fsync of directory");
  } finally {
    fs.closeSync(fd);
  }
}

function tempName(target: string): string {
  const rand = Math.random().toString(36).slice(2, 10);
  return path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${rand}.tmp`);
}

/**
 * Write several buffers (e.g. a header then tensor data) as one file, atomically: complete at
 * `target`, or (on any error) `target` untouched, no temporary file left, and a WriteError
 * naming `target`. `chunks` may be a generator (a multi-GB file streamed block by block, never
 * held whole in memory); an error it throws aborts the write like a failed write does.
 * `totalBytes` (for error messages) defaults to the sum of an array's chunk lengths.
 */
export function writeChunksAtomic(target: string, chunks: Iterable<Uint8Array>, totalBytes?: number): void {
  const dir = path.dirname(target);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = tempName(target);
  const total =
    totalBytes ?? (Array.isArray(chunks) ? chunks.reduce((s: number, c: Uint8Array) => s + c.length, 0) : NaN);
  const p: Progress = { file: target, written: 0, total };
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, "wx");
    for (const c of chunks) writeLoop(fd, c, null, p);
    fsyncFileSync(fd, target);
    const f = fd;
    fd = null;
    fs.closeSync(f);
    fs.renameSync(tmp, target);
  } catch (e) {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        // already failing; the first error is the one to report
      }
    }
    try {
      fs.rmSync(tmp, { force: true });
    } catch {
      // best effort: the error below names the target
    }
    throw asWriteError(e, target, "writing");
  }
  fsyncDirSync(dir);
}

/**
 * Create or replace the directory `dir` as a whole: `fill(tmp)` writes the new content into a
 * temporary sibling directory, which is then renamed into place (the old directory, if any, is
 * moved aside first and removed only after the swap). A crash or an error in `fill` leaves the
 * previous directory (or none) and no temporary directory behind.
 */
export function replaceDirAtomic(dir: string, fill: (tmp: string) => void): void {
  const parent = path.dirname(path.resolve(dir));
  fs.mkdirSync(parent, { recursive: true });
  const tmp = path.join(parent, `.${path.basename(dir)}.${process.pid}.${Date.now()}.tmp`);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp);
  try {
    fill(tmp);
    const old = fs.existsSync(dir) ? `${tmp}.old` : null;
    if (old) fs.renameSync(dir, old);
    fs.renameSync(tmp, dir);
    fsyncDirSync(parent); // the swap itself survives a crash
    if (old) fs.rmSync(old, { recursive: true, force: true });
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Write a string (UTF-8) or bytes to `target` atomically (see writeChunksAtomic). */
export function writeFileAtomic(target: string, data: string | Uint8Array): void {
  writeChunksAtomic(target, [typeof data === "string" ? Buffer.from(data, "utf8") : data]);
}

export function writeJsonAtomic(target: string, value: unknown): void {
  writeFileAtomic(target, JSON.stringify(value, null, 2) + "\n");
}

/** sha256 of a file, streamed (works for multi-GB checkpoints). */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  await new Promise<void>((resolve, reject) => {
    fs.createReadStream(file)
      .on("data", (d) => hash.update(d))
      .on("end", () => resolve())
      .on("error", reject);
  });
  return hash.digest("hex");
}

export function sha256Bytes(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}
