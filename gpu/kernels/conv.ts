/**
 * Host side of the convolution kernels: im2col / col2im (see gpu/shaders/conv.ts for the column
 * layout) and 2-D max pooling with argmax indices and its backward. One dispatch each.
 * @module
 */

import type { Backend } from "../backend.ts";
import { foldGrid, WG } from "../shaders/common.ts";
import {
  col2imShader,
  colCols,
  colRows,
  type ConvGeometry,
  im2colPerThread,
  im2colShader,
  maxPool2dBackwardShader,
  maxPool2dShader,
} from "../shaders/conv.ts";
import { bind, type BufferRef } from "./buffer_ref.ts";

function launch(
  be: Backend,
  name: string,
  threads: number,
  code: (nx: number) => string,
  refs: BufferRef[],
): void {
  if (threads === 0) return;
  const { grid, nx } = foldGrid(Math.ceil(threads / WG));
  const bindings = refs.map((r, i) => bind(r, i === refs.length - 1 ? "read_write" : "read"));
  be.run({ code: code(nx), name }, bindings, grid);
}

/** Writes the columns of the NCHW image `x` into `cols` `[c*kh*kw, n*outH*outW]`. */
export function runIm2col(be: Backend, x: BufferRef, cols: BufferRef, g: ConvGeometry): void {
  const threads = (colRows(g) * colCols(g)) / im2colPerThread(g);
  launch(be, "im2col", threads, (nx) => im2colShader(g, nx), [x, cols]);
}

/** Writes into the NCHW image `x` the sum of the `cols` entries that read each pixel. */
export function runCol2im(be: Backend, cols: BufferRef, x: BufferRef, g: ConvGeometry): void {
  launch(be, "col2im", g.n * g.c * g.h * g.w, (nx) => col2imShader(g, nx), [cols, x]);
}

/**
 * Max-pools the NCHW image `x` into `out`, which must hold `idxOffset + n*c*outH*outW` elements:
 * the maxima first, the i32 argmax indices (within each input plane) from element `idxOffset`.
 */
export function runMaxPool2d(
  be: Backend,
  x: BufferRef,
  out: BufferRef,
  g: ConvGeometry,
  idxOffset: number,
): void {
  const n = g.n * g.c * g.outH * g.outW;
  if (out.numel < idxOffset + n) {
    throw new Error(`maxPool2d: output buffer holds ${out.numel} elements, needs ${idxOffset + n}`);
  }
  launch(be, "max_pool2d", n, (nx) => maxPool2dShader(g, idxOffset, nx), [x, out]);
}

/** Scatters (as a gather) the pooled gradient `grad` to the argmax pixels `idx` into `dx`. */
export function runMaxPool2dBackward(
  be: Backend,
  grad: BufferRef,
  idx: BufferRef,
  dx: BufferRef,
  g: ConvGeometry,
): void {
  launch(
    be,
    "max_pool2d_backward",
    g.n * g.c * g.h * g.w,
    (nx) => maxPool2dBackwardShader(g, nx),
    [grad, idx, dx],
  );
}
