/**
 * Index-driven WGSL: row gather (embeddings) and its adjoint scatter-add, and the per-row pick
 * used by cross-entropy over class indices with its adjoint. Indices are i32; an index outside
 * [0, rows) reads 0 and writes nothing (the ignore index of a loss uses this).
 * @module
 */

import { BUILTINS, linearIndex, u32 } from "./common.ts";

/** WGSL: out[i, :] = table[idx[i], :]; bindings table, idx, out. */
export function gatherRowsShader(rows: number, dim: number, n: number, nx: number): string {
  return `@group(0) @binding(0) var<storage, read> table: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(n * dim)}) { return; }
  let r = idx[i / ${u32(dim)}];
  let inside = r >= 0 && r < ${rows};
  let src = u32(select(0, r, inside)) * ${u32(dim)} + i % ${u32(dim)};
  out[i] = select(0.0, table[src], inside);
}`;
}

/**
 * WGSL: table[idx[i], :] += src[i, :] with an atomic compare-exchange loop (WGSL has no float
 * atomics); bindings src, idx, table (as atomic<u32>).
 */
export function scatterAddRowsShader(rows: number, dim: number, n: number, nx: number): string {
  return `@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> table: array<atomic<u32>>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(n * dim)}) { return; }
  let r = idx[i / ${u32(dim)}];
  if (r < 0 || r >= ${rows}) { return; }
  let dst = u32(r) * ${u32(dim)} + i % ${u32(dim)};
  let v = src[i];
  var old = atomicLoad(&table[dst]);
  loop {
    let res = atomicCompareExchangeWeak(&table[dst], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (res.exchanged) { break; }
    old = res.old_value;
  }
}`;
}

/** WGSL: out[r] = x[r, idx[r]] for x [rows, k]; bindings x, idx, out. */
export function pickShader(rows: number, k: number, nx: number): string {
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let r = ${linearIndex(nx)};
  if (r >= ${u32(rows)}) { return; }
  let c = idx[r];
  let inside = c >= 0 && c < ${k};
  out[r] = select(0.0, x[r * ${u32(k)} + u32(select(0, c, inside))], inside);
}`;
}

/** WGSL: out[r, c] = (c == idx[r]) ? g[r] : 0 for out [rows, k]; bindings g, idx, out. */
export function unpickShader(rows: number, k: number, nx: number): string {
  return `@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(rows * k)}) { return; }
  let r = i / ${u32(k)};
  out[i] = select(0.0, g[r], i32(i % ${u32(k)}) == idx[r]);
}`;
}
