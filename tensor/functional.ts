/**
 * Tensor factories and composite ops. Every function here is a composition of the primitives in
 * ops.ts, so its gradient comes from theirs.
 * @module
 */

import type { DType } from "../gpu/kernel.ts";
import { backend } from "../gpu/backend.ts";
import { constant } from "../gpu/constants.ts";
import type { Generator } from "../gpu/random.ts";
import { lazyMap } from "./lazy.ts";
import * as ops from "./ops.ts";
import { noGrad, Tensor } from "./tensor.ts";

/** Nested arrays of numbers, as accepted by {@link tensor}. */
export type NestedArray = number | NestedArray[];

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0];
  }
  return shape;
}

/**
 * Creates a tensor from host data, uploaded in one write.
 * @param data a number, nested arrays, or a typed array (then `shape` defaults to 1-D).
 * @param shape optional shape; must match the element count.
 * @param dtype element type (default f32, or i32 for an Int32Array).
 */
export function tensor(
  data: NestedArray | Float32Array | Int32Array | Uint32Array,
  shape?: readonly number[],
  dtype?: DType,
): Tensor {
  let flat: Float32Array | Int32Array | Uint32Array;
  let inferred: number[];
  if (ArrayBuffer.isView(data)) {
    dtype ??= data instanceof Int32Array ? "i32" : data instanceof Uint32Array ? "u32" : "f32";
    inferred = [data.length];
    flat = data;
  } else {
    inferred = inferShape(data);
    const values = Array.isArray(data) ? (data as unknown[]).flat(Infinity) as number[] : [data];
    dtype ??= "f32";
    flat = dtype === "f32"
      ? new Float32Array(values)
      : dtype === "i32"
      ? new Int32Array(values)
      : new Uint32Array(values);
    if (values.length !== inferred.reduce((a, b) => a * b, 1)) {
      throw new Error("tensor: nested arrays are ragged (rows of different lengths)");
    }
  }
  const s = shape ?? inferred;
  if (s.reduce((a, b) => a * b, 1) !== flat.length) {
    throw new Error(`tensor: ${flat.length} values do not fill shape [${s.join(",")}]`);
  }
  if (dtype === "f32" && !(flat instanceof Float32Array)) flat = new Float32Array(flat);
  if (dtype === "i32" && !(flat instanceof Int32Array)) flat = new Int32Array(flat);
  if (dtype === "u32" && !(flat instanceof Uint32Array)) flat = new Uint32Array(flat);
  const out = ops.empty(s, dtype, "tensor");
  if (flat.length > 0) backend().write(out.storageFor("tensor"), flat);
  return out;
}

/**
 * A tensor filled with `value`: pending (no kernel of its own) until something needs its memory,
 * so a constant folds into the kernels that read it.
 */
export function full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
  ops.checkLayout(shape, dtype, "full");
  const ref = constant(backend(), value, dtype);
  return lazyMap(([v]) => v, shape, [{ ref, dtype, strides: shape.map(() => 0) }], dtype, "full");
}

/** A tensor of zeros. */
export function zeros(shape: readonly number[], dtype: DType = "f32"): Tensor {
  return full(shape, 0, dtype);
}

/** A tensor of ones. */
export function ones(shape: readonly number[], dtype: DType = "f32"): Tensor {
  return full(shape, 1, dtype);
}

/** Uniform random numbers in [0, 1) (or [lo, hi)), reproducible from the generator's seed. */
export function rand(shape: readonly number[], lo = 0, hi = 1, gen?: Generator): Tensor {
  return ops.random("uniform", shape, lo, hi, gen);
}

/** Standard normal random numbers (or normal(mean, std)), reproducible from the seed. */
export function randn(shape: readonly number[], mean = 0, std = 1, gen?: Generator): Tensor {
  return ops.random("normal", shape, mean, std, gen);
}

/** 0/1 draws with probability `p` of 1. */
export function bernoulli(shape: readonly number[], p: number, gen?: Generator): Tensor {
  return ops.random("bernoulli", shape, p, 0, gen);
}

/** `[0, 1, ..., n-1]` as f32 (or i32). */
export function arange(n: number, dtype: DType = "f32"): Tensor {
  const data = dtype === "f32"
    ? Float32Array.from({ length: n }, (_, i) => i)
    : Int32Array.from({ length: n }, (_, i) => i);
  return tensor(data, [n], dtype);
}

/** A scalar-or-tensor operand. */
export type Operand = Tensor | number;

function asTensor(x: Operand): Tensor {
  return x instanceof Tensor ? x : tensor(x);
}

