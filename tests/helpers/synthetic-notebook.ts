/**
 * A small notebook for tests, as JSON text: code cells (strings) and markdown cells, on the project kernel.
 */
import { KERNEL_NAME } from "../../lib/notebook/index";

export type SyntheticCell = string | { markdown: string };

export function notebookJson(cells: SyntheticCell[]): string {
  return JSON.stringify({
    cells: cells.map((c, i) =>
      typeof c === "string"
        ? { cell_type: "code", id: `c${i}`, metadata: {}, execution_count: null, outputs: [], source: c }
        : { cell_type: "markdown", id: `c${i}`, metadata: {}, source: c.markdown },
    ),
    metadata: { kernelspec: { name: KERNEL_NAME, display_name: "x", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  });
}
