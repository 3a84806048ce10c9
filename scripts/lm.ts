/**
 * `npm run lm -- <command> [options]`: inspect and run the language model from the shell.
 * Run `npm run lm -- --help` for the commands. Errors print one line `lm: error: …` and exit 1.
 *
 * JSON output (--json) is stable; keys:
 *   info      {model, path, format, sha256, parameters, config, tokenizer:{path, vocabSize}, backend}
 *   tokenize  {model, text, bos, ids, pieces}
 *   logits    {model, prompt, ids, pieces, vocabSize, logits:[T][V], top:[T][{id, piece, logit, prob}]}
 *   hidden    {model, prompt, layer, hook, ids, pieces, shape:[T, dim], hidden:[T][dim]}
 *   generate  {model, prompt, temperature, seed, steps, ids, generated, text}
 * Prompts are encoded with BOS (the models were trained with it) unless --no-bos is given.
 */
import { parseArgs } from "node:util";
import * as path from "node:path";
import { initBackend, describeBackend, tf } from "../lib/backend";
import { DEFAULT_MODEL, loadCheckpoint, loadTokenizer, resolve } from "../lib/lm/index";
import { LlamaModel } from "../lib/lm/model";
import { generate } from "../lib/lm/generate";
import { pullModel } from "../lib/lm/hub";
import { exportHf } from "../lib/lm/export-hf";
import { residPreHookName, type Tokenizer } from "../lib/lm/types";
import { parseSeed } from "../lib/util/random";
import { progress } from "../lib/display/progress";

/** `generate` shows a progress bar (stderr) from this many steps on. */
const GENERATE_PROGRESS_MIN_STEPS = 64;

const HELP = `usage: npm run lm -- <command> [options]

commands:
  info                          config, parameter count, sha256 of the weights
  tokenize --prompt TEXT        token ids and pieces
  logits --prompt TEXT          next-token distribution (top N at the last position); --json: all logits
  hidden --layer L --prompt TEXT --json
                                hidden_states[L] (= blocks.L.hook_resid_pre) at every position
  generate --prompt TEXT --steps N [--temperature T] [--seed S] [--top-k K]
                                continue the prompt (greedy when temperature is 0, the default);
                                prompt tokens + N must fit the model's context length (maxSeqLen);
                                progress on stderr when N ≥ ${GENERATE_PROGRESS_MIN_STEPS}
  export-hf --out DIR [--dtype F32|F16|BF16] [--shards N]
                                write the model as a Hugging Face LLaMA checkpoint
  pull NAME [--trust-unverified]
                                download a registry model or hub id into data/models (every file is
                                checked against its sha256 / the hub's published hash; files whose
                                hash is unknown are refused unless --trust-unverified)

options:
  --model NAME|PATH   registry name (stories260K, stories15M, …), hub id org/name, llama2.c .bin or
                      HF directory (default ${DEFAULT_MODEL})
  --json              machine-readable output (stable keys, see scripts/lm.ts)
  --top N             how many candidates to print (logits; default 10)
  --no-bos            do not prepend BOS to the prompt
  --trust-unverified  allow downloading model files whose checksum is unknown (not verified)
  -h, --help          this help
`;

class UsageError extends Error {}

function need<T>(v: T | undefined, flag: string, cmd: string): T {
  if (v === undefined || v === "") throw new UsageError(`${cmd} needs ${flag}`);
  return v;
}

function intOpt(v: string | undefined, flag: string, def: number, min: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be an integer ≥ ${min} (got "${v}")`);
  return n;
}

function seedOpt(v: string | undefined, flag: string, def: number): number {
  if (v === undefined) return def;
  try {
    return parseSeed(v, flag);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function numOpt(v: string | undefined, flag: string, def: number): number {
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${flag} must be a number ≥ 0 (got "${v}")`);
  return n;
}

/**
 * Broken weights (NaN/Inf in the file) give non-finite outputs for every prompt: an error naming the
 * model file, instead of NaN probabilities printed with exit status 0.
 */
function checkFinite(values: ArrayLike<number>, what: string, modelPath: string, where: (i: number) => string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new Error(
        `${modelPath}: the model gives non-finite ${what} (${values[i]} at ${where(i)}): its weights are broken ` +
          `(NaN or Inf); re-download or re-export the model`,
      );
    }
  }
}

