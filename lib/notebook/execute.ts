/**
 * Execute a notebook headless with the project kernel and report what happened.
 *
 * Runs lib/notebook/run_notebook.py (nbclient) on Debian's Python with JUPYTER_PATH pointing at the
 * repo-local kernelspec. The executed copy is always written (also when a cell fails), so the
 * error can be read in context.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";
import { dataDir, repoRoot } from "../paths";
import { ensureKernelspec, jupyterEnv, KERNEL_NAME } from "./kernelspec";
import { findJupyterPython } from "./jupyter";
import { errorOutputs, readNotebook, summarizeNotebook, type CellSummary } from "./inspect";
import { readJsonFile } from "../io/json";

export interface ExecuteOptions {
  /** Where the executed copy goes (default data/notebooks-executed). */
  outDir?: string;
  /** Extra environment for the kernel (e.g. {IS_PRESET: "tiny"}). */
  env?: Record<string, string | undefined>;
  /** Per-cell timeout in seconds (default 600). */
  timeoutS?: number;
  /** Kernel start timeout in seconds (default 120). */
  startupTimeoutS?: number;
  /** Kill the whole run after this many seconds (default 4 h). */
  totalTimeoutS?: number;
  kernelName?: string;
  /** Called with the runner's output as it arrives (kernel messages, Python tracebacks). */
  onLog?: (text: string) => void;
  /** Called when a cell starts (0-based index over all cells, and the cell count). */
  onCell?: (index: number, count: number) => void;
  /** Ends the run (runner and kernel) when aborted; the result then has a "runner" error named Aborted. */
  signal?: AbortSignal;
}

export interface NotebookError {
  /** Cell index (0-based over all cells), or null when the kernel never ran a cell. */
  cellIndex: number | null;
  kind: "error-output" | "execution" | "timeout" | "kernel" | "runner";
  ename: string;
  evalue: string;
}

export interface ExecuteResult {
  inputPath: string;
  outputPath: string;
  ok: boolean;
  errors: NotebookError[];
  cells: CellSummary[];
  durationS: number;
  /** Tail of the runner's stderr (kernel start messages, Python tracebacks). */
  log: string;
}

function runProcess(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  totalTimeoutS: number,
  onLog?: (t: string) => void,
  kernelPidFile?: string,
  abort?: AbortSignal,
): Promise<{ code: number | null; signal: string | null; log: string; timedOut: boolean; aborted: boolean }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let log = "";
    const keep = (d: Buffer) => {
      const s = d.toString("utf8");
      log = (log + s).slice(-20000);
      onLog?.(s);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    let timedOut = false;
    let aborted = false;
    // end the runner's process group (detached: true) and the kernel, which Jupyter starts in
    // a session of its own (the runner records its pid)
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        /* already gone */
      }
      try {
        const pid =
          kernelPidFile && fs.existsSync(kernelPidFile) ? Number(fs.readFileSync(kernelPidFile, "utf8")) : NaN;
        if (Number.isInteger(pid) && pid > 1) process.kill(pid, "SIGKILL");
      } catch {
        /* already gone */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, totalTimeoutS * 1000);
    const onAbort = () => {
      aborted = true;
      kill();
    };
    if (abort?.aborted) onAbort();
    else abort?.addEventListener("abort", onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      abort?.removeEventListener("abort", onAbort);
    };
    child.on("error", (e) => {
      done();
      reject(e);
    });
    child.on("close", (code, signal) => {
      done();
      resolve({ code, signal, log, timedOut, aborted });
    });
  });
}

