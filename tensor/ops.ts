/**
 * Primitive ops: each one runs one kernel (or none, for reshape) and records an autograd node.
 * Everything else in the library is a composition of these (see functional.ts). The gradient of
 * each primitive is one entry of the rule table in autograd.ts.
 * @module
 */

import { backend, type BufferRef } from "../gpu/backend.ts";
import {
  type BinaryOp,
  contiguousStrides,
  type DType,
  E,
  type KernelSpec,
  numel,
  type UnaryOp,
} from "../gpu/kernel.ts";
import { constant } from "../gpu/constants.ts";
import { Generator, runCategorical, runRandom } from "../gpu/random.ts";
import { lazyMap, type Operand, packInto, planMap, runInPlace } from "./lazy.ts";
import { isGradEnabled, Tensor } from "./tensor.ts";

/** Allocates an uninitialized tensor. */
export function empty(shape: readonly number[], dtype: DType = "f32", createdBy = "empty"): Tensor {
  checkLayout(shape, dtype, createdBy);
  return new Tensor(backend().alloc(numel(shape) * 4), shape, dtype, 0, createdBy);
}

/** Throws a clear error for a shape that is not whole non-negative dims or an unknown dtype. */
export function checkLayout(shape: readonly number[], dtype: DType, createdBy: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new Error(
        `${createdBy}: invalid shape [${shape.join(",")}] (dims must be integers >= 0)`,
      );
    }
  }
  if (!DTYPES.includes(dtype)) {
    const alias: Record<string, DType> = { float32: "f32", int32: "i32", uint32: "u32" };
    const near = alias[String(dtype)];
    throw new TypeError(
      `${createdBy}: unknown dtype '${String(dtype)}' (${near ? `use '${near}'; ` : ""}` +
        `the dtypes are ${DTYPES.join(", ")})`,
    );
  }
}

/** The element types a tensor can have. */
const DTYPES: readonly string[] = ["f32", "i32", "u32"];

/** Records an autograd node on `out` when grad is enabled and some input requires grad. */
function record(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  params: Record<string, unknown> = {},
): Tensor {
  if (isGradEnabled() && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, params };
  }
  return out;
}

function requireF32(op: string, ...ts: Tensor[]): void {
  for (const t of ts) {
    if (t.dtype !== "f32") throw new Error(`${op}: expects f32 tensors, got ${t.describe()}`);
  }
}

/** Normalizes a possibly negative axis; throws naming the op and shape when out of range. */
export function normAxis(op: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= Math.max(ndim, 1)) {
    throw new Error(`${op}: axis ${axis} is out of range for a tensor with ${ndim} dims`);
  }
  return a;
}

/** Broadcast shape of two shapes (NumPy rules); throws naming the op and both shapes. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(
        `${op}: shapes [${a.join(",")}] and [${b.join(",")}] cannot be broadcast together ` +
          `(dim ${i} of the result: ${da} vs ${db})`,
      );
    }
    out.push(da === 1 ? db : da);
  }
  return out;
}

/** Strides that read a tensor of `shape` broadcast to `outShape` (0 on broadcast dims). */
export function broadcastStrides(shape: readonly number[], outShape: readonly number[]): number[] {
  const st = contiguousStrides(shape);
  const lead = outShape.length - shape.length;
  return outShape.map((_d, i) => {
    const j = i - lead;
    if (j < 0 || shape[j] === 1) return 0;
    return st[j];
  });
}

// ---------------------------------------------------------------- kernels

/** Writes the contiguous `src` of `shape` into `out` at element `offset` with `outStrides`. */
function runPlace(
  src: BufferRef,
  shape: readonly number[],
  out: BufferRef,
  outStrides: readonly number[],
  offset: number,
  dtype: DType,
  accumulate = false,
): void {
  if (numel(shape) === 0) return;
  backend().run(
    {
      kind: "place",
      shape: [...shape],
      outStrides: [...outStrides],
      offset,
      dtype,
      ...(accumulate ? { accumulate } : {}),
    },
    [src, out],
  );
}

/** Fills `out` (a fresh region) with a baked constant. */
function runFill(out: BufferRef, dtype: DType, value: number): void {
  if (out.numel === 0) return;
  backend().run(
    { kind: "map", expr: E.const(value, dtype), shape: [out.numel], inputs: [], out: dtype },
    [out],
  );
}

/** A tensor operand read contiguously in its own layout (or broadcast into `shape`). */
function operand(t: Tensor, shape: readonly number[] = t.shape): Operand {
  return { tensor: t, dtype: t.dtype, strides: broadcastStrides(t.shape, shape) };
}

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

