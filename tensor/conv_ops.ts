/**
 * Convolution ops on NCHW tensors. Three primitives with gradient rules — `im2col`, its adjoint
 * `col2im` (each is the other's gradient), and `maxPool2d` — and two compositions whose gradients
 * come from the primitives and from matmul:
 *
 * - `conv2d`: `im2col(x)` → `W [Cout, Cin*kh*kw] @ cols` → `+ bias` → permute to NCHW;
 * - `convTranspose2d`: permute `x` to `[Cin, N*H*W]` → `W^T @ x` → `col2im` (+ bias). Its backward
 *   is `im2col` of the output gradient followed by the two matmul gradient products.
 *
 * The column layout `[C*kh*kw, N*OH*OW]` (batch folded into the columns; see
 * gpu/webgpu/shaders/conv.ts) makes every convolution one plain 2-D matmul, forward and backward.
 * Weight layouts follow PyTorch: conv `[Cout, Cin, kh, kw]`, transposed conv `[Cin, Cout, kh, kw]`.
 *
 * Importing this module registers the gradient rules of its primitives in `GRAD_RULES`.
 * @module
 */

import { backend, OFFSET_ALIGN } from "../gpu/backend.ts";
import { colCols, colRows, type ConvGeometry, numel } from "../gpu/kernel.ts";
import { GRAD_RULES, type GradRule } from "./autograd.ts";
import * as ops from "./ops.ts";
import { isGradEnabled, Tensor } from "./tensor.ts";

export type { ConvGeometry } from "../gpu/kernel.ts";

/** A size given once for both spatial dims, or as `[height, width]`. */
export type Size2 = number | readonly [number, number];

/**
 * Padding: a number of zero rows/columns on each side (PyTorch), `[padH, padW]`, `"valid"` (none),
 * or `"same"` as TensorFlow defines it: output size `ceil(in / stride)`, with the odd extra
 * row/column of padding at the bottom/right.
 */
export type Padding = Size2 | "same" | "valid";

/** Options of {@link conv2d} and {@link convGeometry}. */
export interface Conv2dOptions {
  /** Stride (default 1). */
  stride?: Size2;
  /** Padding (default 0). */
  padding?: Padding;
  /** Dilation (default 1). */
  dilation?: Size2;
}

/** Options of {@link convTranspose2d}. */
export interface ConvTranspose2dOptions extends Conv2dOptions {
  /**
   * Extra rows/columns added to the bottom/right of the output (default 0) so that a strided
   * transposed conv can produce every input size of the conv it inverts; must be smaller than
   * the stride or the dilation. Ignored with `padding: "same"` (the output is then `in * stride`).
   */
  outputPadding?: Size2;
}

function pair(v: Size2 | undefined, dflt: number): [number, number] {
  if (v === undefined) return [dflt, dflt];
  return typeof v === "number" ? [v, v] : [v[0], v[1]];
}

function checkPositiveInts(op: string, what: string, v: readonly number[], min: number): void {
  if (v.some((d) => !Number.isInteger(d) || d < min)) {
    throw new Error(`${op}: ${what} must be integers >= ${min}, got [${v.join(", ")}]`);
  }
}

/** Records an autograd node on `out` when grad is enabled and some input requires grad. */
function record(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  params: Record<string, unknown>,
): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, params };
  }
  return out;
}

/** Disposes a composition's intermediates when the result carries no graph that needs them. */
function releaseIfDetached(out: Tensor, temps: Tensor[]): Tensor {
  if (out.requiresGrad) return out;
  for (const t of temps) {
    if (t !== out) t.dispose();
  }
  return out;
}

