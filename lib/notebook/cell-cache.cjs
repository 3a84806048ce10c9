/*
 * A cache of compiled cells for tslab kernels, shared by every kernel of this checkout.
 *
 * tslab builds a TypeScript program in each kernel and type-checks every cell in it: ≈ 1.2 CPU-s
 * to create the program and 2–4 CPU-s for a notebook's cells on this project's 2-core machine, even
 * when every library file comes from the compile cache (lib/notebook/compile-cache.cjs). The cells
 * a kernel runs are mostly the same as the last time: a notebook executed again. This cache keeps,
 * per cell, what tslab's converter returned for it when it had no diagnostic: the cell's JavaScript,
 * its declarations (the next cell's context) and the JavaScript of the project files it imports. A
 * kernel whose cells are all in the cache never builds a TypeScript program at all; the first cell
 * that is not (an edited cell, a completion request) creates tslab's converter then, and from then
 * on that converter compiles what the cache does not hold.
 *
 * A cell's result depends on:
 * - the cell's text (after lib/notebook/cell-rewrite.cjs) and the declarations of the cells before
 *   it (tslab's `prevDecl`): the key;
 * - every file of the program it was checked in (lib.*.d.ts, @types, packages' .d.ts, project files):
 *   their digests are stored with the entry (a manifest) and compared with the files on disk at each
 *   lookup, as are the package directories under each node_modules/@types (a new @types package
 *   enters every program without being imported);
 * - TypeScript's version, tslab's converter source, this module's and the compile cache's source,
 *   the converter's options, the working directory and Node's major version (tslab's target
 *   follows it): the key's salt.
 * A cell with a diagnostic, or whose program holds a file that is not on disk as the program read it
 * (a `%module` cell's module, a file edited meanwhile), is never stored. Not covered: a new file that
 * would change how an existing import resolves (say lib/x.ts added beside lib/x/index.ts); a kernel
 * then runs the stored JavaScript of the old resolution. package-lock changes reach the .d.ts files.
 *
 * Entries are `<key>.json`; the JavaScript of imported files and the manifests are stored once each,
 * by digest (`<sha256>.blob.json`, a JSON string). Everything is written whole (temporary file, then
 * rename) and verified when read (digests); a bad or missing piece is a miss.
 *
 * Where: node_modules/.cache/integration-spaces/tslab-cells (IS_TSLAB_CELL_CACHE_DIR overrides;
 * IS_TSLAB_CELL_CACHE=0 turns it off). The kernel launcher installs it (lib/notebook/tslab-kernel.cjs);
 * `npm run notebooks -- --precompile` fills it for the committed notebooks (lib/notebook/precompile.ts);
 * tests/notebook-cell-cache.test.ts checks it.
 */
"use strict";
const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const compileCache = require("./compile-cache.cjs");

const FORMAT = 1;
const BLOB = ".blob.json";

const sha256 = (s) => crypto.createHash("sha256").update(s).digest("hex");

/**
 * The digest of a file's bytes, or null when it is not a readable file; remembered per process
 * while its size, times and inode stay the same.
 */
function createFileDigests() {
  const memo = new Map();
  return (file) => {
    let st;
    try {
      st = fs.statSync(file);
    } catch {
      return null;
    }
    if (!st.isFile()) return null;
    const stamp = `${st.size}:${st.mtimeMs}:${st.ctimeMs}:${st.ino}`;
    const known = memo.get(file);
    if (known && known.stamp === stamp) return known.digest;
    let digest;
    try {
      digest = sha256(fs.readFileSync(file));
    } catch {
      return null;
    }
    memo.set(file, { stamp, digest });
    return digest;
  };
}

/**
 * The packages under each node_modules/@types from `cwd` up (TypeScript's default type roots): the
 * directories (or links) whose names do not start with a dot, as TypeScript includes them; a root
 * without any is left out (it adds nothing to a program).
 */
function typePackages(cwd) {
  const out = [];
  for (let dir = path.resolve(cwd); ; dir = path.dirname(dir)) {
    const root = path.join(dir, "node_modules", "@types");
    try {
      const names = fs
        .readdirSync(root, { withFileTypes: true })
        .filter((e) => !e.name.startsWith(".") && (e.isDirectory() || e.isSymbolicLink()))
        .map((e) => e.name);
      if (names.length > 0) out.push(`${root}: ${names.sort().join(" ")}`);
    } catch {
      /* no type root here */
    }
    if (path.dirname(dir) === dir) break;
  }
  return out;
}

