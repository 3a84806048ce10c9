/**
 * Locating Debian's Jupyter. It runs on /usr/bin/python3; a `python3`/`jupyter` earlier on PATH
 * (pyenv, venv) may lack Jupyter, so absolute paths come first. IS_JUPYTER / IS_JUPYTER_PYTHON
 * override them. Also the project's JupyterLab build (environment/jupyterlab, served on Debian's
 * jupyter_server) and a Python that can serve it.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { repoRoot } from "../paths";

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
  const candidates = [process.env.IS_JUPYTER, "/usr/bin/jupyter", "/usr/local/bin/jupyter"].filter((c): c is string =>
    Boolean(c),
  );
  return candidates.find(executable) ?? null;
}

/** Pythons found by pythonWith, per modules and IS_JUPYTER_PYTHON (a search spawns each candidate: ≈ 0.15 s). */
const foundPython = new Map<string, string>();

/**
 * The first Python (IS_JUPYTER_PYTHON, Debian's, then PATH's) that can import `modules`, or null. A Python found
 * once is remembered for this process (the reproduction asks once per notebook); a miss is not, so a Jupyter
 * installed meanwhile is found by the next call.
 */
function pythonWith(modules: string): string | null {
  const memo = `${modules}\0${process.env.IS_JUPYTER_PYTHON ?? ""}`;
  const known = foundPython.get(memo);
  if (known !== undefined) return known;
  const candidates = [process.env.IS_JUPYTER_PYTHON, "/usr/bin/python3", "python3"].filter((c): c is string =>
    Boolean(c),
  );
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", `import ${modules}`], { stdio: "ignore", timeout: 30_000 });
    if (r.status === 0) {
      foundPython.set(memo, py);
      return py;
    }
  }
  return null;
}

/** A Python that can `import nbclient, nbformat`, or null. */
export function findJupyterPython(): string | null {
  return pythonWith("nbclient, nbformat");
}

/** A Python with jupyter_server and jupyterlab_server (Debian: python3-jupyter-server, python3-jupyterlab-server), or
 * null. */
export function findLabServerPython(): string | null {
  return pythonWith("jupyter_server, jupyterlab_server");
}

/** environment/jupyterlab: the lab build's package (launch.py, build/ once `npm run lab:build` ran). */
export const LAB_PACKAGE_DIR = path.join(repoRoot, "environment", "jupyterlab");

/** The lab build's launcher when the build exists (build/bundle.js), else null. */
export function findLabBuild(): { launcher: string; buildDir: string } | null {
  const buildDir = path.join(LAB_PACKAGE_DIR, "build");
  const launcher = path.join(LAB_PACKAGE_DIR, "launch.py");
  return fs.existsSync(path.join(buildDir, "bundle.js")) && fs.existsSync(launcher) ? { launcher, buildDir } : null;
}

/** Debian's chromium (for the browser test), or null. IS_CHROMIUM overrides. */
export function findChromium(): string | null {
  const candidates = [process.env.IS_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(
    (c): c is string => Boolean(c),
  );
  return candidates.find(executable) ?? null;
}
