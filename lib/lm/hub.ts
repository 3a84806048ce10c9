/**
 * Model registry and resolution: a registry name ("stories260K"), a Hugging Face hub id
 * ("org/name", LLaMA architecture) or a local path → the files on disk.
 *
 * Resolution order for names: the repo cache `data/models/<name>` (opts.cacheDir), then the shared
 * folder `../shared/models/<name>`, then a download into the cache from
 * `${baseUrl ?? $IS_HUB_URL ?? "https://huggingface.co"}/<repo>/resolve/main/<file>`
 * (resumable; see lib/io/download.ts).
 *
 * Every download is verified, or refused unless the caller trusts unverified files
 * (`trustUnverified: true`, the CLIs' --trust-unverified):
 * - llama2.c registry entries record a sha256 for each file; `sha256: null` marks a file whose hash
 *   is not known to this registry: one hosted in the hub repository (stories15M/42M/110M.bin) is
 *   then verified against the hub's listing (below), one fetched from elsewhere (the LLaMA-2
 *   tokenizer.bin of stories15M/42M/110M, from the llama2.c GitHub repository, which publishes no
 *   content hash over plain HTTP) cannot be verified and needs trustUnverified;
 * - hub repositories (hf entries and org/name ids) are checked against the hashes the hub
 *   publishes in its file listing `<base>/api/models/<repo>/tree/main?recursive=true`: the LFS
 *   sha256 (`lfs.oid`, the value huggingface_hub also gets as the X-Linked-Etag header of the
 *   resolve URL) for LFS files, the git blob id (`oid`, the plain ETag) for small non-LFS files.
 *   No listing (HTTP error, a mirror without the API) or a file missing a hash → refused.
 *   The listing comes from the same host as the files: this catches corrupted or tampered
 *   transfers (CDN, proxy, disk), not a compromised hub.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { dataDir, sharedDir } from "../paths";
import { downloadFile, hashFile, DownloadError, TRUST_UNVERIFIED_HINT, UnverifiedDownloadError } from "../io/download";

export type ModelKind = "llama2c" | "hf";

export interface RegistryFile {
  /** File name in the local model directory. */
  local: string;
  /** Path inside the hub repository (default: `local`). */
  remote?: string;
  /** Absolute URL for files that do not live in the hub repository. */
  url?: string;
  /**
   * The file's sha256 (required). null only where this registry could not obtain the true hash:
   * downloading such a file is refused unless trustUnverified is given.
   */
  sha256: string | null;
}

export interface RegistryEntry {
  kind: ModelKind;
  /** Hub repository ("owner/name"). */
  repo: string;
  description: string;
  /**
   * llama2c: the exact files, each with its sha256. hf entries use the generic hub layout
   * (config.json + safetensors), verified against the hashes in the hub's file listing.
   */
  files?: RegistryFile[];
  weights?: string;
  tokenizer?: string;
  /** Caveats shown to the user (e.g. what the hub repository actually ships). */
  note?: string;
}

const LLAMA2C_TOKENIZER_URL = "https://github.com/karpathy/llama2.c/raw/master/tokenizer.bin";

