/**
 * Compiles the wasm kernels from their AssemblyScript sources: `npm run build:wasm [-- --check]`.
 *
 * For each kernel in KERNELS, lib/kernels/assembly/<name>.ts is compiled twice by the pinned
 * `assemblyscript` compiler (asc), into a module that imports a plain memory (tfjs-wasm's
 * single-threaded build) and one that imports a shared memory (the threaded build: a shared memory
 * can only be imported by a declaration that is itself shared and has a maximum, here the wasm32
 * ceiling of 65536 pages). Both are written, base64, to lib/kernels/compiled/<name>.ts, which the
 * loaders import (wasmPool.ts's heapKernel picks the variant for the backend's memory).
 *
 * The outputs are committed: the library then works in any checkout without a build step (tslab
 * notebooks, worktrees that share another checkout's node_modules, `npx tsx` runs), and a test
 * (tests/kernels-wasm-build.test.ts) compiles the sources again and requires the same bytes, so a
 * source edited without a rebuild fails CI. `--check` does the same here: it writes nothing and
 * exits 1 when a committed output differs from a fresh compile.
 *
 * Each module must work inside the backend's heap without touching it on its own: its only import
 * is env.memory, and it has no data segments and no start function (checked here on every build).
 * The sources use no strings, arrays or allocations, so asc's stub runtime adds nothing.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export const KERNELS = ["adam", "attention", "interaction", "loss", "outer", "topk"] as const;
export type KernelName = (typeof KERNELS)[number];

const root = path.join(__dirname, "..");
const SOURCE_DIR = "lib/kernels/assembly";
const OUT_DIR = "lib/kernels/compiled";

/**
 * asc options shared by both variants. -O3: binaryen's optimiser, which keeps every floating-point
 * operation and its order (it does not reassociate without --fast-math), so the bit-for-bit tests
 * hold. --noAssert and an empty abort: no imports but the memory. --initialMemory 1: the smallest
 * minimum, which any tfjs heap satisfies.
 */
const COMMON = [
  "-O3",
  "--noAssert",
  "--runtime",
  "stub",
  "--use",
  "abort=",
  "--importMemory",
  "--noExportMemory",
  "--initialMemory",
  "1",
  "--enable",
  "simd",
];
const VARIANTS = {
  plain: [] as string[],
  shared: ["--enable", "threads", "--sharedMemory", "--maximumMemory", "65536"],
};

export interface KernelBinaries {
  plain: Uint8Array;
  shared: Uint8Array;
}

/** The part of asc's API used here (its own typings declare AssemblyScript's globals, e.g. `require`). */
interface Asc {
  main(
    argv: string[],
    options: {
      stdout: { write(s: string | Uint8Array): void };
      stderr: { write(s: string | Uint8Array): void };
      readFile(file: string, baseDir: string): string | null;
      writeFile(file: string, contents: Uint8Array | string, baseDir: string): void;
      listFiles(dir: string, baseDir: string): string[] | null;
    },
  ): Promise<{ error: Error | null }>;
}

/** asc is an ES module: a dynamic import from this CommonJS file (the specifier in a variable keeps tsc off its
 * typings). */
async function loadAsc(): Promise<Asc> {
  const specifier: string = "assemblyscript/asc";
  return ((await import(specifier)) as { default: Asc }).default;
}

/** Compiles one kernel's source in both variants (in memory). */
export async function compileKernel(name: KernelName): Promise<KernelBinaries> {
  const asc = await loadAsc();
  const out: Partial<KernelBinaries> = {};
  for (const [variant, flags] of Object.entries(VARIANTS) as Array<[keyof KernelBinaries, string[]]>) {
    let binary: Uint8Array | null = null;
    let log = "";
    const sink = {
      write: (s: string | Uint8Array) => void (log += typeof s === "string" ? s : Buffer.from(s).toString()),
    };
    const res = await asc.main([`${SOURCE_DIR}/${name}.ts`, "--outFile", `${name}.wasm`, ...COMMON, ...flags], {
      stdout: sink,
      stderr: sink,
      readFile: (file: string, baseDir: string) => {
        const p = path.resolve(root, baseDir, file);
        return fs.existsSync(p) ? fs.readFileSync(p, "utf8") : null;
      },
      writeFile: (file: string, contents: Uint8Array | string) => {
        if (file === `${name}.wasm` && typeof contents !== "string") binary = Uint8Array.from(contents);
      },
      listFiles: (dir: string, baseDir: string) => {
        const p = path.resolve(root, baseDir, dir);
        return fs.existsSync(p) ? fs.readdirSync(p) : null;
      },
    });
    if (res.error || !binary)
      throw new Error(
        `build-wasm: asc failed on ${SOURCE_DIR}/${name}.ts (${variant}): ${res.error?.message ?? "no binary"}\n${log}`,
      );
    checkModule(binary, `${name} (${variant})`);
    out[variant] = binary;
  }
  return out as KernelBinaries;
}

