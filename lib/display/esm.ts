/**
 * Loading ESM-only packages (vega, vega-lite 6) from CommonJS code.
 *
 * vega-lite 6 is ESM with top-level await, so `require()` fails even on Node versions that can
 * require ESM. TypeScript compiles `import()` to `require()` under CommonJS output (tslab, tsc), so
 * the dynamic import is built with `new Function`, out of the compiler's sight. We resolve the
 * package to an absolute file URL first, so resolution does not depend on the caller's location.
 */
import { pathToFileURL } from "node:url";

const dynamicImport = new Function("specifier", "return import(specifier)") as (s: string) => Promise<unknown>;

const cache = new Map<string, Promise<unknown>>();

/** Import an ESM package by name (resolved from this repository), once per process. */
export function importEsm<T = any>(name: string): Promise<T> {
  let p = cache.get(name);
  if (!p) {
    let resolved: string;
    try {
      resolved = require.resolve(name);
    } catch (err) {
      throw new Error(`cannot resolve package "${name}" (is it installed? run npm ci): ${(err as Error).message}`);
    }
    p = dynamicImport(pathToFileURL(resolved).href);
    cache.set(name, p);
  }
  return p as Promise<T>;
}
