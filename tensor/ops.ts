/**
 * Primitive ops: each one runs one kernel (or none, for reshape) and records an autograd node.
 * Everything else in the library is a composition of these (see functional.ts). The gradient of
 * each primitive is one entry of the rule table in autograd.ts.
 * @module
 */

import { backend } from "../gpu/backend.ts";
import {
  type BinaryOp,
  type DType,
  E,
  type KernelSpec,
  numel,
  type UnaryOp,
} from "../gpu/kernel.ts";
import { constant } from "../gpu/constants.ts";
import { lazyMap, planMap } from "./lazy.ts";
import type { Tensor } from "./tensor.ts";
import {
  broadcastShapes,
  empty,
  normAxis,
  operand,
  record,
  requireF32,
  runFill,
} from "./op_helpers.ts";
import { reshape } from "./movement_ops.ts";

// The shared helpers (op_helpers.ts), the movement and indexing ops (movement_ops.ts) and the
// in-place and factory ops (factory_ops.ts) live in their own files; re-exported so every
// primitive stays importable from `ops.ts`.
export { broadcastShapes, broadcastStrides, checkLayout, empty, normAxis } from "./op_helpers.ts";
export * from "./movement_ops.ts";
export * from "./factory_ops.ts";

// ---------------------------------------------------------------- elementwise

/** Applies a unary op from the table (`exp`, `relu`, ...). */
export function unary(op: UnaryOp, x: Tensor): Tensor {
  requireF32(op, x);
  const out = lazyMap(([a]) => E.unary(op, a), x.shape, [operand(x)], "f32", op);
  return record(out, op, [x]);
}

/** Name of a scalar-parameter op. */
export type ScalarOp =
  | "add_scalar"
  | "mul_scalar"
  | "pow_scalar"
  | "leaky_relu"
  | "clamp_min"
  | "clamp_max"
  | "step";

/** The binary op of each scalar op: `x op c` (pow_signed, leaky_relu, ... as in the table). */
const SCALAR_BINARY: Record<ScalarOp, BinaryOp> = {
  add_scalar: "add",
  mul_scalar: "mul",
  pow_scalar: "pow",
  leaky_relu: "leaky_relu",
  clamp_min: "clamp_min",
  clamp_max: "clamp_max",
  step: "step",
};

/** Applies `op` with the constant `c` (e.g. `x * c`, `leakyRelu(x, c)`). */
export function scalarOp(op: ScalarOp, x: Tensor, c: number): Tensor {
  requireF32(op, x);
  // The constant is read from a small shared buffer (gpu/constants.ts), not baked into the
  // kernel: one compiled kernel serves every value.
  const out = lazyMap(
    ([a, b]) => E.binary(SCALAR_BINARY[op], a, b),
    x.shape,
    [operand(x), { ref: constant(backend(), c), dtype: "f32", strides: x.shape.map(() => 0) }],
    "f32",
    op,
  );
  return record(out, op, [x], { c });
}

/** Applies a binary op from the table with broadcasting (`add`, `mul`, `lt`, ...). */
export function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  requireF32(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const out = lazyMap(
    ([x, y]) => E.binary(op, x, y),
    shape,
    [operand(a, shape), operand(b, shape)],
    "f32",
    op,
  );
  return record(out, op, [a, b]);
}

/** `cond ? a : b` elementwise with broadcasting (cond is nonzero = true). */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  requireF32("where", cond, a, b);
  const shape = broadcastShapes("where", broadcastShapes("where", cond.shape, a.shape), b.shape);
  const out = lazyMap(
    ([c, x, y]) => E.where(c, x, y),
    shape,
    [operand(cond, shape), operand(a, shape), operand(b, shape)],
    "f32",
    "where",
  );
  return record(out, "where", [cond, a, b]);
}

/** Converts between f32, i32 and u32 (float to int truncates toward zero). */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x.view(x.shape, "cast");
  const out = lazyMap(([a]) => E.cast(dtype, a), x.shape, [operand(x)], dtype, "cast");
  return out;
}

// ---------------------------------------------------------------- reductions

function reduceAxes(op: string, x: Tensor, axis?: number | number[]): number[] {
  if (axis === undefined) return x.shape.map((_, i) => i);
  const list = Array.isArray(axis) ? axis : [axis];
  return [...new Set(list.map((a) => normAxis(op, a, x.ndim)))].sort((p, q) => p - q);
}

function reducedShape(shape: readonly number[], axes: number[], keepdim: boolean): number[] {
  return keepdim
    ? shape.map((d, i) => (axes.includes(i) ? 1 : d))
    : shape.filter((_, i) => !axes.includes(i));
}

/** Reduces `x` over `axes` into `out`; a pending `x` is fused into the reduction's prologue. */
function runReduce(op: "sum" | "max" | "argmax", x: Tensor, axes: number[], out: Tensor): void {
  if (out.size === 0) return;
  const { expr, leaves } = planMap(([v]) => v, x.shape, [operand(x)], op);
  backend().run(
    {
      kind: "reduce",
      op,
      shape: [...x.shape],
      axes,
      expr,
      inputs: leaves.map((l) => ({ dtype: l.dtype, strides: l.strides, offset: l.offset })),
    },
    [...leaves.map((l) => l.ref), out.refFor(op)],
  );
}

/**
 * `dst = sum of x over axes` written into `dst` in place (the kept dims' element count; no
 * autograd): a bias gradient summed straight into its gradient buffer.
 */
