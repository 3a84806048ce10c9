/**
 * Issue 19's smaller points, each a clear error (or a documented limit) instead of a silent
 * surprise: seeds outside [0, 2³²−1] (they used to wrap mod 2³²), binary `file:` corpora, `lm
 * generate` steps beyond the context length (and its progress), non-finite logits from broken
 * weights, JSON parse errors that name their file, and `train` on an unwritable output directory.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { repoRoot, sharedDir } from "../lib/paths";
import { checkSeed, parseSeed, MAX_SEED } from "../lib/util/random";
import { pipelineParams } from "../lib/pipeline/index";
import { loadCorpus, readTextFiles } from "../lib/data/corpora";
import { readJsonFile, readJsonFileAsync } from "../lib/io/json";
import { readNotebook } from "../lib/notebook/inspect";
import { openStore } from "../lib/data/store";
import { harvestActivations } from "../lib/data/activations";
import { ByteTokenizer, FakeLanguageModel } from "../lib/data/fake-lm";
import { initBackend } from "../lib/backend";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-robust-"));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const tsx = path.join(repoRoot, "node_modules", ".bin", "tsx");
function script(
  name: string,
  args: string[],
  env: Record<string, string> = {},
  timeout = 120_000,
): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(tsx, [path.join(repoRoot, "scripts", name), ...args], {
    cwd: repoRoot,
    encoding: "utf8",
    env: { ...process.env, IS_DEBUG: "", IS_DATA_DIR: path.join(tmp, "data"), ...env },
    timeout,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One error line (no stack trace) matching re, exit code `code`. */
function assertOneLineError(r: { code: number | null; stderr: string }, code: number, re: RegExp, what: string): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}, stderr ${r.stderr}`);
  assert.match(r.stderr, re, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: stack trace in ${r.stderr}`);
}

describe("seeds are 32-bit: out-of-range seeds are an error naming the option", () => {
  it("checkSeed / parseSeed accept [0, 2³²−1] and reject the rest", () => {
    assert.equal(MAX_SEED, 2 ** 32 - 1);
    for (const ok of [0, 1, 12345, 2 ** 31, 2 ** 32 - 1]) assert.equal(checkSeed(ok, "--seed"), ok);
    for (const bad of [2 ** 32, 2 ** 32 + 7, -1, 1.5, NaN, Infinity, "3" as unknown as number]) {
      assert.throws(
        () => checkSeed(bad, "--seed"),
        /^Error: --seed must be an integer in \[0, 4294967295\]/,
        String(bad),
      );
    }
    assert.equal(parseSeed("4294967295", "--seed"), 4294967295);
    assert.equal(parseSeed(" 7 ", "--seed"), 7);
    for (const bad of ["4294967296", "", " ", "-1", "1e10", "abc", "2.5"])
      assert.throws(
        () => parseSeed(bad, "--seed"),
        /--seed must be an integer in \[0, 4294967295\]/,
        JSON.stringify(bad),
      );
  });

  it("pipelineParams: seed 2³² is an error (it would be seed 0's stream), naming pipeline.seed or IS_SEED", () => {
    assert.equal(pipelineParams({ seed: 2 ** 32 - 1 }).seed, 2 ** 32 - 1);
    assert.throws(() => pipelineParams({ seed: 2 ** 32 }), /pipeline\.seed must be an integer in \[0, 4294967295\]/);
    const saved = process.env.IS_SEED;
    process.env.IS_SEED = "4294967296";
    try {
      assert.throws(() => pipelineParams({}), /IS_SEED must be an integer in \[0, 4294967295\]/);
    } finally {
      if (saved === undefined) delete process.env.IS_SEED;
      else process.env.IS_SEED = saved;
    }
  });

  it("lm generate refuses --seed 4294967296", () => {
    assertOneLineError(
      script("lm.ts", ["generate", "--prompt", "x", "--steps", "1", "--seed", "4294967296"]),
      1,
      /^lm: error: --seed must be an integer in \[0, 4294967295\]/,
      "lm",
    );
  });

  it("activations refuses --seed 4294967296", () => {
    // corpus "nonsense" would fail later anyway: the seed must be refused first, by name
    assertOneLineError(
      script("activations.ts", ["harvest", "--seed", "4294967296", "--corpus", "nonsense"]),
      1,
      /--seed must be an integer in \[0, 4294967295\]/,
      "activations",
    );
  });

  it("train refuses --seed 4294967296", () => {
    // --checkpoint-every x would fail later anyway (the old code got there without a word about the seed)
    assertOneLineError(
      script("train.ts", ["--preset", "tiny", "--seed", "4294967296", "--checkpoint-every", "x"]),
      2,
      /^train: --seed must be an integer in \[0, 4294967295\]/,
      "train",
    );
  });
});

