/**
 * Parameter storage: named parameter tensors (the model's weights) in a fixed order.
 *
 * Parameters are immutable-by-convention tf.Tensors; the optimiser (lib/adam.ts) may update those
 * listed in `inPlace` in the backend's memory, so never share a parameter tensor's data (clone()
 * would share it: use tf.tensor(t.dataSync()) to snapshot).
 */
import { tf } from "./backend";

/** Named parameter tensors in a fixed order (the order of the gradient list and of checkpoints). */
export class ParamSet {
  private readonly map = new Map<string, tf.Tensor>();
  /**
   * Parameters the optimiser may update in place (in the backend's memory). Only parameters that
   * are never passed directly as a matMul operand may be listed: tfjs-wasm's XNNPACK path caches
   * pre-packed weights per tensor id, so an in-place write to such a tensor would not be seen by
   * later matMuls (measured: resume mismatch). Others are replaced by fresh tensors each step.
   */
  readonly inPlace = new Set<string>();
  constructor(entries: Array<[string, tf.Tensor]> = []) {
    for (const [n, t] of entries) this.set(n, t);
  }
  get names(): string[] {
    return [...this.map.keys()];
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  get(name: string): tf.Tensor {
    const t = this.map.get(name);
    if (!t) throw new Error(`no parameter named "${name}" (have ${this.names.join(", ")})`);
    return t;
  }
  /** Set or replace (disposing the old tensor). The set keeps the tensor alive (tf.keep). */
  set(name: string, t: tf.Tensor): void {
    const old = this.map.get(name);
    if (old && old !== t) old.dispose();
    this.map.set(name, tf.keep(t));
  }
  /** Float32 copy of one parameter. */
  read(name: string): Float32Array {
    return Float32Array.from(this.get(name).dataSync() as Float32Array);
  }
  shape(name: string): number[] {
    return this.get(name).shape.slice();
  }
  dispose(): void {
    for (const t of this.map.values()) t.dispose();
    this.map.clear();
  }
}
