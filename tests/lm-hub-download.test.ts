/**
 * Model registry + resumable, verified downloads against a LOCAL HTTP server on 127.0.0.1 that
 * serves the ../shared files under hub-style URLs (/<repo>/resolve/main/<file>) with Range support,
 * and the hub API's file listing (/api/models/<repo>/tree/main: git blob ids, LFS sha256) built
 * from the genuine files, so tampered bodies can be served against a correct listing.
 * Nothing here reaches the internet: every URL is built from the local server's base URL.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { createHash } from "node:crypto";
import { spawn } from "node:child_process";
import { initBackend } from "../lib/backend";
import { repoRoot, sharedDir } from "../lib/paths";
import { sha256File } from "../lib/io/atomic";
import { downloadFile, DownloadError, TRUST_UNVERIFIED_HINT, UnverifiedDownloadError } from "../lib/io/download";
import { MODEL_REGISTRY, pullModel, resolveModel } from "../lib/lm/hub";
import { readLlama2c } from "../lib/lm/llama2c";
import { exportHf } from "../lib/lm/export-hf";
import { loadHfCheckpoint } from "../lib/lm/hf";
import { loadHfTokenizer } from "../lib/lm/tokenizer-hf";

const SHA_BIN = MODEL_REGISTRY.stories260K.files![0].sha256!;
const binPath = sharedDir("models", "stories260K", "stories260K.bin");
const tokPath = sharedDir("models", "stories260K", "tok512.bin");
const BIN_URL_PATH = "/karpathy/tinyllamas/resolve/main/stories260K/stories260K.bin";
const TOK_URL_PATH = "/karpathy/tinyllamas/resolve/main/stories260K/tok512.bin";

interface Route {
  /** File to serve (read at request time) or bytes. */
  file?: string;
  bytes?: Buffer;
  /** Destroy the connection after this many body bytes, for the next `killTimes` requests. */
  killAfter?: number;
  killTimes?: number;
  /** Answer 200 with the full body even when a Range is requested. */
  ignoreRange?: boolean;
  /** The genuine content the API listing describes (default: what is served). */
  listAs?: Buffer;
  /** List as an LFS file (sha256 in lfs.oid); default for .safetensors and .bin files. */
  lfs?: boolean;
  /** List the file without any hash (neither oid nor lfs). */
  noHash?: boolean;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gitSha1 = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

class HubServer {
  readonly routes = new Map<string, Route>();
  readonly log: { path: string; range: string | null; status: number }[] = [];
  private server!: http.Server;
  baseUrl = "";
  /** Repositories whose API listing answers 404 (a mirror without the API). */
  readonly noApi = new Set<string>();
  /** Entries per listing page (0: one page); pages are linked with `Link: <…>; rel="next"`. */
  pageSize = 0;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  requests(p: string): { range: string | null; status: number }[] {
    return this.log.filter((r) => r.path === p);
  }

