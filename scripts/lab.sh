#!/usr/bin/env bash
# npm run lab [-- extra jupyter notebook options]
# Starts the classic Jupyter Notebook server (Debian ships Notebook 6; JupyterLab users: see README)
# in notebooks/, with the project's TypeScript kernel on JUPYTER_PATH.
# PORT (default 8888) and IP (default 127.0.0.1) choose where it listens.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JUPYTER="${IS_JUPYTER:-/usr/bin/jupyter}"
if [ ! -x "$JUPYTER" ]; then
  echo "lab: $JUPYTER not found: run bash environment/setup.sh" >&2
  exit 1
fi
# (re)write the kernelspec: it records this checkout's path
"$REPO/node_modules/.bin/tsx" "$REPO/lib/notebook/kernelspec.ts" >/dev/null
export JUPYTER_PATH="$REPO/.jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
PORT="${PORT:-8888}"
IP="${IP:-127.0.0.1}"
extra=()
if [ "$(id -u)" -eq 0 ]; then extra+=(--allow-root); fi
echo "lab: Notebook server at http://$IP:$PORT/tree (kernel: \"TypeScript (integration-spaces)\")"
echo "lab: Jupyter prints the full URL with its login token below; Ctrl-C twice to stop."
exec "$JUPYTER" notebook --no-browser --ip="$IP" --port="$PORT" --notebook-dir="$REPO/notebooks" "${extra[@]}" "$@"
