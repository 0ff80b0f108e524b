/**
 * Pieces shared by the WGSL generators: data types, workgroup-grid folding, index decomposition
 * and the bit-pattern NaN/Inf helpers. Shapes and strides are baked into shader text as
 * constants (pipelines are cached by text), so the compiler can fold the index arithmetic.
 * @module
 */

import { contiguousStrides, type DType, numel } from "../../kernel.ts";

export { contiguousStrides, type DType, numel };

/** Threads per workgroup for 1-D kernels. */
export const WG = 64;

/**
 * Elements per thread in elementwise kernels: each workgroup covers WG * EPT elements, lanes
 * reading consecutive addresses. Fewer, fuller workgroups cost less per element on llvmpipe.
 */
export const EPT = 4;

/** Workgroups needed for an elementwise kernel over `n` elements (see {@link elementLoop}). */
export function elementGroups(n: number): number {
  return Math.ceil(n / (WG * EPT));
}

/**
 * WGSL body running `body` for each element index `i` this thread owns (EPT of them, stride WG),
 * over a folded grid of {@link elementGroups} workgroups.
 */
export function elementLoop(nx: number, n: number, body: string): string {
  return `let g = wid.x + wid.y * ${nx}u;
  for (var j = 0u; j < ${EPT}u; j++) {
    let i = (g * ${EPT}u + j) * ${WG}u + lid;
    if (i >= ${n >>> 0}u) { break; }
    ${body.split("\n").join("\n  ")}
  }`;
}

/** WebGPU's guaranteed maximum workgroups per grid dimension. */
const MAX_DIM = 65535;

/**
 * Splits `groups` workgroups over x and y so neither exceeds 65535. The shader reconstructs the
 * linear workgroup index as `wid.x + wid.y * nx` (see {@link linearIndex}).
 */
export function foldGrid(groups: number): { grid: [number, number, number]; nx: number } {
  if (groups <= MAX_DIM) return { grid: [Math.max(groups, 0), 1, 1], nx: Math.max(groups, 1) };
  const ny = Math.ceil(groups / MAX_DIM);
  const nx = Math.ceil(groups / ny);
  return { grid: [nx, ny, 1], nx };
}

/** WGSL expression for the linear thread index of a folded 1-D grid with `wg` threads a group. */
export function linearIndex(nx: number, wg = WG): string {
  return `((wid.x + wid.y * ${nx}u) * ${wg}u + lid)`;
}

/** WGSL builtin parameters matching {@link linearIndex}. */
export const BUILTINS =
  "@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32";

/** A WGSL `u32` literal. */
export function u32(n: number): string {
  return `${n >>> 0}u`;
}

/** A WGSL f32 literal for a finite number (always with a decimal point or exponent). */
export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot bake non-finite constant ${x} into WGSL`);
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/**
 * WGSL statements that compute `name = Σ coord_d * strides[d]` for the linear index `idx` of a
 * tensor with shape `shape`. Dimensions of size 1 and zero strides are skipped.
 */
export function offsetFromIndex(
  name: string,
  idx: string,
  shape: readonly number[],
  strides: readonly number[],
): string {
  const lines = [`var ${name} = 0u;`, `{ var r = ${idx};`];
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] === 1) continue;
    const coord = d === 0 ? "r" : `(r % ${u32(shape[d])})`;
    if (strides[d] !== 0) lines.push(`  ${name} += ${coord} * ${u32(strides[d])};`);
    if (d > 0) lines.push(`  r = r / ${u32(shape[d])};`);
  }
  lines.push("}");
  return lines.join("\n  ");
}

/** WGSL helpers testing NaN and Inf by bit pattern (`x != x` is unreliable on some drivers). */
export const NAN_HELPERS = `
fn is_nan(x: f32) -> bool {
  let b = bitcast<u32>(x);
  return (b & 0x7f800000u) == 0x7f800000u && (b & 0x007fffffu) != 0u;
}
fn is_inf(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}`;