// ---------------------------------------------------------------- movement

/** Same data, new shape (no copy). One dim may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const hole = s.indexOf(-1);
  if (hole >= 0) {
    const rest = numel(s.filter((_, i) => i !== hole));
    s[hole] = rest === 0 ? 0 : x.size / rest;
  }
  if (numel(s) !== x.size || s.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`reshape: cannot reshape ${x.describe()} (${x.size} elements) to [${shape}]`);
  }
  const out = x.view(s, "reshape");
  return record(out, "reshape", [x], { from: x.shape });
}

/** Reorders dimensions: output dim i is input dim `perm[i]`. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  const p = perm.map((a) => normAxis("permute", a, x.ndim));
  if (p.length !== x.ndim || new Set(p).size !== p.length) {
    throw new Error(
      `permute: [${perm}] is not a permutation of the ${x.ndim} dims of ${x.describe()}`,
    );
  }
  const st = contiguousStrides(x.shape);
  const shape = p.map((a) => x.shape[a]);
  const out = lazyMap(
    ([v]) => v,
    shape,
    [{ tensor: x, dtype: x.dtype, strides: p.map((a) => st[a]) }],
    x.dtype,
    "permute",
  );
  return record(out, "permute", [x], { perm: p });
}

/** Copies `x` broadcast to `shape` (NumPy rules). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const s = broadcastShapes("expand", x.shape, shape);
  if (s.length !== shape.length || s.some((d, i) => d !== shape[i])) {
    throw new Error(`expand: cannot expand ${x.describe()} to [${shape}]`);
  }
  const out = lazyMap(([v]) => v, shape, [operand(x, shape)], x.dtype, "expand");
  return record(out, "expand", [x], { from: x.shape });
}

/** The sub-block `starts[d] <= i < ends[d]` of every dim (negative values count from the end). */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[]): Tensor {
  if (starts.length !== x.ndim || ends.length !== x.ndim) {
    throw new Error(
      `slice: need ${x.ndim} starts and ends for ${x.describe()}, got ${starts.length}/${ends.length}`,
    );
  }
  const lo = starts.map((s, d) => Math.min(Math.max(s < 0 ? s + x.shape[d] : s, 0), x.shape[d]));
  const hi = ends.map((e, d) => Math.min(Math.max(e < 0 ? e + x.shape[d] : e, lo[d]), x.shape[d]));
  const shape = lo.map((l, d) => hi[d] - l);
  const st = contiguousStrides(x.shape);
  const out = lazyMap(
    ([v]) => v,
    shape,
    [{
      tensor: x,
      dtype: x.dtype,
      strides: st,
      offset: lo.reduce((acc, l, d) => acc + l * st[d], 0),
    }],
    x.dtype,
    "slice",
  );
  return record(out, "slice", [x], { lo, from: x.shape });
}

/** Pads with zeros: `pads[d] = [before, after]`. */
export function pad(x: Tensor, pads: readonly (readonly [number, number])[]): Tensor {
  if (pads.length !== x.ndim || pads.some(([a, b]) => a < 0 || b < 0)) {
    throw new Error(`pad: need ${x.ndim} non-negative [before, after] pairs for ${x.describe()}`);
  }
  const shape = x.shape.map((d, i) => d + pads[i][0] + pads[i][1]);
  const out = empty(shape, x.dtype, "pad");
  const st = contiguousStrides(shape);
  const start = pads.reduce((acc, [b], d) => acc + b * st[d], 0);
  const axes = pads.flatMap(([b, e], d) => (b || e ? [d] : []));
  if (axes.length <= 1 && x.shape.slice(0, axes[0] ?? 0).every((d) => d === 1)) {
    // x fills one contiguous block: zeros before it, x, zeros after it, in one kernel.
    // Zero is baked (binds nothing; one value, so one compiled kernel per layout).
    const zero = (n: number) => lazyMap(() => E.const(0, x.dtype), [n], [], x.dtype, "pad");
    const before = zero(start), after = zero(out.size - start - x.size);
    packInto(
      [
        { t: before, outOffset: 0 },
        { t: x, outOffset: start },
        { t: after, outOffset: start + x.size },
      ],
      out.refFor("pad"),
      x.dtype,
    );
    before.dispose();
    after.dispose();
  } else {
    runFill(out.refFor("pad"), x.dtype, 0);
    runPlace(x.refFor("pad"), x.shape, out.refFor("pad"), st, start, x.dtype);
  }
  return record(out, "pad", [x], { pads });
}

