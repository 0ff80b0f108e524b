/**
 * Element types and shape arithmetic shared by the kernel specs (gpu/kernel.ts re-exports it):
 * {@link DType}, its element size, element counts and contiguous strides.
 * @module
 */

/** Element types a tensor can hold. */
export type DType = "f32" | "i32" | "u32";

/** Bytes per element of every {@link DType}. */
export const BYTES_PER_ELEMENT = 4;

/** Product of a shape's dimensions. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (contiguous) strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}
