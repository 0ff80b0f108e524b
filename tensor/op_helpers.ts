/**
 * What the primitive ops (tensor/ops.ts, movement_ops.ts, factory_ops.ts) share: allocation and
 * layout checks, autograd recording, axis and broadcast arithmetic, and the place, fill and
 * zeros kernels they run.
 * @module
 */

import { backend, type BufferRef } from "../gpu/backend.ts";
import { contiguousStrides, type DType, E, numel } from "../gpu/kernel.ts";
import type { Operand } from "./lazy.ts";
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
export const DTYPES: readonly string[] = ["f32", "i32", "u32"];

/** Records an autograd node on `out` when grad is enabled and some input requires grad. */
export function record(
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

export function requireF32(op: string, ...ts: Tensor[]): void {
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
export function runPlace(
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
export function runFill(out: BufferRef, dtype: DType, value: number): void {
  if (out.numel === 0) return;
  backend().run(
    { kind: "map", expr: E.const(value, dtype), shape: [out.numel], inputs: [], out: dtype },
    [out],
  );
}

/** A tensor operand read contiguously in its own layout (or broadcast into `shape`). */
export function operand(t: Tensor, shape: readonly number[] = t.shape): Operand {
  return { tensor: t, dtype: t.dtype, strides: broadcastStrides(t.shape, shape) };
}

export function zerosLike(shape: readonly number[]): Tensor {
  const out = empty(shape, "f32", "zeros");
  runFill(out.refFor("zeros"), "f32", 0);
  return out;
}