/** Joins tensors along `axis` (all other dims must agree). */
export function concat(xs: readonly Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error("concat: needs at least one tensor");
  const a = normAxis("concat", axis, xs[0].ndim);
  for (const t of xs) {
    if (t.ndim !== xs[0].ndim || t.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      throw new Error(
        `concat: shapes must agree except on axis ${a}: ${xs.map((t) => `[${t.shape}]`).join(" ")}`,
      );
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((acc, t) => acc + t.shape[a], 0);
  const out = empty(shape, xs[0].dtype, "concat");
  const st = contiguousStrides(shape);
  const starts = xs.map((_t, i) => xs.slice(0, i).reduce((acc, t) => acc + t.shape[a], 0));
  if (xs[0].shape.slice(0, a).every((d) => d === 1)) {
    // Every part's block of the output is contiguous (no dims before `axis` above 1): the parts
    // run their own maps (pending) or copies (computed) into their blocks, packed in one kernel.
    packInto(
      xs.map((t, i) => ({ t, outOffset: starts[i] * st[a] })),
      out.refFor("concat"),
      out.dtype,
    );
  } else {
    xs.forEach((t, i) => {
      runPlace(t.refFor("concat"), t.shape, out.refFor("concat"), st, starts[i] * st[a], t.dtype);
    });
  }
  return record(out, "concat", [...xs], { axis: a, sizes: xs.map((t) => t.shape[a]) });
}

// ---------------------------------------------------------------- indexing

/** Rows of `table` [rows, dim] picked by i32 `idx` (any shape): result [...idx.shape, dim]. */
export function gatherRows(table: Tensor, idx: Tensor): Tensor {
  requireF32("gatherRows", table);
  if (table.ndim !== 2) throw new Error(`gatherRows: table must be 2-D, got ${table.describe()}`);
  if (idx.dtype !== "i32") {
    throw new Error(`gatherRows: indices must be i32, got ${idx.describe()}`);
  }
  const [rows, dim] = table.shape;
  const out = empty([...idx.shape, dim], "f32", "gatherRows");
  if (out.size > 0) {
    backend().run({ kind: "gatherRows", rows, dim, n: idx.size }, [
      table.refFor("gatherRows"),
      idx.refFor("gatherRows"),
      out.refFor("gatherRows"),
    ]);
  }
  return record(out, "gatherRows", [table, idx], { rows });
}

/** Adds rows of `src` [n, dim] into a new zero table [rows, dim] at i32 `idx` [n]. */
export function scatterAddRows(src: Tensor, idx: Tensor, rows: number): Tensor {
  requireF32("scatterAddRows", src);
  const dim = src.shape[src.ndim - 1];
  const n = idx.size;
  if (src.size !== n * dim) {
    throw new Error(`scatterAddRows: ${src.describe()} does not hold ${n} rows of ${dim}`);
  }
  const out = zerosLike([rows, dim]);
  if (n * dim > 0) {
    backend().run({ kind: "scatterAddRows", rows, dim, n }, [
      src.refFor("scatterAddRows"),
      idx.refFor("scatterAddRows"),
      out.refFor("scatterAddRows"),
    ]);
  }
  return record(out, "scatterAddRows", [src, idx], {});
}

/** `x[r, idx[r]]` for x [rows, k] and i32 idx [rows]; out-of-range indices give 0. */
export function pick(x: Tensor, idx: Tensor): Tensor {
  requireF32("pick", x);
  if (x.ndim !== 2 || idx.dtype !== "i32" || idx.size !== x.shape[0]) {
    throw new Error(
      `pick: expects x [rows, k] and i32 idx [rows], got ${x.describe()} and ${idx.describe()}`,
    );
  }
  const out = empty([x.shape[0]], "f32", "pick");
  if (out.size > 0) {
    backend().run({ kind: "pick", rows: x.shape[0], k: x.shape[1] }, [
      x.refFor("pick"),
      idx.refFor("pick"),
      out.refFor("pick"),
    ]);
  }
  return record(out, "pick", [x, idx], { k: x.shape[1] });
}

/** Adjoint of {@link pick}: out [rows, k] with g[r] at column idx[r] and zeros elsewhere. */
export function unpick(g: Tensor, idx: Tensor, k: number): Tensor {
  const rows = g.size;
  const out = empty([rows, k], "f32", "unpick");
  if (out.size > 0) {
    backend().run({ kind: "unpick", rows, k }, [
      g.refFor("unpick"),
      idx.refFor("unpick"),
      out.refFor("unpick"),
    ]);
  }
  return record(out, "unpick", [g, idx], { k });
}

// ---------------------------------------------------------------- in place and factories

function zerosLike(shape: readonly number[]): Tensor {
  const out = empty(shape, "f32", "zeros");
  runFill(out.refFor("zeros"), "f32", 0);
  return out;
}

/** Fills `x` in place with a constant (no autograd). */
export function fill_(x: Tensor, value: number): Tensor {
  const c = constant(backend(), value, x.dtype);
  runInPlace(
    ([v]) => v,
    x.shape,
    [{ ref: c, dtype: x.dtype, strides: x.shape.map(() => 0) }],
    x,
    "fill_",
  );
  return x;
}

/** Copies `src` into `dst` in place (same element count; no autograd). */
export function assign_(dst: Tensor, src: Tensor): Tensor {
  if (dst.size !== src.size || dst.dtype !== src.dtype) {
    throw new Error(`assign_: cannot copy ${src.describe()} into ${dst.describe()}`);
  }
  runInPlace(([v]) => v, src.shape, [operand(src)], dst, "assign_");
  return dst;
}

/**
 * `dst[lo + i] += src[i]` in place for the block of `src`'s shape starting at `lo` (f32, same
 * rank; no autograd): the adjoint of {@link slice}, accumulated without a full-size temporary.
 */
export function addRegion_(dst: Tensor, src: Tensor, lo: readonly number[]): Tensor {
  if (dst.ndim !== src.ndim || lo.length !== dst.ndim || dst.dtype !== "f32") {
    throw new Error(`addRegion_: cannot add ${src.describe()} into ${dst.describe()} at [${lo}]`);
  }
  if (src.shape.some((d, i) => lo[i] < 0 || lo[i] + d > dst.shape[i])) {
    throw new Error(`addRegion_: ${src.describe()} at [${lo}] is outside ${dst.describe()}`);
  }
  const st = contiguousStrides(dst.shape);
  const at = lo.reduce((acc, l, d) => acc + l * st[d], 0);
  const a = src.shape.findIndex((d) => d !== 1);
  if (a < 0 || src.shape.every((d, i) => i <= a || d === dst.shape[i])) {
    // The block is contiguous in dst: one map adds src (fused if pending) into it.
    runInPlace(
      ([v]) => E.binary("add", E.out(), v),
      src.shape,
      [operand(src)],
      dst,
      "addRegion_",
      at,
    );
    return dst;
  }
  runPlace(src.refFor("addRegion_"), src.shape, dst.refFor("addRegion_"), st, at, "f32", true);
  return dst;
}

/** `dst += src` in place (same element count; no autograd). Used for gradient accumulation. */
export function accumulate_(dst: Tensor, src: Tensor): Tensor {
  if (dst.size !== src.size) {
    throw new Error(`accumulate_: cannot add ${src.describe()} into ${dst.describe()}`);
  }
  runInPlace(([v]) => E.binary("add", E.out(), v), src.shape, [operand(src)], dst, "accumulate_");
  return dst;
}

/** The default random generator (seed 0 until {@link manualSeed}). */
export const defaultGenerator: Generator = new Generator(0);

/** Seeds the default generator. */
export function manualSeed(seed: number): void {
  defaultGenerator.setState({ seed, counter: 0 });
}

/** A tensor of i.i.d. draws: uniform in [a, b), normal(mean a, std b), or bernoulli(p = a). */
export function random(
  kind: "uniform" | "normal" | "bernoulli",
  shape: readonly number[],
  a: number,
  b: number,
  gen: Generator = defaultGenerator,
): Tensor {
  const out = empty(shape, "f32", kind);
  runRandom(backend(), gen, kind, out.refFor(kind), a, b);
  return out;
}

/**
 * One category (i32) per row of non-negative weights `probs` [rows, k]. With `rowSeeds` (u32 or
 * i32 [rows]), row r draws from its own seed `rowSeeds[r]` (and the generator's stream number), so
 * a row's draw does not depend on its index or on the number of rows.
 */
export function categorical(
  probs: Tensor,
  gen: Generator = defaultGenerator,
  rowSeeds?: Tensor,
): Tensor {
  if (probs.ndim !== 2) {
    throw new Error(`categorical: probs must be [rows, k], got ${probs.describe()}`);
  }
  if (rowSeeds && (rowSeeds.dtype === "f32" || rowSeeds.size !== probs.shape[0])) {
    throw new Error(
      `categorical: rowSeeds must be u32/i32 [${probs.shape[0]}], got ${rowSeeds.describe()}`,
    );
  }
  const out = empty([probs.shape[0]], "i32", "categorical");
  runCategorical(
    backend(),
    gen,
    probs.refFor("categorical"),
    probs.shape[0],
    probs.shape[1],
    out.refFor("categorical"),
    rowSeeds?.refFor("categorical"),
  );
  return out;
}