function requireNchw(op: string, x: Tensor): [number, number, number, number] {
  if (x.ndim !== 4 || x.dtype !== "f32") {
    throw new Error(`${op}: expects an f32 NCHW tensor [N, C, H, W], got ${x.describe()}`);
  }
  return [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
}

/**
 * The geometry of a `kernel`-sized window sliding over an NCHW image of `shape` (the geometry
 * of a convolution or pooling over that image).
 * @throws Error when the window does not fit (output size below 1) or an option is invalid.
 */
export function convGeometry(
  shape: readonly number[],
  kernel: Size2,
  opts: Conv2dOptions = {},
  op = "convGeometry",
): ConvGeometry {
  if (shape.length !== 4) throw new Error(`${op}: expects an NCHW shape, got [${shape.join(",")}]`);
  const [n, c, h, w] = shape;
  const [kh, kw] = pair(kernel, 1);
  const [strideH, strideW] = pair(opts.stride, 1);
  const [dilationH, dilationW] = pair(opts.dilation, 1);
  checkPositiveInts(op, "kernel size", [kh, kw], 1);
  checkPositiveInts(op, "stride", [strideH, strideW], 1);
  checkPositiveInts(op, "dilation", [dilationH, dilationW], 1);
  const spanH = dilationH * (kh - 1) + 1;
  const spanW = dilationW * (kw - 1) + 1;
  let padTop: number, padLeft: number, outH: number, outW: number;
  if (opts.padding === "same") {
    outH = Math.ceil(h / strideH);
    outW = Math.ceil(w / strideW);
    padTop = Math.floor(Math.max((outH - 1) * strideH + spanH - h, 0) / 2);
    padLeft = Math.floor(Math.max((outW - 1) * strideW + spanW - w, 0) / 2);
  } else {
    [padTop, padLeft] = opts.padding === "valid" ? [0, 0] : pair(opts.padding, 0);
    checkPositiveInts(op, "padding", [padTop, padLeft], 0);
    outH = Math.floor((h + 2 * padTop - spanH) / strideH) + 1;
    outW = Math.floor((w + 2 * padLeft - spanW) / strideW) + 1;
  }
  if (outH < 1 || outW < 1) {
    throw new Error(
      `${op}: a ${kh}x${kw} window (dilation ${dilationH}x${dilationW}) does not fit a ` +
        `${h}x${w} image with padding ${padTop}x${padLeft}`,
    );
  }
  return {
    n,
    c,
    h,
    w,
    kh,
    kw,
    strideH,
    strideW,
    padTop,
    padLeft,
    dilationH,
    dilationW,
    outH,
    outW,
  };
}

/**
 * The geometry of the convolution that a transposed convolution inverts: the image is the
 * transposed conv's output `[n, cout, H, W]`, and the window positions (`outH` x `outW`) are its
 * input pixels. `shape` is the transposed conv's input `[N, Cin, Hin, Win]`.
 */
export function convTransposeGeometry(
  shape: readonly number[],
  cout: number,
  kernel: Size2,
  opts: ConvTranspose2dOptions = {},
  op = "convTransposeGeometry",
): ConvGeometry {
  if (shape.length !== 4) throw new Error(`${op}: expects an NCHW shape, got [${shape.join(",")}]`);
  const [n, , hIn, wIn] = shape;
  const [strideH, strideW] = pair(opts.stride, 1);
  const [dilationH, dilationW] = pair(opts.dilation, 1);
  const [kh, kw] = pair(kernel, 1);
  checkPositiveInts(op, "kernel size", [kh, kw], 1);
  checkPositiveInts(op, "stride", [strideH, strideW], 1);
  checkPositiveInts(op, "dilation", [dilationH, dilationW], 1);
  const spanH = dilationH * (kh - 1) + 1;
  const spanW = dilationW * (kw - 1) + 1;
  let h: number, w: number, padTop: number, padLeft: number;
  if (opts.padding === "same") {
    h = hIn * strideH;
    w = wIn * strideW;
    padTop = Math.floor(Math.max((hIn - 1) * strideH + spanH - h, 0) / 2);
    padLeft = Math.floor(Math.max((wIn - 1) * strideW + spanW - w, 0) / 2);
  } else {
    [padTop, padLeft] = opts.padding === "valid" ? [0, 0] : pair(opts.padding, 0);
    const [opH, opW] = pair(opts.outputPadding, 0);
    checkPositiveInts(op, "padding", [padTop, padLeft], 0);
    checkPositiveInts(op, "output padding", [opH, opW], 0);
    if (opH >= Math.max(strideH, dilationH) || opW >= Math.max(strideW, dilationW)) {
      throw new Error(
        `${op}: output padding [${opH}, ${opW}] must be smaller than the stride or the dilation`,
      );
    }
    h = (hIn - 1) * strideH - 2 * padTop + spanH + opH;
    w = (wIn - 1) * strideW - 2 * padLeft + spanW + opW;
  }
  if (h < 1 || w < 1) {
    throw new Error(`${op}: the output would be ${h}x${w}; reduce the padding`);
  }
  return {
    n,
    c: cout,
    h,
    w,
    kh,
    kw,
    strideH,
    strideW,
    padTop,
    padLeft,
    dilationH,
    dilationW,
    outH: hIn,
    outW: wIn,
  };
}

function describeGeometry(g: ConvGeometry): string {
  return `[${g.n},${g.c},${g.h},${g.w}] with a ${g.kh}x${g.kw} window at ${g.outH}x${g.outW} ` +
    "positions";
}

// ---------------------------------------------------------------- primitives

/**
 * Columns of an NCHW image for the window geometry `g` (see {@link convGeometry}):
 * `[c*kh*kw, n*outH*outW]`, row `(c, i, j)` = kernel tap, column `(n, oh, ow)` = window position;
 * taps that fall into the padding read 0. Differentiable (its gradient is {@link col2im}).
 */
export function im2col(x: Tensor, g: ConvGeometry): Tensor {
  const [n, c, h, w] = requireNchw("im2col", x);
  if (n !== g.n || c !== g.c || h !== g.h || w !== g.w) {
    throw new Error(`im2col: ${x.describe()} does not match the geometry ${describeGeometry(g)}`);
  }
  const out = ops.empty([colRows(g), colCols(g)], "f32", "im2col");
  if (out.size > 0) {
    backend().run({ kind: "im2col", g }, [x.refFor("im2col"), out.refFor("im2col")]);
  }
  return record(out, "im2col", [x], { geometry: g });
}

/**
 * The adjoint of {@link im2col}: an NCHW image `[n, c, h, w]` of `g` where each pixel is the
 * sum of the column entries that read it. `cols` must be `[c*kh*kw, n*outH*outW]`.
 * Differentiable (its gradient is {@link im2col}).
 */
export function col2im(cols: Tensor, g: ConvGeometry): Tensor {
  if (cols.dtype !== "f32" || cols.size !== colRows(g) * colCols(g)) {
    throw new Error(
      `col2im: ${cols.describe()} is not the [${colRows(g)}, ${colCols(g)}] column matrix of ` +
        describeGeometry(g),
    );
  }
  const out = ops.empty([g.n, g.c, g.h, g.w], "f32", "col2im");
  if (out.size > 0) {
    backend().run({ kind: "col2im", g }, [cols.refFor("col2im"), out.refFor("col2im")]);
  }
  return record(out, "col2im", [cols], { geometry: g });
}

/** Element offset of the argmax indices inside each max-pool output's storage. */
const poolIndexOffsets = new WeakMap<Tensor, number>();

/**
 * 2-D max pooling of an NCHW tensor with a `kernel` window (stride defaults to the kernel size).
 * Padding never wins; NaN propagates. Differentiable: the gradient goes to the (first) maximum of
 * each window.
 *
 * The argmax indices the backward needs are written by the same kernel into the tail of the
 * output's own storage, so they live exactly as long as the output and need no disposal of their
 * own (read them with {@link maxPool2dIndices}).
 */
export function maxPool2d(
  x: Tensor,
  kernel: Size2,
  stride?: Size2,
  padding: Padding = 0,
): Tensor {
  requireNchw("maxPool2d", x);
  const g = convGeometry(x.shape, kernel, { stride: stride ?? kernel, padding }, "maxPool2d");
  if (2 * g.padTop > g.kh || 2 * g.padLeft > g.kw) {
    throw new Error(
      `maxPool2d: padding ${g.padTop}x${g.padLeft} must be at most half the ${g.kh}x${g.kw} window`,
    );
  }
  const shape = [g.n, g.c, g.outH, g.outW];
  const count = numel(shape);
  const alignElems = OFFSET_ALIGN / 4;
  const idxOffset = Math.max(alignElems, Math.ceil(count / alignElems) * alignElems);
  const be = backend();
  const storage = be.alloc((idxOffset + count) * 4);
  const out = new Tensor(storage, shape, "f32", 0, "maxPool2d");
  if (count > 0) {
    be.run({ kind: "maxPool2d", g, idxOffset }, [
      x.refFor("maxPool2d"),
      { storage, offset: 0, numel: idxOffset + count },
    ]);
  }
  poolIndexOffsets.set(out, idxOffset);
  return record(out, "maxPool2d", [x], { geometry: g });
}

/**
 * The argmax indices of a {@link maxPool2d} output, as a new i32 tensor of the output's shape
 * holding `h * W + w` within each input plane (PyTorch's convention). It shares the output's
 * storage (no copy); dispose it like any tensor.
 */
export function maxPool2dIndices(pooled: Tensor): Tensor {
  const idxOffset = poolIndexOffsets.get(pooled);
  if (idxOffset === undefined) {
    throw new Error(`maxPool2dIndices: ${pooled.describe()} was not produced by maxPool2d`);
  }
  const storage = pooled.storageFor("maxPool2dIndices");
  backend().retain(storage);
  return new Tensor(
    storage,
    pooled.shape,
    "i32",
    pooled.offset + idxOffset * 4,
    "maxPool2dIndices",
  );
}

/**
 * The max-pool backward: routes the pooled gradient `grad` (shape of `pooled`) to the argmax
 * pixels recorded in `pooled`, giving a tensor of the pooled input's shape. Not differentiable.
 */
export function maxPool2dBackward(grad: Tensor, pooled: Tensor, g: ConvGeometry): Tensor {
  if (grad.size !== pooled.size || grad.dtype !== "f32") {
    throw new Error(`maxPool2dBackward: ${grad.describe()} does not match ${pooled.describe()}`);
  }
  const idx = maxPool2dIndices(pooled);
  const out = ops.empty([g.n, g.c, g.h, g.w], "f32", "maxPool2dBackward");
  if (out.size > 0) {
    backend().run({ kind: "maxPool2dBackward", g }, [
      grad.refFor("maxPool2dBackward"),
      idx.refFor("maxPool2dBackward"),
      out.refFor("maxPool2dBackward"),
    ]);
  }
  idx.dispose();
  return out;
}

/** Gradient rules of the primitives above, merged into the shared table at module load. */
const CONV_GRAD_RULES: Record<string, GradRule> = {
  im2col: (g, node) => [col2im(g, node.params.geometry as ConvGeometry)],
  col2im: (g, node) => [im2col(g, node.params.geometry as ConvGeometry)],
  maxPool2d: (g, node, out) => [maxPool2dBackward(g, out, node.params.geometry as ConvGeometry)],
};
Object.assign(GRAD_RULES, CONV_GRAD_RULES);

// ---------------------------------------------------------------- compositions

/**
 * 2-D convolution (cross-correlation, as in PyTorch) of `x` [N, Cin, H, W] with `w`
 * [Cout, Cin, kh, kw], plus an optional `bias` [Cout]: result [N, Cout, OH, OW].
 * Computed as one matmul `w [Cout, Cin*kh*kw] @ im2col(x)`.
 */
export function conv2d(
  x: Tensor,
  w: Tensor,
  bias?: Tensor | null,
  opts: Conv2dOptions = {},
): Tensor {
  const [n, cin] = requireNchw("conv2d", x);
  if (w.ndim !== 4 || w.shape[1] !== cin) {
    throw new Error(
      `conv2d: weight must be [Cout, ${cin}, kh, kw] for ${x.describe()}, got ${w.describe()}`,
    );
  }
  const [cout, , kh, kw] = w.shape;
  if (bias && (bias.size !== cout)) {
    throw new Error(`conv2d: bias must have ${cout} elements, got ${bias.describe()}`);
  }
  const g = convGeometry(x.shape, [kh, kw], opts, "conv2d");
  const temps: Tensor[] = [];
  const keepTemp = (t: Tensor): Tensor => {
    temps.push(t);
    return t;
  };
  const cols = keepTemp(im2col(x, g));
  const w2 = keepTemp(ops.reshape(w, [cout, colRows(g)]));
  let y = keepTemp(ops.matmul(w2, cols));
  if (bias) y = keepTemp(ops.binary("add", y, keepTemp(ops.reshape(bias, [cout, 1]))));
  const y4 = keepTemp(ops.reshape(y, [cout, n, g.outH, g.outW]));
  const out = n === 1 ? ops.reshape(y4, [1, cout, g.outH, g.outW]) : ops.permute(y4, [1, 0, 2, 3]);
  return releaseIfDetached(out, temps);
}

/**
 * 2-D transposed convolution (the gradient of {@link conv2d} with respect to its input, as
 * PyTorch's `conv_transpose2d`) of `x` [N, Cin, H, W] with `w` [Cin, Cout, kh, kw], plus an
 * optional `bias` [Cout]. Output size `(H - 1) * stride - 2 * padding + dilation * (kh - 1) +
 * outputPadding + 1`, or `H * stride` with `padding: "same"`. Computed as
 * `col2im(w^T [Cout*kh*kw, Cin] @ x [Cin, N*H*W])`.
 */
export function convTranspose2d(
  x: Tensor,
  w: Tensor,
  bias?: Tensor | null,
  opts: ConvTranspose2dOptions = {},
): Tensor {
  const [n, cin, h, wd] = requireNchw("convTranspose2d", x);
  if (w.ndim !== 4 || w.shape[0] !== cin) {
    throw new Error(
      `convTranspose2d: weight must be [${cin}, Cout, kh, kw] for ${x.describe()}, got ${w.describe()}`,
    );
  }
  const [, cout, kh, kw] = w.shape;
  if (bias && (bias.size !== cout)) {
    throw new Error(`convTranspose2d: bias must have ${cout} elements, got ${bias.describe()}`);
  }
  const g = convTransposeGeometry(x.shape, cout, [kh, kw], opts, "convTranspose2d");
  const temps: Tensor[] = [];
  const keepTemp = (t: Tensor): Tensor => {
    temps.push(t);
    return t;
  };
  const xPerm = n === 1 ? x : keepTemp(ops.permute(x, [1, 0, 2, 3]));
  const xc = keepTemp(ops.reshape(xPerm, [cin, n * h * wd]));
  const w2 = keepTemp(ops.reshape(w, [cin, colRows(g)]));
  const cols = keepTemp(ops.matmul(w2, xc, true, false));
  let out = col2im(cols, g);
  if (bias) {
    temps.push(out);
    out = ops.binary("add", out, keepTemp(ops.reshape(bias, [cout, 1, 1])));
  }
  return releaseIfDetached(out, temps);
}
