/*
 * A rewrite of each cell's code before tslab compiles it: shorthand properties `{ x }` become
 * `{ x: x }`. tslab turns a cell's top-level declarations into properties of the kernel's module
 * scope and rewrites every later reference to them, but it misses shorthand properties, so
 * `{ splice }` for a `splice` declared in an earlier cell is a ReferenceError at run time. The
 * kernel launcher (tslab-kernel.cjs) installs this on tslab's JupyterHandlerImpl, so cells can be
 * written as ordinary TypeScript. Only object-literal shorthands change (not destructuring
 * patterns, not `{ x = 1 }` assignment defaults); everything else is left byte for byte.
 */
"use strict";

/** `code` with every shorthand property assignment expanded; `ts` is the TypeScript module. */
function expandShorthandProperties(code, ts) {
  const sf = ts.createSourceFile("cell.ts", code, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edits = [];
  const visit = (node) => {
    if (ts.isShorthandPropertyAssignment(node) && !node.objectAssignmentInitializer) {
      const name = node.name.text;
      edits.push({ at: node.name.getEnd(), text: `: ${name}` });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  let out = code;
  for (const e of edits.sort((a, b) => b.at - a.at)) out = out.slice(0, e.at) + e.text + out.slice(e.at);
  return out;
}

/** Wrap `Handler.prototype.handleExecuteImpl` so each cell's code is rewritten first; returns a restore function. */
function installCellRewrite(Handler, ts) {
  const proto = Handler && Handler.prototype;
  const original = proto && proto.handleExecuteImpl;
  if (typeof original !== "function")
    throw new Error("cell rewrite: tslab's JupyterHandlerImpl has no handleExecuteImpl (tslab version changed?)");
  proto.handleExecuteImpl = function (req, writeStream, writeDisplayData) {
    const code = req && typeof req.code === "string" ? expandShorthandProperties(req.code, ts) : req && req.code;
    return original.call(this, { ...req, code }, writeStream, writeDisplayData);
  };
  return () => {
    proto.handleExecuteImpl = original;
  };
}

module.exports = { expandShorthandProperties, installCellRewrite };
