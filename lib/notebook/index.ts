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
export {
  ensureKernelspec,
  kernelspecDir,
  jupyterPathDir,
  jupyterEnv,
  kernelspecJson,
  KERNEL_NAME,
  KERNEL_DISPLAY_NAME,
} from "./kernelspec";
export {
  findJupyter,
  findJupyterPython,
  findChromium,
  findLabServerPython,
  findLabBuild,
  LAB_PACKAGE_DIR,
} from "./jupyter";
export { environmentVersions, packageVersion } from "./environment";
export type { VersionRow } from "./environment";
export { startNotebookServer, startLabServer, freePort } from "./server";
export type { NotebookServer, ServerOptions } from "./server";
export { inspectNotebookPage, withChromiumPage, CHROMIUM_FLAGS } from "./browser";
export type { BrowserReport, VisibleImage } from "./browser";