export const MODEL_REGISTRY: Record<string, RegistryEntry> = {
  stories260K: {
    kind: "llama2c",
    repo: "karpathy/tinyllamas",
    description:
      "260K-parameter LLaMA-2-architecture model trained on TinyStories (llama2.c format), 512-token tokenizer",
    files: [
      {
        local: "stories260K.bin",
        remote: "stories260K/stories260K.bin",
        sha256: "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696",
      },
      {
        local: "tok512.bin",
        remote: "stories260K/tok512.bin",
        sha256: "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
      },
    ],
    weights: "stories260K.bin",
    tokenizer: "tok512.bin",
  },
  ...Object.fromEntries(
    ["stories15M", "stories42M", "stories110M"].map((n) => [
      n,
      {
        kind: "llama2c" as const,
        repo: "karpathy/tinyllamas",
        description:
          `${n.slice(7)}-parameter TinyStories model (llama2.c format) ` + "with the 32000-token LLaMA-2 tokenizer",
        files: [
          // sha256: null = true hash not known here (it was never recorded, and this project was
          // written without internet access to obtain it). Do not fill in a hash that was not
          // computed from the real file. The .bin lives in the hub repository (an LFS file), so a
          // download is verified against the sha256 the hub's listing publishes.
          { local: `${n}.bin`, sha256: null },
          // tokenizer.bin is not in the hub repository; it lives in the llama2.c GitHub repository,
          // with no hash to check it against: downloading it needs --trust-unverified.
          { local: "tokenizer.bin", url: LLAMA2C_TOKENIZER_URL, sha256: null },
        ],
        weights: `${n}.bin`,
        tokenizer: "tokenizer.bin",
        note:
          "the weights are verified against the hub listing's sha256; tokenizer.bin comes from the llama2.c " +
          "GitHub repository with no checksum to verify, " +
          "so downloading it needs --trust-unverified (trustUnverified: true), or place a trusted tokenizer.bin " +
          "in the model directory first",
      },
    ]),
  ),
  "openlm-research/open_llama_3b": {
    kind: "hf",
    repo: "openlm-research/open_llama_3b",
    description: "OpenLLaMA 3B (the paper's model), Hugging Face LLaMA checkpoint",
    note:
      "this hub repository ships PyTorch pickle weights (pytorch_model.bin) and a sentencepiece tokenizer.model, " +
      "not model.safetensors/tokenizer.json; convert once with Python (transformers: " +
      "from_pretrained(...).save_pretrained(dir, safe_serialization=True), " +
      "and LlamaTokenizerFast(...).save_pretrained(dir) for tokenizer.json), then pass that directory as --model",
  },
};

export interface ResolveOptions {
  /** Hub base URL (default $IS_HUB_URL or https://huggingface.co). Tests point this at 127.0.0.1. */
  baseUrl?: string;
  /** Where downloads go (default data/models). */
  cacheDir?: string;
  /** Shared read-only models folder (default ../shared/models). */
  sharedModelsDir?: string;
  /** Never download; fail if not found locally. */
  offline?: boolean;
  /** No progress output. */
  quiet?: boolean;
  /** Automatic resume attempts per file (default 3). */
  retries?: number;
  /**
   * Download files whose checksum is unknown (registry `sha256: null`, hub files without a
   * published hash, hubs without a file listing) without verifying them. Default: refuse.
   */
  trustUnverified?: boolean;
}

export interface ResolvedModel {
  kind: ModelKind;
  /** Registry name, hub id, or the path given. */
  name: string;
  dir: string;
  /** llama2c: the .bin; hf: model.safetensors or model.safetensors.index.json. */
  weightsPath: string;
  /** llama2c tokenizer.bin or HF tokenizer.json (may not exist for hub repos that lack one). */
  tokenizerPath: string;
  source: "path" | "cache" | "shared" | "download";
}

const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function hubBase(opts: ResolveOptions): string {
  return (opts.baseUrl ?? process.env.IS_HUB_URL ?? "https://huggingface.co").replace(/\/+$/, "");
}

export function hubFileUrl(repo: string, file: string, opts: ResolveOptions = {}): string {
  const enc = file.split("/").map(encodeURIComponent).join("/");
  return `${hubBase(opts)}/${repo}/resolve/main/${enc}`;
}

/** The hub API's recursive file listing of a model repository at main (sizes and hashes). */
export function hubTreeUrl(repo: string, opts: ResolveOptions = {}): string {
  return `${hubBase(opts)}/api/models/${repo}/tree/main?recursive=true`;
}

/** What the hub publishes about one file: git blob id, and the sha256 when it is stored in LFS. */
export interface HubFileInfo {
  path: string;
  size: number | null;
  /** LFS files: sha256 of the content (the listing's `lfs.oid`). */
  sha256: string | null;
  /** git blob id (`oid`): sha1 of "blob <size>\0" + content (for LFS files: of the pointer). */
  gitSha1: string | null;
}

/** The hub's file listing, or files: null with the reason (and HTTP status) it could not be had. One shape, no union:
 * tslab compiles notebooks without strictNullChecks, where a null discriminant does not narrow. */