/** Throws unless the module's only import is env.memory and it has no data segment or start function. */
function checkModule(bytes: Uint8Array, what: string): void {
  const mod = new WebAssembly.Module(bytes);
  const imports = WebAssembly.Module.imports(mod).map((i) => `${i.module}.${i.name}:${i.kind}`);
  if (imports.join() !== "env.memory:memory")
    throw new Error(`build-wasm: ${what} imports [${imports.join(", ")}], expected only env.memory`);
  // Walk the section headers (id byte, LEB128 size): 8 = start, 11 = data.
  const leb = (at: number): [number, number] => {
    let v = 0,
      shift = 0,
      b: number;
    do {
      b = bytes[at++];
      v += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return [v, at];
  };
  for (let at = 8; at < bytes.length; ) {
    const id = bytes[at];
    const [size, body] = leb(at + 1);
    if (id === 8 || id === 11)
      throw new Error(
        `build-wasm: ${what} has a ${id === 8 ? "start function" : "data segment"}; ` +
          "kernels must not write the heap on instantiation",
      );
    at = body + size;
  }
}

/** The generated TypeScript module for one kernel. */
export function renderModule(name: KernelName, bin: KernelBinaries): string {
  const version = JSON.parse(
    fs.readFileSync(path.join(root, "node_modules/assemblyscript/package.json"), "utf8"),
  ).version;
  const b64 = (u: Uint8Array) => Buffer.from(u).toString("base64");
  return [
    `// Generated by \`npm run build:wasm\` (scripts/build-wasm.ts, AssemblyScript ${version}) from`,
    `// ${SOURCE_DIR}/${name}.ts: do not edit. ` +
      "Committed; tests/kernels-wasm-build.test.ts checks it matches its source.",
    `/** The module importing a plain memory (single-threaded tfjs-wasm), base64. */`,
    `export const plain = "${b64(bin.plain)}";`,
    `/** The module importing a shared memory (threaded tfjs-wasm), base64. */`,
    `export const shared = "${b64(bin.shared)}";`,
    "",
  ].join("\n");
}

export const outputPath = (name: KernelName): string => path.join(root, OUT_DIR, `${name}.ts`);

/** Kernels whose committed output differs from a fresh compile of their source. */
export async function staleKernels(): Promise<KernelName[]> {
  const stale: KernelName[] = [];
  for (const name of KERNELS) {
    const p = outputPath(name);
    const want = renderModule(name, await compileKernel(name));
    if (!fs.existsSync(p) || fs.readFileSync(p, "utf8") !== want) stale.push(name);
  }
  return stale;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  if (args.some((a) => a !== "--check")) {
    process.stderr.write("usage: npm run build:wasm [-- --check]\n");
    return 2;
  }
  if (args.includes("--check")) {
    const stale = await staleKernels();
    if (stale.length > 0) {
      process.stderr.write(
        `build-wasm: ${stale.map((n) => `${OUT_DIR}/${n}.ts`).join(", ")} differ from their sources: ` +
          "run npm run build:wasm\n",
      );
      return 1;
    }
    process.stderr.write(`build-wasm: ${KERNELS.length} kernels match their sources\n`);
    return 0;
  }
  fs.mkdirSync(path.join(root, OUT_DIR), { recursive: true });
  for (const name of KERNELS) {
    const p = outputPath(name);
    const text = renderModule(name, await compileKernel(name));
    const same = fs.existsSync(p) && fs.readFileSync(p, "utf8") === text;
    if (!same) {
      // Full writes or none: a temporary file, then a rename.
      fs.writeFileSync(`${p}.tmp`, text);
      fs.renameSync(`${p}.tmp`, p);
    }
    process.stderr.write(`build-wasm: ${OUT_DIR}/${name}.ts ${same ? "up to date" : "written"}\n`);
  }
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
