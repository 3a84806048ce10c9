/**
 * Medians over rounds of a records file written by bench/rounds.sh: per benchmark, our tokens/s at
 * each thread count, the peer's at its best, and the ratio of the side-by-side pairs (each of our
 * records carries the peer timed right before or after it), for our best thread count per round.
 *   npx tsx bench/summarize.ts bench/records/<name>.jsonl
 * Records of bench/old-vs-new.sh (each with `side` old/new and `round`) get a table instead: per case, the
 * median CPU and wall ms per step of each side and the median (and interquartile range) of the per-round
 * ratios new/old.
 */
import * as fs from "node:fs";

interface Rec {
  name: string;
  side?: "old" | "new";
  step_ms_median?: number;
  step_cpu_ms_median?: number;
  threads: number;
  round?: number;
  tokens_per_s: number;
  vs_torch?: number;
  torch_tokens_per_s?: number;
  load_before?: number;
  attention?: string;
}

const median = (xs: number[]) => {
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export function summarize(records: Rec[]): string[] {
  const rows: string[] = [];
  const key = (r: Rec) => (r.attention && r.attention !== "looped" ? `${r.name} (${r.attention})` : r.name);
  const names = [...new Set(records.filter((r) => r.vs_torch !== undefined).map(key))];
  for (const n of names) {
    const mine = records.filter((r) => key(r) === n && r.vs_torch !== undefined);
    const rounds = [...new Set(mine.map((r) => r.round ?? 0))];
    // per round: our best thread count's ratio against the peer timed beside it
    const best = rounds.map((round) =>
      mine.filter((r) => (r.round ?? 0) === round).reduce((a, b) => (b.tokens_per_s > a.tokens_per_s ? b : a)),
    );
    const byThreads = [1, 2].map((t) => median(mine.filter((r) => r.threads === t).map((r) => r.tokens_per_s)));
    rows.push(
      `${n}: ours ${byThreads.map((v, i) => `${i + 1}t ${Math.round(v)}`).join(" / ")} tok/s; ` +
        `peer ${Math.round(median(best.map((r) => r.torch_tokens_per_s ?? NaN)))}; ` +
        `ratio per round ${best.map((r) => r.vs_torch?.toFixed(2)).join(", ")} ` +
        `(median ${median(best.map((r) => r.vs_torch ?? NaN)).toFixed(2)}, ` +
        `best threads ${best.map((r) => r.threads).join(",")}; load ${best.map((r) => r.load_before).join(", ")})`,
    );
  }
  return rows;
}

const quantile = (xs: number[], q: number) => {
  const s = xs.slice().sort((a, b) => a - b);
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.min(lo + 1, s.length - 1);
  return s[lo] + (s[hi] - s[lo]) * (i - lo);
};

/** Old against new, side by side per round (bench/old-vs-new.sh): a markdown table, one row per case. */
export function summarizeOldNew(records: Rec[]): string[] {
  const rows = [
    "| case | rounds | old CPU ms | new CPU ms | CPU new/old, median of rounds [IQR] | " +
      "wall new/old, median of rounds |",
    "|---|---|---|---|---|---|",
  ];
  const names = [...new Set(records.map((r) => r.name))];
  for (const n of names) {
    const side = (s: "old" | "new") =>
      new Map(records.filter((r) => r.name === n && r.side === s).map((r) => [r.round, r]));
    const [o, w] = [side("old"), side("new")];
    const paired = [...o.keys()].filter((k) => w.has(k));
    const ratio = (f: (r: Rec) => number | undefined) => paired.map((k) => f(w.get(k)!)! / f(o.get(k)!)!);
    const cpu = ratio((r) => r.step_cpu_ms_median);
    const wall = ratio((r) => r.step_ms_median);
    const med = (m: Map<number | undefined, Rec>) => median([...m.values()].map((r) => r.step_cpu_ms_median ?? NaN));
    rows.push(
      `| \`${n}\` | ${paired.length} | ${med(o).toFixed(2)} | ${med(w).toFixed(2)} | ` +
        `${median(cpu).toFixed(3)} [${quantile(cpu, 0.25).toFixed(3)}–${quantile(cpu, 0.75).toFixed(3)}] | ` +
        `${median(wall).toFixed(3)} |`,
    );
  }
  return rows;
}

if (require.main === module) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: npx tsx bench/summarize.ts <records.jsonl>\n");
    process.exit(2);
  }
  const lines = fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim().startsWith("{"));
  const records = lines.map((l, i) => {
    try {
      return JSON.parse(l) as Rec;
    } catch (e) {
      throw new Error(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
    }
  });
  const rows = records.some((r) => r.side) ? summarizeOldNew(records) : summarize(records);
  for (const row of rows) process.stdout.write(`${row}\n`);
}
