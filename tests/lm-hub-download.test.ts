/**
 * Model registry + resumable downloads against a LOCAL HTTP server on 127.0.0.1 that serves the
 * ../shared files under hub-style URLs (/<repo>/resolve/main/<file>) with Range support.
 * Nothing here reaches the internet: every URL is built from the local server's base URL.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import type { AddressInfo } from "node:net";
import { initBackend } from "../lib/backend";
import { sharedDir } from "../lib/paths";
import { sha256File } from "../lib/io/atomic";
import { downloadFile, DownloadError } from "../lib/io/download";
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
}

class HubServer {
  readonly routes = new Map<string, Route>();
  readonly log: { path: string; range: string | null; status: number }[] = [];
  private server!: http.Server;
  baseUrl = "";

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

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const p = decodeURIComponent((req.url ?? "/").split("?")[0]);
    const range = (req.headers.range as string | undefined) ?? null;
    const route = this.routes.get(p);
    const body = route ? route.bytes ?? fs.readFileSync(route.file!) : null;
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
      res.writeHead(206, { "content-length": String(body.length - start), "content-range": `bytes ${start}-${body.length - 1}/${body.length}`, "accept-ranges": "bytes" });
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
    await assert.rejects(resolveModel("stories15M", { cacheDir: freshCache(), sharedModelsDir: emptyShared, offline: true }), /"stories15M" is not available offline/);
    await assert.rejects(resolveModel("no-such-model", { offline: true }), /model "no-such-model" not found.*not in the registry/);
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
      (e: Error) => e instanceof DownloadError && /connection lost|transfer ended/.test(e.message) && /run again to resume/.test(e.message),
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

  it("retries automatically within one call (twice interrupted), and restarts when the server ignores Range", async () => {
    hub.routes.set(BIN_URL_PATH, { file: binPath, killAfter: 200_000, killTimes: 2 });
    hub.routes.set(TOK_URL_PATH, { file: tokPath });
    const cacheDir = freshCache();
    const first = hub.log.length;
    const r = await pullModel("stories260K", { baseUrl: hub.baseUrl, cacheDir, quiet: true, retries: 3 });
    assert.equal(await sha256File(r.weightsPath), SHA_BIN);
    const ranges = hub.log.slice(first).filter((x) => x.path === BIN_URL_PATH).map((x) => x.range);
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
  });

  it("rejects a corrupted file by checksum and deletes it", async () => {
    const bad = Buffer.from(fs.readFileSync(tokPath));
    bad[bad.length >> 1] ^= 0xff;
    hub.routes.set(BIN_URL_PATH, { file: binPath });
    hub.routes.set(TOK_URL_PATH, { bytes: bad });
    const cacheDir = freshCache();
    await assert.rejects(
      resolveModel("stories260K", { baseUrl: hub.baseUrl, cacheDir, sharedModelsDir: emptyShared, quiet: true }),
      (e: Error) => /tok512\.bin: sha256 mismatch/.test(e.message) && e.message.includes(MODEL_REGISTRY.stories260K.files![1].sha256!) && /deleted/.test(e.message),
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
      resolveModel("stories260K", { baseUrl: hub.baseUrl, cacheDir: freshCache(), sharedModelsDir: emptyShared, quiet: true }),
      (e: Error) => e.message === `model "stories260K": stories260K.bin not found at ${hub.baseUrl}${BIN_URL_PATH} (HTTP 404)`,
    );
    await assert.rejects(
      pullModel("nobody/nothing", { baseUrl: hub.baseUrl, cacheDir: freshCache(), quiet: true }),
      new RegExp(`model "nobody/nothing": config\\.json not found at ${hub.baseUrl}/nobody/nothing/resolve/main/config\\.json \\(HTTP 404\\)`),
    );
  });

  it("downloads a generic org/name LLaMA repo (config.json + safetensors + tokenizer.json) and loads it", async () => {
    const exported = path.join(tmp, "hf-export");
    await exportHf(readLlama2c(binPath, "stories260K"), tokPath, exported, { shards: 2 });
    for (const f of fs.readdirSync(exported)) hub.routes.set(`/test-org/tiny-llama/resolve/main/${f}`, { file: path.join(exported, f) });
    const cacheDir = freshCache();
    const r = await resolveModel("test-org/tiny-llama", { baseUrl: hub.baseUrl, cacheDir, sharedModelsDir: emptyShared, quiet: true });
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
    const again = await resolveModel("test-org/tiny-llama", { baseUrl: hub.baseUrl, cacheDir, sharedModelsDir: emptyShared, quiet: true });
    assert.equal(again.source, "cache");

    // a repo with only PyTorch pickle weights: clear message about safetensors
    hub.routes.set("/test-org/pt-only/resolve/main/config.json", { file: path.join(exported, "config.json") });
    hub.routes.set("/test-org/pt-only/resolve/main/pytorch_model.bin", { bytes: Buffer.from("x") });
    await assert.rejects(
      resolveModel("test-org/pt-only", { baseUrl: hub.baseUrl, cacheDir: freshCache(), sharedModelsDir: emptyShared, quiet: true }),
      /no safetensors weights in test-org\/pt-only.*safetensors/,
    );
  });
});