export type HubListing = { files: Map<string, HubFileInfo> | null; url: string; reason?: string; status?: number };

const HEX64 = /^[0-9a-f]{64}$/;
const HEX40 = /^[0-9a-f]{40}$/;

/**
 * Fetch the hub's file listing of a repository (following `Link: <…>; rel="next"` pages).
 * Never throws: an unavailable listing comes back as `files: null` with the reason.
 */
export async function fetchHubListing(repo: string, opts: ResolveOptions = {}): Promise<HubListing> {
  const first = hubTreeUrl(repo, opts);
  const files = new Map<string, HubFileInfo>();
  let next: string | null = first;
  for (let page = 0; next && page < 1000; page++) {
    let res: Response;
    try {
      res = await fetch(next, { headers: { Accept: "application/json" }, signal: AbortSignal.timeout(60_000) });
    } catch (e) {
      const cause = (e as { cause?: Error }).cause;
      return {
        files: null,
        url: first,
        reason: `request failed: ${(e as Error).message}${cause ? ` (${cause.message})` : ""}`,
      };
    }
    if (!res.ok) {
      await res.body?.cancel();
      return { files: null, url: first, reason: `HTTP ${res.status}`, status: res.status };
    }
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      return { files: null, url: first, reason: "the answer is not JSON" };
    }
    if (!Array.isArray(body)) return { files: null, url: first, reason: "the answer is not a JSON list of files" };
    for (const e of body as {
      type?: string;
      path?: string;
      oid?: string;
      size?: number;
      lfs?: { oid?: string; sha256?: string; size?: number };
    }[]) {
      if (e?.type !== "file" || typeof e.path !== "string") continue;
      const lfsSha = String(e.lfs?.oid ?? e.lfs?.sha256 ?? "")
        .replace(/^sha256:/, "")
        .toLowerCase();
      const oid = String(e.oid ?? "").toLowerCase();
      files.set(e.path, {
        path: e.path,
        size: typeof (e.lfs?.size ?? e.size) === "number" ? (e.lfs?.size ?? e.size)! : null,
        sha256: HEX64.test(lfsSha) ? lfsSha : null,
        gitSha1: HEX40.test(oid) ? oid : null,
      });
    }
    const link = res.headers.get("link");
    const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/.exec(link) : null;
    next = m ? new URL(m[1], next).toString() : null;
  }
  return { files, url: first };
}

/** The expected hash of a hub file for downloadFile: the LFS sha256, else the git blob id. */
function hubExpected(info: HubFileInfo | undefined): { sha256: string | null; gitSha1: string | null } {
  if (!info) return { sha256: null, gitSha1: null };
  return info.sha256 ? { sha256: info.sha256, gitSha1: null } : { sha256: null, gitSha1: info.gitSha1 };
}

// ---------------------------------------------------------------------------------------------
// local layouts

/** Describe a local path (file or directory) as a model, or throw naming what is missing. */
export function describeLocalModel(p: string, name = p): ResolvedModel {
  const abs = path.resolve(p);
  const stat = fs.statSync(abs);
  if (stat.isFile()) {
    const base = path.basename(abs);
    if (base.endsWith(".safetensors") || base === "config.json" || base.endsWith(".index.json"))
      return describeLocalModel(path.dirname(abs), name);
    if (base === "pytorch_model.bin" || /^pytorch_model-\d+-of-\d+\.bin$/.test(base)) {
      throw new Error(
        `${abs}: PyTorch pickle weights are not supported; convert the checkpoint to safetensors (transformers ` +
          `save_pretrained(dir, safe_serialization=True))`,
      );
    }
    if (!base.endsWith(".bin"))
      throw new Error(`${abs}: not a model file (expected a llama2.c .bin, a safetensors file or an HF directory)`);
    const dir = path.dirname(abs);
    return {
      kind: "llama2c",
      name,
      dir,
      weightsPath: abs,
      tokenizerPath: findLlama2cTokenizer(dir, base),
      source: "path",
    };
  }
  const hf = hfLayout(abs);
  if (hf)
    return {
      kind: "hf",
      name,
      dir: abs,
      weightsPath: hf.weights,
      tokenizerPath: path.join(abs, "tokenizer.json"),
      source: "path",
    };
  const bins = fs.readdirSync(abs).filter((f) => f.endsWith(".bin") && !/^tok/.test(f) && f !== "pytorch_model.bin");
  if (bins.length === 1) return describeLocalModel(path.join(abs, bins[0]), name);
  if (fs.existsSync(path.join(abs, "config.json"))) {
    throw new Error(
      `${abs}: config.json found but no model.safetensors or model.safetensors.index.json (only safetensors ` +
        `weights are supported)`,
    );
  }
  throw new Error(
    `${abs}: no model found (expected config.json + model.safetensors, or exactly one llama2.c .bin; ` +
      `found ${bins.length} .bin files)`,
  );
}

