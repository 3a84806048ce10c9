/*
 * A compile cache for tslab kernels, shared by every kernel of this checkout.
 *
 * Each kernel compiles anew every project file a notebook imports: tslab type-checks all of them
 * and emits their JavaScript before the first cell can run (≈ 12 CPU-s for the library on this
 * project's 2-core machine, the same work in every kernel). This cache keeps, per imported file, the
 * JavaScript tslab emitted for it once that file had type-checked with no diagnostic at all. A
 * later kernel that meets the same file with the same inputs skips the file's diagnostics and its
 * emit and uses the stored JavaScript; the cell itself is always checked and emitted as before.
 *
 * The inputs of a file's diagnostics and emit, and so its key:
 * - its own text and the text of every file it depends on, directly or not (TypeScript's builder
 *   knows the closure: project files and the .d.ts files of packages);
 * - every file that can change types without being imported: scripts without imports or exports
 *   (lib.*.d.ts, @types/node's globals) and modules with `declare global` or module augmentations;
 * - the compiler options (they hold the target, which follows Node's major version, and the
 *   checkout's path), TypeScript's version, and tslab's converter source.
 * tslab checks every dependency again in each later cell (TypeScript keeps the results of files it
 * checked); a file taken from the cache stays exempt in the kernel's later cells while its key holds.
 * A file whose emit triggered tslab's "last expression" rewrite (a file ending in an expression
 * statement) is never stored: that rewrite also sets the cell's result variable, which a stored
 * emit would not reproduce (tslab 1.0.22 fails on such an imported file anyway).
 *
 * tslab has no hook for this, so the cache is spliced into tslab's converter source at load time
 * (patchConverterSource: five exact anchors, the fifth a hook for the cell cache; package.json pins
 * tslab, and for a tslab whose converter differs the launcher runs without the cache and the first
 * cell says why). Entries are JSON files,
 * written whole (temporary file, then rename) and verified when read (format, key, file and a digest
 * of the outputs); a bad entry is a miss.
 *
 * Where: node_modules/.cache/integration-spaces/tslab-compile (IS_TSLAB_COMPILE_CACHE_DIR
 * overrides; IS_TSLAB_COMPILE_CACHE=0 turns the cache off). The kernel launcher installs it
 * (lib/notebook/tslab-kernel.cjs); tests/notebook-compile-cache.test.ts checks it.
 */
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const Module = require("module");
const path = require("path");

const FORMAT = 1;
const PATCHED = Symbol("integration-spaces patched converter");
/** Entries kept after pruning, and the count that triggers it (at most once per kernel). */
const PRUNE_TO = 2000;
const PRUNE_ABOVE = 4000;

const sha256 = (s) => crypto.createHash("sha256").update(s).digest("hex");

/**
 * Write `body` to `file` whole: a temporary file beside it (its directory created if missing), then a
 * rename, so a reader sees the old file or the new one. Throws, leaving no temporary file behind.
 */
function writeFileWhole(file, body) {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(tmp, body);
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* never written */
    }
    throw err;
  }
}

/**
 * The JSON value in `file` if `valid(value)` holds; undefined when the file cannot be read (a miss),
 * null when it is not JSON or not valid (a damaged entry).
 */
function readCheckedJson(file, valid) {
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
  try {
    const value = JSON.parse(text);
    if (valid(value)) return value;
  } catch {
    /* not JSON */
  }
  return null;
}

let current = null;
let convertListener = null;

/** The cache the patched converter consults (null: compile as tslab does). */
function currentCompileCache() {
  return current;
}

function setCurrentCompileCache(cache) {
  current = cache;
}

/**
 * Called by the patched converter after each successful convert, with the builder, the cell's source
 * file and its source dependencies (tslab's getAllSrcDependencies); null: nobody listens. The cell
 * cache (lib/notebook/cell-cache.cjs) sets it around its calls of a real converter.
 */
function currentConvertListener() {
  return convertListener;
}

function setConvertListener(fn) {
  const before = convertListener;
  convertListener = fn;
  return before;
}

/**
 * Edits to tslab 1.0.22's dist/converter.js, each an anchor that must occur exactly once. `__cc`
 * is this module; `__hits` maps a dependency's path to its stored outputs.
 */