/**
 * A cache in `dir`. `salt` holds what a key needs beyond the cell (see the header); `cwd` is the
 * kernels' working directory (the converter's root).
 */
function createCellCache({ dir, salt, cwd = process.cwd() }) {
  const digestOf = createFileDigests();
  const textDigests = new WeakMap(); // SourceFile → sha256 of its text (an unchanged file keeps its object)
  const textDigestOf = (sf) => {
    let d = textDigests.get(sf);
    if (d === undefined) {
      d = sha256(sf.text);
      textDigests.set(sf, d);
    }
    return d;
  };
  const stats = { hits: 0, misses: 0, stored: 0, rejected: 0, uncacheable: 0, writeErrors: 0 };
  let warned = false;

  const keyOf = (options, prevDecl, src) =>
    sha256(
      JSON.stringify([
        FORMAT,
        salt,
        options || {},
        cwd,
        process.versions.node.split(".")[0],
        prevDecl,
        src,
      ]),
    );
  const entryPath = (key) => path.join(dir, `${key}.json`);
  const blobPath = (digest) => path.join(dir, `${digest}${BLOB}`);

  function warnOnce(msg) {
    if (warned) return;
    warned = true;
    console.warn(`cell cache: ${msg} (the kernel compiles without storing; nothing else changes)`);
  }

  function writeWhole(file, body) {
    try {
      compileCache.writeFileWhole(file, body);
      return true;
    } catch (err) {
      stats.writeErrors++;
      warnOnce(`cannot write ${dir}: ${err && err.message}`);
      return false;
    }
  }

  /**
   * Store `text` by its digest (once; a damaged copy is replaced); returns the digest, or null when
   * it could not be written.
   */
  function putBlob(text) {
    const digest = sha256(text);
    const body = JSON.stringify(text);
    try {
      if (fs.readFileSync(blobPath(digest), "utf8") === body) return digest;
    } catch {
      /* not there yet */
    }
    return writeWhole(blobPath(digest), body) ? digest : null;
  }

  /** The text stored under `digest`, or null (missing, unreadable or not verified). */
  function getBlob(digest) {
    const text = compileCache.readCheckedJson(blobPath(digest), (t) => typeof t === "string" && sha256(t) === digest);
    if (text === null) stats.rejected++;
    return typeof text === "string" ? text : null;
  }

  const entryDigest = (e) => sha256(JSON.stringify([e.key, e.manifest, e.result, e.side]));

  function readEntry(key) {
    const e = compileCache.readCheckedJson(
      entryPath(key),
      (e) =>
        e &&
        e.format === FORMAT &&
        e.key === key &&
        typeof e.manifest === "string" &&
        e.result &&
        typeof e.result === "object" &&
        Array.isArray(e.side) &&
        e.side.every((s) => Array.isArray(s) && typeof s[0] === "string" && typeof s[1] === "string") &&
        e.digest === entryDigest(e),
    );
    if (e === null) stats.rejected++;
    return e || null;
  }

  /** Whether every input the manifest under `digest` lists is on disk as it was. */
  function manifestHolds(digest) {
    const text = getBlob(digest);
    if (text === null) return false;
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return false;
    }
    if (!m || !Array.isArray(m.files) || !Array.isArray(m.types)) return false;
    if (JSON.stringify(m.types) !== JSON.stringify(typePackages(cwd))) return false;
    return m.files.every(([file, d]) => digestOf(file) === d);
  }

  return {
    dir,
    stats,
    /**
     * What the converter returned for this cell, or null. `delivered` maps each imported file's
     * output path to the digest of the JavaScript the kernel already has for it; `sideOutputs`
     * holds only the others (as tslab's converter emits each file once per kernel).
     */
    lookup(options, prevDecl, src, delivered) {
      const key = keyOf(options, prevDecl, src);
      const e = readEntry(key);
      if (!e || !manifestHolds(e.manifest)) {
        stats.misses++;
        return null;
      }
      const sideOutputs = [];
      for (const [outPath, digest] of e.side) {
        if (delivered.get(outPath) === digest) continue;
        const data = getBlob(digest);
        if (data === null) {
          stats.misses++;
          return null;
        }
        sideOutputs.push({ path: outPath, data, digest });
      }
      stats.hits++;
      return { result: e.result, sideOutputs };
    },
    /**
     * What to store of the program a convert ran in (called by the patched converter, while the
     * program is current): its source files (their texts are hashed only if the cell is stored,
     * where a file not on disk as TypeScript read it, such as a `%module` cell's module, makes the
     * cell unstorable) and the output paths of the project files the cell imports. null: a file the
     * cell imports lies outside the working directory (tslab cannot emit it).
     */
    describe(builder, srcFile, deps) {
      const cellDir = path.dirname(srcFile.fileName);
      const virtual = new Set([srcFile.fileName, path.join(cellDir, "__prev__.d.ts")]);
      const files = builder.getProgram().getSourceFiles().filter((sf) => !virtual.has(sf.fileName));
      const outputs = [];
      for (const dep of deps) {
        if (dep === srcFile.fileName) continue;
        const rel = path.relative(cwd, dep);
        if (rel.startsWith("..") || path.isAbsolute(rel)) return null;
        outputs.push(path.join(cwd, rel.replace(/\.(ts|js)$/, ".js")));
      }
      return { files, outputs };
    },
    /**
     * Store a successful convert's `result`: `described` is describe's answer for its program and
     * `known` maps output paths to the JavaScript this converter emitted (in any cell).
     */
    store(options, prevDecl, src, result, described, known) {
      if (!described || result.diagnostics.length > 0) return;
      const files = [];
      for (const sf of described.files) {
        const d = digestOf(sf.fileName);
        if (d !== textDigestOf(sf) && d !== sha256(`\ufeff${sf.text}`)) {
          stats.uncacheable++;
          return;
        }
        files.push([sf.fileName, d]);
      }
      const side = [];
      for (const outPath of described.outputs) {
        const data = known.get(outPath);
        if (data === undefined) {
          stats.uncacheable++;
          return;
        }
        const digest = putBlob(data);
        if (!digest) return;
        side.push([outPath, digest]);
      }
      side.sort((a, b) => a[0].localeCompare(b[0]));
      const manifest = putBlob(JSON.stringify({ files, types: typePackages(cwd) }));
      if (!manifest) return;
      const key = keyOf(options, prevDecl, src);
      const e = {
        format: FORMAT,
        key,
        manifest,
        result: {
          output: result.output,
          declOutput: result.declOutput,
          hasToplevelAwait: result.hasToplevelAwait,
          lastExpressionVar: result.lastExpressionVar,
        },
        side,
      };
      e.digest = entryDigest(e);
      if (writeWhole(entryPath(key), JSON.stringify(e))) stats.stored++;
    },
  };
}

