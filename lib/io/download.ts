/**
 * Resumable HTTP(S) downloads for model files.
 *
 * The body streams into `<dest>.part`; an interrupted download keeps the partial file, and the
 * next attempt (automatic retries, or a later call) asks only for the rest with an HTTP Range
 * request. When the whole file is there it is fsynced, checked against its expected hash, and
 * renamed onto `dest` atomically, so `dest` is never a partial or unverified file.
 * The expected hash is a sha256, or a git blob id (sha1 of "blob <size>\0" + content, what the
 * Hugging Face hub publishes for files not stored in LFS). A download without either is refused
 * before any request unless the caller passes `trustUnverified: true` (the CLIs' --trust-unverified).
 * A checksum mismatch deletes the bad file and throws naming the file and both hashes; a 404
 * throws naming the URL.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { createHash } from "node:crypto";
import { fsyncDirSync, fsyncFileSync, writeAllSync } from "./atomic";
import { progress, Progress } from "../display/progress";

export class DownloadError extends Error {
  readonly url: string;
  readonly status?: number;
  constructor(message: string, url: string, status?: number) {
    super(message);
    this.name = "DownloadError";
    this.url = url;
    this.status = status;
  }
}

/** A download refused because no checksum is known for it and trustUnverified was not given. */
export class UnverifiedDownloadError extends DownloadError {
  constructor(message: string, url: string) {
    super(message, url);
    this.name = "UnverifiedDownloadError";
  }
}

/** What to tell the user when a download cannot be verified (one line; the CLIs print line 1). */
export const TRUST_UNVERIFIED_HINT =
  "pass --trust-unverified (CLI: `npm run lm -- pull NAME --trust-unverified`, after which every command uses " +
  "the cached files) " +
  "or trustUnverified: true (API) to download it without checksum verification";