function converterEdits(selfPath) {
  return [
    {
      what: "load the cache module",
      find: 'const tspath_1 = require("./tspath");\n',
      replace: `const tspath_1 = require("./tspath");\nconst __cc = require(${JSON.stringify(selfPath)});\n`,
    },
    {
      what: "skip stored files' diagnostics",
      find: "        const diag = convertDiagnostics(getPreEmitDiagnosticsWithDependencies(builder, srcFile));\n",
      replace:
        "        const __cache = __cc.currentCompileCache();\n" +
        "        const __found = __cache ? __cache.lookup(builder, srcFile, sideInputsConverted) : null;\n" +
        "        const __hits = __found ? __found.hits : new Map();\n" +
        "        const diag = convertDiagnostics(__found && __found.verified.size > 0\n" +
        "            ? __cache.preEmitDiagnostics(builder, srcFile, getAllSrcDependencies(builder, srcFile), __found.verified)\n" +
        "            : getPreEmitDiagnosticsWithDependencies(builder, srcFile));\n" +
        "        const __emitted = [];\n",
    },
    {
      what: "use stored outputs instead of emitting",
      find: "            if (sideInputsConverted.has(dep)) {\n                continue;\n            }\n",
      replace:
        "            if (sideInputsConverted.has(dep)) {\n                continue;\n            }\n" +
        "            if (__hits.has(dep)) {\n" +
        "                sideInputsConverted.add(dep);\n" +
        "                if (!sideOutputs) {\n                    sideOutputs = [];\n                }\n" +
        "                sideOutputs.push(...__hits.get(dep));\n" +
        "                continue;\n" +
        "            }\n" +
        "            const __before = sideOutputs ? sideOutputs.length : 0;\n" +
        "            let __lastExpr = false;\n",
    },
    {
      what: "note a last-expression rewrite, record each emitted file",
      find: "                lastExpressionVar = name;\n            }));\n        }\n",
      replace:
        "                lastExpressionVar = name;\n                __lastExpr = true;\n            }));\n" +
        "            if (dep !== srcFilename) {\n" +
        "                __emitted.push({ file: dep, outputs: sideOutputs ? sideOutputs.slice(__before) : [], lastExpr: __lastExpr });\n" +
        "            }\n" +
        "        }\n" +
        "        if (__cache) {\n            __cache.store(__found, __emitted);\n        }\n",
    },
    {
      what: "report each converted cell's program",
      find: "        declOutput += remainingDecls(builder.getProgram().getTypeChecker(), srcFile, declsFile);\n",
      replace:
        "        declOutput += remainingDecls(builder.getProgram().getTypeChecker(), srcFile, declsFile);\n" +
        "        const __listener = __cc.currentConvertListener();\n" +
        "        if (__listener) {\n            __listener(builder, srcFile, getAllSrcDependencies(builder, srcFile));\n        }\n",
    },
  ];
}

/** tslab's converter source with the cache's hooks; throws naming the anchor that is missing. */
function patchConverterSource(src, selfPath = __filename) {
  let out = src;
  for (const e of converterEdits(selfPath)) {
    const at = out.indexOf(e.find);
    if (at < 0 || out.indexOf(e.find, at + 1) >= 0) {
      throw new Error(
        `compile cache: tslab's converter.js does not contain the anchor for "${e.what}" exactly once ` +
          "(tslab version changed? package.json pins 1.0.22; IS_TSLAB_COMPILE_CACHE=0 runs without the cache)",
      );
    }
    out = out.slice(0, at) + e.replace + out.slice(at + e.find.length);
  }
  return out;
}

/**
 * Compile the patched converter as `<tslabDir>/dist/converter.js`. With `register`, it becomes the
 * module tslab's own `require("./converter")` returns (so it must run before tslab loads it).
 */
function loadPatchedConverter(tslabDir, { register = false } = {}) {
  const file = path.join(tslabDir, "dist", "converter.js");
  if (register && require.cache[file]) {
    // registered by an earlier call (the compile cache and the cell cache both need it)
    if (require.cache[file][PATCHED]) return require.cache[file].exports;
    throw new Error("compile cache: tslab's converter was loaded before the cache was installed");
  }
  const m = new Module(file, module);
  m.filename = file;
  m.paths = Module._nodeModulePaths(path.dirname(file));
  if (register) require.cache[file] = m;
  try {
    m._compile(patchConverterSource(fs.readFileSync(file, "utf8")), file);
  } catch (e) {
    if (register) delete require.cache[file];
    throw e;
  }
  m.loaded = true;
  m[PATCHED] = true;
  return m.exports;
}

/**
 * A cache in `dir`. `ts` is tslab's TypeScript module; `salt` holds what the key needs beyond the
 * program (TypeScript's version and the converter source). Methods are called by the patched
 * converter: lookup (before diagnostics), preEmitDiagnostics, store (after a successful emit).
 */
