/**
 * Host side of elementwise kernels: broadcasting maps, strided placement (pad/concat), fills.
 * @module
 */

import type { Backend } from "../backend.ts";
import { type DType, elementGroups, foldGrid, numel, WG } from "../shaders/common.ts";
import {
  accumulateShader,
  fillShader,
  mapIsVec4,
  mapShader,
  placeShader,
} from "../shaders/elementwise.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

/** An input of {@link runMap}: a buffer, its dtype, strides per output dim and a base offset. */
export interface MapArg {
  /** The buffer read. */
  ref: BufferRef;
  /** Element type. */
  dtype: DType;
  /** Strides per output dimension (0 = broadcast). */
  strides: number[];
  /** Element offset of the first element read. */
  offset?: number;
}

/** Runs `out = expr(inputs...)` over `shape`, writing into `out`. */
export function runMap(
  be: Backend,
  name: string,
  expr: string,
  shape: readonly number[],
  inputs: MapArg[],
  out: BufferRef,
  outDtype: DType,
): void {
  const n = numel(shape);
  if (n === 0) return;
  const args = inputs.map((a) => ({ dtype: a.dtype, strides: a.strides, offset: a.offset }));
  // The vec4 path runs one thread per 4 elements; the scalar path EPT elements per thread.
  const groups = mapIsVec4(shape, args) ? Math.ceil(n / 4 / WG) : elementGroups(n);
  const { grid, nx } = foldGrid(groups);
  const code = mapShader(expr, shape, args, outDtype, nx);
  be.run(
    { code, name },
    [...inputs.map((a) => bind(a.ref, "read")), bind(out, "read_write")],
    grid,
  );
}

/** Writes the contiguous `src` of `shape` into `out` at element `offset` with `outStrides`. */
export function runPlace(
  be: Backend,
  src: BufferRef,
  shape: readonly number[],
  out: BufferRef,
  outStrides: readonly number[],
  offset: number,
  dtype: DType,
): void {
  const n = numel(shape);
  if (n === 0) return;
  const { grid, nx } = foldGrid(elementGroups(n));
  be.run(
    { code: placeShader(shape, outStrides, offset, dtype, nx), name: "place" },
    [bind(src, "read"), bind(out, "read_write")],
    grid,
  );
}

/** Fills `out` with a WGSL constant expression (e.g. "0.0", "1i"). */
export function runFill(be: Backend, out: BufferRef, dtype: DType, value: string): void {
  if (out.numel === 0) return;
  const { grid, nx } = foldGrid(elementGroups(out.numel));
  be.run(
    { code: fillShader(out.numel, dtype, value, nx), name: "fill" },
    [bind(out, "read_write")],
    grid,
  );
}

/** out += src over the elements of `out` (in place; same element count). */
export function runAccumulate(be: Backend, src: BufferRef, out: BufferRef): void {
  if (out.numel === 0) return;
  const { grid, nx } = foldGrid(elementGroups(out.numel));
  be.run(
    { code: accumulateShader(out.numel, nx), name: "accumulate" },
    [bind(src, "read"), bind(out, "read_write")],
    grid,
  );
}