describe("binary file: corpora are refused, naming the file", () => {
  it(
    "NUL bytes or mostly invalid UTF-8 / control characters: an error; " +
      "ordinary UTF-8 text (accents, tabs, BOM) is fine",
    () => {
      const dir = path.join(tmp, "corpus");
      fs.mkdirSync(dir, { recursive: true });
      const bin = path.join(dir, "weights.bin");
      fs.copyFileSync(sharedDir("models", "stories260K", "stories260K.bin"), bin);
      assert.throws(
        () => loadCorpus(`file:${bin}`),
        (e: Error) => e.message.includes(bin) && /binary/.test(e.message),
      );
      const nul = path.join(dir, "nul.txt");
      fs.writeFileSync(nul, "Once upon a time\u0000there was a file.\n");
      assert.throws(
        () => readTextFiles(nul),
        (e: Error) => e.message.includes(nul) && /NUL/.test(e.message),
      );
      // a folder: the offending .txt file is named
      const sub = path.join(dir, "folder");
      fs.mkdirSync(sub);
      fs.writeFileSync(path.join(sub, "a.txt"), "A fine story.\n");
      const junk = Buffer.alloc(4096);
      // continuation bytes / invalid UTF-8, no NUL
      for (let i = 0; i < junk.length; i++) junk[i] = 0x80 + ((i * 37) % 0x7f);
      fs.writeFileSync(path.join(sub, "b.txt"), junk);
      assert.throws(
        () => loadCorpus(`file:${sub}`),
        (e: Error) => e.message.includes(path.join(sub, "b.txt")) && /invalid UTF-8|control/.test(e.message),
      );
      // UTF-16 text has NUL bytes: refused too, with a hint to save it as UTF-8
      const u16 = path.join(dir, "u16.txt");
      fs.writeFileSync(u16, Buffer.from("\ufeffHello there, story.\n", "utf16le"));
      assert.throws(() => readTextFiles(u16), /UTF-8/);
      // ordinary text passes
      const good = path.join(dir, "good.txt");
      fs.writeFileSync(good, "\ufeffCafé déjà vu — naïve\tcoöperation.\r\n\r\nSecond «block» ✓.\n");
      const c = loadCorpus(`file:${good}#blocks`);
      assert.equal(c.documents.length, 2);
    },
  );
});

