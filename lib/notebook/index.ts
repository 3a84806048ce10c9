/** Headless notebook execution and inspection. */
export { executeNotebook, formatErrors } from "./execute";
export type { ExecuteOptions, ExecuteResult, NotebookError } from "./execute";
export {
  readNotebook,
  summarizeNotebook,
  errorOutputs,
  outputsWithMime,
  allText,
  isPng,
  pngSize,
  stripOutputs,
  cellSource,
} from "./inspect";
export type { NotebookJson, NotebookCell, NotebookOutput, CellSummary } from "./inspect";
export { ensureKernelspec, kernelspecDir, jupyterPathDir, jupyterEnv, kernelspecJson, KERNEL_NAME, KERNEL_DISPLAY_NAME } from "./kernelspec";
export { findJupyter, findJupyterPython, findChromium } from "./jupyter";
export { environmentVersions, packageVersion } from "./environment";
export type { VersionRow } from "./environment";
export { startNotebookServer, freePort } from "./server";
export type { NotebookServer } from "./server";
export { inspectNotebookPage, CHROMIUM_FLAGS } from "./browser";
export type { BrowserReport, VisibleImage } from "./browser";
