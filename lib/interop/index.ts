/**
 * Interoperability with the Python ecosystem:
 *   - SAEs: exportSaeLens / exportSparsify write our models in SAELens's and sparsify's layouts;
 *     loadSaeLens reads either layout (f32/f16/bf16) into our Model so every analysis can run on it.
 *   - activation stores: exportStore writes a store as .npy or .safetensors shards plus a JSON
 *     manifest that numpy memory-maps directly.
 *   - .npy read/write (readNpy, encodeNpy).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { readSaeLens, SAELENS_WEIGHTS, type LoadOptions } from "./saelens";
import { readSparsify, SPARSIFY_WEIGHTS } from "./sparsify";
import type { ImportedSae } from "./common";

export {
  exportSaeLens,
  readSaeLens,
  foldBDecIntoBEnc,
  NFM_NAMES,
  SAELENS_CFG,
  SAELENS_WEIGHTS,
  NFM_CFG,
  NFM_WEIGHTS,
} from "./saelens";
export type { ExportResult, LoadOptions } from "./saelens";
export { exportSparsify, readSparsify, SPARSIFY_CFG, SPARSIFY_WEIGHTS } from "./sparsify";
export { foldNormalization, unfoldNormalization } from "./fold";
export type { ParamArrays } from "./fold";
export { inNormalizedSpace } from "./common";
export type { ImportedSae, ExportOptions, ForeignFormat } from "./common";
export { exportStore, EXPORT_FORMAT } from "./store-export";
export type { StoreExportFormat, StoreExportManifest, StoreExportOptions } from "./store-export";
export { encodeNpy, npyHeader, readNpy } from "./npy";
export type { NpyArray, NpyDescr } from "./npy";

/**
 * Load a SAELens-layout (cfg.json + sae_weights.safetensors) or sparsify-layout (cfg.json +
 * sae.safetensors) directory. A sparsify run directory (one subdirectory per hookpoint) is an
 * error that lists the hookpoints to choose from. The caller disposes `result.model`.
 */
export function loadSaeLens(dir: string, opts: LoadOptions = {}): ImportedSae {
  if (!fs.existsSync(dir)) throw new Error(`loadSaeLens: ${dir} does not exist`);
  if (!fs.statSync(dir).isDirectory()) throw new Error(`loadSaeLens: ${dir} is not a directory`);
  if (fs.existsSync(path.join(dir, SAELENS_WEIGHTS))) return readSaeLens(dir, opts);
  if (fs.existsSync(path.join(dir, SPARSIFY_WEIGHTS))) return readSparsify(dir);
  const sub = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(dir, e.name, "cfg.json")))
    .map((e) => e.name)
    .sort();
  if (sub.length > 0)
    throw new Error(
      `loadSaeLens: ${dir} holds one SAE per hookpoint; pass one of its subdirectories: ${sub.join(", ")}`,
    );
  throw new Error(`loadSaeLens: ${dir} has neither ${SAELENS_WEIGHTS} (SAELens) nor ${SPARSIFY_WEIGHTS} (sparsify)`);
}
