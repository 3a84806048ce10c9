/**
 * Where a reproduction's time goes (issue 17, item 5): the cache events of one run grouped by
 * pipeline stage, and the run's peak memory. Every stage of the pipeline is one cached step
 * (lib/pipeline/cache.ts) and steps do not nest, so summing a stage's events counts each second once
 * per process; with --jobs N the worker processes' seconds overlap in wall time.
 */

/** What a cache event carries that the profile needs (lib/pipeline/cache.ts CacheEvent). */
export interface TimedEvent {
  step: string;
  hit: boolean;
  seconds: number;
  cpuSeconds: number;
}

export interface StageTime {
  /** Human name of the stage, e.g. "training: joint (full)". */
  stage: string;
  /** The cache step names it covers. */
  steps: string[];
  /** Events computed now / read back from the cache. */
  computed: number;
  cached: number;
  /** Summed over the stage's events (wall seconds of different processes overlap with --jobs N). */
  wallSeconds: number;
  cpuSeconds: number;
}

/** Peak resident set size of the processes of one run, in MiB (process.resourceUsage().maxRSS). */
export interface PeakMemory {
  /** The reproduce process itself (harvest, reading back, figures, report). */
  mainMiB: number;
  /** The largest worker process (--jobs ≥ 2), or null when none ran. */
  workerMiB: number | null;
}

/** Cache step name → stage label, in the order the pipeline runs them. */
const STAGES: Array<[step: string, label: string]> = [
  ["stores", "harvest (activation stores)"],
  ["sae", "training: standalone SAE"],
  ["sae-bias", "training: SAE with b_dec"],
  ["sae-wide", "training: width-matched SAE"],
  ["sequential", "training: sequential NFM"],
  ["joint", "training: joint (full)"],
  ["joint-equal-budget", "training: joint (equal budget)"],
  ["joint-linear", "training: joint SAE + linear"],
  ["joint-small-e", "training: joint (small E)"],
  ["joint-top-n", "training: joint (top-N)"],
  ["joint-modern", "training: joint (modern SAE)"],
  ["splice", "splice KL"],
  ["geometry", "geometry"],
  ["duplication", "duplication diagnostic"],
  ["secondary", "secondary SAE"],
  ["interventions", "interventions (clamping)"],
  ["notebook", "notebooks"],
];

/** Group events by stage: known stages in pipeline order, then any other step under its own name. */
export function stageProfile(events: readonly TimedEvent[]): StageTime[] {
  const byStep = new Map<string, StageTime>();
  for (const e of events) {
    if (!(Number.isFinite(e.seconds) && Number.isFinite(e.cpuSeconds)))
      throw new Error(`stageProfile: step ${e.step} has a non-finite time (${e.seconds} s, cpu ${e.cpuSeconds} s)`);
    let row = byStep.get(e.step);
    if (!row) {
      const label = STAGES.find(([s]) => s === e.step)?.[1] ?? e.step;
      row = { stage: label, steps: [e.step], computed: 0, cached: 0, wallSeconds: 0, cpuSeconds: 0 };
      byStep.set(e.step, row);
    }
    if (e.hit) row.cached++;
    else row.computed++;
    row.wallSeconds += e.seconds;
    row.cpuSeconds += e.cpuSeconds;
  }
  const order = (step: string) => {
    const i = STAGES.findIndex(([s]) => s === step);
    return i < 0 ? STAGES.length : i;
  };
  return [...byStep.entries()].sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b)).map(([, r]) => r);
}

/** This process's peak resident set size so far, in MiB. */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024; // maxRSS is in KiB
}
