/**
 * The pipeline's data stage: the language model (loaded once per process), the document-level
 * train/val/test activation stores (harvested once, repaired when a checksum fails) and the
 * held-out rows each mode evaluates on.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { cachedStep, cacheRoot, stepLockFile } from "./cache";
import { withLock } from "./lock";
import { memoised } from "./memo";
import { IntegrityError } from "../io/integrity";
import { presetFor, evalSettingsFor, PIPELINE_FORMAT, DATA_SPLIT_SEED, type PipelineParams } from "./params";
import { harvestActivations } from "../data/activations";
import { openStore, type ActivationStore } from "../data/store";
import type { NormalizationSpec } from "../data/types";
import { type TrainConfig, modeEvalRows } from "../train";
import type { LanguageModel, Tokenizer } from "../lm/types";
import { loadLanguageModel, loadTokenizer } from "../lm/index";

export interface LmBundle {
  model: LanguageModel;
  tokenizer: Tokenizer;
}

/** The language model and tokenizer (loaded once per process). */
export function getLanguageModel(name: string): Promise<LmBundle> {
  return memoised(`lm:${name}`, async () => {
    // static import: tslab only compiles modules reached by static imports
    return { model: await loadLanguageModel(name), tokenizer: await loadTokenizer(name) };
  });
}

export interface Stores {
  key: string;
  train: ActivationStore;
  val: ActivationStore;
  test: ActivationStore;
  /** The corrected mode's normalisation: z-score from the training store (applied to every store). */
  normalization: NormalizationSpec;
}

interface StoresSummary {
  train: string;
  val: string;
  test: string;
  rows: { train: number; val: number; test: number };
  seconds: number;
}

/**
 * Harvest hidden_states[layer] into document-level train/val/test stores (80/10/10 of the corpus's
 * documents, split seed DATA_SPLIT_SEED). Both modes share them: faithful trains and evaluates on
 * the training store with the authors' row-level split; corrected trains on train, reports on
 * val (reconstruction) and test (splice).
 */
export function getStores(p: PipelineParams): Promise<Stores> {
  const pre = presetFor(p);
  const ev = evalSettingsFor(p);
  const params = {
    format: PIPELINE_FORMAT,
    model: p.model,
    corpus: p.corpus,
    layer: p.layer,
    splitSeed: DATA_SPLIT_SEED,
    windowLength: pre.data.windowLength,
    maxTokens: pre.data.maxTokens,
    evalTokens: ev.evalTokens,
  };
  return memoised(`stores:${JSON.stringify(params)}`, async () => {
    const storeRoot = path.join(cacheRoot(), "stores");
    // one loaded model for the three splits (the store key depends on the model's checksum, not on how it was loaded)
    const harvest = async (split: string, maxTokens: number | null) => {
      const { model: languageModel, tokenizer } = await getLanguageModel(p.model);
      return harvestActivations({
        languageModel,
        tokenizer,
        layer: p.layer,
        corpus: p.corpus,
        split,
        seed: DATA_SPLIT_SEED,
        windowLength: pre.data.windowLength,
        maxTokens: maxTokens ?? undefined,
        storeRoot,
      });
    };
    const step = await cachedStep("stores", params, async () => {
      const t0 = Date.now();
      const train = await harvest("train", pre.data.maxTokens);
      const val = await harvest("val", ev.evalTokens);
      const test = await harvest("test", ev.evalTokens);
      const rel = (d: string) => path.relative(cacheRoot(), d);
      const s: StoresSummary = {
        train: rel(train.dir),
        val: rel(val.dir),
        test: rel(test.dir),
        rows: { train: train.store.numRows, val: val.store.numRows, test: test.store.numRows },
        seconds: (Date.now() - t0) / 1000,
      };
      return s;
    });
    const maxTokens = { train: pre.data.maxTokens, val: ev.evalTokens, test: ev.evalTokens };
    // A store whose checksums fail (openStore verifies every chunk) is harvested again, under a lock
    // so that concurrent processes repair it once; a corrupt store is never used.
    const open = async (split: "train" | "val" | "test"): Promise<ActivationStore> => {
      const dir = path.join(cacheRoot(), step.value[split]);
      const openIt = () => openStore(dir, { layer: p.layer }, { checkValues: false });
      try {
        return await openIt();
      } catch (e) {
        if (!(e instanceof IntegrityError)) throw e;
        return withLock(stepLockFile(`store-${path.basename(dir)}`), `repair of store ${dir}`, async () => {
          try {
            return await openIt(); // repaired by another process meanwhile
          } catch (again) {
            if (!(again instanceof IntegrityError)) throw again;
            process.stderr.write(`pipeline: WARNING: ${again.message}; harvesting the ${split} store again\n`);
            const aside = path.join(path.dirname(dir), `.corrupt-${path.basename(dir)}.${process.pid}.${Date.now()}`);
            fs.renameSync(dir, aside);
            fs.rmSync(aside, { recursive: true, force: true });
            const h = await harvest(split, maxTokens[split]);
            if (path.resolve(h.dir) !== path.resolve(dir))
              throw new Error(`pipeline: re-harvesting ${dir} produced ${h.dir} (the harvest inputs changed?)`);
            return openIt();
          }
        });
      }
    };
    const train = await open("train");
    return {
      key: step.key,
      train,
      val: await open("val"),
      test: await open("test"),
      normalization: train.normalization,
    };
  });
}

/** Token windows (BOS first) of a store, in store order: the first `max` windows. */
export function storeWindows(store: ActivationStore, max: number): number[][] {
  return storeWindowsWithDocs(store, max).windows;
}

/** The first `max` windows of a store and the document index each was cut from (the splice bootstrap's clusters). */
export function storeWindowsWithDocs(store: ActivationStore, max: number): { windows: number[][]; docs: number[] } {
  const windows: number[][] = [];
  const docs: number[] = [];
  let cur: number[] | null = null;
  for (let r = 0; r < store.numRows; r++) {
    const info = store.rowInfo(r);
    if (info.position === 0) {
      if (cur) windows.push(cur);
      if (windows.length >= max) return { windows, docs };
      cur = [];
      docs.push(info.docIndex);
    }
    if (cur) cur.push(info.tokenId);
  }
  if (cur && windows.length < max) windows.push(cur);
  return { windows, docs: docs.slice(0, windows.length) };
}

/** Held-out evaluation rows in the model's training space, as each mode defines them (lib/training/evaluate.ts). */
export function evalRowsFor(p: PipelineParams, s: Stores, cfg: TrainConfig): Float32Array {
  return modeEvalRows(s, p.mode, cfg.eval.rows, cfg.eval.seed ?? 1234567);
}
