/**
 * Combining one measurement across training seeds (the unit of replication of the report).
 *
 * With n ≥ 2 finite seed values the 95% CI is a Student t-interval over the seed values,
 * mean ± t_{n−1, 0.975} · sd / √n (sd with n − 1 in the denominator): it carries the seed-to-seed
 * variation, which a bootstrap within one seed cannot. With one seed the only interval available is
 * that seed's own within-seed interval (a document/feature bootstrap), and ciMethod says that it has
 * no seed variation. Non-finite seed values (a failed measurement) are dropped, and ciMethod says so.
 */
import type { Measured } from "../report/claims";
import { studentTQuantile } from "./distributions";

export function acrossSeeds(
  values: number[],
  withinSeedCi?: Array<[number, number] | null>,
  level = 0.95,
  withinMethod = "document bootstrap",
): Measured {
  if (!(level > 0 && level < 1)) throw new Error(`acrossSeeds: level must be in (0, 1) (got ${level})`);
  const keep = values.map((v, i) => (Number.isFinite(v) ? i : -1)).filter((i) => i >= 0);
  const dropped = values.length - keep.length;
  const droppedNote = dropped ? `; ${dropped} of ${values.length} seeds dropped (non-finite value)` : "";
  const finite = keep.map((i) => values[i]);
  const n = finite.length;
  const out: Measured = { value: n ? finite.reduce((s, v) => s + v, 0) / n : NaN, perSeed: values.slice() };
  if (withinSeedCi) out.withinSeedCi = withinSeedCi.map((c) => (c ? [c[0], c[1]] : null));
  const pctLevel = `${+(level * 100).toFixed(2)}%`;
  const levelNote = level === 0.95 ? "" : ` (${pctLevel})`;
  if (n >= 2) {
    const mean = out.value;
    const sd = Math.sqrt(finite.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1));
    const half = studentTQuantile(1 - (1 - level) / 2, n - 1) * (sd / Math.sqrt(n));
    out.ci = [mean - half, mean + half];
    out.ciMethod = `t-interval over ${n} seeds (df ${n - 1})${levelNote}${droppedNote}`;
  } else if (n === 1) {
    const c = withinSeedCi?.[keep[0]];
    if (c && Number.isFinite(c[0]) && Number.isFinite(c[1])) {
      out.ci = [c[0], c[1]];
      out.ciMethod = `${withinMethod}, one seed (no seed variation)${droppedNote}`;
    } else if (dropped) {
      out.ciMethod = `no interval: one seed${droppedNote}`;
    }
  } else if (values.length) {
    out.ciMethod = `no finite value in any of ${values.length} seeds`;
  }
  return out;
}