/**
 * tslab's converter interface (convert, inspect, complete, addModule, close) over `cache`: a cell
 * the cache holds is answered from it; anything else goes to a real converter, created by
 * `createReal` when first needed. `shared` lets several of these use one real converter (the
 * precompile walks every notebook with one): { real, known }.
 */
function createCachingConverter({ createReal, options, cache, shared }) {
  const holder = shared || { real: null, known: new Map() };
  const delivered = new Map(); // output path → digest of the JavaScript this kernel has for it
  const real = () => {
    if (!holder.real) holder.real = createReal(options);
    return holder.real;
  };
  /** Outputs the kernel does not have yet (tslab's executor replaces a module it is given again). */
  const fresh = (outputs) => {
    const out = [];
    for (const o of outputs || []) {
      const digest = o.digest || sha256(o.data); // the cache's outputs carry theirs
      if (delivered.get(o.path) === digest) continue;
      delivered.set(o.path, digest);
      holder.known.set(o.path, o.data);
      out.push({ path: o.path, data: o.data });
    }
    return out.length > 0 ? out : undefined;
  };
  return {
    convert(prevDecl, src) {
      const hit = cache ? cache.lookup(options, prevDecl, src, delivered) : null;
      if (hit) {
        return {
          output: hit.result.output,
          declOutput: hit.result.declOutput,
          diagnostics: [],
          hasToplevelAwait: hit.result.hasToplevelAwait,
          sideOutputs: fresh(hit.sideOutputs),
          lastExpressionVar: hit.result.lastExpressionVar,
        };
      }
      const conv = real();
      let described = null;
      const before = compileCache.setConvertListener((builder, srcFile, deps) => {
        described = cache ? cache.describe(builder, srcFile, deps) : null;
      });
      let out;
      try {
        out = conv.convert(prevDecl, src);
      } finally {
        compileCache.setConvertListener(before);
      }
      for (const o of out.sideOutputs || []) holder.known.set(o.path, o.data);
      if (cache) cache.store(options, prevDecl, src, out, described, holder.known);
      // a failed convert has no sideOutputs field at all (tslab's shape, kept)
      return "sideOutputs" in out ? { ...out, sideOutputs: fresh(out.sideOutputs) } : out;
    },
    inspect: (...args) => real().inspect(...args),
    complete: (...args) => real().complete(...args),
    addModule: (...args) => real().addModule(...args),
    close() {
      if (!shared && holder.real) holder.real.close();
    },
    /** Whether the real converter exists (tests; the compile feedback). */
    get compiling() {
      return holder.real !== null;
    },
  };
}