  /** The hub's GET /api/models/<repo>/tree/main?recursive=true for the routes under the repo. */
  private listing(repo: string, query: URLSearchParams, res: http.ServerResponse): number {
    const prefix = `/${repo}/resolve/main/`;
    const files = [...this.routes.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => a.localeCompare(b));
    if (this.noApi.has(repo) || files.length === 0) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: "Repository not found" }));
      return 404;
    }
    const entries = files.map(([k, r]) => {
      const body = r.listAs ?? r.bytes ?? fs.readFileSync(r.file!);
      const file = k.slice(prefix.length);
      if (r.noHash) return { type: "file", path: file, size: body.length };
      if (r.lfs ?? /\.(safetensors|bin)$/.test(file)) {
        const pointer = Buffer.from(
          `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(body)}\nsize ${body.length}\n`,
        );
        return {
          type: "file",
          oid: gitSha1(pointer),
          size: body.length,
          path: file,
          lfs: { oid: sha256(body), size: body.length, pointerSize: pointer.length },
        };
      }
      return { type: "file", oid: gitSha1(body), size: body.length, path: file };
    });
    const start = Number(query.get("cursor") ?? 0);
    const end = this.pageSize > 0 ? Math.min(entries.length, start + this.pageSize) : entries.length;
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (end < entries.length)
      headers.link = `<${this.baseUrl}/api/models/${repo}/tree/main?recursive=true&cursor=${end}>; rel="next"`;
    res.writeHead(200, headers).end(JSON.stringify(entries.slice(start, end)));
    return 200;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const [rawPath, rawQuery] = (req.url ?? "/").split("?");
    const p = decodeURIComponent(rawPath);
    const range = (req.headers.range as string | undefined) ?? null;
    const api = /^\/api\/models\/(.+)\/tree\/main$/.exec(p);
    if (api) {
      const entry = { path: p, range, status: 0 };
      this.log.push(entry);
      entry.status = this.listing(api[1], new URLSearchParams(rawQuery ?? ""), res);
      return;
    }
    const route = this.routes.get(p);
    const body = route ? (route.bytes ?? fs.readFileSync(route.file!)) : null;
    const entry = { path: p, range, status: 0 };
    this.log.push(entry);
    if (!route || !body) {
      entry.status = 404;
      res.writeHead(404, { "content-type": "text/plain" }).end("Entry not found");
      return;
    }
    let start = 0;
    const m = range && !route.ignoreRange ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      if (start >= body.length) {
        entry.status = 416;
        res.writeHead(416, { "content-range": `bytes */${body.length}` }).end();
        return;
      }
      entry.status = 206;
      res.writeHead(206, {
        "content-length": String(body.length - start),
        "content-range": `bytes ${start}-${body.length - 1}/${body.length}`,
        "accept-ranges": "bytes",
      });
    } else {
      entry.status = 200;
      res.writeHead(200, { "content-length": String(body.length), "accept-ranges": "bytes" });
    }
    const rest = body.subarray(start);
    if (route.killAfter !== undefined && (route.killTimes ?? 1) > 0) {
      route.killTimes = (route.killTimes ?? 1) - 1;
      // send part of the body, let it reach the client, then cut the connection
      res.write(rest.subarray(0, route.killAfter), () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    res.end(rest);
  }
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-hub-"));
const emptyShared = path.join(tmp, "no-shared");
fs.mkdirSync(emptyShared);
let n = 0;
const freshCache = () => path.join(tmp, `cache${n++}`);
/** Files (recursively, relative) under a directory; [] when it does not exist. */
/** What pullModel fetches from an HF repository made by exportedHf() (it skips generation_config.json etc.). */
const HF_FETCHED = [
  "config.json",
  "model-00001-of-00002.safetensors",
  "model-00002-of-00002.safetensors",
  "model.safetensors.index.json",
  "tokenizer.json",
  "tokenizer_config.json",
];
const filesIn = (dir: string): string[] =>
  fs.existsSync(dir)
    ? (fs.readdirSync(dir, { recursive: true }) as string[])
        .filter((f) => fs.statSync(path.join(dir, f)).isFile())
        .sort()
    : [];
let exportedDir: string | null = null;
/** stories260K exported as a 2-shard Hugging Face checkpoint (made once). */
async function exportedHf(): Promise<string> {
  if (!exportedDir) {
    exportedDir = path.join(tmp, "hf-export");
    await exportHf(readLlama2c(binPath, "stories260K"), tokPath, exportedDir, { shards: 2 });
  }
  return exportedDir;
}

describe("model hub: registry, resolution and resumable downloads (local server)", () => {
  const hub = new HubServer();

  before(async () => {
    await initBackend();
    await hub.start();
  });
  after(async () => {
    await hub.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Serve every file of a local HF directory under a hub repository. */
  const serveRepo = (repo: string, dir: string) => {
    for (const f of fs.readdirSync(dir)) hub.routes.set(`/${repo}/resolve/main/${f}`, { file: path.join(dir, f) });
  };

  const serveStories = () => {
    hub.routes.set(BIN_URL_PATH, { file: binPath });
    hub.routes.set(TOK_URL_PATH, { file: tokPath });
  };

  it("downloads a registry model (sha256 verified), then resolves it from the cache", async () => {
    serveStories();
    const cacheDir = freshCache();
    const opts = { baseUrl: hub.baseUrl, cacheDir, sharedModelsDir: emptyShared, quiet: true };
    const r = await resolveModel("stories260K", opts);
    assert.equal(r.kind, "llama2c");
    assert.equal(r.source, "download");
    assert.equal(r.dir, path.join(cacheDir, "stories260K"));
    assert.equal(await sha256File(r.weightsPath), SHA_BIN);
    assert.equal(await sha256File(r.tokenizerPath), MODEL_REGISTRY.stories260K.files![1].sha256);
    assert.deepEqual(fs.readdirSync(r.dir).sort(), ["stories260K.bin", "tok512.bin"]); // no .part left
    assert.equal(hub.requests(BIN_URL_PATH).length, 1);
    assert.equal(hub.requests(BIN_URL_PATH)[0].range, null);
    readLlama2c(r.weightsPath); // a loadable checkpoint

    const before = hub.log.length;
    const again = await resolveModel("stories260K", opts);
    assert.equal(again.source, "cache");
    assert.equal(hub.log.length, before, "no request when cached");
  });

  it("resolves paths, the shared folder, and refuses unknown names / offline misses clearly", async () => {
    const shared = await resolveModel("stories260K", { cacheDir: freshCache(), offline: true });
    assert.equal(shared.source, "shared");
    assert.equal(shared.weightsPath, binPath);
    assert.equal(shared.tokenizerPath, tokPath);
    const p = await resolveModel(binPath);
    assert.equal(p.source, "path");
    assert.equal(p.kind, "llama2c");
    assert.equal(p.tokenizerPath, tokPath);
    const d = await resolveModel(path.dirname(binPath));
    assert.equal(d.weightsPath, binPath);
    await assert.rejects(
      resolveModel("stories15M", { cacheDir: freshCache(), sharedModelsDir: emptyShared, offline: true }),
      /"stories15M" is not available offline/,
    );
    await assert.rejects(
      resolveModel("no-such-model", { offline: true }),
      /model "no-such-model" not found.*not in the registry/,
    );
  });

  it("resumes a download killed midway with a Range request", async () => {
    const total = fs.statSync(binPath).size;
    const killAt = 300_000;
    hub.routes.set(BIN_URL_PATH, { file: binPath, killAfter: killAt, killTimes: 1 });
    const dest = path.join(freshCache(), "stories260K.bin");
    const url = hub.baseUrl + BIN_URL_PATH;
    const first = hub.log.length;
    await assert.rejects(
      downloadFile(url, dest, { sha256: SHA_BIN, retries: 0, quiet: true, label: "stories260K.bin" }),
      (e: Error) =>
        e instanceof DownloadError &&
        /connection lost|transfer ended/.test(e.message) &&
        /run again to resume/.test(e.message),
    );
    assert.ok(!fs.existsSync(dest), "no final file after an interrupted download");
    const partial = fs.statSync(dest + ".part").size;
    assert.ok(partial > 0 && partial < total, `partial size ${partial}`);

    const res = await downloadFile(url, dest, { sha256: SHA_BIN, retries: 0, quiet: true });
    const reqs = hub.log.slice(first).filter((r) => r.path === BIN_URL_PATH);
    assert.equal(reqs.length, 2);
    assert.equal(reqs[0].range, null);
    assert.equal(reqs[1].range, `bytes=${partial}-`);
    assert.equal(reqs[1].status, 206);
    assert.equal(res.resumedRequests, 1);
    assert.equal(res.sha256, SHA_BIN);
    assert.equal(await sha256File(dest), SHA_BIN);
    assert.ok(!fs.existsSync(dest + ".part"));
  });

  it(
    "retries automatically within one call (twice interrupted), " + "and restarts when the server ignores Range",
    async () => {
      hub.routes.set(BIN_URL_PATH, { file: binPath, killAfter: 200_000, killTimes: 2 });
      hub.routes.set(TOK_URL_PATH, { file: tokPath });
      const cacheDir = freshCache();
      const first = hub.log.length;
      const r = await pullModel("stories260K", { baseUrl: hub.baseUrl, cacheDir, quiet: true, retries: 3 });
      assert.equal(await sha256File(r.weightsPath), SHA_BIN);
      const ranges = hub.log
        .slice(first)
        .filter((x) => x.path === BIN_URL_PATH)
        .map((x) => x.range);
      assert.equal(ranges.length, 3);
      assert.equal(ranges[0], null);
      assert.match(ranges[1]!, /^bytes=\d+-$/);
      assert.match(ranges[2]!, /^bytes=\d+-$/);
      assert.ok(Number(/\d+/.exec(ranges[2]!)![0]) > Number(/\d+/.exec(ranges[1]!)![0]));

      // a server without Range support: the .part is discarded and the full file fetched again
      hub.routes.set(BIN_URL_PATH, { file: binPath, killAfter: 100_000, killTimes: 1, ignoreRange: true });
      const dest = path.join(freshCache(), "x.bin");
      const res = await downloadFile(hub.baseUrl + BIN_URL_PATH, dest, { sha256: SHA_BIN, retries: 2, quiet: true });
      assert.equal(res.sha256, SHA_BIN);
      assert.equal(res.resumedRequests, 0);
    },
  );

  it("rejects a corrupted file by checksum and deletes it", async () => {
    const bad = Buffer.from(fs.readFileSync(tokPath));
    bad[bad.length >> 1] ^= 0xff;
    hub.routes.set(BIN_URL_PATH, { file: binPath });
    hub.routes.set(TOK_URL_PATH, { bytes: bad });
    const cacheDir = freshCache();
    await assert.rejects(
      resolveModel("stories260K", { baseUrl: hub.baseUrl, cacheDir, sharedModelsDir: emptyShared, quiet: true }),
      (e: Error) =>
        /tok512\.bin: sha256 mismatch/.test(e.message) &&
        e.message.includes(MODEL_REGISTRY.stories260K.files![1].sha256!) &&
        /deleted/.test(e.message),
    );
    const dir = path.join(cacheDir, "stories260K");
    assert.ok(!fs.existsSync(path.join(dir, "tok512.bin")));
    assert.ok(!fs.existsSync(path.join(dir, "tok512.bin.part")));
    // a corrupted cached file is detected by pull and replaced
    hub.routes.set(TOK_URL_PATH, { file: tokPath });
    fs.writeFileSync(path.join(dir, "tok512.bin"), bad);
    const r = await pullModel("stories260K", { baseUrl: hub.baseUrl, cacheDir, quiet: true });
    assert.equal(await sha256File(r.tokenizerPath), MODEL_REGISTRY.stories260K.files![1].sha256);
  });

  it("a 404 gives a clear error naming the URL and the model", async () => {
    hub.routes.delete(BIN_URL_PATH);
    hub.routes.set(TOK_URL_PATH, { file: tokPath });
    await assert.rejects(
      resolveModel("stories260K", {
        baseUrl: hub.baseUrl,
        cacheDir: freshCache(),
        sharedModelsDir: emptyShared,
        quiet: true,
      }),
      (e: Error) =>
        e.message === `model "stories260K": stories260K.bin not found at ${hub.baseUrl}${BIN_URL_PATH} (HTTP 404)`,
    );
    // an unknown hub repository: no file listing, so nothing can be verified (and nothing is fetched)
    await assert.rejects(
      pullModel("nobody/nothing", { baseUrl: hub.baseUrl, cacheDir: freshCache(), quiet: true }),
      (e: Error) =>
        e instanceof UnverifiedDownloadError &&
        e.message.startsWith(
          `model "nobody/nothing": the hub's file listing ` +
            `${hub.baseUrl}/api/models/nobody/nothing/tree/main?recursive=true`,
        ) &&
        /HTTP 404: is "nobody\/nothing" a Hugging Face model repository\?/.test(e.message) &&
        /--trust-unverified/.test(e.message),
    );
    assert.equal(hub.requests("/nobody/nothing/resolve/main/config.json").length, 0);
    await assert.rejects(
      pullModel("nobody/nothing", { baseUrl: hub.baseUrl, cacheDir: freshCache(), quiet: true, trustUnverified: true }),
      new RegExp(
        `model "nobody/nothing": config\\.json not found at ${hub.baseUrl}/nobody/nothing/resolve/main/config\\.json ` +
          `\\(HTTP 404\\)`,
      ),
    );
  });

  it(
    "downloads a generic org/name LLaMA repo " +
      "(config.json + safetensors + tokenizer.json, verified against a paged listing) and loads it",
    async () => {
      const exported = await exportedHf();
      serveRepo("test-org/tiny-llama", exported);
      const cacheDir = freshCache();
      const first = hub.log.length;
      hub.pageSize = 2;
      const r = await resolveModel("test-org/tiny-llama", {
        baseUrl: hub.baseUrl,
        cacheDir,
        sharedModelsDir: emptyShared,
        quiet: true,
      }).finally(() => {
        hub.pageSize = 0;
      });
      const pages = hub.log.slice(first).filter((x) => x.path === "/api/models/test-org/tiny-llama/tree/main");
      assert.equal(pages.length, Math.ceil(fs.readdirSync(exported).length / 2), "every listing page followed");
      assert.equal(r.kind, "hf");
      assert.equal(r.dir, path.join(cacheDir, "test-org", "tiny-llama"));
      assert.equal(path.basename(r.weightsPath), "model.safetensors.index.json");
      const ck = await loadHfCheckpoint(r.dir);
      const src = await loadHfCheckpoint(exported);
      assert.equal(ck.sha256, src.sha256);
      const tok = await loadHfTokenizer(r.tokenizerPath);
      assert.deepEqual(tok.encode("Once upon a time", { bos: true }), [1, 403, 407, 261, 378]);
      const local = await resolveModel(exported);
      assert.equal(local.kind, "hf");
      assert.equal(local.source, "path");
      assert.equal(local.weightsPath, path.join(exported, "model.safetensors.index.json"));
      assert.equal(local.tokenizerPath, path.join(exported, "tokenizer.json"));
      const again = await resolveModel("test-org/tiny-llama", {
        baseUrl: hub.baseUrl,
        cacheDir,
        sharedModelsDir: emptyShared,
        quiet: true,
      });
      assert.equal(again.source, "cache");

      // a repo with only PyTorch pickle weights: clear message about safetensors
      hub.routes.set("/test-org/pt-only/resolve/main/config.json", { file: path.join(exported, "config.json") });
      hub.routes.set("/test-org/pt-only/resolve/main/pytorch_model.bin", { bytes: Buffer.from("x") });
      await assert.rejects(
        resolveModel("test-org/pt-only", {
          baseUrl: hub.baseUrl,
          cacheDir: freshCache(),
          sharedModelsDir: emptyShared,
          quiet: true,
        }),
        /no safetensors weights in test-org\/pt-only.*safetensors/,
      );
    },
  );

  it(
    "every registry file carries a sha256 field; " +
      "the only unknown ones (null) are the documented stories15M/42M/110M files",
    () => {
      const unknown: string[] = [];
      for (const [name, entry] of Object.entries(MODEL_REGISTRY)) {
        for (const f of entry.files ?? []) {
          assert.ok("sha256" in f, `${name}: ${f.local} has no sha256 field`);
          if (f.sha256 === null) unknown.push(`${name}/${f.local}`);
          else assert.match(f.sha256, /^[0-9a-f]{64}$/, `${name}: ${f.local}`);
        }
      }
      assert.deepEqual(unknown, [
        "stories15M/stories15M.bin",
        "stories15M/tokenizer.bin",
        "stories42M/stories42M.bin",
        "stories42M/tokenizer.bin",
        "stories110M/stories110M.bin",
        "stories110M/tokenizer.bin",
      ]);
    },
  );

  it(
    "stories15M: the weights are verified against the hub listing (tampered refused, even with trustUnverified); " +
      "the GitHub tokenizer.bin is refused unless trusted",
    async () => {
      // what issue 19 found: a tampered stories15M.bin used to be accepted
      const genuine = fs.readFileSync(binPath); // stands in for the real stories15M.bin
      const bad = Buffer.from(genuine);
      bad[100] ^= 0xff;
      const route = "/karpathy/tinyllamas/resolve/main/stories15M.bin";
      hub.routes.set(route, { bytes: bad, listAs: genuine });
      try {
        const cacheDir = freshCache();
        const first = hub.log.length;
        await assert.rejects(
          pullModel("stories15M", { baseUrl: hub.baseUrl, cacheDir, quiet: true }),
          (e: Error) =>
            e instanceof UnverifiedDownloadError &&
            e.message ===
              `model "stories15M": no checksum is known for tokenizer.bin (the registry records no sha256; ` +
                `tokenizer.bin is fetched from ` +
                `https://github.com/karpathy/llama2.c/raw/master/tokenizer.bin, outside the hub's file ` +
                `listing), so the download cannot be verified and was refused; ${TRUST_UNVERIFIED_HINT}`,
        );
        assert.deepEqual(
          hub.log.slice(first).map((r) => r.path),
          ["/api/models/karpathy/tinyllamas/tree/main"],
          "only the listing was asked for",
        );
        assert.deepEqual(filesIn(path.join(cacheDir, "stories15M")), []);
        // with the tokenizer already in place (trusted by the user), the weights still go through the listing's sha256
        const dir = path.join(cacheDir, "stories15M");
        fs.mkdirSync(dir, { recursive: true });
        fs.copyFileSync(tokPath, path.join(dir, "tokenizer.bin"));
        await assert.rejects(
          pullModel("stories15M", { baseUrl: hub.baseUrl, cacheDir, quiet: true }),
          (e: Error) =>
            /stories15M\.bin: sha256 mismatch/.test(e.message) &&
            e.message.includes(sha256(genuine)) &&
            e.message.includes(sha256(bad)),
        );
        await assert.rejects(
          pullModel("stories15M", { baseUrl: hub.baseUrl, cacheDir, quiet: true, trustUnverified: true }),
          /stories15M\.bin: sha256 mismatch/,
        );
        assert.deepEqual(filesIn(dir), ["tokenizer.bin"], "the tampered file is not kept");
        // the genuine file passes, without trustUnverified
        hub.routes.set(route, { bytes: genuine });
        const r = await pullModel("stories15M", { baseUrl: hub.baseUrl, cacheDir, quiet: true });
        assert.ok(fs.readFileSync(r.weightsPath).equals(genuine));
        // a cached copy is re-verified against the listing: corrupted on disk → fetched again
        const onDisk = Buffer.from(genuine);
        onDisk[7] ^= 1;
        fs.writeFileSync(r.weightsPath, onDisk);
        await pullModel("stories15M", { baseUrl: hub.baseUrl, cacheDir, quiet: true });
        assert.ok(fs.readFileSync(r.weightsPath).equals(genuine));
        // a hub without the listing API: the weights cannot be verified → refused, naming why
        hub.noApi.add("karpathy/tinyllamas");
        try {
          await assert.rejects(
            pullModel("stories15M", { baseUrl: hub.baseUrl, cacheDir: freshCache(), quiet: true }),
            (e: Error) =>
              e instanceof UnverifiedDownloadError &&
              /no checksum is known for stories15M\.bin, tokenizer\.bin/.test(e.message) &&
              /hub listing .* is unavailable \(HTTP 404\)/.test(e.message),
          );
        } finally {
          hub.noApi.delete("karpathy/tinyllamas");
        }
      } finally {
        hub.routes.delete(route);
      }
    },
  );

  it(
    "registry files without a recorded sha256 and without a listing hash are refused before any file request; " +
      "trustUnverified downloads them",
    async () => {
      // trustUnverified (on an entry whose files all live on the local hub; stories15M's tokenizer is on GitHub)
      MODEL_REGISTRY["test-unverified"] = {
        kind: "llama2c",
        repo: "test-org/unverified",
        description: "test entry",
        files: [
          { local: "m.bin", sha256: null },
          { local: "tok512.bin", sha256: null },
        ],
        weights: "m.bin",
        tokenizer: "tok512.bin",
      };
      try {
        hub.routes.set("/test-org/unverified/resolve/main/m.bin", { file: binPath });
        hub.routes.set("/test-org/unverified/resolve/main/tok512.bin", { file: tokPath });
        const opts = { baseUrl: hub.baseUrl, cacheDir: freshCache(), sharedModelsDir: emptyShared, quiet: true };
        hub.noApi.add("test-org/unverified");
        await assert.rejects(
          resolveModel("test-unverified", opts),
          (e: Error) => e instanceof UnverifiedDownloadError && /m\.bin, tok512\.bin/.test(e.message),
        );
        assert.equal(hub.requests("/test-org/unverified/resolve/main/m.bin").length, 0);
        const r = await resolveModel("test-unverified", { ...opts, trustUnverified: true });
        assert.equal(await sha256File(r.weightsPath), SHA_BIN);
        assert.deepEqual(filesIn(r.dir), ["m.bin", "tok512.bin"]);
      } finally {
        hub.noApi.delete("test-org/unverified");
        delete MODEL_REGISTRY["test-unverified"];
      }
    },
  );

  it(
    "downloadFile: no checksum → refused before any request unless trustUnverified; " + "a git blob id verifies too",
    async () => {
      hub.routes.set(TOK_URL_PATH, { file: tokPath });
      const url = hub.baseUrl + TOK_URL_PATH;
      const tok = fs.readFileSync(tokPath);
      const dest = path.join(freshCache(), "tok.bin");
      assert.match(
        TRUST_UNVERIFIED_HINT,
        /--trust-unverified.*trustUnverified: true \(API\) to download it without checksum verification$/,
      );
      const first = hub.log.length;
      await assert.rejects(
        downloadFile(url, dest, { quiet: true, label: "tok.bin" }),
        (e: Error) =>
          e instanceof UnverifiedDownloadError &&
          e.message ===
            `tok.bin: no checksum is known for ${url}, so the download cannot be verified and was refused; ` +
              `${TRUST_UNVERIFIED_HINT}`,
      );
      assert.equal(hub.log.length, first);
      assert.ok(!fs.existsSync(dest) && !fs.existsSync(dest + ".part"));
      const trusted = await downloadFile(url, dest, { quiet: true, trustUnverified: true });
      assert.equal(trusted.verified, "unverified");
      assert.equal(trusted.sha256, sha256(tok));
      fs.rmSync(dest);
      const git = await downloadFile(url, dest, { quiet: true, gitSha1: gitSha1(tok) });
      assert.equal(git.verified, "git-sha1");
      fs.rmSync(dest);
      const wrong = "0".repeat(40);
      await assert.rejects(
        downloadFile(url, dest, { quiet: true, gitSha1: wrong, label: "tok.bin" }),
        (e: Error) =>
          e.message ===
          `tok.bin: git blob sha1 mismatch for ${url}: expected ${wrong}, got ${gitSha1(tok)}; the corrupted ` +
            `download was deleted`,
      );
      assert.ok(!fs.existsSync(dest) && !fs.existsSync(dest + ".part"));
    },
  );

  it(
    "verifies hub files against the hub's listing: a tampered LFS shard or config.json is refused " +
      "(file and both hashes named, nothing left), the genuine ones accepted",
    async () => {
      const exported = await exportedHf();
      const repo = "test-org/tampered";
      serveRepo(repo, exported);
      const shard = "model-00002-of-00002.safetensors";
      const good = fs.readFileSync(path.join(exported, shard));
      const bad = Buffer.from(good);
      bad[bad.length - 10] ^= 0xff; // a weight byte, not the header: only the hash can tell
      hub.routes.set(`/${repo}/resolve/main/${shard}`, { bytes: bad, listAs: good });
      const cacheDir = freshCache();
      const dir = path.join(cacheDir, "test-org", "tampered");
      const opts = { baseUrl: hub.baseUrl, cacheDir, sharedModelsDir: emptyShared, quiet: true };
      await assert.rejects(
        resolveModel(repo, opts),
        (e: Error) =>
          e instanceof DownloadError &&
          e.message ===
            `${repo}: ${shard}: sha256 mismatch for ${hub.baseUrl}/${repo}/resolve/main/${shard}: ` +
              `expected ${sha256(good)}, ` +
              `got ${sha256(bad)}; the corrupted download was deleted`,
      );
      assert.ok(!filesIn(dir).some((f) => f.startsWith(shard)), `no ${shard} or .part left: ${filesIn(dir)}`);

      // a tampered small (non-LFS) file: checked against its git blob id
      const cfgGood = fs.readFileSync(path.join(exported, "config.json"));
      const cfgBad = Buffer.from(cfgGood.toString("utf8").replace('"llama"', '"llama" '));
      hub.routes.set(`/${repo}/resolve/main/config.json`, { bytes: cfgBad, listAs: cfgGood });
      const cacheDir2 = freshCache();
      await assert.rejects(
        pullModel(repo, { ...opts, cacheDir: cacheDir2 }),
        (e: Error) =>
          e.message ===
          `${repo}: config.json: git blob sha1 mismatch for ${hub.baseUrl}/${repo}/resolve/main/config.json: ` +
            `expected ${gitSha1(cfgGood)}, got ${gitSha1(cfgBad)}; the corrupted download was deleted`,
      );
      assert.deepEqual(filesIn(path.join(cacheDir2, "test-org", "tampered")), []);

      // the genuine files: accepted (into the first cache, where the verified files already are)
      serveRepo(repo, exported);
      const r = await resolveModel(repo, opts);
      assert.equal(r.source, "download");
      assert.deepEqual(filesIn(dir), HF_FETCHED);
      assert.equal(await sha256File(path.join(dir, shard)), sha256(good));
      // a cached file that no longer matches the listing is fetched again by pull
      fs.writeFileSync(path.join(dir, shard), bad);
      const before = hub.requests(`/${repo}/resolve/main/${shard}`).length;
      await pullModel(repo, opts);
      assert.equal(hub.requests(`/${repo}/resolve/main/${shard}`).length, before + 1);
      assert.equal(await sha256File(path.join(dir, shard)), sha256(good));
    },
  );

  it(
    "refuses unverifiable hub files (no listing; " +
      "a listed file without a hash) and accepts them with trustUnverified",
    async () => {
      const exported = await exportedHf();
      // a hub without the API listing (e.g. a plain mirror)
      const repo = "test-org/no-api";
      serveRepo(repo, exported);
      hub.noApi.add(repo);
      const opts = { baseUrl: hub.baseUrl, sharedModelsDir: emptyShared, quiet: true };
      const cacheDir = freshCache();
      await assert.rejects(
        resolveModel(repo, { ...opts, cacheDir }),
        (e: Error) =>
          e instanceof UnverifiedDownloadError &&
          e.message.includes(
            `the hub's file listing ${hub.baseUrl}/api/models/${repo}/tree/main?recursive=true, which gives the ` +
              `files' sha256, is unavailable (HTTP 404`,
          ) &&
          e.message.endsWith(TRUST_UNVERIFIED_HINT),
      );
      assert.ok(!hub.log.some((x) => x.path.startsWith(`/${repo}/resolve/`)), "no file requested");
      assert.deepEqual(filesIn(path.join(cacheDir, "test-org", "no-api")), []);
      const r = await resolveModel(repo, { ...opts, cacheDir, trustUnverified: true });
      assert.equal((await loadHfCheckpoint(r.dir)).sha256, (await loadHfCheckpoint(exported)).sha256);

      // a listing that gives no hash for one file
      const repo2 = "test-org/no-hash";
      serveRepo(repo2, exported);
      hub.routes.set(`/${repo2}/resolve/main/tokenizer.json`, {
        file: path.join(exported, "tokenizer.json"),
        noHash: true,
      });
      const cacheDir2 = freshCache();
      await assert.rejects(
        resolveModel(repo2, { ...opts, cacheDir: cacheDir2 }),
        (e: Error) =>
          e instanceof UnverifiedDownloadError &&
          e.message ===
            `model "${repo2}": the hub listing ${hub.baseUrl}/api/models/${repo2}/tree/main?recursive=true gives ` +
              `no sha256 or git blob id for tokenizer.json, so the download cannot be verified and was ` +
              `refused; ${TRUST_UNVERIFIED_HINT}`,
      );
      assert.equal(hub.requests(`/${repo2}/resolve/main/tokenizer.json`).length, 0);
      assert.ok(!filesIn(path.join(cacheDir2, "test-org", "no-hash")).includes("tokenizer.json"));
      const r2 = await pullModel(repo2, { ...opts, cacheDir: cacheDir2, trustUnverified: true });
      assert.ok(fs.existsSync(r2.tokenizerPath));
    },
  );

  it("lm pull refuses an unverifiable model and downloads it with --trust-unverified", async () => {
    const exported = await exportedHf();
    const repo = "test-org/cli-no-api";
    serveRepo(repo, exported);
    hub.noApi.add(repo);
    const dataRoot = path.join(tmp, "cli-data");
    // async: the hub runs in this process, so a blocking spawnSync would starve it
    const lm = (...args: string[]) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(
          path.join(repoRoot, "node_modules", ".bin", "tsx"),
          [path.join(repoRoot, "scripts", "lm.ts"), ...args],
          {
            cwd: repoRoot,
            env: { ...process.env, IS_DEBUG: "", IS_HUB_URL: hub.baseUrl, IS_DATA_DIR: dataRoot },
          },
        );
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (d) => (stdout += d));
        child.stderr.on("data", (d) => (stderr += d));
        child.on("close", (code) => resolve({ code, stdout, stderr }));
      });
    const refused = await lm("pull", repo);
    assert.equal(refused.code, 1);
    assert.match(
      refused.stderr,
      new RegExp(
        String.raw`^lm: error: model "test-org\/cli-no-api": the hub's file listing .* is unavailable \(HTTP 404.*` +
          String.raw`pass --trust-unverified \(CLI: ` +
          "`npm run lm -- pull NAME --trust-unverified`",
      ),
    );
    assert.deepEqual(filesIn(path.join(dataRoot, "models", "test-org", "cli-no-api")), []);
    const ok = await lm("pull", repo, "--trust-unverified", "--json");
    assert.equal(ok.code, 0, ok.stderr);
    const o = JSON.parse(ok.stdout) as { dir: string; kind: string };
    assert.equal(o.kind, "hf");
    assert.equal(o.dir, path.join(dataRoot, "models", "test-org", "cli-no-api"));
    assert.deepEqual(filesIn(o.dir), HF_FETCHED);
  });
});
