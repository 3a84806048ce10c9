/**
 * lib/display round trips: escaped tables (records and a real polars DataFrame), chart bundles with
 * every MIME type and a real PNG whose pixels show marks and text, title/unit checks, progress and
 * live charts in plain (CI), TTY and (simulated) kernel modes, and file output outside a kernel.
 * Random table contents are fresh every run (seed printed; IS_TEST_SEED, or DISPLAY_TEST_SEED, replays).
 */
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { initBackend } from "../lib/backend";
import {
  ChartSpecError,
  assertChartSpec,
  chartSpecProblems,
  liveChart,
  progress,
  renderChart,
  saveChart,
  saveTable,
  setTextSink,
  show,
  showTo,
  toBundle,
  VEGALITE_MIME,
  type VegaLiteSpec,
} from "../lib/display/index";
import { isPng, pngSize } from "../lib/notebook/inspect";
import {
  NBSP,
  displayPath,
  formatCi,
  formatNumber,
  formatP,
  formatPercent,
  formatWithCi,
  pText,
} from "../lib/display/format";
import { repoRoot } from "../lib/paths";
import { formatCell, tableToHtml } from "../lib/display/table";
import { Rng } from "../lib/util/random";
import { testSeed } from "./helpers/seed";

const SEED = testSeed("display", { aliases: ["DISPLAY_TEST_SEED"] });

const goodSpec = (values: Record<string, unknown>[]): VegaLiteSpec => ({
  title: "Loss by step",
  width: 300,
  height: 200,
  data: { values },
  mark: { type: "line", point: true },
  encoding: {
    x: { field: "step", type: "quantitative", title: "step [#]" },
    y: { field: "loss", type: "quantitative", title: "loss (nats)" },
  },
});

/** Decode HTML entities we emit (the inverse of escapeHtml). */
function unescapeHtml(s: string): string {
  return s
    .replace(/&lt;/g, "<")
    .replace(/&gt;/g, ">")
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, "&");
}

function htmlCells(html: string): string[][] {
  const body = html.slice(html.indexOf("<tbody>"));
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) =>
    [...m[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((c) => unescapeHtml(c[1])),
  );
}

/** RGBA pixels of an SVG rendered by resvg (to look inside our charts). */
function rasterize(svg: string): { width: number; height: number; pixels: Uint8Array } {
  const { Resvg } = require("@resvg/resvg-js");
  const r = new Resvg(svg, {
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" },
    background: "white",
  });
  const img = r.render();
  return { width: img.width, height: img.height, pixels: img.pixels };
}

function nonWhiteFraction(pixels: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < pixels.length; i += 4) if (pixels[i] < 250 || pixels[i + 1] < 250 || pixels[i + 2] < 250) n++;
  return n / (pixels.length / 4);
}

class Sink {
  text = "";
  isTTY?: boolean;
  constructor(tty = false) {
    if (tty) this.isTTY = true;
  }
  write(s: string) {
    this.text += s;
    return true;
  }
  lines() {
    return this.text.split("\n").filter((l) => l !== "");
  }
}

