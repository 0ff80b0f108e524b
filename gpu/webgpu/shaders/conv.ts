/**
 * Convolution WGSL: im2col, its adjoint col2im (written as a gather, so no atomics), and 2-D max
 * pooling with argmax indices plus its backward (also a gather).
 *
 * Column layout. `im2col` turns an NCHW image `[N, C, H, W]` into a matrix
 * `cols [C*kh*kw, N*OH*OW]`: row `(c, i, j)` (kernel tap), column `(n, oh, ow)` (output pixel).
 * The batch is folded into the columns, so a whole convolution is ONE plain matmul
 * `W [Cout, C*kh*kw] @ cols -> [Cout, N*OH*OW]` instead of N batched ones:
 * - its N dimension `N*OH*OW` is long and a multiple of 4 whenever the batch is, so the
 *   register-blocked kernel reads it as vec4;
 * - the weight gradient `dY [Cout, N*OH*OW] @ cols^T` contracts over batch and pixels inside one
 *   matmul, with no `[N, Cout, K]` per-image intermediate and no batch reduction afterwards;
 * - the price is a permute of the output `[Cout, N, OH, OW] -> [N, Cout, OH, OW]` (and of its
 *   gradient), which is small next to the matmul.
 *
 * Geometry. Padding is given as the top/left amounts plus the output size; the bottom/right
 * padding is whatever the output size implies. This expresses PyTorch's symmetric padding and
 * TensorFlow's asymmetric "SAME" padding (extra row/column at the bottom/right) alike.
 *
 * Shapes and geometry are baked into the shader text as constants (pipelines are cached by text).
 * @module
 */

import { colCols, colRows, type ConvGeometry } from "../../kernel.ts";
import { BUILTINS, linearIndex, NAN_HELPERS, u32 } from "./common.ts";

/** A WGSL `i32` literal. */
function i32(n: number): string {
  return `${n | 0}i`;
}

/**
 * Column entries each {@link im2colShader} thread writes: 4 (one vec4 store) when the column
 * count is a multiple of 4, else 1. Four per thread halves im2col's time on llvmpipe, where the
 * per-invocation cost outweighs the index arithmetic.
 */
export function im2colPerThread(g: ConvGeometry): 1 | 4 {
  return colCols(g) % 4 === 0 ? 4 : 1;
}

/**
 * WGSL: `cols[(c, i, j), (n, oh, ow)] = x[n, c, oh*sh - padTop + i*dh, ow*sw - padLeft + j*dw]`
 * (zero outside the image). Each thread writes {@link im2colPerThread} consecutive entries of one
 * row, so writes are contiguous. Bindings: x (read), cols (read_write).
 */