export interface DownloadOptions {
  /** Expected sha256 (hex). */
  sha256?: string | null;
  /** Expected git blob id (hex sha1 of "blob <size>\0" + content), used when no sha256 is known. */
  gitSha1?: string | null;
  /**
   * Download even when neither sha256 nor gitSha1 is given (the file is then not verified).
   * Without it such a download is refused with an UnverifiedDownloadError before any request.
   */
  trustUnverified?: boolean;
  /** What is being downloaded, for messages (e.g. "stories260K: tok512.bin"). */
  label?: string;
  /** Automatic resume attempts after an interrupted transfer (default 3). */
  retries?: number;
  /** No progress output. */
  quiet?: boolean;
  /** Called with bytes on disk so far and the total size (null when the server did not say). */
  onProgress?: (done: number, total: number | null) => void;
  /** Abort when no data arrives for this long (default 60 s). */
  stallTimeoutMs?: number;
  /** Extra request headers. */
  headers?: Record<string, string>;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** How the file was checked: against a sha256, a git blob id, or not at all (trustUnverified). */
  verified: "sha256" | "git-sha1" | "unverified";
  /** Number of requests that resumed a partial file with a Range request. */
  resumedRequests: number;
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/**
 * Progress for one file: lib/display's progress bar (notebook output, TTY bar, or plain lines)
 * when the size is known, else a stderr line every 5 s.
 */
function fileProgress(label: string): (done: number, total: number | null, final?: boolean) => void {
  let bar: Progress | null = null;
  let barTotal = -1;
  let lastLine = 0;
  const t0 = Date.now();
  return (done, total, final = false) => {
    if (total !== null) {
      if (!bar || barTotal !== total) {
        bar = progress({ total, label });
        barTotal = total;
      }
      const extra = `${fmtBytes(done)} / ${fmtBytes(total)}`;
      if (final) bar.done(extra);
      else bar.update(done, extra);
      return;
    }
    const now = Date.now();
    if (final || now - lastLine > 5000) {
      const rate = done / Math.max(1e-3, (now - t0) / 1000);
      process.stderr.write(`${label}: ${fmtBytes(done)} (${fmtBytes(rate)}/s)${final ? " done" : ""}\n`);
      lastLine = now;
    }
  };
}

/** sha256 and git blob id (sha1 of "blob <size>\0" + content) of a file, in one streamed pass. */
export async function hashFile(file: string): Promise<{ sha256: string; gitSha1: string; bytes: number }> {
  const bytes = fs.statSync(file).size;
  const sha256 = createHash("sha256");
  const sha1 = createHash("sha1").update(`blob ${bytes}\0`);
  await new Promise<void>((resolve, reject) => {
    fs.createReadStream(file)
      .on("data", (d) => {
        sha256.update(d);
        sha1.update(d);
      })
      .on("end", () => resolve())
      .on("error", reject);
  });
  return { sha256: sha256.digest("hex"), gitSha1: sha1.digest("hex"), bytes };
}

type Attempt = { kind: "done" } | { kind: "retry"; reason: string };

/**
 * Download `url` to `dest` (see the module comment). Resumes from `<dest>.part` if present.
 * Throws DownloadError on HTTP errors (naming the URL and status), on repeated interruptions
 * (the partial file is kept for the next call), and on checksum mismatch (the file is deleted);
 * UnverifiedDownloadError when no checksum is given and trustUnverified is not set.
 * A failed write to the .part (disk full, I/O error) is not retried: it throws the WriteError from
 * lib/io/atomic.ts naming the .part, which is kept (its bytes are all correct) so that a later call
 * resumes once there is space; `dest` only ever appears complete.
 */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<DownloadResult> {
  const label = opts.label ?? path.basename(dest);
  const expectSha256 = opts.sha256 ? opts.sha256.toLowerCase() : null;
  const expectGitSha1 = !expectSha256 && opts.gitSha1 ? opts.gitSha1.toLowerCase() : null;
  if (!expectSha256 && !expectGitSha1 && !opts.trustUnverified) {
    throw new UnverifiedDownloadError(
      `${label}: no checksum is known for ${url}, so the download cannot be verified and was refused; ` +
        `${TRUST_UNVERIFIED_HINT}`,
      url,
    );
  }
  const part = dest + ".part";
  const retries = opts.retries ?? 3;
  const draw = opts.quiet ? null : fileProgress(label);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  let resumedRequests = 0;
  let lastReason = "";

  const attempt = async (): Promise<Attempt> => {
    const have = fs.existsSync(part) ? fs.statSync(part).size : 0;
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (have > 0) headers.Range = `bytes=${have}-`;
    const controller = new AbortController();
    const stallMs = opts.stallTimeoutMs ?? 60_000;
    let timer = setTimeout(() => controller.abort(), stallMs);
    const bump = () => {
      clearTimeout(timer);
      timer = setTimeout(() => controller.abort(), stallMs);
    };
    let res: Response;
    try {
      res = await fetch(url, { headers, redirect: "follow", signal: controller.signal });
    } catch (e) {
      clearTimeout(timer);
      return {
        kind: "retry",
        reason:
          `request failed: ${(e as Error).message}` +
          `${(e as { cause?: Error }).cause ? ` (${(e as { cause: Error }).cause.message})` : ""}`,
      };
    }
    try {
      if (res.status === 404) throw new DownloadError(`${label}: not found (HTTP 404) at ${url}`, url, 404);
      if (res.status === 401 || res.status === 403) {
        throw new DownloadError(
          `${label}: access denied (HTTP ${res.status}) at ${url}; the repository may be gated or private`,
          url,
          res.status,
        );
      }
      if (res.status === 416 && have > 0) {
        // Range not satisfiable: the .part is complete already, or longer than the file.
        const m = /bytes \*\/(\d+)/.exec(res.headers.get("content-range") ?? "");
        if (m && Number(m[1]) === have) return { kind: "done" };
        fs.rmSync(part, { force: true });
        return { kind: "retry", reason: `server rejected resuming at byte ${have}; starting over` };
      }
      if (res.status >= 500 || res.status === 429) return { kind: "retry", reason: `HTTP ${res.status}` };
      if (res.status !== 200 && res.status !== 206)
        throw new DownloadError(`${label}: HTTP ${res.status} ${res.statusText} at ${url}`, url, res.status);
      if (!res.body) throw new DownloadError(`${label}: empty response body from ${url}`, url, res.status);

      let start = 0;
      let total: number | null = null;
      if (res.status === 206) {
        const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(res.headers.get("content-range") ?? "");
        if (!m || Number(m[1]) !== have) {
          fs.rmSync(part, { force: true });
          return {
            kind: "retry",
            reason:
              "server answered the range request with an unexpected range " +
              `${JSON.stringify(res.headers.get("content-range"))}; ` +
              `starting over`,
          };
        }
        start = have;
        total = m[3] === "*" ? null : Number(m[3]);
        resumedRequests++;
      } else {
        // 200: a full body (either no .part, or the server ignores ranges): start from zero.
        const len = res.headers.get("content-length");
        total = len !== null && /^\d+$/.test(len) ? Number(len) : null;
      }
      const fd = fs.openSync(part, start > 0 ? "r+" : "w");
      let done = start;
      try {
        if (start > 0) fs.ftruncateSync(fd, start);
        const reader = res.body.getReader();
        for (;;) {
          let chunk: { done: boolean; value?: Uint8Array };
          try {
            chunk = await reader.read();
          } catch (e) {
            const cause = (e as { cause?: Error }).cause;
            return {
              kind: "retry",
              reason:
                `connection lost after ${fmtBytes(done)}${total ? ` of ${fmtBytes(total)}` : ""} ` +
                `(${(e as Error).message}${cause ? `: ${cause.message}` : ""})`,
            };
          }
          if (chunk.done || !chunk.value) break;
          const bytes = chunk.value;
          bump();
          // loops over short writes; ENOSPC/EIO throw a WriteError naming the .part
          writeAllSync(fd, bytes, part, done);
          done += bytes.length;
          opts.onProgress?.(done, total);
          draw?.(done, total);
        }
        fsyncFileSync(fd, part);
      } finally {
        fs.closeSync(fd);
      }
      if (total !== null && done !== total)
        return { kind: "retry", reason: `transfer ended at ${done} of ${total} bytes` };
      draw?.(done, total, true);
      return { kind: "done" };
    } finally {
      clearTimeout(timer);
    }
  };

  for (let i = 0; ; i++) {
    const r = await attempt();
    if (r.kind === "done") break;
    lastReason = r.reason;
    if (i >= retries) {
      const size = fs.existsSync(part) ? fs.statSync(part).size : 0;
      throw new DownloadError(
        `${label}: download from ${url} failed: ${lastReason}.` +
          (size > 0 ? ` ${fmtBytes(size)} kept in ${part}; run again to resume.` : ""),
        url,
      );
    }
    if (!opts.quiet) process.stderr.write(`${label}: ${r.reason}; retrying (${i + 1}/${retries})\n`);
  }

  const got = await hashFile(part);
  const [kind, expected, actual] = expectSha256
    ? ["sha256", expectSha256, got.sha256]
    : ["git blob sha1", expectGitSha1, got.gitSha1];
  if (expected && actual !== expected) {
    fs.rmSync(part, { force: true });
    throw new DownloadError(
      `${label}: ${kind} mismatch for ${url}: expected ${expected}, got ${actual}; the corrupted download was deleted`,
      url,
    );
  }
  fs.renameSync(part, dest);
  fsyncDirSync(path.dirname(dest));
  const verified = expectSha256 ? "sha256" : expectGitSha1 ? "git-sha1" : "unverified";
  return { path: dest, bytes: got.bytes, sha256: got.sha256, verified, resumedRequests };
}
