#!/usr/bin/env bash
# One-command, idempotent setup for integration-spaces on Debian/Ubuntu.
#   1. system packages from apt (only those missing): classic Jupyter Notebook, nbconvert/nbclient,
#      ipykernel, jupyter-client, DejaVu fonts (chart rendering), chromium (browser test), numpy
#      (the Python round-trip test of the SAELens/sparsify and store exports);
#   2. `npm ci` (with optional dependencies: the native binaries of nodejs-polars and resvg are
#      optional dependencies; tfjs-node-gpu is optional and may fail to install without internet);
#   3. the wasm kernels compiled from their AssemblyScript sources (`npm run build:wasm`; the
#      outputs are committed, so this rewrites nothing unless a source changed without a rebuild);
#   4. a repo-local Jupyter kernelspec for the tslab TypeScript kernel whose working directory is the
#      repository root, so notebooks can `import ... from "./lib/..."`; then the library files the
#      notebooks import, compiled once into the kernels' shared compile cache, and every code cell of
#      the notebooks into their cell cache (`npm run notebooks -- --precompile`), so that kernels start warm;
#   5. with --with-jupyterlab (CI passes it): Debian's jupyter_server and jupyterlab_server (apt, in
#      step 1) and the project's JupyterLab build (`npm run lab:build`: environment/jupyterlab), which
#      `npm run lab` and the JupyterLab browser test use.
# Nothing is downloaded outside the Debian and npm registries.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

WITH_JUPYTERLAB=0
for arg in "$@"; do
  case "$arg" in
    --with-jupyterlab) WITH_JUPYTERLAB=1 ;;
    -h|--help) echo "usage: bash environment/setup.sh [--with-jupyterlab]"; exit 0 ;;
    *) echo "setup: unknown option: $arg (usage: bash environment/setup.sh [--with-jupyterlab])" >&2; exit 2 ;;
  esac
done

APT_PACKAGES=(jupyter-notebook jupyter-nbconvert python3-nbclient python3-ipykernel jupyter-client fonts-dejavu-core chromium python3-numpy)
if [ "$WITH_JUPYTERLAB" = "1" ]; then
  # jupyter_server 1.23 + jupyterlab_server 2.16 serve the JupyterLab 3.6 build (environment/jupyterlab)
  APT_PACKAGES+=(python3-jupyter-server python3-jupyterlab-server)
fi

# --- 1. apt ---------------------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
    fi
  fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: apt packages already installed"
fi

# --- 2. npm ---------------------------------------------------------------------------------------
# `npm ci` wipes and reinstalls node_modules; skip it when the installed tree already matches the
# lockfile: every locked package is present in node_modules/.package-lock.json (npm's record of what
# it installed) at the locked version; optional packages npm could not install may be absent.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup: node and npm are required (Node 20-22); install them first" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ] || [ "$node_major" -gt 22 ]; then
  echo "setup: Node $(node --version) found; this project needs Node 20-22" >&2
  exit 1
fi
if [ -d node_modules ] && [ -f node_modules/.package-lock.json ] && [ "${IS_FORCE_NPM_CI:-0}" != "1" ] \
   && node -e '
      const a = require("./package-lock.json").packages, b = require("./node_modules/.package-lock.json").packages;
      for (const [k, v] of Object.entries(a)) { if (k === "") continue; const got = b[k];
        if (!got) { if (v.optional) continue; process.exit(1); }
        if (got.version !== v.version) process.exit(1); }
    '; then
  echo "setup: node_modules matches package-lock.json (set IS_FORCE_NPM_CI=1 to reinstall)"
else
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
fi

# --- 3. wasm kernels ------------------------------------------------------------------------------
# lib/kernels/assembly/*.ts → lib/kernels/compiled/*.ts (scripts/build-wasm.ts explains the choice).
npm run --silent build:wasm

# --- 4. kernelspec --------------------------------------------------------------------------------
KDIR="$REPO/.jupyter/kernels/integration-spaces"
# One source of truth for the kernelspec: lib/notebook/kernelspec.ts. Its argv runs bash so the
# kernel's working directory is the repo root (tslab compiles local imports relative to its cwd;
# see ../shared/docs/platform-notes.md).
"$REPO/node_modules/.bin/tsx" "$REPO/lib/notebook/kernelspec.ts" >/dev/null
echo "setup: wrote $KDIR/kernel.json"

# Sanity: Debian's jupyter (on /usr/bin/python3) sees the kernel when JUPYTER_PATH points here.
if [ -x /usr/bin/jupyter ]; then
  if JUPYTER_PATH="$REPO/.jupyter" /usr/bin/jupyter kernelspec list 2>/dev/null | grep -q "integration-spaces"; then
    echo "setup: jupyter lists the kernel 'integration-spaces'"
  else
    echo "setup: WARNING: jupyter does not list the kernel 'integration-spaces'" >&2
  fi
fi

# --- 4b. the notebooks' library, compiled once for every kernel ----------------------------------
# The kernels share a compile cache (lib/notebook/compile-cache.cjs) and a cell cache (lib/notebook/cell-cache.cjs);
# filled here, the first kernel after setup starts in ≈ 2 s instead of compiling the library itself (≈ 10 s), and a
# kernel running a committed notebook builds no TypeScript program at all (≈ 3–5 CPU-s less per notebook). A failure
# only leaves that work to the kernels.
if ! npm run --silent notebooks -- --precompile; then
  echo "setup: WARNING: the notebooks' library or cells did not precompile; the kernels compile them (and report why)" >&2
fi

# --- 5. JupyterLab build (optional) ---------------------------------------------------------------
if [ "$WITH_JUPYTERLAB" = "1" ]; then
  echo "setup: JupyterLab build (npm run lab:build)"
  npm run --silent lab:build
fi

cat <<MSG

Setup done.
  Tests:       npm test
  Notebooks:   npm run lab        (JupyterLab: the system's, else this repo's build (setup.sh
                                   --with-jupyterlab), else the classic Notebook; in notebooks/)
               npm run notebooks  (execute every notebook headless into data/notebooks-executed/)
  Our scripts find the kernel through JUPYTER_PATH=$REPO/.jupyter
  To use the kernel from your own JupyterLab / Notebook instead:
      jupyter kernelspec install --user $KDIR
  (the kernel keeps pointing at this checkout: re-run setup.sh if you move it).
MSG