export function sumInto_(dst: Tensor, x: Tensor, axes: readonly number[]): Tensor {
  requireF32("sumInto_", x, dst);
  const ax = reduceAxes("sumInto_", x, [...axes]);
  if (numel(reducedShape(x.shape, ax, true)) !== dst.size || x.size === 0) {
    throw new Error(
      `sumInto_: the sum of ${x.describe()} over [${ax}] does not fill ${dst.describe()}`,
    );
  }
  runReduce("sum", x, ax, dst);
  return dst;
}

/** Sum over `axis` (all axes when omitted). */
export function sum(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  requireF32("sum", x);
  const axes = reduceAxes("sum", x, axis);
  const out = empty(reducedShape(x.shape, axes, keepdim), "f32", "sum");
  if (x.size === 0) runFill(out.refFor("sum"), "f32", 0);
  else runReduce("sum", x, axes, out);
  return record(out, "sum", [x], { axes, keepdim });
}

/** Maximum over `axis` (all axes when omitted); NaN propagates. */
export function max(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  requireF32("max", x);
  const axes = reduceAxes("max", x, axis);
  if (x.size === 0) throw new Error(`max: ${x.describe()} is empty`);
  const out = empty(reducedShape(x.shape, axes, keepdim), "f32", "max");
  runReduce("max", x, axes, out);
  return record(out, "max", [x], { axes, keepdim });
}

/** Index (i32) of the first maximum along `axis`. Not differentiable. */
export function argmax(x: Tensor, axis = -1, keepdim = false): Tensor {
  requireF32("argmax", x);
  const a = normAxis("argmax", axis, x.ndim);
  const out = empty(reducedShape(x.shape, [a], keepdim), "i32", "argmax");
  runReduce("argmax", x, [a], out);
  return out;
}

// ---------------------------------------------------------------- matmul

/**
 * Matrix product with NumPy semantics for batch dims: `a` [..., M, K] @ `b` [..., K, N]
 * (1-D operands are promoted as in NumPy). `transA`/`transB` read an operand transposed without
 * copying it.
 */
export function matmul(a: Tensor, b: Tensor, transA = false, transB = false): Tensor {
  requireF32("matmul", a, b);
  if (a.ndim === 0 || b.ndim === 0) throw new Error("matmul: operands must have at least 1 dim");
  if (a.ndim === 1) {
    return reshapeOut(matmul(reshape(a, [1, a.shape[0]]), b, false, transB), -2);
  }
  if (b.ndim === 1) {
    return reshapeOut(matmul(a, reshape(b, [b.shape[0], 1]), transA, false), -1);
  }
  const { spec, shape } = matmulSpec(a, b, transA, transB);
  const out = empty(shape, "f32", "matmul");
  if (out.size > 0) {
    backend().run(spec, [a.refFor("matmul"), b.refFor("matmul"), out.refFor("matmul")]);
  }
  return record(out, "matmul", [a, b], { transA, transB });
}

/**
 * `dst = op(a) @ op(b)` written into `dst` in place (any shape with the product's element count;
 * no autograd): a gradient computed straight into its parameter's gradient buffer.
 */
export function matmulInto_(
  dst: Tensor,
  a: Tensor,
  b: Tensor,
  transA = false,
  transB = false,
): Tensor {
  requireF32("matmulInto_", a, b, dst);
  if (a.ndim < 2 || b.ndim < 2) throw new Error("matmulInto_: operands must have at least 2 dims");
  const { spec, shape } = matmulSpec(a, b, transA, transB);
  if (numel(shape) !== dst.size) {
    throw new Error(`matmulInto_: the [${shape}] product does not fill ${dst.describe()}`);
  }
  if (dst.size > 0) {
    backend().run(spec, [a.refFor("matmul"), b.refFor("matmul"), dst.refFor("matmul")]);
  }
  return dst;
}

/** The kernel spec and output shape of `op(a) @ op(b)` (both at least 2-D). */
function matmulSpec(
  a: Tensor,
  b: Tensor,
  transA: boolean,
  transB: boolean,
): { spec: KernelSpec; shape: number[] } {
  const [ar, ac] = a.shape.slice(-2);
  const [br, bc] = b.shape.slice(-2);
  const m = transA ? ac : ar;
  const k = transA ? ar : ac;
  const kb = transB ? bc : br;
  const n = transB ? br : bc;
  if (k !== kb) {
    throw new Error(
      `matmul: inner dimensions differ: [${a.shape.join(",")}]${transA ? "^T" : ""} @ ` +
        `[${b.shape.join(",")}]${transB ? "^T" : ""} (${k} vs ${kb})`,
    );
  }
  const batchShape = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = numel(batchShape);
  const aBatch = numel(a.shape.slice(0, -2));
  const bBatch = numel(b.shape.slice(0, -2));
  // Batch broadcasting is supported when an operand has all its batch dims or none.
  if ((aBatch !== batch && aBatch !== 1) || (bBatch !== batch && bBatch !== 1)) {
    throw new Error(
      `matmul: batch dims [${a.shape.slice(0, -2)}] and [${b.shape.slice(0, -2)}] must match or ` +
        "one side must have none",
    );
  }
  return {
    spec: {
      kind: "matmul",
      batch,
      m,
      k,
      n,
      transA,
      transB,
      batchStrideA: aBatch === 1 ? 0 : m * k,
      batchStrideB: bBatch === 1 ? 0 : k * n,
    },
    shape: [...batchShape, m, n],
  };
}

function reshapeOut(t: Tensor, dropAxis: number): Tensor {
  const shape = [...t.shape];
  shape.splice(shape.length + dropAxis, 1);
  return reshape(t, shape);
}
