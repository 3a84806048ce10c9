/**
 * Model registry and resolution: a registry name ("stories260K"), a Hugging Face hub id
 * ("org/name", LLaMA architecture) or a local path → the files on disk.
 *
 * Resolution order for names: the repo cache `data/models/<name>` (opts.cacheDir), then the shared
 * folder `../shared/models/<name>`, then a download into the cache from
 * `${baseUrl ?? $IS_HUB_URL ?? "https://huggingface.co"}/<repo>/resolve/main/<file>`
 * (resumable, sha256-verified where the registry knows the hash; see lib/io/download.ts).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { dataDir, sharedDir } from "../paths";
import { downloadFile, DownloadError } from "../io/download";
import { sha256File } from "../io/atomic";

export type ModelKind = "llama2c" | "hf";

export interface RegistryFile {
  /** File name in the local model directory. */
  local: string;
  /** Path inside the hub repository (default: `local`). */
  remote?: string;
  /** Absolute URL for files that do not live in the hub repository. */
  url?: string;
  /** Known sha256, or null when unknown (then the download is not verified). */
  sha256: string | null;
}

export interface RegistryEntry {
  kind: ModelKind;
  /** Hub repository ("owner/name"). */
  repo: string;
  description: string;
  /** llama2c: the exact files; hf entries use the generic hub layout (config.json + safetensors). */
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
    description: "260K-parameter LLaMA-2-architecture model trained on TinyStories (llama2.c format), 512-token tokenizer",
    files: [
      { local: "stories260K.bin", remote: "stories260K/stories260K.bin", sha256: "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696" },
      { local: "tok512.bin", remote: "stories260K/tok512.bin", sha256: "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312" },
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
        description: `${n.slice(7)}-parameter TinyStories model (llama2.c format) with the 32000-token LLaMA-2 tokenizer`,
        files: [
          { local: `${n}.bin`, sha256: null },
          // tokenizer.bin is not in the hub repository; it lives in the llama2.c GitHub repository.
          { local: "tokenizer.bin", url: LLAMA2C_TOKENIZER_URL, sha256: null },
        ],
        weights: `${n}.bin`,
        tokenizer: "tokenizer.bin",
        note: "sha256 not recorded in this registry: the download is not checksum-verified",
      },
    ]),
  ),
  "openlm-research/open_llama_3b": {
    kind: "hf",
    repo: "openlm-research/open_llama_3b",
    description: "OpenLLaMA 3B (the paper's model), Hugging Face LLaMA checkpoint",
    note:
      "this hub repository ships PyTorch pickle weights (pytorch_model.bin) and a sentencepiece tokenizer.model, " +
      "not model.safetensors/tokenizer.json; convert once with Python (transformers: from_pretrained(...).save_pretrained(dir, safe_serialization=True), " +
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

// ---------------------------------------------------------------------------------------------
// local layouts

/** Describe a local path (file or directory) as a model, or throw naming what is missing. */
export function describeLocalModel(p: string, name = p): ResolvedModel {
  const abs = path.resolve(p);
  const stat = fs.statSync(abs);
  if (stat.isFile()) {
    const base = path.basename(abs);
    if (base.endsWith(".safetensors") || base === "config.json" || base.endsWith(".index.json")) return describeLocalModel(path.dirname(abs), name);
    if (base === "pytorch_model.bin" || /^pytorch_model-\d+-of-\d+\.bin$/.test(base)) {
      throw new Error(`${abs}: PyTorch pickle weights are not supported; convert the checkpoint to safetensors (transformers save_pretrained(dir, safe_serialization=True))`);
    }
    if (!base.endsWith(".bin")) throw new Error(`${abs}: not a model file (expected a llama2.c .bin, a safetensors file or an HF directory)`);
    const dir = path.dirname(abs);
    return { kind: "llama2c", name, dir, weightsPath: abs, tokenizerPath: findLlama2cTokenizer(dir, base), source: "path" };
  }
  const hf = hfLayout(abs);
  if (hf) return { kind: "hf", name, dir: abs, weightsPath: hf.weights, tokenizerPath: path.join(abs, "tokenizer.json"), source: "path" };
  const bins = fs.readdirSync(abs).filter((f) => f.endsWith(".bin") && !/^tok/.test(f) && f !== "pytorch_model.bin");
  if (bins.length === 1) return describeLocalModel(path.join(abs, bins[0]), name);
  if (fs.existsSync(path.join(abs, "config.json"))) {
    throw new Error(`${abs}: config.json found but no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)`);
  }
  throw new Error(`${abs}: no model found (expected config.json + model.safetensors, or exactly one llama2.c .bin; found ${bins.length} .bin files)`);
}

function findLlama2cTokenizer(dir: string, weightsBase: string): string {
  if (fs.existsSync(path.join(dir, "tokenizer.bin"))) return path.join(dir, "tokenizer.bin");
  const toks = fs.readdirSync(dir).filter((f) => /^tok.*\.bin$/.test(f) && f !== weightsBase).sort();
  return path.join(dir, toks[0] ?? "tokenizer.bin");
}

/** HF directory layout if complete: config.json and the safetensors weights (all shards). */
function hfLayout(dir: string): { weights: string } | null {
  if (!fs.existsSync(path.join(dir, "config.json"))) return null;
  const index = path.join(dir, "model.safetensors.index.json");
  if (fs.existsSync(index)) {
    try {
      const map = (JSON.parse(fs.readFileSync(index, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
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

function resolvedFromDir(name: string, dir: string, kind: ModelKind, entry: RegistryEntry | null, source: ResolvedModel["source"]): ResolvedModel {
  if (kind === "llama2c" && entry?.weights && entry.tokenizer) {
    return { kind, name, dir, weightsPath: path.join(dir, entry.weights), tokenizerPath: path.join(dir, entry.tokenizer), source };
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

async function pullRegistryLlama2c(name: string, entry: RegistryEntry, dir: string, opts: ResolveOptions, force: boolean): Promise<void> {
  for (const f of entry.files ?? []) {
    const dest = path.join(dir, f.local);
    if (fs.existsSync(dest) && !force) {
      if (f.sha256) {
        const sha = await sha256File(dest);
        if (sha === f.sha256) continue;
        if (!opts.quiet) process.stderr.write(`${name}: cached ${f.local} has sha256 ${sha}, expected ${f.sha256}; downloading again\n`);
        fs.rmSync(dest);
      } else continue;
    }
    const url = f.url ?? hubFileUrl(entry.repo, f.remote ?? f.local, opts);
    try {
      await downloadFile(url, dest, { sha256: f.sha256, label: `${name}: ${f.local}`, quiet: opts.quiet, retries: opts.retries });
    } catch (e) {
      if (e instanceof DownloadError && e.status === 404) throw new DownloadError(`model "${name}": ${f.local} not found at ${url} (HTTP 404)`, url, 404);
      throw e;
    }
  }
}

/** Download an optional hub file; false when the hub answers 404. */
async function tryHubFile(name: string, repo: string, file: string, dir: string, opts: ResolveOptions, force: boolean): Promise<boolean> {
  const dest = path.join(dir, file);
  if (fs.existsSync(dest) && !force) return true;
  try {
    await downloadFile(hubFileUrl(repo, file, opts), dest, { label: `${name}: ${file}`, quiet: opts.quiet, retries: opts.retries });
    return true;
  } catch (e) {
    if (e instanceof DownloadError && e.status === 404) return false;
    throw e;
  }
}

async function pullHubHf(name: string, repo: string, dir: string, opts: ResolveOptions, force: boolean, note?: string): Promise<void> {
  const cfgUrl = hubFileUrl(repo, "config.json", opts);
  if (!(await tryHubFile(name, repo, "config.json", dir, opts, force))) {
    throw new DownloadError(`model "${name}": config.json not found at ${cfgUrl} (HTTP 404); is "${repo}" a Hugging Face model repository?`, cfgUrl, 404);
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as { architectures?: string[]; model_type?: string };
  if (!(cfg.architectures ?? []).includes("LlamaForCausalLM") && cfg.model_type !== "llama") {
    throw new Error(`model "${name}": config.json says architectures=${JSON.stringify(cfg.architectures)} model_type=${JSON.stringify(cfg.model_type)}; only LLaMA checkpoints are supported`);
  }
  if (await tryHubFile(name, repo, "model.safetensors.index.json", dir, opts, force)) {
    const index = JSON.parse(fs.readFileSync(path.join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map?: Record<string, string> };
    const shards = [...new Set(Object.values(index.weight_map ?? {}))].sort();
    if (shards.length === 0) throw new Error(`model "${name}": model.safetensors.index.json has an empty weight_map`);
    for (const s of shards) {
      if (s.includes("/") || s.includes("..")) throw new Error(`model "${name}": invalid shard name ${JSON.stringify(s)} in the index`);
      if (!(await tryHubFile(name, repo, s, dir, opts, force))) {
        const u = hubFileUrl(repo, s, opts);
        throw new DownloadError(`model "${name}": shard ${s} listed in the index is not found at ${u} (HTTP 404)`, u, 404);
      }
    }
  } else if (!(await tryHubFile(name, repo, "model.safetensors", dir, opts, force))) {
    const u = hubFileUrl(repo, "model.safetensors", opts);
    throw new DownloadError(
      `model "${name}": no safetensors weights in ${repo} (neither model.safetensors.index.json nor model.safetensors at ${u}); ` +
        (note ?? "only safetensors checkpoints are supported: convert PyTorch .bin weights with transformers save_pretrained(dir, safe_serialization=True)"),
      u,
      404,
    );
  }
  const hasTok = await tryHubFile(name, repo, "tokenizer.json", dir, opts, force);
  await tryHubFile(name, repo, "tokenizer_config.json", dir, opts, force);
  if (!hasTok && !opts.quiet) process.stderr.write(`${name}: the repository has no tokenizer.json; supply one in ${dir} to tokenize text\n`);
}

function parseName(nameOrPath: string): { entry: RegistryEntry | null; repo: string } | null {
  const entry = MODEL_REGISTRY[nameOrPath] ?? null;
  if (entry) return { entry, repo: entry.repo };
  if (HUB_ID.test(nameOrPath) && !nameOrPath.split("/").some((s) => s === "." || s === "..")) return { entry: null, repo: nameOrPath };
  return null;
}

/**
 * Download a registry model or hub id into the cache (data/models/<name>), skipping files that
 * are already there (registry files with a known sha256 are re-verified). `force` re-downloads.
 */
export async function pullModel(name: string, opts: ResolveOptions & { force?: boolean } = {}): Promise<ResolvedModel> {
  const parsed = parseName(name);
  if (!parsed) {
    throw new Error(`unknown model "${name}": not in the registry (${Object.keys(MODEL_REGISTRY).join(", ")}) and not a hub id of the form org/name`);
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
      `model "${nameOrPath}" not found: no such file or directory, not in the registry (${Object.keys(MODEL_REGISTRY).join(", ")}), and not a hub id of the form org/name`,
    );
  }
  const kind = parsed.entry?.kind ?? "hf";
  const cacheRoot = opts.cacheDir ?? dataDir("models");
  const sharedRoot = opts.sharedModelsDir ?? sharedDir("models");
  const entryForCheck: RegistryEntry = parsed.entry ?? { kind: "hf", repo: parsed.repo, description: "" };
  for (const [root, source] of [[cacheRoot, "cache"], [sharedRoot, "shared"]] as const) {
    const dir = modelDir(root, nameOrPath);
    if (fs.existsSync(dir) && registryComplete(dir, entryForCheck)) return resolvedFromDir(nameOrPath, dir, kind, parsed.entry, source);
  }
  if (opts.offline) {
    throw new Error(`model "${nameOrPath}" is not available offline (looked in ${modelDir(cacheRoot, nameOrPath)} and ${modelDir(sharedRoot, nameOrPath)})`);
  }
  return pullModel(nameOrPath, opts);
}