let tmp = "";
before(async () => {
  await initBackend();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "is-display-"));
});
after(() => {
  showTo(null);
  setTextSink(null);
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("tables", () => {
  it("escape HTML in values and column names, and keep values (records)", async () => {
    const rng = new Rng(SEED);
    const rows = Array.from({ length: 7 }, (_, i) => ({
      "<b>name</b>": i === 3 ? "<script>alert('x')</script>" : `row & ${i}`,
      value: (rng.next() - 0.5) * 10 ** rng.int(6),
      count: rng.int(1000),
    }));
    const b = await toBundle(rows, { title: "a <title>" });
    assert.equal(b.kind, "table");
    const html = String(b.data["text/html"]);
    assert.ok(!html.includes("<script>"), "raw <script> must not survive");
    assert.ok(html.includes("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert.ok(html.includes("<th>&lt;b&gt;name&lt;/b&gt;</th>"));
    assert.ok(html.includes("<caption>a &lt;title&gt;</caption>"));
    const cells = htmlCells(html);
    assert.equal(cells.length, rows.length);
    rows.forEach((r, i) => {
      assert.equal(cells[i][0], r["<b>name</b>"]);
      // 3 significant digits, thousands separators (lib/display/format.ts formatNumber)
      const shown = Number(cells[i][1].replace(/,/g, ""));
      assert.ok(
        Math.abs(shown - r.value) <= 5e-3 * Math.abs(r.value) + 1e-12,
        `value ${r.value} shown as ${cells[i][1]}`,
      );
      assert.equal(cells[i][2], String(r.count));
    });
    const text = String(b.data["text/plain"]);
    assert.ok(text.includes("<script>alert('x')</script>"), "text/plain keeps the raw value");
    assert.equal(text.split("\n").length, 1 + 2 + rows.length, "title, header, rule, one line per row");
  });

  it("accept a real polars DataFrame with the same result as its records", async () => {
    const pl = require("nodejs-polars");
    const rng = new Rng(SEED + 1);
    const n = 5 + rng.int(5);
    const df = pl.DataFrame({
      a: Array.from({ length: n }, () => rng.normal()),
      b: Array.from({ length: n }, (_, i) => `<i>${i}</i>`),
    });
    const fromDf = await toBundle(df);
    const fromRows = await toBundle(df.toRecords());
    assert.equal(fromDf.data["text/html"], fromRows.data["text/html"]);
    assert.equal(htmlCells(String(fromDf.data["text/html"])).length, n);
    assert.ok(!String(fromDf.data["text/html"]).includes("<i>"));
  });

  it("cut long tables and say how many rows were left out", async () => {
    const rows = Array.from({ length: 120 }, (_, i) => ({ i }));
    const b = await toBundle(rows, { maxRows: 10 });
    assert.equal(htmlCells(String(b.data["text/html"])).length, 10);
    assert.match(String(b.data["text/html"]), /110 more rows \(120 in all\)/);
    assert.match(String(b.data["text/plain"]), /110 more rows/);
  });

  it("save as csv (quoted, full precision), md and html", () => {
    const rng = new Rng(SEED + 2);
    const rows = [
      { name: 'a, "quoted"\nline', x: rng.normal() },
      { name: "b|c", x: rng.normal() },
    ];
    const csv = fs.readFileSync(saveTable(rows, path.join(tmp, "t.csv")), "utf8");
    assert.equal(csv, `name,x\n"a, ""quoted""\nline",${rows[0].x}\nb|c,${rows[1].x}\n`);
    const md = fs.readFileSync(saveTable(rows, path.join(tmp, "t.md")), "utf8").split("\n");
    assert.equal(md[0], "| name | x |");
    assert.equal(md[1], "| --- | ---: |");
    assert.ok(md[3].startsWith("| b\\|c |"));
    const html = fs.readFileSync(saveTable(rows, path.join(tmp, "t.html")), "utf8");
    assert.equal(htmlCells(html).length, 2);
    assert.throws(() => saveTable(rows, path.join(tmp, "t.xlsx")), /unsupported extension/);
  });
});

describe("the one number formatter (lib/display/format.ts)", () => {
  it("3 significant digits against a float64 rounding, thousands separators from 10,000", () => {
    const rng = new Rng(SEED ^ 0x5eed);
    for (let i = 0; i < 200; i++) {
      const v = (rng.next() - 0.5) * 10 ** (rng.int(14) - 2);
      const s = formatNumber(v);
      const back = Number(s.replace(/,/g, ""));
      const a = Math.abs(v);
      assert.ok(Math.abs(back - v) <= 0.5 * 10 ** (Math.floor(Math.log10(a)) - 2) * (1 + 1e-9), `${v} shown as ${s}`);
      // a separator every three digits of the integer part, and only from 10,000 up (as shown: 9,997
      // rounds to 10,000)
      const int = s.replace(/^-/, "").split(/[.e]/)[0];
      const shown = Math.abs(back);
      if (shown >= 1e4 && shown < 1e12) assert.match(int, /^\d{1,3}(,\d{3})+$/, `${v} shown as ${s}`);
      else assert.ok(!int.includes(","), `${v} shown as ${s}`);
    }
    assert.equal(formatNumber(16000), "16,000");
    assert.equal(formatNumber(1234), "1234");
    assert.equal(formatNumber(0.043149), "0.0431");
    assert.equal(formatNumber(-2.3456), "-2.35");
    assert.equal(formatNumber(123456.7), "123,000");
    assert.equal(formatNumber(0.00001234), "1.23e-5");
    assert.equal(formatNumber(null), "—");
    assert.equal(formatNumber(NaN), "—");
    assert.throws(() => formatNumber(1.5, 0), /digits/);
  });
  it("percentages, p-values in one style, intervals that do not wrap", () => {
    assert.equal(formatPercent(0.04312), "4.31%");
    assert.equal(formatPercent(-0.0234), "-2.34%");
    assert.equal(formatP(0.01234), "0.012");
    assert.equal(formatP(0.27), "0.27");
    assert.equal(formatP(0.0004), "< 0.001");
    assert.equal(pText(0.01234), `p${NBSP}=${NBSP}0.012`);
    assert.equal(pText(1e-9), `p${NBSP}<${NBSP}0.001`);
    assert.throws(() => formatP(1.2), /\[0, 1\]/);
    assert.equal(
      formatCi(0.0071, 0.078, (x) => formatPercent(x)),
      `[0.71%,${NBSP}7.8%]`,
    );
    assert.equal(
      formatWithCi(0.043, 0.007, 0.078, (x) => formatPercent(x)),
      `4.3%${NBSP}[0.7%,${NBSP}7.8%]`,
    );
    assert.equal(formatWithCi(0.043, null, 0.078), "0.043");
    assert.ok(!formatWithCi(12345.6, 1000.5, 20000.5).includes(" "), "no breakable space inside");
  });
  it("table cells use it, identifier columns stay plain, intervals and numbers get nowrap", () => {
    assert.equal(formatCell(21607, 3, "feature"), "21607");
    assert.equal(formatCell(21607, 3, "rows"), "21,607");
    assert.equal(formatCell(0.123456), "0.123");
    assert.equal(formatCell(0.0000123, 3, "Holm p"), "< 0.001");
    assert.equal(formatCell(0.01234, 3, "p"), "0.012");
    assert.equal(formatCell(0.01234, 3, "dip p"), "0.012");
    assert.equal(formatCell(0.01234, 3, "pop"), "0.0123");
    // no absolute paths of this machine in a table
    assert.equal(formatCell(path.join(repoRoot, "data", "cache", "sae-1")), path.join("data", "cache", "sae-1"));
    assert.equal(formatCell(path.join(path.dirname(repoRoot), "shared", "x")), path.join("..", "shared", "x"));
    assert.ok(!path.isAbsolute(displayPath(path.join(os.homedir(), "is-display-test", "y"))), "home → ~ or relative");
    assert.equal(formatCell("/is-display-test-nowhere/x"), "/is-display-test-nowhere/x", "elsewhere: unchanged");
    assert.equal(formatCell("a/relative/path"), "a/relative/path");
    const html = tableToHtml({
      columns: ["feature", "ours", "n"],
      rows: [{ feature: 21607, ours: formatWithCi(0.043, 0.007, 0.078), n: 16384 }],
    });
    assert.ok(html.includes(">21607<"));
    assert.ok(html.includes('style="white-space:nowrap">0.043'), html);
    assert.ok(html.includes('style="text-align:right;white-space:nowrap">16,384<'), html);
    // a claim row's long text holding an interval wraps at its ordinary spaces (a nowrap cell was 9,000 px wide)
    const long = `${formatWithCi(5.29, 5.03, 5.56)} (t over 3 seeds; seeds 5.2, 5.41, 5.27%)`;
    const claim = tableToHtml({ columns: ["ours"], rows: [{ ours: long }] });
    assert.ok(claim.includes(`<td>${long}</td>`), claim);
  });
});

describe("charts", () => {
  it("bundle has vega-lite JSON, SVG, PNG and text; PNG is a real 2x raster of the SVG", async () => {
    const rng = new Rng(SEED + 3);
    const values = Array.from({ length: 20 }, (_, i) => ({
      step: i * 10,
      loss: 3 * Math.exp(-i / 6) + 0.1 * rng.next(),
    }));
    const spec = goodSpec(values);
    const b = await toBundle(spec);
    assert.equal(b.kind, "chart");
    assert.deepEqual(Object.keys(b.data).sort(), [VEGALITE_MIME, "image/png", "image/svg+xml", "text/plain"].sort());
    const vl = b.data[VEGALITE_MIME] as VegaLiteSpec;
    assert.deepEqual(vl.data, spec.data, "vega-lite JSON carries the data");
    assert.match(String(vl.$schema), /vega-lite\/v5/);
    const svg = String(b.data["image/svg+xml"]);
    assert.ok(svg.startsWith("<svg") && svg.length > 2000, "non-trivial SVG");
    for (const t of ["Loss by step", "step [#]", "loss (nats)"]) assert.ok(svg.includes(t), `SVG contains "${t}"`);
    const png = Buffer.from(String(b.data["image/png"]), "base64");
    assert.ok(isPng(png), "PNG signature");
    const size = pngSize(png);
    const m = /width="(\d+)" height="(\d+)"/.exec(svg)!;
    assert.equal(size.width, 2 * Number(m[1]));
    assert.equal(size.height, 2 * Number(m[2]));
    assert.deepEqual(b.metadata["image/png"], { width: Number(m[1]), height: Number(m[2]) });
    assert.equal(b.data["text/plain"], "[chart: Loss by step]");
  });

  it("renders marks in the default colour and text with the system fonts", async () => {
    const { svg } = await renderChart(
      goodSpec([
        { step: 0, loss: 1 },
        { step: 1, loss: 2 },
        { step: 2, loss: 0.5 },
      ]),
    );
    const img = rasterize(svg);
    const ink = nonWhiteFraction(img.pixels);
    assert.ok(ink > 0.01 && ink < 0.5, `plausible amount of ink (${ink})`);
    // vega's default mark colour #4c78a8 must appear (the line and points)
    let blue = 0;
    for (let i = 0; i < img.pixels.length; i += 4) {
      if (
        Math.abs(img.pixels[i] - 0x4c) < 12 &&
        Math.abs(img.pixels[i + 1] - 0x78) < 12 &&
        Math.abs(img.pixels[i + 2] - 0xa8) < 12
      )
        blue++;
    }
    assert.ok(blue > 50, `line pixels present (${blue})`);
    // text only: if no font were found, resvg would draw nothing
    const textOnly =
      `<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40">` +
      `<text x="5" y="30" font-family="sans-serif" font-size="24">Axis title</text></svg>`;
    assert.ok(nonWhiteFraction(rasterize(textOnly).pixels) > 0.02, "fonts render (install fonts-dejavu-core)");
  });

  it("saveChart writes svg, png and spec atomically", async () => {
    const out = await saveChart(goodSpec([{ step: 1, loss: 1 }]), path.join(tmp, "charts", "loss.png"));
    assert.equal(out.png, path.join(tmp, "charts", "loss.png"));
    assert.ok(isPng(fs.readFileSync(out.png)));
    assert.ok(fs.readFileSync(out.svg, "utf8").startsWith("<svg"));
    assert.equal(JSON.parse(fs.readFileSync(out.spec, "utf8")).title, "Loss by step");
    assert.deepEqual(fs.readdirSync(path.join(tmp, "charts")).sort(), ["loss.png", "loss.svg", "loss.vl.json"]);
  });
});

describe("chart title checks", () => {
  it("reject a spec without titles and name every problem", async () => {
    const bad: VegaLiteSpec = {
      data: { values: [{ a: 1, b: 2 }] },
      mark: "point",
      encoding: { x: { field: "a", type: "quantitative" }, y: { field: "b", type: "quantitative" } },
    };
    const problems = chartSpecProblems(bad);
    assert.equal(problems.length, 3, problems.join("; "));
    assert.throws(() => assertChartSpec(bad), ChartSpecError);
    await assert.rejects(toBundle(bad), ChartSpecError);
    await assert.rejects(saveChart(bad, path.join(tmp, "bad")), ChartSpecError);
    assert.ok(!fs.existsSync(path.join(tmp, "bad.png")));
  });

  it("require a unit on quantitative axes but not on categorical ones", () => {
    const spec = goodSpec([]);
    (spec.encoding as any).y.title = "loss";
    assert.match(chartSpecProblems(spec).join(), /encoding\.y.*names no unit/);
    (spec.encoding as any).y.title = "loss (nats)";
    (spec.encoding as any).x = { field: "backend", type: "nominal", title: "backend" };
    assert.deepEqual(chartSpecProblems(spec), []);
    (spec.encoding as any).x = { field: "backend", type: "nominal" };
    assert.match(chartSpecProblems(spec).join(), /encoding\.x: axis has no title/);
  });

  it("follow layers (shared encoding) and concatenations", () => {
    const layered: VegaLiteSpec = {
      title: { text: "Layers" },
      encoding: { x: { field: "t", type: "quantitative", axis: { title: "time (s)" } } },
      layer: [
        { mark: "line", encoding: { y: { field: "a", type: "quantitative", title: "a (m)" } } },
        { mark: "rule", encoding: { y: { datum: 0 } } },
      ],
    };
    assert.deepEqual(chartSpecProblems(layered), []);
    const concat: VegaLiteSpec = {
      title: "Two",
      hconcat: [layered, { mark: "bar", encoding: { x: { field: "q", type: "quantitative", title: "q" } } }],
    };
    assert.deepEqual(chartSpecProblems(concat), [
      'spec.hconcat[1].encoding.x: quantitative axis title "q" names no unit; ' +
        'write it like "loss (nats)" or "step [#]"',
    ]);
  });
});

describe("progress", () => {
  it("prints sparse plain lines when not interactive (about every 10%)", () => {
    const sink = new Sink(false);
    let t = 0;
    const p = progress({ total: 1000, label: "train", stream: sink, now: () => t });
    assert.equal(p.mode, "plain");
    for (let i = 1; i <= 1000; i++) {
      t += 5; // 5 ms per item: the run takes 5 s, far below the 30 s heartbeat
      p.update(i, { loss: 1 / i });
    }
    p.done();
    const lines = sink.lines();
    assert.equal(lines.length, 11, lines.join("\n")); // 10%, 20%, ..., 100%, then the final line
    const pcts = lines.slice(0, 10).map((l) => Number(/train:\s+(\d+)%/.exec(l)![1]));
    assert.deepEqual(pcts, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    assert.match(lines[10], /^train: 100% 1000\/1000 in 5\.0s \(200 it\/s\) \| loss=0\.001$/);
    assert.ok(!sink.text.includes("\r"), "no carriage returns in logs");
    p.done(); // idempotent
    assert.equal(sink.lines().length, 11);
  });

  it("prints a heartbeat line after 30 s without 10% progress", () => {
    const sink = new Sink(false);
    let t = 0;
    const p = progress({ total: 1000, label: "slow", stream: sink, now: () => t });
    for (let i = 1; i <= 20; i++) {
      t += 4000; // 4 s per item
      p.update(i);
    }
    // 80 s elapsed, 2% done: heartbeats at 32 s and 64 s
    assert.equal(sink.lines().length, 2, sink.text);
    assert.match(sink.lines()[0], /slow:\s+1% 8\/1000 0\.3 it\/s|slow:\s+1% 8\/1000 4\.0 s\/it/);
    assert.match(sink.lines()[1], /ETA /);
  });

  it("draws a redrawn bar with rate and ETA on a TTY", () => {
    const sink = new Sink(true);
    let t = 0;
    const p = progress({ total: 50, label: "tty", stream: sink, now: () => t });
    assert.equal(p.mode, "tty");
    for (let i = 1; i <= 50; i++) {
      t += 50;
      p.tick();
    }
    p.done();
    assert.ok(sink.text.includes("\r"), "redraws in place");
    assert.ok(sink.text.includes("█"), "bar");
    assert.match(sink.text, /ETA /);
    assert.ok(sink.text.endsWith("\n"));
    // throttled to one redraw per 100 ms: 2.5 s of work → about 25 redraws, not 50
    const draws = sink.text.split("\r").length - 1;
    assert.ok(draws >= 20 && draws <= 30, `draws=${draws}`);
  });

  it("rejects a bad total", () => {
    assert.throws(() => progress({ total: NaN }), /total must be/);
  });
});

describe("kernel mode (simulated tslab display writer)", () => {
  const messages: { msg: any; update: boolean }[] = [];
  let key = "";
  before(() => {
    key = require.resolve("tslab/dist/jupyter");
    assert.equal(require.cache[key], undefined, "tslab's kernel module must not be loaded in tests");
    require.cache[key] = {
      id: key,
      filename: key,
      loaded: true,
      exports: { lastWriteDisplayData: (msg: any, update: boolean) => messages.push({ msg, update }) },
    } as any;
  });
  after(() => {
    delete require.cache[key];
  });

  it("show sends ONE display_data with the whole chart bundle", async () => {
    messages.length = 0;
    await show(
      goodSpec([
        { step: 0, loss: 1 },
        { step: 1, loss: 0.5 },
      ]),
    );
    assert.equal(messages.length, 1);
    assert.equal(messages[0].update, false);
    assert.deepEqual(
      Object.keys(messages[0].msg.data).sort(),
      [VEGALITE_MIME, "image/png", "image/svg+xml", "text/plain"].sort(),
    );
    assert.ok(isPng(Buffer.from(messages[0].msg.data["image/png"], "base64")));
  });

  it("progress updates one output in place", () => {
    messages.length = 0;
    let t = 0;
    const p = progress({ total: 100, label: "<kernel>", now: () => t });
    assert.equal(p.mode, "kernel");
    for (let i = 1; i <= 100; i++) {
      t += 10;
      p.update(i);
    }
    p.done();
    const ids = new Set(messages.map((m) => m.msg.transient.display_id));
    assert.equal(ids.size, 1, "one display id");
    assert.equal(messages[0].update, false);
    assert.ok(
      messages.slice(1).every((m) => m.update),
      "then only updates",
    );
    assert.ok(messages.length >= 4 && messages.length <= 8, `throttled (${messages.length} messages for 1 s)`);
    const last = messages[messages.length - 1].msg.data;
    assert.match(last["text/plain"], /100% 100\/100/);
    assert.ok(last["text/html"].includes("&lt;kernel&gt;") && !last["text/html"].includes("<kernel>"));
  });

  it("liveChart re-renders one output in place", async () => {
    messages.length = 0;
    let t = 0;
    const live = liveChart({
      title: "Live",
      xTitle: "step [#]",
      yTitle: "loss (nats)",
      minIntervalMs: 1000,
      now: () => t,
    });
    assert.equal(live.mode, "kernel");
    for (let s = 0; s < 30; s++) {
      t += 100;
      live.add(s, { train: 1 / (s + 1), val: 1.1 / (s + 1) });
      await new Promise((r) => setImmediate(r));
    }
    await live.done();
    assert.ok(messages.length >= 2 && messages.length <= 5, `throttled re-renders (${messages.length})`);
    assert.equal(new Set(messages.map((m) => m.msg.transient.display_id)).size, 1);
    assert.equal(messages[0].update, false);
    assert.ok(messages.slice(1).every((m) => m.update));
    const final = messages[messages.length - 1].msg.data[VEGALITE_MIME];
    assert.equal(final.data.values.length, 60, "the final render holds every point");
  });
});

describe("outside a kernel", () => {
  it("show prints text and writes rich files when a display dir is set", async () => {
    const out = path.join(tmp, "shown");
    const sink = new Sink();
    setTextSink(sink);
    showTo(out);
    try {
      await show([{ a: "<x>", b: 1 }], { title: "My table" });
      await show(goodSpec([{ step: 0, loss: 1 }]));
      await show("plain text");
    } finally {
      showTo(null);
      setTextSink(null);
    }
    const files = fs.readdirSync(out).sort();
    assert.equal(files.length, 4, files.join());
    assert.ok(files[0].endsWith("-my-table.html"));
    assert.ok(fs.readFileSync(path.join(out, files[0]), "utf8").includes("&lt;x&gt;"));
    assert.deepEqual(
      files.slice(1).map((f) => f.replace(/^\d+-/, "")),
      ["loss-by-step.png", "loss-by-step.svg", "loss-by-step.vl.json"],
    );
    assert.match(sink.text, /My table\na\s+b/);
    assert.match(sink.text, /\[chart: Loss by step\] → .*loss-by-step\.png/);
    assert.match(sink.text, /plain text\n$/);
  });

  it("liveChart prints sparse lines and saves the chart on done", async () => {
    const sink = new Sink();
    showTo(path.join(tmp, "live"));
    try {
      let t = 0;
      const live = liveChart({
        title: "Loss curve",
        xTitle: "step [#]",
        yTitle: "loss (nats)",
        total: 200,
        stream: sink,
        now: () => t,
      });
      assert.equal(live.mode, "plain");
      for (let s = 1; s <= 200; s++) {
        t += 10;
        live.add(s, { train: 2 / s });
      }
      await live.done();
    } finally {
      showTo(null);
    }
    const lines = sink.lines();
    assert.ok(lines.length >= 10 && lines.length <= 13, lines.join("\n"));
    assert.match(lines[lines.length - 2], /Loss curve: x=200 \(done\) train=0\.01/);
    assert.ok(isPng(fs.readFileSync(path.join(tmp, "live", "loss-curve.png"))));
  });

  it("liveChart panels: listed series below the main panel, each panel with its own axis; renders", async () => {
    const opts = {
      title: "train: MSE",
      xTitle: "step [#]",
      yTitle: "MSE (units²)",
      yScale: "log" as const,
      mode: "silent" as const,
      panels: [
        { series: ["held-out L0"], yTitle: "held-out L0 [#]" },
        { series: ["dead"], yTitle: "dead (fraction)" },
      ],
    };
    const live = liveChart(opts);
    for (let x = 0; x <= 4; x++) live.add(x, { "train (batch)": 1 / (x + 1), "held-out L0": 8 - x, dead: 0.1 * x });
    const spec = live.spec() as any;
    assert.equal(spec.vconcat.length, 3);
    const series = (i: number) => [...new Set(spec.vconcat[i].data.values.map((p: any) => p.series))];
    assert.deepEqual(series(0), ["train (batch)"]);
    assert.deepEqual(series(1), ["held-out L0"]);
    assert.deepEqual(series(2), ["dead"]);
    assert.equal(spec.vconcat[2].encoding.y.title, "dead (fraction)");
    const r = await renderChart(spec, { scale: 1 });
    assert.match(r.svg, /held-out L0/);
    await live.done();
  });
  it("liveChart rejects axis titles without units at creation", () => {
    assert.throws(() => liveChart({ title: "x", xTitle: "step", yTitle: "loss (nats)" }), ChartSpecError);
  });
});
