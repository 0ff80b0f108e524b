/**
 * Scalar constants as tiny GPU buffers, shared and reused. Kernels read a constant from a buffer
 * instead of having it baked into their WGSL text: a value that changes every step (a step count,
 * a learning-rate factor) would otherwise compile a new pipeline every step.
 * @module
 */

import type { Backend, BufferRef, Storage } from "./backend.ts";
import type { DType } from "./kernel.ts";

/** Constants kept alive per backend (least recently used are released beyond this). */
const CAPACITY = 1024;

const pools = new WeakMap<Backend, Map<string, Storage>>();

/** A 1-element buffer holding `value` as `dtype`; the pool owns it (do not release it). */
export function constant(be: Backend, value: number, dtype: DType = "f32"): BufferRef {
  let pool = pools.get(be);
  if (!pool) pools.set(be, pool = new Map());
  const data = dtype === "f32"
    ? new Float32Array([value])
    : dtype === "i32"
    ? new Int32Array([value])
    : new Uint32Array([value]);
  const key = `${dtype}:${new Uint32Array(data.buffer)[0]}`;
  let storage = pool.get(key);
  if (storage) {
    pool.delete(key); // re-insert: most recently used last
  } else {
    storage = be.alloc(4);
    be.write(storage, data);
    if (pool.size >= CAPACITY) {
      const [oldKey, old] = pool.entries().next().value!;
      pool.delete(oldKey);
      be.release(old);
    }
  }
  pool.set(key, storage);
  return { storage, offset: 0, numel: 1 };
}
