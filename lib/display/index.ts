/**
 * Display API for notebooks and CLIs. Import from "./lib/display/index" in notebooks (tslab cannot
 * import directories).
 */
export { show, showTo, toBundle, currentDisplayDir, setTextSink } from "./show";
export type { ShowOptions, OutputBundle, OutputKind } from "./show";
export { renderChart, saveChart, chartBundle, svgToPng, vegaLiteForMime, slugify, VEGALITE_MIME } from "./chart";
export type { RenderedChart, RenderOptions, SavedChart } from "./chart";
export { assertChartSpec, chartSpecProblems, isVegaLiteSpec, ChartSpecError } from "./spec-check";
export type { VegaLiteSpec } from "./spec-check";
export {
  saveTable,
  toTable,
  tableToHtml,
  tableToText,
  tableToMarkdown,
  tableToCsv,
  escapeHtml,
  formatCell,
  isIdColumn,
  isPColumn,
} from "./table";
export { NBSP, formatNumber, formatPercent, formatP, pText, formatCi, formatWithCi, displayPath } from "./format";
export { MODEL_STYLES, CONTROL_STYLES, modelName, modelStyle, modelColor, modelDash } from "./models";
export type { ModelId, ModelStyle } from "./models";
export type { Row, Table, TableFormatOptions } from "./table";
export { progress } from "./progress";
export type { Progress, ProgressOptions, ProgressMode } from "./progress";
export { liveChart, liveChartSpec } from "./live";
export type { LiveChart, LiveChartOptions, LivePoint } from "./live";
export { quantitative, nominal, ordinal, checked, VEGALITE_SCHEMA } from "./vega-lite";
export type { FieldChannel, FieldType } from "./vega-lite";
export { inKernel, sendBundle } from "./kernel";
export type { MimeBundle } from "./kernel";
