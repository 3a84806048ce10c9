/**
 * Progress reporting for long data jobs. Uses lib/display's `progress()` (in-place notebook output,
 * TTY bar, sparse CI lines) when that module is present, else prints sparse plain lines to stderr.
 */
export interface ProgressHandle {
  update(n: number, extra?: string): void;
  done(): void;
}

type ProgressFactory = (opts: { total: number; label: string }) => ProgressHandle;

function fallback(opts: { total: number; label: string }): ProgressHandle {
  let lastPrint = 0;
  let lastFraction = -1;
  const start = Date.now();
  return {
    update(n: number, extra?: string) {
      const now = Date.now();
      const frac = opts.total > 0 ? n / opts.total : 1;
      if (frac - lastFraction >= 0.1 || now - lastPrint >= 30000) {
        lastFraction = frac;
        lastPrint = now;
        process.stderr.write(`${opts.label}: ${n}/${opts.total} (${(frac * 100).toFixed(0)}%, ${((now - start) / 1000).toFixed(1)} s)${extra ? " " + extra : ""}\n`);
      }
    },
    done() {
      process.stderr.write(`${opts.label}: done in ${((Date.now() - start) / 1000).toFixed(1)} s\n`);
    },
  };
}

export function makeProgress(opts: { total: number; label: string }): ProgressHandle {
  let factory: ProgressFactory | null = null;
  try {
    // Resolved at run time so this module does not depend on the display module being present.
    const modPath = "../display/index";
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const mod = require(modPath) as { progress?: ProgressFactory };
    if (typeof mod.progress === "function") factory = mod.progress;
  } catch {
    factory = null;
  }
  return (factory ?? fallback)(opts);
}

export const silentProgress: ProgressHandle = { update() {}, done() {} };
