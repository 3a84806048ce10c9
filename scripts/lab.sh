#!/usr/bin/env bash
# npm run lab [-- extra server options]
# Opens notebooks/ with the project's TypeScript kernel (on JUPYTER_PATH) in the first of:
#   1. the system's JupyterLab (`jupyter-lab`, e.g. installed with pip), when there is one;
#   2. this repository's JupyterLab build (environment/jupyterlab, JupyterLab 3.6 made by
#      `npm run lab:build` or `bash environment/setup.sh --with-jupyterlab`) on Debian's jupyter_server;
#   3. the classic Jupyter Notebook (Debian's Notebook 6).
# It says which and why. IS_LAB=system|build|notebook picks one (and fails if it is missing).
# PORT (default 8888) and IP (default 127.0.0.1) choose where it listens.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JUPYTER="${IS_JUPYTER:-/usr/bin/jupyter}"
PYTHON="${IS_JUPYTER_PYTHON:-/usr/bin/python3}"
LAB_BUILD="$REPO/environment/jupyterlab"
WANT="${IS_LAB:-}"
case "$WANT" in "" | system | build | notebook) ;; *) echo "lab: IS_LAB must be system, build or notebook (got '$WANT')" >&2; exit 2 ;; esac

system_lab="$(command -v jupyter-lab || true)"
has_build=0
if [ -f "$LAB_BUILD/build/bundle.js" ] && "$PYTHON" -c 'import jupyter_server, jupyterlab_server' >/dev/null 2>&1; then has_build=1; fi

choice=""
if [ -n "$WANT" ]; then
  choice="$WANT"
elif [ -n "$system_lab" ]; then
  choice=system
elif [ "$has_build" = "1" ]; then
  choice=build
else
  choice=notebook
fi

# (re)write the kernelspec: it records this checkout's path
"$REPO/node_modules/.bin/tsx" "$REPO/lib/notebook/kernelspec.ts" >/dev/null
export JUPYTER_PATH="$REPO/.jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
PORT="${PORT:-8888}"
IP="${IP:-127.0.0.1}"
common=(--no-browser --ip="$IP" --port="$PORT")
if [ "$(id -u)" -eq 0 ]; then common+=(--allow-root); fi
kernel='kernel: "TypeScript (integration-spaces)"'

case "$choice" in
  system)
    if [ -z "$system_lab" ]; then echo "lab: IS_LAB=system but no jupyter-lab on PATH" >&2; exit 1; fi
    echo "lab: the system's JupyterLab ($system_lab, $("$system_lab" --version 2>/dev/null || echo "version unknown")) at http://$IP:$PORT/lab ($kernel)"
    echo "lab: Jupyter prints the full URL with its login token below; Ctrl-C twice to stop."
    exec "$system_lab" "${common[@]}" --ServerApp.root_dir="$REPO/notebooks" "$@"
    ;;
  build)
    if [ "$has_build" != "1" ]; then
      echo "lab: IS_LAB=build but the JupyterLab build or its server is missing: run bash environment/setup.sh --with-jupyterlab" >&2
      exit 1
    fi
    echo "lab: no system JupyterLab (jupyter-lab); this repository's JupyterLab build (environment/jupyterlab) on Debian's jupyter_server"
    echo "lab: at http://$IP:$PORT/lab ($kernel); Jupyter prints the full URL with its login token below; Ctrl-C twice to stop."
    exec "$PYTHON" "$LAB_BUILD/launch.py" "${common[@]}" --ServerApp.root_dir="$REPO/notebooks" "$@"
    ;;
  notebook)
    if [ ! -x "$JUPYTER" ]; then
      echo "lab: $JUPYTER not found: run bash environment/setup.sh" >&2
      exit 1
    fi
    if [ -z "$WANT" ]; then
      echo "lab: no JupyterLab here (no jupyter-lab on PATH, no build from bash environment/setup.sh --with-jupyterlab): the classic Notebook instead"
    fi
    echo "lab: classic Notebook server at http://$IP:$PORT/tree ($kernel)"
    echo "lab: Jupyter prints the full URL with its login token below; Ctrl-C twice to stop."
    exec "$JUPYTER" notebook "${common[@]}" --notebook-dir="$REPO/notebooks" "$@"
    ;;
esac