function findLlama2cTokenizer(dir: string, weightsBase: string): string {
  if (fs.existsSync(path.join(dir, "tokenizer.bin"))) return path.join(dir, "tokenizer.bin");
  const toks = fs
    .readdirSync(dir)
    .filter((f) => /^tok.*\.bin$/.test(f) && f !== weightsBase)
    .sort();
  return path.join(dir, toks[0] ?? "tokenizer.bin");
}

/** HF directory layout if complete: config.json and the safetensors weights (all shards). */
function hfLayout(dir: string): { weights: string } | null {
  if (!fs.existsSync(path.join(dir, "config.json"))) return null;
  const index = path.join(dir, "model.safetensors.index.json");
  if (fs.existsSync(index)) {
    try {
      const map =
        (JSON.parse(fs.readFileSync(index, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
      const shards = new Set(Object.values(map));
      for (const s of shards) if (!fs.existsSync(path.join(dir, s))) return null;
    } catch {
      return null;
    }
    return { weights: index };
  }
  const single = path.join(dir, "model.safetensors");
  return fs.existsSync(single) ? { weights: single } : null;
}

function registryComplete(dir: string, entry: RegistryEntry): boolean {
  if (entry.kind === "hf" || !entry.files) return hfLayout(dir) !== null;
  return entry.files.every((f) => fs.existsSync(path.join(dir, f.local)));
}

function resolvedFromDir(
  name: string,
  dir: string,
  kind: ModelKind,
  entry: RegistryEntry | null,
  source: ResolvedModel["source"],
): ResolvedModel {
  if (kind === "llama2c" && entry?.weights && entry.tokenizer) {
    return {
      kind,
      name,
      dir,
      weightsPath: path.join(dir, entry.weights),
      tokenizerPath: path.join(dir, entry.tokenizer),
      source,
    };
  }
  const hf = hfLayout(dir);
  if (!hf) throw new Error(`${name}: ${dir} has no complete Hugging Face checkpoint`);
  return { kind: "hf", name, dir, weightsPath: hf.weights, tokenizerPath: path.join(dir, "tokenizer.json"), source };
}

function modelDir(root: string, name: string): string {
  return path.join(root, ...name.split("/"));
}

// ---------------------------------------------------------------------------------------------
// downloads

/**
 * The hash a registry file is checked against: its recorded sha256; else, for a file hosted in the
 * entry's hub repository, what the hub listing publishes (LFS sha256, or the git blob id); else
 * none, with the reason (a file fetched from elsewhere, e.g. GitHub, has no listing to consult).
 */
function registryExpected(
  f: RegistryFile,
  listing: HubListing | null,
): { sha256: string | null; gitSha1: string | null; why: string | null } {
  if (f.sha256) return { sha256: f.sha256, gitSha1: null, why: null };
  if (f.url)
    return { sha256: null, gitSha1: null, why: `${f.local} is fetched from ${f.url}, outside the hub's file listing` };
  if (!listing) return { sha256: null, gitSha1: null, why: `${f.local}: no listing` };
  if (listing.files === null)
    return { sha256: null, gitSha1: null, why: `the hub listing ${listing.url} is unavailable (${listing.reason})` };
  const info = listing.files.get(f.remote ?? f.local);
  const e = hubExpected(info);
  if (e.sha256 || e.gitSha1) return { ...e, why: null };
  return {
    sha256: null,
    gitSha1: null,
    why: info
      ? `the hub listing ${listing.url} gives no hash for ${f.remote ?? f.local}`
      : `${f.remote ?? f.local} is not in the hub listing ${listing.url}`,
  };
}

async function pullRegistryLlama2c(
  name: string,
  entry: RegistryEntry,
  dir: string,
  opts: ResolveOptions,
  force: boolean,
): Promise<void> {
  // Files without a recorded sha256 that live in the hub repository (stories15M/42M/110M.bin) are
  // verified against the hub's listing, like any hub file: fetch it once, only when needed.
  const needsListing = (entry.files ?? []).some((f) => !f.sha256 && !f.url);
  const listing = needsListing ? await fetchHubListing(entry.repo, opts) : null;
  const todo: Array<{ f: RegistryFile; expected: ReturnType<typeof registryExpected> }> = [];
  for (const f of entry.files ?? []) {
    const expected = registryExpected(f, listing);
    const dest = path.join(dir, f.local);
    if (fs.existsSync(dest) && !force) {
      if (expected.sha256 || expected.gitSha1) {
        const got = await hashFile(dest);
        const [kind, want, have] = expected.sha256
          ? ["sha256", expected.sha256, got.sha256]
          : ["git blob sha1", expected.gitSha1, got.gitSha1];
        if (have === want) continue;
        if (!opts.quiet)
          process.stderr.write(`${name}: cached ${f.local} has ${kind} ${have}, expected ${want}; downloading again\n`);
        fs.rmSync(dest);
      } else continue;
    }
    todo.push({ f, expected });
  }
  // refuse before downloading anything, so a refused pull leaves no files behind
  const unknown = todo.filter((t) => !t.expected.sha256 && !t.expected.gitSha1);
  if (unknown.length > 0 && !opts.trustUnverified) {
    throw new UnverifiedDownloadError(
      `model "${name}": no checksum is known for ${unknown.map((t) => t.f.local).join(", ")} (the registry ` +
        `records no sha256; ${unknown.map((t) => t.expected.why).join("; ")}), ` +
        `so the download cannot be verified and was refused; ${TRUST_UNVERIFIED_HINT}`,
      unknown[0].f.url ?? hubFileUrl(entry.repo, unknown[0].f.remote ?? unknown[0].f.local, opts),
    );
  }
  for (const { f, expected } of todo) {
    const dest = path.join(dir, f.local);
    const url = f.url ?? hubFileUrl(entry.repo, f.remote ?? f.local, opts);
    const verified = Boolean(expected.sha256 || expected.gitSha1);
    if (!verified && !opts.quiet)
      process.stderr.write(
        `${name}: ${f.local} has no known checksum; downloading it unverified (--trust-unverified)\n`,
      );
    try {
      await downloadFile(url, dest, {
        sha256: expected.sha256,
        gitSha1: expected.gitSha1,
        label: `${name}: ${f.local}`,
        quiet: opts.quiet,
        retries: opts.retries,
        trustUnverified: opts.trustUnverified,
      });
    } catch (e) {
      if (e instanceof DownloadError && e.status === 404)
        throw new DownloadError(`model "${name}": ${f.local} not found at ${url} (HTTP 404)`, url, 404);
      throw e;
    }
  }
}

/**
 * Download an optional hub file, verified against the listing; false when the listing does not
 * have it (or, without a listing, when the hub answers 404). A cached copy is re-verified.
 */
async function tryHubFile(
  name: string,
  repo: string,
  file: string,
  dir: string,
  opts: ResolveOptions,
  force: boolean,
  listing: HubListing,
): Promise<boolean> {
  const dest = path.join(dir, file);
  const info = listing.files?.get(file);
  if (listing.files && !info) return false;
  const expected = hubExpected(info);
  if (fs.existsSync(dest) && !force) {
    if (!expected.sha256 && !expected.gitSha1) return true; // nothing to check against (trusted)
    const got = await hashFile(dest);
    const [kind, want, have] = expected.sha256
      ? ["sha256", expected.sha256, got.sha256]
      : ["git blob sha1", expected.gitSha1, got.gitSha1];
    if (have === want) return true;
    if (!opts.quiet)
      process.stderr.write(`${name}: cached ${file} has ${kind} ${have}, the hub lists ${want}; downloading again\n`);
    fs.rmSync(dest);
  }
  if (info && !expected.sha256 && !expected.gitSha1 && !opts.trustUnverified) {
    throw new UnverifiedDownloadError(
      `model "${name}": the hub listing ${listing.url} gives no sha256 or git blob id for ${file}, so the ` +
        `download cannot be verified and was refused; ${TRUST_UNVERIFIED_HINT}`,
      hubFileUrl(repo, file, opts),
    );
  }
  try {
    await downloadFile(hubFileUrl(repo, file, opts), dest, {
      ...expected,
      label: `${name}: ${file}`,
      quiet: opts.quiet,
      retries: opts.retries,
      trustUnverified: opts.trustUnverified,
    });
    return true;
  } catch (e) {
    if (e instanceof DownloadError && e.status === 404) return false;
    throw e;
  }
}

async function pullHubHf(
  name: string,
  repo: string,
  dir: string,
  opts: ResolveOptions,
  force: boolean,
  note?: string,
): Promise<void> {
  const listing = await fetchHubListing(repo, opts);
  if (listing.files === null) {
    if (!opts.trustUnverified) {
      const hint =
        listing.status === 404
          ? `: is "${repo}" a Hugging Face model repository?`
          : listing.status === 401 || listing.status === 403
            ? ": the repository may be gated or private"
            : "";
      throw new UnverifiedDownloadError(
        `model "${name}": the hub's file listing ${listing.url}, which gives the files' sha256, is unavailable ` +
          `(${listing.reason}${hint}` +
          `), so the download cannot be verified and was refused; ${TRUST_UNVERIFIED_HINT}`,
        listing.url,
      );
    }
    if (!opts.quiet)
      process.stderr.write(
        `${name}: no hub file listing (${listing.reason} at ${listing.url}); downloading unverified ` +
          `(--trust-unverified)\n`,
      );
  }
  const hubFile = (file: string) => tryHubFile(name, repo, file, dir, opts, force, listing);
  const missing = (u: string) =>
    listing.files ? `not in the repository (hub listing ${listing.url})` : `not found at ${u} (HTTP 404)`;
  const cfgUrl = hubFileUrl(repo, "config.json", opts);
  if (!(await hubFile("config.json"))) {
    throw new DownloadError(
      `model "${name}": config.json ${missing(cfgUrl)}; is "${repo}" a Hugging Face model repository?`,
      cfgUrl,
      404,
    );
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as {
    architectures?: string[];
    model_type?: string;
  };
  if (!(cfg.architectures ?? []).includes("LlamaForCausalLM") && cfg.model_type !== "llama") {
    throw new Error(
      `model "${name}": config.json says architectures=${JSON.stringify(cfg.architectures)} ` +
        `model_type=${JSON.stringify(cfg.model_type)}; ` +
        `only LLaMA checkpoints are supported`,
    );
  }
  if (await hubFile("model.safetensors.index.json")) {
    const index = JSON.parse(fs.readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8")) as {
      weight_map?: Record<string, string>;
    };
    const shards = [...new Set(Object.values(index.weight_map ?? {}))].sort();
    if (shards.length === 0) throw new Error(`model "${name}": model.safetensors.index.json has an empty weight_map`);
    for (const s of shards) {
      if (s.includes("/") || s.includes(".."))
        throw new Error(`model "${name}": invalid shard name ${JSON.stringify(s)} in the index`);
      if (!(await hubFile(s))) {
        const u = hubFileUrl(repo, s, opts);
        throw new DownloadError(`model "${name}": shard ${s} listed in the index is ${missing(u)}`, u, 404);
      }
    }
  } else if (!(await hubFile("model.safetensors"))) {
    const u = hubFileUrl(repo, "model.safetensors", opts);
    throw new DownloadError(
      `model "${name}": no safetensors weights in ${repo} (neither model.safetensors.index.json nor ` +
        `model.safetensors${listing.files ? " in the hub listing" : ` at ${u}`}); ` +
        (note ??
          "only safetensors checkpoints are supported: convert PyTorch .bin weights with transformers " +
            "save_pretrained(dir, safe_serialization=True)"),
      u,
      404,
    );
  }
  const hasTok = await hubFile("tokenizer.json");
  await hubFile("tokenizer_config.json");
  if (!hasTok && !opts.quiet)
    process.stderr.write(`${name}: the repository has no tokenizer.json; supply one in ${dir} to tokenize text\n`);
}

function parseName(nameOrPath: string): { entry: RegistryEntry | null; repo: string } | null {
  const entry = MODEL_REGISTRY[nameOrPath] ?? null;
  if (entry) return { entry, repo: entry.repo };
  if (HUB_ID.test(nameOrPath) && !nameOrPath.split("/").some((s) => s === "." || s === ".."))
    return { entry: null, repo: nameOrPath };
  return null;
}

/**
 * Download a registry model or hub id into the cache (data/models/<name>), skipping files that
 * are already there (files with a known hash are re-verified). `force` re-downloads. Files whose
 * hash is unknown are refused (UnverifiedDownloadError) unless `trustUnverified` is set.
 */
export async function pullModel(name: string, opts: ResolveOptions & { force?: boolean } = {}): Promise<ResolvedModel> {
  const parsed = parseName(name);
  if (!parsed) {
    throw new Error(
      `unknown model "${name}": not in the registry (${Object.keys(MODEL_REGISTRY).join(", ")}) and not a hub ` +
        `id of the form org/name`,
    );
  }
  if (opts.offline) throw new Error(`model "${name}": cannot download in offline mode`);
  const dir = modelDir(opts.cacheDir ?? dataDir("models"), name);
  fs.mkdirSync(dir, { recursive: true });
  const { entry, repo } = parsed;
  if (entry && entry.kind === "llama2c") await pullRegistryLlama2c(name, entry, dir, opts, Boolean(opts.force));
  else await pullHubHf(name, repo, dir, opts, Boolean(opts.force), entry?.note);
  return resolvedFromDir(name, dir, entry?.kind ?? "hf", entry, "download");
}

/**
 * Resolve a model: an existing path → itself; a registry name or hub id → repo cache, then
 * ../shared/models, then download (unless offline).
 */
export async function resolveModel(nameOrPath: string, opts: ResolveOptions = {}): Promise<ResolvedModel> {
  if (!nameOrPath) throw new Error("resolveModel: empty model name");
  const parsed = parseName(nameOrPath);
  // An existing path wins (a file, or a directory holding a model).
  if (fs.existsSync(nameOrPath)) return describeLocalModel(nameOrPath, nameOrPath);
  if (!parsed) {
    throw new Error(
      `model "${nameOrPath}" not found: no such file or directory, ` +
        `not in the registry (${Object.keys(MODEL_REGISTRY).join(", ")}), ` +
        `and not a hub id of the form org/name`,
    );
  }
  const kind = parsed.entry?.kind ?? "hf";
  const cacheRoot = opts.cacheDir ?? dataDir("models");
  const sharedRoot = opts.sharedModelsDir ?? sharedDir("models");
  const entryForCheck: RegistryEntry = parsed.entry ?? { kind: "hf", repo: parsed.repo, description: "" };
  for (const [root, source] of [
    [cacheRoot, "cache"],
    [sharedRoot, "shared"],
  ] as const) {
    const dir = modelDir(root, nameOrPath);
    if (fs.existsSync(dir) && registryComplete(dir, entryForCheck))
      return resolvedFromDir(nameOrPath, dir, kind, parsed.entry, source);
  }
  if (opts.offline) {
    throw new Error(
      `model "${nameOrPath}" is not available offline ` +
        `(looked in ${modelDir(cacheRoot, nameOrPath)} and ${modelDir(sharedRoot, nameOrPath)})`,
    );
  }
  return pullModel(nameOrPath, opts);
}