describe("lm CLI limits", () => {
  it("generate --steps beyond the context length is an error naming the limit", () => {
    const r = script("lm.ts", ["generate", "--prompt", "", "--steps", "100000"], {}, 60_000);
    assertOneLineError(
      r,
      1,
      /^lm: error: --steps 100000: .*context length of 512 tokens.*at most 511/,
      "generate --steps 100000",
    );
  });

  it("long generations show progress on stderr (not on stdout)", () => {
    const r = script("lm.ts", ["generate", "--prompt", "", "--steps", "80", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    const o = JSON.parse(r.stdout);
    assert.equal(o.generated.length, 80);
    assert.match(r.stderr, /generate.*80\/80/);
  });

  it("logits / generate / hidden with broken (NaN) weights: an error naming the model file, exit 1", () => {
    const dir = path.join(tmp, "broken");
    fs.mkdirSync(dir, { recursive: true });
    const src = sharedDir("models", "stories260K");
    const bin = path.join(dir, "broken.bin");
    const buf = fs.readFileSync(path.join(src, "stories260K.bin"));
    // llama2.c layout: a 7-int32 header, then the token embedding table (512 × 64, tied with the
    // classifier): NaN there poisons every hidden state and logit
    const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    assert.deepEqual(Array.from(new Int32Array(buf.buffer, buf.byteOffset, 7)).slice(0, 2), [64, 172]);
    f.fill(NaN, 7, 7 + 512 * 64);
    fs.writeFileSync(bin, buf);
    fs.copyFileSync(path.join(src, "tok512.bin"), path.join(dir, "tok512.bin"));
    const cases: [string[], RegExp][] = [
      [["logits", "--prompt", "Once upon"], /non-finite logits/],
      [["logits", "--prompt", "Once upon", "--json"], /non-finite logits/],
      [["generate", "--prompt", "Once", "--steps", "3"], /non-finite logits .*generation step 0/],
      [["hidden", "--layer", "2", "--prompt", "Once", "--json"], /non-finite hidden states \(layer 2\)/],
    ];
    for (const [args, re] of cases) {
      const r = script("lm.ts", [...args, "--model", bin]);
      assertOneLineError(r, 1, re, args.join(" "));
      assert.match(r.stderr, /^lm: error: /);
      assert.ok(r.stderr.includes(bin), `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout, "", `${args.join(" ")}: printed ${r.stdout}`);
    }
  });
});

describe("JSON files: parse errors name the file", () => {
  it("readJsonFile / readJsonFileAsync", async () => {
    const bad = path.join(tmp, "bad.json");
    fs.writeFileSync(bad, '{"a": 1,');
    assert.throws(
      () => readJsonFile(bad, "stimulus file"),
      (e: Error) => e.message.startsWith(`stimulus file ${bad}: not valid JSON (`),
    );
    await assert.rejects(readJsonFileAsync(bad), (e: Error) => e.message.startsWith(`${bad}: not valid JSON (`));
    const missing = path.join(tmp, "missing.json");
    assert.throws(
      () => readJsonFile(missing),
      (e: Error) => e.message.startsWith(`${missing}: cannot read`),
    );
    const good = path.join(tmp, "good.json");
    fs.writeFileSync(good, '{"a": [1, 2]}');
    assert.deepEqual(readJsonFile(good), { a: [1, 2] });
    assert.deepEqual(await readJsonFileAsync(good), { a: [1, 2] });
  });

  it("a corrupt notebook names its file", () => {
    const nb = path.join(tmp, "broken.ipynb");
    fs.writeFileSync(nb, '{"cells": [');
    assert.throws(
      () => readNotebook(nb),
      (e: Error) => e.message.includes(nb) && /not valid JSON/.test(e.message),
    );
  });

  it("a corrupt activation-store docs.json names its file", async () => {
    await initBackend();
    const res = await harvestActivations({
      languageModel: new FakeLanguageModel({ dim: 4, seed: 1 }),
      tokenizer: new ByteTokenizer(),
      layer: 1,
      corpus: "two-docs",
      documents: [
        { id: "a", text: "the cat sat on the mat" },
        { id: "b", text: "a dog ran far away home" },
      ],
      split: "all",
      windowLength: 8,
      remainder: "keep",
      storeRoot: path.join(tmp, "stores"),
      progress: false,
    });
    const docs = path.join(res.dir, res.store.manifest.docsFile);
    fs.writeFileSync(docs, "{not json");
    // the manifest's checksum of docs.json catches it at open (verified on read)
    await assert.rejects(openStore(res.dir), (e: Error) => e.message.includes(`${docs} is corrupt`));
    // a store harvested before checksums were recorded opens; the parse error names the file
    const mPath = path.join(res.dir, "manifest.json");
    const { checksums: _c, ...legacy } = JSON.parse(fs.readFileSync(mPath, "utf8"));
    fs.writeFileSync(mPath, JSON.stringify(legacy));
    const s = await openStore(res.dir);
    assert.throws(
      () => s.docIds(),
      (e: Error) => e.message.includes(docs) && /not valid JSON/.test(e.message),
    );
  });
});

describe("train: an unwritable output directory fails at once", () => {
  it("names the directory before loading the backend or harvesting", () => {
    const file = path.join(tmp, "a-file");
    fs.writeFileSync(file, "not a directory");
    const out = path.join(file, "runs");
    const t0 = Date.now();
    const r = script("train.ts", ["--preset", "tiny", "--steps", "1", "--out", out], {}, 120_000);
    assertOneLineError(r, 1, /^train: --out .*cannot write/, "train --out under a file");
    assert.ok(r.stderr.includes(out), r.stderr);
    assert.doesNotMatch(r.stderr, /backend/i, "failed only after the backend / harvest started");
    assert.ok(Date.now() - t0 < 60_000);
  });
});
