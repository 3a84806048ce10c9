/*
 * Feedback while the first cell compiles the library. tslab type-checks a cell and every project
 * file it imports before it runs any of it, so the first cell that imports from ./lib/ sits silent
 * for tens of seconds on a small machine. The kernel launcher (tslab-kernel.cjs) installs this on
 * tslab's JupyterHandlerImpl: before that first cell starts, one output says the library is being
 * compiled; when the cell is done, the same output (same display id) is updated in place with the
 * time it took. Later cells, and cells that import nothing from ./lib/, are untouched.
 */
"use strict";

const LIB_IMPORT = /\b(?:from|import)\s+["']\.\/lib\/|\brequire\(\s*["']\.\/lib\//;

function message(text, displayId) {
  const html = `<div class="is-compile"><code>${text.replace(/&/g, "&amp;").replace(/</g, "&lt;")}</code></div>`;
  return { data: { "text/plain": text, "text/html": html }, metadata: {}, transient: { display_id: displayId } };
}

/** ", 121 of 123 library files from the compile cache", from the cache's counters before and after. */
function cacheNote(before, after, off) {
  if (off) return ` (compile cache off: ${off})`;
  if (!before || !after) return "";
  const hits = after.hits - before.hits;
  const files = hits + after.misses - before.misses;
  return files > 0 ? `, ${hits} of ${files} library files from the compile cache` : "";
}

/**
 * Wrap `Handler.prototype.handleExecuteImpl(req, writeStream, writeDisplayData)` so that the first
 * cell importing ./lib/ is announced and timed. `now` (ms) is injectable for tests; `cacheStats`
 * returns the compile cache's counters (lib/notebook/compile-cache.cjs), when there is one, and
 * `cellCacheStats` the cell cache's (lib/notebook/cell-cache.cjs: a first cell it answered is not compiled);
 * `cacheOff` says why it could not be installed. Returns a function that restores the original method.
 */
function installCompileFeedback(Handler, opts) {
  const now = (opts && opts.now) || Date.now;
  const cacheStats = opts && opts.cacheStats;
  const cacheOff = opts && opts.cacheOff;
  const snapshot = () => (cacheStats ? { ...cacheStats() } : null);
  const cellCacheStats = opts && opts.cellCacheStats;
  const cellHits = () => (cellCacheStats ? cellCacheStats().hits : 0);
  const proto = Handler && Handler.prototype;
  const original = proto && proto.handleExecuteImpl;
  if (typeof original !== "function")
    throw new Error("compile feedback: tslab's JupyterHandlerImpl has no handleExecuteImpl (tslab version changed?)");
  let announced = false;
  proto.handleExecuteImpl = async function (req, writeStream, writeDisplayData) {
    if (announced || typeof writeDisplayData !== "function" || !LIB_IMPORT.test(String(req && req.code))) {
      return original.call(this, req, writeStream, writeDisplayData);
    }
    announced = true;
    const id = `is-compile-${process.pid}-${now()}`;
    writeDisplayData(
      message("compiling the library (first cell of this kernel only; this takes a while)…", id),
      false,
    );
    const t0 = now();
    const before = snapshot();
    const cellHitsBefore = cellHits();
    let ok = false;
    try {
      const result = await original.call(this, req, writeStream, writeDisplayData);
      ok = true;
      return result;
    } finally {
      const s = ((now() - t0) / 1000).toFixed(1);
      writeDisplayData(
        message(
          !ok
            ? `first cell stopped after ${s} s (see the error below)`
            : cellHits() > cellHitsBefore
              ? `first cell run in ${s} s (compiled before: taken from the cell cache)`
              : `library compiled and first cell run in ${s} s${cacheNote(before, snapshot(), cacheOff)}`,
          id,
        ),
        true,
      );
    }
  };
  return () => {
    proto.handleExecuteImpl = original;
  };
}

module.exports = { installCompileFeedback, LIB_IMPORT };
