/**
 * Hugging Face `tokenizer.json` tokenizers through the maintained @huggingface/tokenizers
 * (tokenizers.js) library, adapted to the project's Tokenizer contract (lib/lm/types.ts).
 *
 * BOS/EOS are added here (not by the post-processor) so `encode(text)` returns the bare ids and
 * `encode(text, {bos: true})` prepends the BOS id, whatever template the tokenizer.json carries.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { Tokenizer } from "./types";
import { readJsonFileAsync } from "../io/json";

// tokenizers.js ships a CommonJS build for Node ("require" export condition); load it with
// require so this module stays CommonJS (tslab, tsx) without dynamic-import tricks.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const tokenizersLib: {
  Tokenizer: new (json: object, config: object) => HfJsTokenizer;
} = require("@huggingface/tokenizers");

interface HfJsTokenizer {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[]; tokens: string[] };
  decode(
    ids: number[],
    options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean | null },
  ): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  get_vocab(withAdded?: boolean): Map<string, number>;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly file: string;
  private readonly tok: HfJsTokenizer;

  constructor(
    tokenizerJson: Record<string, unknown>,
    tokenizerConfig: Record<string, unknown>,
    file = "tokenizer.json",
  ) {
    this.file = file;
    this.tok = new tokenizersLib.Tokenizer(tokenizerJson, tokenizerConfig);
    const vocab = this.tok.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
    const tokenName = (key: string, fallback: string): string => {
      const v = tokenizerConfig[key];
      if (typeof v === "string") return v;
      if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
        return (v as { content: string }).content;
      return fallback;
    };
    const bos = this.tok.token_to_id(tokenName("bos_token", "<s>"));
    const eos = this.tok.token_to_id(tokenName("eos_token", "</s>"));
    this.bosId = bos ?? -1;
    this.eosId = eos ?? -1;
  }

  encode(text: string, opts: { bos?: boolean; eos?: boolean } = {}): number[] {
    // tokenizers.js's Prepend normalizer prepends even to "", unlike the Rust library and
    // sentencepiece/llama2.c, which give no tokens for empty text.
    const ids = text.length === 0 ? [] : this.tok.encode(text, { add_special_tokens: false }).ids;
    if (opts.bos) {
      if (this.bosId < 0) throw new Error(`${this.file}: the tokenizer has no BOS token`);
      ids.unshift(this.bosId);
    }
    if (opts.eos) {
      if (this.eosId < 0) throw new Error(`${this.file}: the tokenizer has no EOS token`);
      ids.push(this.eosId);
    }
    return ids;
  }

  decode(ids: number[]): string {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize)
        throw new Error(`decode: token id ${id} at position ${i} is outside the vocabulary [0, ${this.vocabSize})`);
    }
    if (ids.length === 0) return "";
    return this.tok.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }

  piece(id: number): string {
    const p = this.tok.id_to_token(id);
    if (p === undefined) throw new Error(`piece: token id ${id} is outside the vocabulary [0, ${this.vocabSize})`);
    return p;
  }
}

/** Load `tokenizer.json` (+ optional `tokenizer_config.json`) from a directory or a tokenizer.json path. */
export async function loadHfTokenizer(dirOrFile: string): Promise<HfTokenizer> {
  const file = dirOrFile.endsWith(".json") ? dirOrFile : path.join(dirOrFile, "tokenizer.json");
  if (!fs.existsSync(file)) throw new Error(`tokenizer.json not found: ${file}`);
  const json = await readJsonFileAsync<Record<string, unknown>>(file);
  if (!json.model || typeof json.model !== "object")
    throw new Error(`${file}: no "model" section; not a Hugging Face tokenizer.json`);
  const cfgFile = path.join(path.dirname(file), "tokenizer_config.json");
  let cfg: Record<string, unknown> = {};
  if (fs.existsSync(cfgFile)) cfg = await readJsonFileAsync<Record<string, unknown>>(cfgFile);
  try {
    return new HfTokenizer(json, cfg, file);
  } catch (e) {
    throw new Error(`${file}: tokenizers.js could not build the tokenizer: ${(e as Error).message}`);
  }
}
