/**
 * Fast TensorFlow.js kernels for the wasm backend (correct on every backend; tested on wasm and
 * cpu against float64 references in tests/kernels.test.ts; timed by bench/kernels.bench.ts).
 *
 *   linear(x[B,in], w[in,out], b?)            dense layer, gradient via explicit transposes
 *   linearT(x[B,in], wT[out,in], b?)          same with the weight stored [out,in]
 *   topk(pre[B,F], k, order)                  → {values[B,k], indices[B,k] int32}, scatter gradient
 *   topkDense(pre[B,F], k, order)             → [B,F] with zeros off the top k
 *   gatherRows(table[N,d], indices[...])      → [..., d], gradient = scatter-add into [N,d]
 *   scatterAddRows(indices[M], upd[M,d], n)   → [n,d] (duplicates add), gradient = row gather
 *   sparseMatmul(values[B,k], indices, w[F,d]) → [B,d], gradient wrt w touches B·k rows only
 *   topkEncode(x[B,d], wEncT[F,d], bEnc[F], k, order) → {values, indices}; only the forward
 *                                             pre-activation is dense, all gradients are sparse;
 *                                             TopK runs in JS on the [F,B] matmul output (topkColumns,
 *                                             with a SIMD pre-filter on wasm: wasmTopk.ts)
 *   interactionSparse(values[B,N], ids[B,N], V[F,E], {w1,b1,w2,b2}, drop?) → [B,d]: the NFM's
 *                                             interaction branch (bi-interaction, dropout, MLP) as
 *                                             one op with a hand-written gradient (interaction.ts;
 *                                             its O(B·N·E) loops are wasm kernels: wasmInteraction.ts);
 *                                             interactionForward/Backward: the same without a tape
 * On wasm, sparseMatmul's forward and the sparse outer-product gradients use fused SIMD kernels
 * (wasmOuter.ts) that are bit-identical to the tf-op formulation used on other backends (the row
 * dot products for d % 4 == 0 sum in four lanes, tested against a JS emulation of that order). On
 * threaded wasm (IS_WASM_THREADS) these kernels, the Adam kernel (wasmAdam.ts) and the TopK
 * selection (per range of columns, a JavaScript task) run in pieces on a helper thread that shares
 * the heap (wasmPool.ts). The wasm kernels are written in AssemblyScript (./assembly/*.ts) and
 * compiled by `npm run build:wasm` into ./compiled/*.ts (committed; see scripts/build-wasm.ts).
 *
 * Every kernel validates its arguments (errors name the argument and shape), never uses tfjs's
 * transposed matMul, builds masks by scatter instead of broadcast comparisons, and disposes all
 * of its intermediates (tensor count is unchanged after forward + backward).
 * See each module for the measured reasons behind its formulation.
 */
export { linear, linearT } from "./linear";
export { topk, topkDense, topkSelect, scatterSelected, flatPositions } from "./topk";
export type { TopKResult, TopKOrder } from "./topk";
export { gatherRows, scatterAddRows } from "./gather";
export { sparseMatmul, topkEncode } from "./sparse";
export { interactionSparse, interactionForward, interactionBackward } from "./interaction";
export type { InteractionWeights, InteractionState, InteractionGrads } from "./interaction";
