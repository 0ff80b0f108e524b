/**
 * One elementwise kernel from a pending expression's leaves (tensor/tensor.ts `Leaf`): the buffer
 * bindings deduplicated by region ({@link Bindings}) and the map, or one-part pack, that computes
 * it ({@link runLeafMap}). Used to compute pending tensors and by the fusion layer (lazy.ts).
 * @module
 */

import { backend, type BufferRef } from "../gpu/backend.ts";
import type { DType, Expr } from "../gpu/kernel.ts";
import type { Leaf } from "./tensor.ts";

/**
 * The input buffers of one kernel, each bound once: a leaf's buffer region (storage, byte offset,
 * element count, dtype) gets the index of the first leaf that read it.
 */
export class Bindings {
  /** The bound regions, in binding order. */
  readonly refs: BufferRef[] = [];
  /** Their element types. */
  readonly types: DType[] = [];
  #index = new Map<string, number>();

  /** The key of `l`'s buffer region. */
  static key(l: Leaf): string {
    return `${l.ref.storage.id}:${l.ref.offset}:${l.ref.numel}:${l.dtype}`;
  }

  /** Whether `l`'s region is bound already. */
  has(l: Leaf): boolean {
    return this.#index.has(Bindings.key(l));
  }

  /** The binding of `l`'s region (bound now if new). */
  bind(l: Leaf): number {
    const key = Bindings.key(l);
    let b = this.#index.get(key);
    if (b === undefined) {
      b = this.refs.length;
      this.refs.push(l.ref);
      this.types.push(l.dtype);
      this.#index.set(key, b);
    }
    return b;
  }
}

/**
 * Runs `out[outOffset + i] = expr(leaves...)` over `shape` as one kernel: a map, or, when some
 * leaves read the same buffer (slices of one tensor at different offsets), a one-part pack that
 * binds that buffer once.
 */
export function runLeafMap(
  expr: Expr,
  shape: readonly number[],
  leaves: readonly Leaf[],
  out: BufferRef,
  outDtype: DType,
  outOffset = 0,
): void {
  const b = new Bindings();
  const bind = leaves.map((l) => b.bind(l));
  const inputs = leaves.map((l) => ({ dtype: l.dtype, strides: l.strides, offset: l.offset }));
  if (b.refs.length === leaves.length) {
    backend().run(
      {
        kind: "map",
        expr,
        shape: [...shape],
        inputs,
        out: outDtype,
        ...(outOffset ? { outOffset } : {}),
      },
      [...b.refs, out],
    );
  } else {
    backend().run({
      kind: "pack",
      out: outDtype,
      buffers: b.types,
      parts: [{ expr, shape: [...shape], inputs, bind, outOffset }],
    }, [...b.refs, out]);
  }
}
