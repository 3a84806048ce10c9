/**
 * Locating Debian's Jupyter. It runs on /usr/bin/python3; a `python3`/`jupyter` earlier on PATH
 * (pyenv, venv) may lack Jupyter, so absolute paths come first. IS_JUPYTER / IS_JUPYTER_PYTHON
 * override them.
 */
import * as fs from "node:fs";
import { spawnSync } from "node:child_process";

function executable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Path of the `jupyter` command, or null when Jupyter is not installed. */
export function findJupyter(): string | null {
  const candidates = [process.env.IS_JUPYTER, "/usr/bin/jupyter", "/usr/local/bin/jupyter"].filter((c): c is string => Boolean(c));
  return candidates.find(executable) ?? null;
}

/** A Python that can `import nbclient, nbformat`, or null. */
export function findJupyterPython(): string | null {
  const candidates = [process.env.IS_JUPYTER_PYTHON, "/usr/bin/python3", "python3"].filter((c): c is string => Boolean(c));
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", "import nbclient, nbformat"], { stdio: "ignore", timeout: 30_000 });
    if (r.status === 0) return py;
  }
  return null;
}

/** Debian's chromium (for the browser test), or null. IS_CHROMIUM overrides. */
export function findChromium(): string | null {
  const candidates = [process.env.IS_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter((c): c is string => Boolean(c));
  return candidates.find(executable) ?? null;
}
