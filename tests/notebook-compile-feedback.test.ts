/**
 * The kernel's "compiling the library" feedback (lib/notebook/compile-feedback.cjs) on a stand-in
 * for tslab's JupyterHandlerImpl: one output before the first cell that imports ./lib/ runs, updated
 * in place (same display id) with the time when it ends or fails; nothing for later cells or for
 * cells without a library import. The real kernel path runs in tests/reproduce-notebooks.test.ts.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";

const { installCompileFeedback, LIB_IMPORT } = require("../lib/notebook/compile-feedback.cjs") as {
  installCompileFeedback: (
    h: unknown,
    o?: {
      now?: () => number;
      cacheStats?: () => { hits: number; misses: number };
      cellCacheStats?: () => { hits: number };
      cacheOff?: string;
    },
  ) => () => void;
  LIB_IMPORT: RegExp;
};

interface Msg {
  data: Record<string, string>;
  transient: { display_id?: string };
}

function fakeHandler(fail = false) {
  const ran: string[] = [];
  class Handler {
    async handleExecuteImpl(req: { code: string }, _w: unknown, _d: unknown) {
      ran.push(req.code);
      clock += 2500; // the cell compiles and runs for 2.5 s
      if (fail) throw new Error("cell failed");
      return ran.length;
    }
  }
  let clock = 1000;
  const sent: Array<{ msg: Msg; update: boolean }> = [];
  const write = (msg: Msg, update: boolean) => sent.push({ msg, update });
  const restore = installCompileFeedback(Handler, { now: () => clock });
  return { h: new Handler(), ran, sent, write, restore, Handler };
}

describe("compile feedback in the first cell", () => {
  it("announces, runs the cell, then updates the same output with the time; once per kernel", async () => {
    const { h, ran, sent, write, restore } = fakeHandler();
    assert.equal(await h.handleExecuteImpl({ code: "const x = 1;" }, null, write), 1);
    assert.equal(sent.length, 0, "a cell without a library import is left alone");
    const code = 'import { initBackend } from "./lib/backend";\nawait initBackend();';
    assert.equal(await h.handleExecuteImpl({ code }, null, write), 2);
    assert.deepEqual(ran, ["const x = 1;", code]);
    assert.equal(sent.length, 2);
    assert.equal(sent[0].update, false);
    assert.match(sent[0].msg.data["text/plain"], /compiling the library/);
    assert.equal(sent[1].update, true);
    assert.equal(sent[1].msg.transient.display_id, sent[0].msg.transient.display_id);
    assert.match(sent[1].msg.data["text/plain"], /library compiled and first cell run in 2\.5 s/);
    await h.handleExecuteImpl({ code }, null, write);
    assert.equal(sent.length, 2, "later cells: no message");
    restore();
  });
  it("says how many library files came from the compile cache, when the kernel has one", async () => {
    let clock = 0;
    const stats = { hits: 5, misses: 1 };
    const sent: Msg[] = [];
    class Handler {
      async handleExecuteImpl(_req: { code: string }, _w: unknown, _d: unknown) {
        clock += 1200;
        stats.hits += 121;
        stats.misses += 2;
      }
    }
    const restore = installCompileFeedback(Handler, { now: () => clock, cacheStats: () => stats });
    await new Handler().handleExecuteImpl({ code: 'import "./lib/backend";' }, null, (m: Msg) => sent.push(m));
    restore();
    assert.equal(
      sent[1].data["text/plain"],
      "library compiled and first cell run in 1.2 s, 121 of 123 library files from the compile cache",
    );
    const off: Msg[] = [];
    const restoreOff = installCompileFeedback(Handler, { now: () => clock, cacheOff: "anchor missing" });
    await new Handler().handleExecuteImpl({ code: 'import "./lib/backend";' }, null, (m: Msg) => off.push(m));
    restoreOff();
    assert.equal(
      off[1].data["text/plain"],
      "library compiled and first cell run in 1.2 s (compile cache off: anchor missing)",
    );
  });
  it("says when the first cell came from the cell cache (nothing compiled)", async () => {
    let clock = 0;
    const cellStats = { hits: 0 };
    const stats = { hits: 0, misses: 0 };
    const sent: Msg[] = [];
    class Handler {
      async handleExecuteImpl(_req: { code: string }, _w: unknown, _d: unknown) {
        clock += 300;
        cellStats.hits += 1;
      }
    }
    const restore = installCompileFeedback(Handler, {
      now: () => clock,
      cacheStats: () => stats,
      cellCacheStats: () => cellStats,
    });
    await new Handler().handleExecuteImpl({ code: 'import "./lib/backend";' }, null, (m: Msg) => sent.push(m));
    restore();
    assert.equal(sent[1].data["text/plain"], "first cell run in 0.3 s (compiled before: taken from the cell cache)");
  });
  it("says the first cell stopped when it fails, and rethrows", async () => {
    const { h, sent, write, restore } = fakeHandler(true);
    await assert.rejects(h.handleExecuteImpl({ code: 'import "./lib/lm/index";' }, null, write), /cell failed/);
    assert.equal(sent.length, 2);
    assert.match(sent[1].msg.data["text/plain"], /stopped after 2\.5 s/);
    restore();
  });
  it("matches imports and requires of ./lib/ only; refuses a handler without handleExecuteImpl", () => {
    assert.ok(LIB_IMPORT.test('import { show } from "./lib/display/index";'));
    assert.ok(LIB_IMPORT.test("const m = require('./lib/backend');"));
    assert.ok(!LIB_IMPORT.test('import pl from "nodejs-polars";'));
    assert.throws(() => installCompileFeedback(class {}), /handleExecuteImpl/);
  });
});