/** `a + b` with broadcasting (numbers are baked into the kernel). */
export function add(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("add_scalar", a, b) : ops.binary("add", a, b);
}

/** `a - b` with broadcasting. */
export function sub(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("add_scalar", a, -b) : ops.binary("sub", a, b);
}

/** `a * b` with broadcasting. */
export function mul(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("mul_scalar", a, b) : ops.binary("mul", a, b);
}

/** `a / b` with broadcasting. */
export function div(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("mul_scalar", a, 1 / b) : ops.binary("div", a, b);
}

/** `a ** b` with broadcasting. */
export function pow(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("pow_scalar", a, b) : ops.binary("pow", a, b);
}

/** Elementwise maximum (NaN propagates). */
export function maximum(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("clamp_min", a, b) : ops.binary("maximum", a, b);
}

/** Elementwise minimum (NaN propagates). */
export function minimum(a: Tensor, b: Operand): Tensor {
  return typeof b === "number" ? ops.scalarOp("clamp_max", a, b) : ops.binary("minimum", a, b);
}

/** Comparison ops returning 0/1 f32 tensors. */
export function compare(
  op: "eq" | "ne" | "lt" | "le" | "gt" | "ge",
  a: Tensor,
  b: Operand,
): Tensor {
  const t = asTensor(b);
  const out = ops.binary(op, a, t);
  if (t !== b) t.dispose();
  return out;
}

/** Clamps to [lo, hi]. */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const a = ops.scalarOp("clamp_min", x, lo);
  return ops.scalarOp("clamp_max", a, hi);
}

/** Leaky ReLU with negative slope `alpha` (0.01 by default, 0.2 in DCGAN). */
export function leakyRelu(x: Tensor, alpha = 0.01): Tensor {
  return ops.scalarOp("leaky_relu", x, alpha);
}

/** Mean over `axis` (all when omitted). */
export function mean(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  const s = ops.sum(x, axis, keepdim);
  const n = x.size / Math.max(s.size, 1);
  return ops.scalarOp("mul_scalar", s, 1 / n);
}

/** Variance over `axis` (biased, as batch norm uses). */
export function variance(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  const m = mean(x, axis, true);
  const d = ops.binary("sub", x, m);
  return mean(ops.unary("square", d), axis, keepdim);
}

/** Numerically stable log(sum(exp(x))) over `axis`. */
export function logsumexp(x: Tensor, axis: number | number[] = -1, keepdim = false): Tensor {
  const m = noGrad(() => ops.max(x, axis, true));
  const shifted = ops.binary("sub", x, m);
  const s = ops.sum(ops.unary("exp", shifted), axis, true);
  const out = ops.binary("add", ops.unary("log", s), m);
  if (keepdim) return out;
  const axes = (Array.isArray(axis) ? axis : [axis]).map((a) =>
    ops.normAxis("logsumexp", a, x.ndim)
  );
  return ops.reshape(out, x.shape.filter((_, i) => !axes.includes(i)));
}

/** Softmax over `axis`, computed from max-shifted logits (stable for large values). */
export function softmax(x: Tensor, axis = -1): Tensor {
  const m = noGrad(() => ops.max(x, axis, true));
  const e = ops.unary("exp", ops.binary("sub", x, m));
  return ops.binary("div", e, ops.sum(e, axis, true));
}

/** log(softmax(x)) over `axis`, stable. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return ops.binary("sub", x, logsumexp(x, axis, true));
}

/** Swaps two dims (default: the last two). */
export function transpose(x: Tensor, d0 = -2, d1 = -1): Tensor {
  const a = ops.normAxis("transpose", d0, x.ndim);
  const b = ops.normAxis("transpose", d1, x.ndim);
  const perm = x.shape.map((_, i) => (i === a ? b : i === b ? a : i));
  return ops.permute(x, perm);
}

/** Inserts a dim of size 1 at `axis`. */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const a = axis < 0 ? axis + x.ndim + 1 : axis;
  const s = [...x.shape];
  s.splice(a, 0, 1);
  return ops.reshape(x, s);
}

/** Removes dims of size 1 (all, or the one at `axis`). */
export function squeeze(x: Tensor, axis?: number): Tensor {
  if (axis === undefined) return ops.reshape(x, x.shape.filter((d) => d !== 1));
  const a = ops.normAxis("squeeze", axis, x.ndim);
  if (x.shape[a] !== 1) throw new Error(`squeeze: dim ${axis} of ${x.describe()} is not 1`);
  return ops.reshape(x, x.shape.filter((_, i) => i !== a));
}

/** A tensor that shares data with `x` but is cut from the autograd graph. */
export function detach(x: Tensor): Tensor {
  return x.view(x.shape, "detach");
}
