/**
 * Citations of the paper notes resolve (project issue 15, item 5): every "§N" written in lib/, scripts/,
 * tests/, notebooks/, README.md or docs/ names a section heading of docs/paper-notes.md, so a comment's
 * "paper-notes §N" cannot dangle. Convention (docs/README.md): a "§" followed by a number in these trees
 * always means a section of docs/paper-notes.md — "§2.3" is heading "2.3", "§12-3" item heading "12-3",
 * and a range "§9.2–9.5" (en dash) cites both ends.
 */
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

const ROOT = path.resolve(__dirname, "..");
const NOTES = path.join(ROOT, "docs", "paper-notes.md");
/** Trees and files whose text may cite the notes (generated outputs such as results/ are left out). */
const SCANNED = ["lib", "scripts", "tests", "notebooks", "README.md", "docs"];
const EXTENSIONS = new Set([".ts", ".js", ".mjs", ".cjs", ".md", ".ipynb", ".sh", ".json"]);
const SELF = path.relative(ROOT, __filename);

/**
 * Section ids of a markdown document: "## 2. Title" → "2", "### 2.3 Title" → "2.3", "### 12-1 Title" → "12-1"
 * (headings inside code fences are skipped).
 */
function headingIds(markdown: string): Set<string> {
  const ids = new Set<string>();
  let fenced = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*```/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(\d+(?:\.\d+)*(?:-\d+)?)\.?(?:\s|$)/.exec(line);
    if (m) ids.add(m[1]);
  }
  return ids;
}

interface Citation {
  file: string;
  line: number;
  section: string;
}

/**
 * Section ids cited in `text`: "§8.2", "§ 12-14", "§12-3(b)" → 12-3, "§5–6" → 5 and 6,
 * "§9.2–9.5" → 9.2 and 9.5.
 */
function citedSections(text: string, file = "<text>"): Citation[] {
  const out: Citation[] = [];
  const id = String.raw`\d+(?:\.\d+)*(?:-\d+)?`;
  const re = new RegExp(String.raw`§\s?(${id})(?:\s?–\s?(${id}))?`, "g");
  const lines = text.split("\n");
  lines.forEach((l, i) => {
    for (const m of l.matchAll(re)) {
      out.push({ file, line: i + 1, section: m[1] });
      if (m[2]) out.push({ file, line: i + 1, section: m[2] });
    }
  });
  return out;
}

/** Citations whose section has no heading in `ids`. */
function dangling(citations: Citation[], ids: Set<string>): Citation[] {
  return citations.filter((c) => !ids.has(c.section));
}

function filesUnder(rel: string): string[] {
  const abs = path.join(ROOT, rel);
  if (!fs.existsSync(abs)) return [];
  const st = fs.lstatSync(abs);
  if (st.isSymbolicLink()) return [];
  if (st.isFile()) return [rel];
  const out: string[] = [];
  for (const name of fs.readdirSync(abs).sort()) {
    if (name === "node_modules" || name.startsWith(".")) continue;
    const child = path.join(rel, name);
    const cst = fs.lstatSync(path.join(ROOT, child));
    if (cst.isDirectory()) out.push(...filesUnder(child));
    else if (cst.isFile() && EXTENSIONS.has(path.extname(name))) out.push(child);
  }
  return out;
}

function scannedFiles(): string[] {
  // this file cites made-up sections on purpose (the checks below)
  return SCANNED.flatMap(filesUnder).filter((f) => f !== SELF);
}

function allCitations(): Citation[] {
  return scannedFiles().flatMap((f) => citedSections(fs.readFileSync(path.join(ROOT, f), "utf8"), f));
}

describe("citation parsing", () => {
  test("citedSections reads single sections, items, ranges and ignores trailing punctuation", () => {
    const text = "paper-notes §9.2–9.5 and §12-3(b); notes §10. (§ 2.4, §5–6)\n§13.4";
    const got = citedSections(text).map((c) => `${c.line}:${c.section}`);
    assert.deepEqual(got, ["1:9.2", "1:9.5", "1:12-3", "1:10", "1:2.4", "1:5", "1:6", "2:13.4"]);
  });

  test("headingIds reads numbered headings and skips code fences and unnumbered headings", () => {
    const md = ["# Title", "## 2. Data", "### 2.3 Windows", "### 12-14 Averaging"].concat([
      "```",
      "## 7. In a fence",
      "```",
      "## Notes",
    ]);
    assert.deepEqual([...headingIds(md.join("\n"))].sort(), ["12-14", "2", "2.3"]);
  });

  test("a citation of a missing section is reported with its file and line", () => {
    const ids = headingIds("## 3. SAE\n### 3.1 Init\n");
    const bad = dangling(citedSections("ok §3, §3.1\nbroken §3.2 and §12-1", "x.ts"), ids);
    assert.deepEqual(bad, [
      { file: "x.ts", line: 2, section: "3.2" },
      { file: "x.ts", line: 2, section: "12-1" },
    ]);
  });
});

describe("docs/paper-notes.md", () => {
  const notes = fs.readFileSync(NOTES, "utf8");
  const ids = headingIds(notes);

  test("has every top-level section 0–13 and the sections the brief lists", () => {
    for (let s = 0; s <= 13; s++) assert.ok(ids.has(String(s)), `docs/paper-notes.md: no heading "## ${s}."`);
    for (const s of ["2.3", "2.4", "4.4", "8.2", "8.3", "9.1", "9.2", "9.5", "13.4"]) {
      assert.ok(ids.has(s), `docs/paper-notes.md: no heading "${s}"`);
    }
    for (let i = 1; i <= 26; i++) {
      assert.ok(ids.has(`12-${i}`), `docs/paper-notes.md: no discrepancy heading "12-${i}"`);
    }
  });

  test("the repository cites it (the scan finds the known citations)", () => {
    const cites = allCitations();
    // guards against a scan that silently matches nothing: these files cite the notes today
    const known = [
      ["lib/eval/splice.ts", "8.2"],
      ["lib/data/windows.ts", "2.3"],
      ["lib/presets.ts", "4.4"],
    ];
    for (const [file, section] of known) {
      const found = cites.some((c) => c.file === file && c.section === section);
      assert.ok(found, `expected ${file} to cite §${section}`);
    }
    assert.ok(cites.length >= 40, `only ${cites.length} citations found`);
  });

  test("every § citation in lib/, scripts/, tests/, notebooks/, README.md and docs/ names a heading", () => {
    const bad = dangling(allCitations(), ids);
    assert.deepEqual(
      bad.map((c) => `${c.file}:${c.line} §${c.section}`),
      [],
      "citations without a heading in docs/paper-notes.md (add the section there, or fix the number)",
    );
  });

  test("README.md and docs/README.md say where the notes live; nothing points at the old out-of-repo path", () => {
    for (const f of ["README.md", "docs/README.md"]) {
      const text = fs.readFileSync(path.join(ROOT, f), "utf8");
      const says = text.includes("docs/paper-notes.md") && /"paper-notes §N"/.test(text);
      assert.ok(says, `${f}: should say that "paper-notes §N" means a section of docs/paper-notes.md`);
    }
    const oldPath = /shared\/docs\/paper-notes\.md/;
    const readsOldPath = (f: string) => oldPath.test(fs.readFileSync(path.join(ROOT, f), "utf8"));
    const old = scannedFiles().filter(readsOldPath);
    assert.deepEqual(old, [], "files referring to ../shared/docs/paper-notes.md (use docs/paper-notes.md)");
  });
});
