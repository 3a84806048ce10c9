/**
 * Throw-away Jupyter servers for browser tests: the classic Notebook (Debian's Notebook 6,
 * `startNotebookServer`) or the project's JupyterLab build on Debian's jupyter_server
 * (environment/jupyterlab/launch.py, `startLabServer`). Both: 127.0.0.1 only, a free port, a random
 * per-server token, private config/runtime dirs, the project kernel on JUPYTER_PATH. `stop()` ends
 * the server and the kernels it started (SIGTERM to its process group, SIGKILL after a grace period).
 *
 * The token (32 random bytes, hex) keeps other local processes from starting kernels as the test
 * user while the server runs. It reaches Jupyter through the JUPYTER_TOKEN environment variable,
 * not the command line (argv is readable by every local user in /proc; the environment is not),
 * and Jupyter's runtime file holding it lies in a private mkdtemp directory. Clients pass it as
 * `Authorization: token <token>` (REST: `server.authHeaders()`) or `?token=` in a page URL
 * (browsers: `server.pageUrl(path)`, after which Jupyter keeps a login cookie).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, type ChildProcess } from "node:child_process";
import { ensureKernelspec, jupyterEnv } from "./kernelspec";
import { findJupyter, findLabBuild, findLabServerPython } from "./jupyter";

export interface NotebookServer {
  /** Base URL, http://127.0.0.1:<port> (requests to it need the token). */
  url: string;
  port: number;
  /** The server's random token. */
  token: string;
  /** Headers that authenticate a REST request: `{ Authorization: "token <token>" }`. */
  authHeaders(): Record<string, string>;
  /** URL of a page (e.g. "/notebooks/x.ipynb") with `?token=` for a browser. */
  pageUrl(pagePath: string): string;
  /** Server log so far (stdout + stderr). */
  log(): string;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForHttp(
  what: string,
  url: string,
  headers: Record<string, string>,
  child: ChildProcess,
  timeoutMs: number,
  log: () => string,
): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before serving:\n${log().slice(-3000)}`);
    }
    try {
      const res = await fetch(url, { headers, redirect: "manual" });
      if (res.ok) return;
      if (res.status === 401 || res.status === 403) {
        throw new Error(`${what} refused the token at ${url} (HTTP ${res.status}):\n${log().slice(-3000)}`);
      }
    } catch (e) {
      if (/refused the token/.test((e as Error).message)) throw e;
      /* not up yet */
    }
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`${what} did not answer ${url} within ${timeoutMs} ms:\n${log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Ask a running server to shut its kernels down (best effort: errors and a dead server are ignored). */
async function shutdownKernels(url: string, headers: Record<string, string>): Promise<void> {
  try {
    const res = await fetch(`${url}/api/kernels`, { headers, signal: AbortSignal.timeout(5_000) });
    if (!res.ok) return;
    const kernels = (await res.json()) as { id: string }[];
    await Promise.all(
      kernels.map((k) =>
        fetch(`${url}/api/kernels/${encodeURIComponent(k.id)}`, {
          method: "DELETE",
          headers,
          signal: AbortSignal.timeout(15_000),
        }).catch(() => undefined),
      ),
    );
  } catch {
    /* server already gone or not answering */
  }
}

export interface ServerOptions {
  /** The directory the server shows (its file browser root). */
  notebookDir: string;
  timeoutMs?: number;
  /** Extra environment for the server and so for its kernels (e.g. {IS_PRESET: "tiny"}). */
  env?: Record<string, string>;
}

/** The classic Notebook server (`jupyter notebook`); pages under /tree and /notebooks/<file>. */
export async function startNotebookServer(opts: ServerOptions): Promise<NotebookServer> {
  const jupyter = findJupyter();
  if (!jupyter) throw new Error("jupyter is not installed (run bash environment/setup.sh)");
  return startServer(
    "jupyter notebook",
    jupyter,
    (port) => [
      "notebook",
      "--no-browser",
      "--ip=127.0.0.1",
      `--port=${port}`,
      "--port-retries=0",
      // token from JUPYTER_TOKEN (see the module comment); no password login
      "--NotebookApp.password=",
      "--NotebookApp.allow_remote_access=False",
      "--NotebookApp.open_browser=False",
      `--notebook-dir=${path.resolve(opts.notebookDir)}`,
    ],
    opts,
  );
}

/**
 * The project's JupyterLab build served by environment/jupyterlab/launch.py on jupyter_server;
 * pages under /lab and /lab/tree/<file>. Terminals are off (a test needs none).
 */
export async function startLabServer(opts: ServerOptions): Promise<NotebookServer> {
  const build = findLabBuild();
  if (!build)
    throw new Error(
      "the JupyterLab build is missing (environment/jupyterlab/build): run npm run lab:build, " +
        "or bash environment/setup.sh --with-jupyterlab",
    );
  const python = findLabServerPython();
  if (!python)
    throw new Error(
      "no Python with jupyter_server and jupyterlab_server: run bash environment/setup.sh --with-jupyterlab",
    );
  return startServer(
    "the JupyterLab server",
    python,
    (port) => [
      build.launcher,
      "--no-browser",
      "--ip=127.0.0.1",
      `--port=${port}`,
      "--port-retries=0",
      "--ServerApp.password=",
      "--ServerApp.allow_remote_access=False",
      "--ServerApp.open_browser=False",
      "--ServerApp.terminals_enabled=False",
      `--ServerApp.root_dir=${path.resolve(opts.notebookDir)}`,
    ],
    opts,
  );
}

async function startServer(
  what: string,
  command: string,
  argsFor: (port: number) => string[],
  opts: ServerOptions,
): Promise<NotebookServer> {
  ensureKernelspec();
  const port = await freePort();
  const token = crypto.randomBytes(32).toString("hex");
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "is-jupyter-"));
  const env = jupyterEnv({
    ...opts.env,
    JUPYTER_CONFIG_DIR: path.join(home, "config"),
    JUPYTER_RUNTIME_DIR: path.join(home, "runtime"),
    JUPYTER_DATA_DIR: path.join(home, "data"),
    IPYTHONDIR: path.join(home, "ipython"),
    JUPYTER_TOKEN: token,
  });
  delete env.JUPYTER_TOKEN_FILE;
  const args = argsFor(port);
  // CI containers run as root; Jupyter refuses that without the flag
  if (typeof process.getuid === "function" && process.getuid() === 0) args.push("--allow-root");
  const child = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let logText = "";
  const keep = (d: Buffer) => {
    logText = (logText + d.toString("utf8")).slice(-50000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  const url = `http://127.0.0.1:${port}`;
  const authHeaders = () => ({ Authorization: `token ${token}` });
  const pageUrl = (pagePath: string) =>
    `${url}${pagePath.startsWith("/") ? "" : "/"}${pagePath}${pagePath.includes("?") ? "&" : "?"}token=${token}`;
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // kernels first, through the REST API: Jupyter starts each in a session of its own, so the
    // signals below (to the server's process group) may not reach them
    await shutdownKernels(url, authHeaders());
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once("exit", () => resolve());
    });
    const signal = (sig: NodeJS.Signals) => {
      try {
        if (child.pid) process.kill(-child.pid, sig); // the server and its kernels
      } catch {
        /* already gone */
      }
    };
    signal("SIGTERM");
    const grace = setTimeout(() => signal("SIGKILL"), 10_000);
    await exited;
    clearTimeout(grace);
    // kernels are in the same process group; make sure none survives the server
    signal("SIGKILL");
    fs.rmSync(home, { recursive: true, force: true });
  };
  try {
    // /api/status is authenticated (plain /api is not), so this also checks the token works
    await waitForHttp(what, `${url}/api/status`, authHeaders(), child, opts.timeoutMs ?? 60_000, () => logText);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, port, token, authHeaders, pageUrl, log: () => logText, stop };
}