/** The directory the kernels share, or null when IS_TSLAB_CELL_CACHE=0. */
function cellCacheDir(root, env = process.env) {
  if (env.IS_TSLAB_CELL_CACHE === "0") return null;
  if (env.IS_TSLAB_CELL_CACHE_DIR) return path.resolve(env.IS_TSLAB_CELL_CACHE_DIR);
  return path.join(root, "node_modules", ".cache", "integration-spaces", "tslab-cells");
}

/** What a key holds beyond the cell: TypeScript's version, tslab's converter and both caches' sources. */
function cellCacheSalt(tslabDir) {
  const ts = compileCache.tslabTypeScript(tslabDir);
  const sources = [
    path.join(tslabDir, "dist", "converter.js"),
    require.resolve("./compile-cache.cjs"),
    __filename,
  ].map((f) => fs.readFileSync(f, "utf8"));
  return sha256(JSON.stringify([ts.version, ...sources]));
}

/**
 * For the kernel launcher: make tslab's createConverter (the patched converter's, registered before
 * tslab loads it) answer from the cache in `dir`. Returns the cache.
 */
function installCellCache(tslabDir, dir, cwd = process.cwd()) {
  const cache = createCellCache({ dir, salt: cellCacheSalt(tslabDir), cwd });
  compileCache.pruneCompileCache(dir);
  const converter = compileCache.loadPatchedConverter(tslabDir, { register: true });
  const createReal = converter.createConverter;
  converter.createConverter = (options) => createCachingConverter({ createReal, options, cache });
  return cache;
}

/**
 * Walk `notebooks` (each a list of cell sources, as the kernel compiles them) through one real
 * converter, storing each cell as a kernel running the notebook would. A notebook's walk stops at
 * its first cell with a diagnostic (the kernel would stop there too); `metadataOf` is tslab's
 * getCodeMetadata: a `%module` or browser cell also ends the walk (a kernel does not convert it).
 * `compileDir`: the compile cache the real converter uses meanwhile (as a kernel's would), if any.
 * Returns the counts and each stopped notebook's reason.
 */
function prefillCellCache(tslabDir, dir, notebooks, metadataOf, { compileDir = null, cwd = process.cwd() } = {}) {
  const cache = createCellCache({ dir, salt: cellCacheSalt(tslabDir), cwd });
  const createReal = compileCache.loadPatchedConverter(tslabDir).createConverter;
  const options = { isJS: false, isBrowser: false };
  const shared = { real: null, known: new Map() };
  const stopped = [];
  const before = compileCache.currentCompileCache();
  if (compileDir) compileCache.setCurrentCompileCache(compileCache.createCompileCacheFor(tslabDir, compileDir));
  try {
    notebooks.forEach((cells, n) => {
      const conv = createCachingConverter({ createReal, options, cache, shared });
      let prevDecl = "";
      for (let i = 0; i < cells.length; i++) {
        const meta = metadataOf(cells[i]);
        if (meta.module || meta.mode === "browser") {
          stopped.push({ notebook: n, cell: i, why: "a %module or browser cell" });
          return;
        }
        const out = conv.convert(prevDecl, cells[i]);
        if (out.diagnostics.length > 0) {
          const d = out.diagnostics[0];
          stopped.push({ notebook: n, cell: i, why: `${d.fileName || "(cell)"}: ${d.messageText}` });
          return;
        }
        prevDecl = out.declOutput || "";
      }
    });
  } finally {
    if (shared.real) shared.real.close();
    compileCache.setCurrentCompileCache(before);
  }
  return { stats: { ...cache.stats }, stopped };
}

module.exports = {
  cellCacheDir,
  cellCacheSalt,
  createCachingConverter,
  createCellCache,
  installCellCache,
  prefillCellCache,
};
