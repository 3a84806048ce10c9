/**
 * The kernel's cell rewrite (lib/notebook/cell-rewrite.cjs): shorthand properties become `x: x`, so
 * tslab's rewriting of earlier cells' variables reaches them; nothing else changes. The real kernel
 * path runs in tests/reproduce-notebooks.test.ts (notebook 05 uses a shorthand for an earlier cell's
 * variable).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as ts from "typescript";

const { expandShorthandProperties, installCellRewrite } = require("../lib/notebook/cell-rewrite.cjs") as {
  expandShorthandProperties: (code: string, t: typeof ts) => string;
  installCellRewrite: (h: unknown, t: typeof ts) => () => void;
};

describe("cell rewrite: shorthand properties", () => {
  it("expands object-literal shorthands, nested and in calls; leaves the rest byte for byte", () => {
    const x = (c: string) => expandShorthandProperties(c, ts);
    assert.equal(x("show({ splice });"), "show({ splice: splice });");
    assert.equal(x("const o = { a, b: 2, c, ...d };"), "const o = { a: a, b: 2, c: c, ...d };");
    assert.equal(
      x("f([{ mode: p.mode, splice }], { g: { h } });"),
      "f([{ mode: p.mode, splice: splice }], { g: { h: h } });",
    );
    // destructuring patterns, assignment defaults, strings, comments and templates are not object literals
    for (const same of [
      "const { a, b } = o;",
      "({ a = 1 } = o);",
      'const s = "{ a }"; // { b }',
      "const t = `{ ${'{'} a }`;",
      "function f({ a }: { a: number }) { return a; }",
      "for (const { k, v } of xs) console.log(k, v);",
    ])
      assert.equal(x(same), same);
    assert.equal(x("({ a } = o);"), "({ a: a } = o);"); // destructuring assignment: still the same meaning
  });

  it("installs on the handler: the cell runs with its code rewritten; restore puts the original back", async () => {
    const ran: string[] = [];
    class Handler {
      async handleExecuteImpl(req: { code: string; silent?: boolean }) {
        ran.push(req.code);
        return req.silent;
      }
    }
    const original = Handler.prototype.handleExecuteImpl;
    const restore = installCellRewrite(Handler, ts);
    const h = new Handler();
    assert.equal(await h.handleExecuteImpl({ code: "show({ x });", silent: true }), true, "other request fields kept");
    assert.deepEqual(ran, ["show({ x: x });"]);
    restore();
    assert.equal(Handler.prototype.handleExecuteImpl, original);
    assert.throws(() => installCellRewrite(class {}, ts), /handleExecuteImpl/);
  });
});