function print(json: boolean, obj: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(obj) + "\n" : text() + "\n");
}

function softmaxRow(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

function topOf(row: number[], n: number, tok: Tokenizer): { id: number; piece: string; logit: number; prob: number }[] {
  const p = softmaxRow(row);
  return row
    .map((logit, id) => ({ id, logit }))
    .sort((a, b) => b.logit - a.logit || a.id - b.id)
    .slice(0, n)
    .map(({ id, logit }) => ({ id, piece: tok.piece(id), logit, prob: p[id] }));
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      model: { type: "string" },
      prompt: { type: "string" },
      json: { type: "boolean", default: false },
      top: { type: "string" },
      layer: { type: "string" },
      steps: { type: "string" },
      temperature: { type: "string" },
      seed: { type: "string" },
      "top-k": { type: "string" },
      out: { type: "string" },
      dtype: { type: "string" },
      shards: { type: "string" },
      "no-bos": { type: "boolean", default: false },
      "trust-unverified": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const cmd = positionals[0];
  if (values.help || !cmd) {
    process.stdout.write(HELP);
    return;
  }
  const modelName = values.model ?? DEFAULT_MODEL;
  const json = values.json as boolean;
  const bos = !values["no-bos"];
  // passed to every call that may download the model
  const dl = { trustUnverified: values["trust-unverified"] as boolean };

  if (cmd === "pull") {
    const name = need(positionals[1], "a model NAME (e.g. stories15M)", "pull");
    const r = await pullModel(name, dl);
    print(json, r, () => `${name}: ${r.dir}\n  weights   ${r.weightsPath}\n  tokenizer ${r.tokenizerPath}`);
    return;
  }
  if (!["info", "tokenize", "logits", "hidden", "generate", "export-hf"].includes(cmd)) {
    throw new UsageError(`unknown command "${cmd}" (try --help)`);
  }

  if (cmd === "tokenize") {
    const tok = await loadTokenizer(modelName, dl);
    const text = need(values.prompt, "--prompt TEXT", cmd);
    const ids = tok.encode(text, { bos });
    const pieces = ids.map((id) => tok.piece(id));
    print(json, { model: modelName, text, bos, ids, pieces }, () =>
      ids
        .map((id, i) => `${String(i).padStart(4)}  ${String(id).padStart(6)}  ${JSON.stringify(pieces[i])}`)
        .join("\n"),
    );
    return;
  }

  const ck = await loadCheckpoint(modelName, dl);
  if (cmd === "export-hf") {
    const out = need(values.out, "--out DIR", cmd);
    const r = await resolve(modelName, dl);
    if (r.kind !== "llama2c")
      throw new Error(`export-hf: "${modelName}" is already a Hugging Face checkpoint (${r.dir})`);
    const dtype = (values.dtype ?? "F32").toUpperCase() as "F32" | "F16" | "BF16";
    await exportHf(ck, r.tokenizerPath, out, { dtype, shards: intOpt(values.shards, "--shards", 1, 1) });
    print(
      json,
      { model: modelName, out: path.resolve(out), dtype },
      () => `wrote ${path.resolve(out)} (config.json, safetensors, tokenizer.json)`,
    );
    return;
  }

  const info = await initBackend({ workload: "lm" });
  const model = new LlamaModel(ck);
  try {
    if (cmd === "info") {
      const r = await resolve(modelName, dl);
      let tokInfo: { path: string; vocabSize: number | null } = { path: r.tokenizerPath, vocabSize: null };
      try {
        tokInfo = { path: r.tokenizerPath, vocabSize: (await loadTokenizer(modelName, dl)).vocabSize };
      } catch {
        /* a model without tokenizer still has info */
      }
      const obj = {
        model: modelName,
        path: ck.path,
        format: ck.format,
        sha256: ck.sha256,
        parameters: model.parameterCount(),
        config: ck.config,
        tokenizer: tokInfo,
        backend: describeBackend(info),
      };
      print(json, obj, () =>
        [
          `model       ${modelName}`,
          `path        ${ck.path}`,
          `format      ${ck.format}`,
          `sha256      ${ck.sha256}`,
          `parameters  ${obj.parameters.toLocaleString("en-US")}`,
          ...Object.entries(ck.config).map(([k, v]) => `${k.padEnd(15)} ${v}`),
          `tokenizer   ${tokInfo.path} (${tokInfo.vocabSize ?? "unreadable"} tokens)`,
          `backend     ${obj.backend}`,
        ].join("\n"),
      );
      return;
    }

    const tok = await loadTokenizer(modelName, dl);
    const prompt = cmd === "generate" ? (values.prompt ?? "") : need(values.prompt, "--prompt TEXT", cmd);
    const ids = tok.encode(prompt, { bos });
    if (ids.length === 0)
      throw new UsageError(`${cmd}: the prompt encodes to no tokens (give --prompt, or drop --no-bos)`);
    const pieces = ids.map((id) => tok.piece(id));

    if (cmd === "logits") {
      const topN = intOpt(values.top, "--top", 10, 1);
      const r = model.forward([ids]);
      const logits = (r.logits as tf.Tensor3D).arraySync()[0];
      r.logits?.dispose();
      logits.forEach((row, t) => checkFinite(row, "logits", ck.path, (i) => `position ${t}, token ${i}`));
      const top = logits.map((row) => topOf(row, topN, tok));
      print(json, { model: modelName, prompt, ids, pieces, vocabSize: ck.config.vocabSize, logits, top }, () =>
        [
          `next token after ${JSON.stringify(prompt)} (${ids.length} tokens):`,
          ...top[top.length - 1].map(
            (c) =>
              `  ${c.prob.toFixed(4)}  ${c.logit.toFixed(3).padStart(8)}  ${String(c.id).padStart(6)}  ` +
              `${JSON.stringify(c.piece)}`,
          ),
        ].join("\n"),
      );
      return;
    }

    if (cmd === "hidden") {
      const layer = intOpt(need(values.layer, "--layer L", cmd), "--layer", 0, 0);
      const r = model.forward([ids], { capture: [layer], activationsOnly: true });
      const h = (r.hidden.get(layer) as tf.Tensor3D).arraySync()[0];
      for (const t of r.hidden.values()) t.dispose();
      h.forEach((row, t) =>
        checkFinite(row, `hidden states (layer ${layer})`, ck.path, (i) => `position ${t}, dimension ${i}`),
      );
      const obj = {
        model: modelName,
        prompt,
        layer,
        hook: residPreHookName(layer),
        ids,
        pieces,
        shape: [h.length, ck.config.dim],
        hidden: h,
      };
      print(json, obj, () =>
        h
          .map(
            (row, t) =>
              `${String(t).padStart(4)} ${JSON.stringify(pieces[t]).padEnd(12)} ` +
              `|h|=${Math.sqrt(row.reduce((s, v) => s + v * v, 0)).toFixed(4)}  [${row
                .slice(0, 4)
                .map((v) => v.toFixed(4))
                .join(", ")}, …]`,
          )
          .join("\n"),
      );
      return;
    }

    if (cmd === "generate") {
      const steps = intOpt(need(values.steps, "--steps N", cmd), "--steps", 0, 0);
      const ctx = ck.config.maxSeqLen;
      if (ids.length + steps > ctx) {
        throw new UsageError(
          `--steps ${steps}: the prompt (${ids.length} token${ids.length === 1 ? "" : "s"}) plus ${steps} new ` +
            `tokens exceed the model's context length of ${ctx} tokens; ` +
            `give --steps at most ${Math.max(0, ctx - ids.length)}`,
        );
      }
      const temperature = numOpt(values.temperature, "--temperature", 0);
      const seed = seedOpt(values.seed, "--seed", 0);
      const prog = steps >= GENERATE_PROGRESS_MIN_STEPS ? progress({ total: steps, label: "generate" }) : null;
      const out = generate(model, ids, {
        steps,
        temperature,
        seed,
        topK: intOpt(values["top-k"], "--top-k", 0, 0),
        onLogits: (s, logits) => {
          checkFinite(logits, "logits", ck.path, (i) => `generation step ${s}, token ${i}`);
          prog?.update(s + 1);
        },
      });
      prog?.done();
      const text = tok.decode(out.ids);
      print(
        json,
        { model: modelName, prompt, temperature, seed, steps, ids: out.ids, generated: out.generated, text },
        () => text,
      );
      return;
    }
  } finally {
    model.dispose();
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`lm: error: ${msg.split("\n")[0]}\n`);
  if (process.env.IS_DEBUG) process.stderr.write(`${(e as Error).stack ?? ""}\n`);
  process.exit(1);
});