export function im2colShader(g: ConvGeometry, nx: number): string {
  const cols = colCols(g);
  const per = im2colPerThread(g);
  const threads = (colRows(g) * cols) / per;
  const taps = per === 4
    ? "vec4<f32>(tap(c, q, ki, kj), tap(c, q + 1u, ki, kj), tap(c, q + 2u, ki, kj), " +
      "tap(c, q + 3u, ki, kj))"
    : "tap(c, q, ki, kj)";
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> cols: array<${per === 4 ? "vec4<f32>" : "f32"}>;
// The pixel of image plane (n, c) that tap (ki, kj) reads for column q = (n, oh, ow), or 0.
fn tap(c: u32, q: u32, ki: i32, kj: i32) -> f32 {
  let ow = i32(q % ${u32(g.outW)});
  let oh = i32((q / ${u32(g.outW)}) % ${u32(g.outH)});
  let n = q / ${u32(g.outW * g.outH)};
  let ih = oh * ${i32(g.strideH)} - ${i32(g.padTop)} + ki * ${i32(g.dilationH)};
  let iw = ow * ${i32(g.strideW)} - ${i32(g.padLeft)} + kj * ${i32(g.dilationW)};
  let inside = ih >= 0 && ih < ${i32(g.h)} && iw >= 0 && iw < ${i32(g.w)};
  let at = u32(select(0, ih * ${i32(g.w)} + iw, inside));
  return select(0.0, x[(n * ${u32(g.c)} + c) * ${u32(g.h * g.w)} + at], inside);
}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(threads)}) { return; }
  let first = i * ${u32(per)};
  let q = first % ${u32(cols)};
  let row = first / ${u32(cols)};
  let kj = i32(row % ${u32(g.kw)});
  let ki = i32((row / ${u32(g.kw)}) % ${u32(g.kh)});
  let c = row / ${u32(g.kw * g.kh)};
  cols[i] = ${taps};
}`;
}

/**
 * WGSL of the adjoint of {@link im2colShader}: every image pixel sums the column entries that
 * read it (`x[n, c, h, w] = Σ cols[(c, i, j), (n, oh, ow)]` over the taps `(i, j)` whose window
 * position `(oh, ow)` lands on the pixel). A gather: one thread per pixel, no atomics.
 * Bindings: cols (read), x (read_write).
 */
export function col2imShader(g: ConvGeometry, nx: number): string {
  const cols = colCols(g);
  const total = g.n * g.c * g.h * g.w;
  return `@group(0) @binding(0) var<storage, read> cols: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(total)}) { return; }
  let w = i32(i % ${u32(g.w)});
  let h = i32((i / ${u32(g.w)}) % ${u32(g.h)});
  let c = (i / ${u32(g.w * g.h)}) % ${u32(g.c)};
  let n = i / ${u32(g.w * g.h * g.c)};
  let colBase = n * ${u32(g.outH * g.outW)};
  var acc = 0.0;
  for (var ki = 0; ki < ${i32(g.kh)}; ki++) {
    let th = h + ${i32(g.padTop)} - ki * ${i32(g.dilationH)};
    let oh = th / ${i32(g.strideH)};
    if (th < 0 || oh * ${i32(g.strideH)} != th || oh >= ${i32(g.outH)}) { continue; }
    for (var kj = 0; kj < ${i32(g.kw)}; kj++) {
      let tw = w + ${i32(g.padLeft)} - kj * ${i32(g.dilationW)};
      let ow = tw / ${i32(g.strideW)};
      if (tw < 0 || ow * ${i32(g.strideW)} != tw || ow >= ${i32(g.outW)}) { continue; }
      let row = (c * ${u32(g.kh)} + u32(ki)) * ${u32(g.kw)} + u32(kj);
      acc += cols[row * ${u32(cols)} + colBase + u32(oh) * ${u32(g.outW)} + u32(ow)];
    }
  }
  x[i] = acc;
}`;
}

/**
 * WGSL of 2-D max pooling over the geometry `g` (dilation must be 1). One thread per output
 * element writes the maximum and, `idxOffset` elements further on in the same buffer, the index
 * `h * W + w` of the (first) maximum within its input plane (PyTorch's convention). NaN
 * propagates; padding never wins. The output buffer is bound once as raw u32 words so the f32
 * values and i32 indices can share one allocation. Bindings: x (read), out (read_write).
 */
export function maxPool2dShader(g: ConvGeometry, idxOffset: number, nx: number): string {
  const total = g.n * g.c * g.outH * g.outW;
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
${NAN_HELPERS}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(total)}) { return; }
  let ow = i32(i % ${u32(g.outW)});
  let oh = i32((i / ${u32(g.outW)}) % ${u32(g.outH)});
  let plane = i / ${u32(g.outW * g.outH)};
  let base = plane * ${u32(g.h * g.w)};
  let h0 = oh * ${i32(g.strideH)} - ${i32(g.padTop)};
  let w0 = ow * ${i32(g.strideW)} - ${i32(g.padLeft)};
  var best = 0.0;
  var bestIdx = -1;
  for (var ki = 0; ki < ${i32(g.kh)}; ki++) {
    let h = h0 + ki;
    if (h < 0 || h >= ${i32(g.h)}) { continue; }
    for (var kj = 0; kj < ${i32(g.kw)}; kj++) {
      let w = w0 + kj;
      if (w < 0 || w >= ${i32(g.w)}) { continue; }
      let at = h * ${i32(g.w)} + w;
      let v = x[base + u32(at)];
      if (bestIdx < 0 || (!is_nan(best) && (is_nan(v) || v > best))) {
        best = v;
        bestIdx = at;
      }
    }
  }
  out[i] = bitcast<u32>(best);
  out[${u32(idxOffset)} + i] = bitcast<u32>(bestIdx);
}`;
}

/**
 * WGSL of the max-pool backward as a gather: every input pixel sums the output gradients of the
 * windows whose argmax is that pixel. Bindings: g (read, output-shaped), idx (read, i32,
 * output-shaped), dx (read_write, input-shaped).
 */
export function maxPool2dBackwardShader(g: ConvGeometry, nx: number): string {
  const total = g.n * g.c * g.h * g.w;
  return `@group(0) @binding(0) var<storage, read> grad: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(total)}) { return; }
  let w = i32(i % ${u32(g.w)});
  let h = i32((i / ${u32(g.w)}) % ${u32(g.h)});
  let plane = i / ${u32(g.w * g.h)};
  let at = h * ${i32(g.w)} + w;
  let outBase = plane * ${u32(g.outH * g.outW)};
  var acc = 0.0;
  for (var ki = 0; ki < ${i32(g.kh)}; ki++) {
    let th = h + ${i32(g.padTop)} - ki;
    let oh = th / ${i32(g.strideH)};
    if (th < 0 || oh * ${i32(g.strideH)} != th || oh >= ${i32(g.outH)}) { continue; }
    for (var kj = 0; kj < ${i32(g.kw)}; kj++) {
      let tw = w + ${i32(g.padLeft)} - kj;
      let ow = tw / ${i32(g.strideW)};
      if (tw < 0 || ow * ${i32(g.strideW)} != tw || ow >= ${i32(g.outW)}) { continue; }
      let o = outBase + u32(oh) * ${u32(g.outW)} + u32(ow);
      if (idx[o] == at) { acc += grad[o]; }
    }
  }
  dx[i] = acc;
}`;
}