function createCompileCache({ dir, ts, salt }) {
  const textHashes = new WeakMap(); // SourceFile → sha256 of its text (unchanged files keep their object)
  const ambientKeys = new WeakMap(); // Program → key of its global inputs
  const fromCacheByConverter = new WeakMap(); // a converter's converted-files set → Map(file → key)
  let warned = false;
  const stats = { hits: 0, misses: 0, stored: 0, rejected: 0, uncacheable: 0, writeErrors: 0 };

  const textHash = (sf) => {
    let h = textHashes.get(sf);
    if (h === undefined) {
      h = sha256(sf.text);
      textHashes.set(sf, h);
    }
    return h;
  };

  function ambientKey(program) {
    let key = ambientKeys.get(program);
    if (key !== undefined) return key;
    const parts = [
      `format ${FORMAT}`,
      `typescript ${ts.version}`,
      `salt ${salt}`,
      `options ${JSON.stringify(program.getCompilerOptions())}`,
    ];
    for (const sf of program.getSourceFiles()) {
      const global = !ts.isExternalModule(sf) && !ts.isJsonSourceFile(sf);
      const augments = sf.moduleAugmentations && sf.moduleAugmentations.length > 0;
      if (global || augments) parts.push(`${sf.fileName}\0${textHash(sf)}`);
    }
    key = sha256(parts.join("\n"));
    ambientKeys.set(program, key);
    return key;
  }

  /** The key of `file`'s diagnostics and emit, or null when a dependency is not in the program. */
  function fileKey(builder, program, file, ambient) {
    const sf = program.getSourceFile(file);
    if (!sf) return null;
    const names = new Set(builder.getAllDependencies(sf));
    names.add(file);
    const parts = [ambient, file];
    for (const name of [...names].sort()) {
      const dep = program.getSourceFile(name);
      if (!dep) return null;
      parts.push(`${name}\0${textHash(dep)}`);
    }
    return sha256(parts.join("\n"));
  }

  const entryPath = (key) => path.join(dir, `${key}.json`);
  const outputsDigest = (outputs) => sha256(JSON.stringify(outputs));

  /** The stored outputs under `key` for `file`, or null (missing, unreadable or not verified). */
  function read(key, file) {
    const e = readCheckedJson(
      entryPath(key),
      (e) =>
        e &&
        e.format === FORMAT &&
        e.key === key &&
        e.file === file &&
        Array.isArray(e.outputs) &&
        e.outputs.every((o) => o && typeof o.path === "string" && typeof o.data === "string") &&
        e.digest === outputsDigest(e.outputs),
    );
    if (e === null) stats.rejected++;
    return e ? e.outputs : null;
  }

  function warnOnce(msg) {
    if (warned) return;
    warned = true;
    console.warn(`compile cache: ${msg} (the kernel compiles without storing; nothing else changes)`);
  }

  function write(key, file, outputs) {
    const body = JSON.stringify({ format: FORMAT, key, file, outputs, digest: outputsDigest(outputs) });
    try {
      writeFileWhole(entryPath(key), body);
      stats.stored++;
    } catch (err) {
      stats.writeErrors++;
      warnOnce(`cannot write ${dir}: ${err && err.message}`);
    }
  }

  return {
    dir,
    stats,
    /**
     * For a cell about to compile: `hits`, the stored outputs of its dependencies not yet converted
     * in this kernel; `verified`, every dependency whose diagnostics need not be computed (`hits` and
     * those an earlier cell of this kernel took from the cache, while their key holds); `misses`, the
     * keys of the others, for store. `converted` is the converter's set of converted files (one per kernel).
     */
    lookup(builder, srcFile, converted) {
      const program = builder.getProgram();
      const ambient = ambientKey(program);
      let fromCache = fromCacheByConverter.get(converted);
      if (!fromCache) {
        fromCache = new Map(); // file → the key it was taken from the cache under
        fromCacheByConverter.set(converted, fromCache);
      }
      const hits = new Map();
      const verified = new Set();
      const misses = new Map(); // file → key
      for (const file of builder.getAllDependencies(srcFile)) {
        if (file === srcFile.fileName) continue;
        if (!(file.endsWith(".js") || (file.endsWith(".ts") && !file.endsWith(".d.ts")))) continue;
        const wasCached = converted.has(file);
        if (wasCached && !fromCache.has(file)) continue; // compiled here: TypeScript keeps its diagnostics
        const key = fileKey(builder, program, file, ambient);
        if (key === null) {
          fromCache.delete(file);
          continue;
        }
        if (wasCached && fromCache.get(file) === key) {
          verified.add(file);
          continue;
        }
        const outputs = read(key, file);
        if (outputs) {
          if (!wasCached) {
            hits.set(file, outputs);
            stats.hits++;
          }
          verified.add(file);
          fromCache.set(file, key);
        } else {
          fromCache.delete(file); // an earlier cell's entry no longer holds: check it here
          if (!wasCached) {
            misses.set(file, key);
            stats.misses++;
          }
        }
      }
      return { hits, verified, misses };
    },
    /** tslab's pre-emit diagnostics of the cell and its dependencies, less the verified ones. */
    preEmitDiagnostics(builder, srcFile, deps, verified) {
      const files = [srcFile];
      for (const dep of deps) {
        if (dep !== srcFile.fileName && !verified.has(dep)) files.push(builder.getSourceFile(dep));
      }
      return ts.getPreEmitDiagnosticsOfFiles(builder.getProgram(), files);
    },
    /** Store what a successful convert emitted (every checked file had no diagnostic); `found`: its lookup. */
    store(found, emitted) {
      for (const { file, outputs, lastExpr } of emitted) {
        const key = found.misses.get(file);
        if (key === undefined) continue;
        if (lastExpr) {
          stats.uncacheable++;
          continue;
        }
        write(key, file, outputs);
      }
    },
  };
}

