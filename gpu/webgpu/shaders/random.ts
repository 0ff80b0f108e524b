/**
 * Counter-based random numbers on the GPU: element i of draw number `stream` under `seed` is a
 * pure function of (seed, stream, i), so results are reproducible from a seed, independent of
 * dispatch order and of how many threads run. The hash is a 32-bit integer finalizer
 * ("lowbias32", C. Wellons) applied in a keyed cascade.
 *
 * Bindings: 0 = params (u32 [seed, stream]), then inputs, then the output.
 * @module
 */

import type { RandomKind } from "../../kernel.ts";
import { BUILTINS, f32, linearIndex, u32 } from "./common.ts";

const HASH = `
@group(0) @binding(0) var<storage, read> params: array<u32>;
fn mix32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u; x *= 0x7feb352du;
  x ^= x >> 15u; x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}
// Element i of draw number "stream" under "seed".
fn rand_u32_keyed(seed: u32, stream: u32, i: u32, lane: u32) -> u32 {
  let key = mix32(seed ^ mix32(stream + 0x9e3779b9u * (lane + 1u)));
  return mix32(mix32(i ^ key) + key);
}
fn rand_u32(i: u32, lane: u32) -> u32 { return rand_u32_keyed(params[0], params[1], i, lane); }
// Uniform in [0, 1) with 24 random bits.
fn rand_unit(i: u32, lane: u32) -> f32 { return f32(rand_u32(i, lane) >> 8u) * (1.0 / 16777216.0); }
// Uniform in (0, 1]: safe for log().
fn rand_open(i: u32, lane: u32) -> f32 { return f32((rand_u32(i, lane) >> 8u) + 1u) * (1.0 / 16777216.0); }
`;

/**
 * WGSL filling `n` f32 outputs (binding 1): uniform in [a, b), normal(mean a, std b), or
 * bernoulli(p = a) as 0/1.
 */
export function randomShader(
  kind: RandomKind,
  n: number,
  a: number,
  b: number,
  nx: number,
): string {
  const value = kind === "uniform"
    ? `${f32(a)} + (${f32(b - a)}) * rand_unit(i, 0u)`
    : kind === "normal"
    ? `${f32(a)} + ${
      f32(b)
    } * sqrt(-2.0 * log(rand_open(i, 0u))) * cos(6.283185307179586 * rand_unit(i, 1u))`
    : `select(0.0, 1.0, rand_unit(i, 0u) < ${f32(a)})`;
  return `${HASH}
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let i = ${linearIndex(nx)};
  if (i >= ${u32(n)}) { return; }
  out[i] = ${value};
}`;
}

/**
 * WGSL drawing one category per row of unnormalized non-negative weights `probs` [rows, k]
 * (binding 1) into i32 `out` [rows] (binding 2) by inverse CDF.
 *
 * With `rowSeeds`, a u32 seed per row is bound at binding 1 (probs at 2, out at 3) and row r draws
 * element 0 of the stream under `seeds[r]` instead of element r under the generator's seed: a
 * row's draw then depends only on its own seed and the stream number, not on its position or on
 * how many rows there are (population members sample as if run alone).
 */
export function categoricalShader(rows: number, k: number, nx: number, rowSeeds = false): string {
  const b = rowSeeds ? 1 : 0;
  const seeds = rowSeeds ? "@group(0) @binding(1) var<storage, read> seeds: array<u32>;\n" : "";
  const unit = rowSeeds
    ? "f32(rand_u32_keyed(seeds[row], params[1], 0u, 0u) >> 8u) * (1.0 / 16777216.0)"
    : "rand_unit(row, 0u)";
  return `${HASH}
${seeds}@group(0) @binding(${1 + b}) var<storage, read> probs: array<f32>;
@group(0) @binding(${2 + b}) var<storage, read_write> out: array<i32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let row = ${linearIndex(nx)};
  if (row >= ${u32(rows)}) { return; }
  let base = row * ${u32(k)};
  var total = 0.0;
  for (var j = 0u; j < ${u32(k)}; j++) { total += max(probs[base + j], 0.0); }
  let u = ${unit} * total;
  var acc = 0.0;
  var pick = ${u32(k - 1)};
  for (var j = 0u; j < ${u32(k)}; j++) {
    acc += max(probs[base + j], 0.0);
    if (u < acc) { pick = j; break; }
  }
  out[row] = i32(pick);
}`;
}
