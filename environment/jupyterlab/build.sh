#!/usr/bin/env bash
# npm run lab:build (setup.sh --with-jupyterlab runs it): install this package's pinned
# dependencies with `npm ci` into environment/jupyterlab/node_modules (not the repository's own
# node_modules) and webpack the JupyterLab front end into build/, which launch.py serves.
# Idempotent: each step is skipped while its inputs are unchanged (their hash is kept in a stamp
# file); IS_FORCE_LAB_BUILD=1 redoes both. A failed build leaves no build/ behind.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
force="${IS_FORCE_LAB_BUILD:-0}"

deps_hash="$(hash_of package.json package-lock.json)"
if [ "$force" = "1" ] || [ "$(cat node_modules/.is-installed 2>/dev/null || true)" != "$deps_hash" ]; then
  echo "lab:build: npm ci in environment/jupyterlab"
  # no install scripts: none of these packages needs one to build
  npm ci --ignore-scripts --no-audit --no-fund
  echo "$deps_hash" > node_modules/.is-installed
else
  echo "lab:build: environment/jupyterlab/node_modules matches package-lock.json"
fi

build_hash="$(hash_of package-lock.json index.js webpack.config.js src/*.js)"
if [ "$force" = "1" ] || [ ! -f build/bundle.js ] || [ "$(cat build/.is-built 2>/dev/null || true)" != "$build_hash" ]; then
  echo "lab:build: webpack into environment/jupyterlab/build (a minute or more on a small machine)"
  rm -rf build
  if ! nice -n 10 npm run build --silent; then
    rm -rf build
    echo "lab:build: webpack failed (see above); no build left behind" >&2
    exit 1
  fi
  echo "$build_hash" > build/.is-built
else
  echo "lab:build: environment/jupyterlab/build is up to date"
fi