/** Remove the oldest entries when there are more than PRUNE_ABOVE (a long-lived checkout's edits). */
function pruneCompileCache(dir, keep = PRUNE_TO, above = PRUNE_ABOVE) {
  let names;
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith(".json") || n.endsWith(".tmp"));
  } catch {
    return 0;
  }
  if (names.length <= above) return 0;
  const aged = [];
  for (const n of names) {
    try {
      aged.push({ n, t: fs.statSync(path.join(dir, n)).mtimeMs });
    } catch {
      /* removed meanwhile */
    }
  }
  aged.sort((a, b) => b.t - a.t);
  let removed = 0;
  for (const { n } of aged.slice(keep)) {
    try {
      fs.unlinkSync(path.join(dir, n));
      removed++;
    } catch {
      /* removed meanwhile */
    }
  }
  return removed;
}

/** The directory the kernels share, or null when IS_TSLAB_COMPILE_CACHE=0. */
function compileCacheDir(root, env = process.env) {
  if (env.IS_TSLAB_COMPILE_CACHE === "0") return null;
  if (env.IS_TSLAB_COMPILE_CACHE_DIR) return path.resolve(env.IS_TSLAB_COMPILE_CACHE_DIR);
  return path.join(root, "node_modules", ".cache", "integration-spaces", "tslab-compile");
}

/**
 * For the kernel launcher: make `dir` the current cache and register the patched converter before
 * tslab loads its own. Returns the cache.
 */
function installCompileCache(tslabDir, dir) {
  const cache = createCompileCacheFor(tslabDir, dir);
  pruneCompileCache(dir);
  loadPatchedConverter(tslabDir, { register: true });
  setCurrentCompileCache(cache);
  return cache;
}

/** The cache in `dir` for tslab's converter in `tslabDir`. */
function createCompileCacheFor(tslabDir, dir) {
  return createCompileCache({ dir, ts: tslabTypeScript(tslabDir), salt: converterSalt(tslabDir) });
}

/** tslab's TypeScript (the module instance its converter uses). */
function tslabTypeScript(tslabDir) {
  return require(require.resolve("@tslab/typescript-for-tslab", { paths: [tslabDir] }));
}

/** What a key holds beyond the program: tslab's converter source and this module's. */
function converterSalt(tslabDir) {
  const converterFile = path.join(tslabDir, "dist", "converter.js");
  return sha256(fs.readFileSync(converterFile, "utf8") + fs.readFileSync(__filename, "utf8"));
}

/**
 * Compile `cellSource` (the notebooks' import declarations) as a kernel's first cell would, with tslab's converter
 * as the kernel creates it (Node, not browser), and store every library file it reaches that type-checks without a
 * diagnostic. Run from the repository root, as the kernels are (the compiler options hold the working directory).
 * Returns the cache's counts and the cell's diagnostics (one line each; none when every file compiled).
 */
function prefillCompileCache(tslabDir, dir, cellSource) {
  const cache = createCompileCacheFor(tslabDir, dir);
  const conv = loadPatchedConverter(tslabDir).createConverter({ isJS: false, isBrowser: false });
  setCurrentCompileCache(cache);
  try {
    const out = conv.convert("", cellSource);
    const diagnostics = out.diagnostics.map((d) => `${d.fileName || "(cell)"}:${d.start}: ${d.messageText}`);
    return { stats: { ...cache.stats }, diagnostics };
  } finally {
    conv.close();
    setCurrentCompileCache(null);
  }
}

module.exports = {
  compileCacheDir,
  createCompileCache,
  createCompileCacheFor,
  currentCompileCache,
  currentConvertListener,
  installCompileCache,
  loadPatchedConverter,
  patchConverterSource,
  prefillCompileCache,
  pruneCompileCache,
  readCheckedJson,
  setConvertListener,
  setCurrentCompileCache,
  tslabTypeScript,
  writeFileWhole,
};