export async function executeNotebook(notebookPath: string, opts: ExecuteOptions = {}): Promise<ExecuteResult> {
  const input = path.resolve(notebookPath);
  if (!fs.existsSync(input)) throw new Error(`executeNotebook: no such notebook: ${input}`);
  const timeoutS = opts.timeoutS ?? 600;
  const startupTimeoutS = opts.startupTimeoutS ?? 120;
  const totalTimeoutS = opts.totalTimeoutS ?? 4 * 3600;
  for (const [k, v] of Object.entries({ timeoutS, startupTimeoutS, totalTimeoutS })) {
    if (!(Number.isFinite(v) && v > 0)) throw new Error(`executeNotebook: ${k} must be a positive number (got ${v})`);
  }
  const python = findJupyterPython();
  if (!python) throw new Error("executeNotebook: no Python with nbclient found (run bash environment/setup.sh)");
  ensureKernelspec();

  const outDir = path.resolve(opts.outDir ?? dataDir("notebooks-executed"));
  fs.mkdirSync(outDir, { recursive: true });
  const outputPath = path.join(outDir, path.basename(input));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-nb-"));
  const resultPath = path.join(tmp, "result.json");
  const t0 = Date.now();
  let pending = "";
  try {
    const run = await runProcess(
      python,
      [
        path.join(__dirname, "run_notebook.py"),
        input,
        outputPath,
        resultPath,
        opts.kernelName ?? KERNEL_NAME,
        String(Math.ceil(timeoutS)),
        String(Math.ceil(startupTimeoutS)),
        repoRoot,
      ],
      jupyterEnv(opts.env ?? {}),
      totalTimeoutS,
      (text) => {
        // line-buffer so a progress marker split across chunks is still recognised
        pending += text;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        const rest: string[] = [];
        for (const line of lines) {
          const m = /^::cell (\d+) (\d+)$/.exec(line);
          if (m) opts.onCell?.(Number(m[1]), Number(m[2]));
          else rest.push(line + "\n");
        }
        if (rest.length > 0) opts.onLog?.(rest.join(""));
      },
      `${resultPath}.kernel-pid`,
      opts.signal,
    );
    const errors: NotebookError[] = [];
    let result: {
      failure: null | { kind: NotebookError["kind"]; ename: string; evalue: string; cellIndex: number | null };
    } = { failure: null };
    if (fs.existsSync(resultPath)) result = readJsonFile<typeof result>(resultPath, "notebook runner result");
    const f = result.failure;
    // the runner's failure (execution error, timeout, dead kernel) first, with its precise kind
    if (f) errors.push({ cellIndex: f.cellIndex ?? null, kind: f.kind, ename: f.ename, evalue: f.evalue });
    let cells: CellSummary[] = [];
    if (fs.existsSync(outputPath) && fs.statSync(outputPath).mtimeMs >= t0 - 1000) {
      const nb = readNotebook(outputPath);
      cells = summarizeNotebook(nb);
      for (const e of errorOutputs(nb)) {
        // the runner adds an error output to the failed cell; do not count it twice
        if (f && f.cellIndex === e.cellIndex) continue;
        errors.push({ cellIndex: e.cellIndex, kind: "error-output", ename: e.ename, evalue: e.evalue });
      }
    }
    if (run.aborted) {
      errors.push({ cellIndex: null, kind: "runner", ename: "Aborted", evalue: "the caller ended the run" });
    } else if (run.timedOut) {
      errors.push({
        cellIndex: null,
        kind: "timeout",
        ename: "TotalTimeout",
        evalue: `killed after ${totalTimeoutS} s`,
      });
    } else if (run.code !== 0 && errors.length === 0) {
      errors.push({
        cellIndex: null,
        kind: "runner",
        ename: "RunnerFailed",
        evalue: `exit ${run.code ?? run.signal}: ${run.log.slice(-2000)}`,
      });
    }
    return {
      inputPath: input,
      outputPath,
      ok: errors.length === 0,
      errors,
      cells,
      durationS: (Date.now() - t0) / 1000,
      log: run.log,
    };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** One line per error, for CLIs and assertion messages. */
export function formatErrors(r: ExecuteResult): string {
  return r.errors
    .map((e) => {
      const head = e.cellIndex !== null && r.cells[e.cellIndex] ? ` (${r.cells[e.cellIndex].head})` : "";
      return (
        `${path.basename(r.inputPath)} cell ${e.cellIndex ?? "-"}${head}: ` +
        `${e.kind} ${e.ename}: ${e.evalue.trim().slice(0, 1500)}`
      );
    })
    .join("\n");
}
