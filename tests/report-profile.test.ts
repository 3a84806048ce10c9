import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { stageProfile, peakRssMiB } from "../lib/report/profile";
import { profileSection } from "../lib/report/report";

describe("stageProfile", () => {
  test("groups events by stage in pipeline order, counts hits and misses, sums times", () => {
    const rows = stageProfile([
      { step: "splice", hit: false, seconds: 10, cpuSeconds: 9 },
      { step: "joint", hit: false, seconds: 100, cpuSeconds: 90 },
      { step: "stores", hit: true, seconds: 0.5, cpuSeconds: 0.4 },
      { step: "joint", hit: true, seconds: 1, cpuSeconds: 1 },
      { step: "some-new-step", hit: false, seconds: 2, cpuSeconds: 2 },
      { step: "notebook", hit: false, seconds: 30, cpuSeconds: 0.1 },
    ]);
    assert.deepEqual(
      rows.map((r) => r.stage),
      ["harvest (activation stores)", "training: joint (full)", "splice KL", "notebooks", "some-new-step"],
    );
    const joint = rows[1];
    assert.deepEqual([joint.computed, joint.cached, joint.wallSeconds, joint.cpuSeconds], [1, 1, 101, 91]);
    assert.deepEqual(stageProfile([]), []);
    assert.throws(() => stageProfile([{ step: "sae", hit: false, seconds: NaN, cpuSeconds: 1 }]), /sae.*non-finite/);
  });

  test("profileSection: one row per stage with its CPU share; peak RSS is a positive MiB figure", () => {
    const md = profileSection(
      stageProfile([
        { step: "sae", hit: false, seconds: 1234.5, cpuSeconds: 300 },
        { step: "geometry", hit: false, seconds: 12.34, cpuSeconds: 100 },
      ]),
    );
    assert.match(md, /## Where the time goes/);
    assert.match(md, /\| training: standalone SAE \| 1 \| 0 \| 1235 \| 300 \| 75% \|/);
    assert.match(md, /\| geometry \| 1 \| 0 \| 12\.3 \| 100 \| 25% \|/);
    // a run that computed nothing says so instead of a table of loading times
    const cachedOnly = profileSection(stageProfile([{ step: "sae", hit: true, seconds: 0.01, cpuSeconds: 0.01 }]));
    assert.match(cachedOnly, /read back from the cache: this run computed nothing/);
    assert.doesNotMatch(cachedOnly, /\| stage \|/);
    const rss = peakRssMiB();
    assert.ok(rss > 10 && rss < 1e6, `${rss}`);
  });
});
