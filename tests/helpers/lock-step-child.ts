/**
 * Child process for tests/integrity-lock.test.ts: runs one cachedStep (IS_CACHE_DIR from the
 * environment) whose compute appends a line to $COUNT_FILE, signals $STARTED_FILE, then waits until
 * $RELEASE_FILE exists (when set; else $HOLD_MS ms) before returning { value: 7 }. Prints the result
 * as JSON on stdout.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { cachedStep } from "../../lib/pipeline/cache";

async function main(): Promise<void> {
  const tag = process.argv[2] ?? "lock";
  const r = await cachedStep("lock-unit", { tag }, async (dir) => {
    fs.appendFileSync(process.env.COUNT_FILE!, `${process.pid}\n`);
    if (process.env.STARTED_FILE) fs.writeFileSync(process.env.STARTED_FILE, String(process.pid));
    const release = process.env.RELEASE_FILE;
    if (release) while (!fs.existsSync(release)) await new Promise((res) => setTimeout(res, 20));
    else await new Promise((res) => setTimeout(res, Number(process.env.HOLD_MS ?? "0")));
    fs.writeFileSync(path.join(dir, "artifact.bin"), Buffer.from([1, 2, 3]));
    return { value: 7 };
  });
  process.stdout.write(JSON.stringify({ hit: r.hit, value: r.value, key: r.key }) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e) + "\n");
  process.exit(1);
});
