/**
 * Reduction WGSL (sum, max, argmax) over any set of axes of an elementwise expression of the
 * inputs (a fused prologue: `sum(x * x)` is one kernel).
 *
 * Three variants: one thread per output (many outputs or short rows), one 64-thread workgroup
 * per output with a shared-memory tree (few outputs, long rows), and a two-pass split (few
 * outputs, very long rows, on big GPUs): `parts` workgroups per output each reduce one slice into
 * a scratch buffer of partials, and {@link reduceCombineShader} combines them in slice order.
 * Max propagates NaN.
 * @module
 */

import type { Expr, MapInput, ReduceOp, ReducePlan } from "../../kernel.ts";
import { BUILTINS, linearIndex, NAN_HELPERS, u32 } from "./common.ts";
import { EXPR_HELPERS, exprStatements } from "./elementwise.ts";

function offsetCode(name: string, idx: string, shape: number[], strides: number[]): string {
  if (shape.length === 0) return `let ${name} = 0u;`;
  if (shape.length === 1) return `let ${name} = ${idx} * ${u32(strides[0])};`;
  const lines = [`var ${name} = 0u;`, `{ var r = ${idx};`];
  for (let d = shape.length - 1; d >= 0; d--) {
    lines.push(`${name} += ${d === 0 ? "r" : `(r % ${u32(shape[d])})`} * ${u32(strides[d])};`);
    if (d > 0) lines.push(`r = r / ${u32(shape[d])};`);
  }
  lines.push("}");
  return lines.join(" ");
}

function combine(op: ReduceOp): string {
  if (op === "sum") return "acc = acc + v;";
  // NaN wins; otherwise strictly greater replaces (first maximum kept for argmax).
  return "if (!is_nan(acc) && (is_nan(v) || v > acc)) { acc = v; best = r; }";
}

/**
 * WGSL reducing `expr` (over the inputs, bound in order; the output after them) over the plan's
 * reduced dimensions. Max starts from -inf, so the first maximum (or the first NaN) wins.
 * @param perGroup use one 64-thread workgroup per output (long rows) instead of one thread.
 * @param split with `perGroup`: reduce slice `part` of `chunk` reduced elements per workgroup
 * (workgroup `o * parts + part`) and write partials (see {@link ReduceSplit}) instead of outputs.
 */
export function reduceShader(
  op: ReduceOp,
  plan: ReducePlan,
  expr: Expr,
  inputs: readonly MapInput[],
  nx: number,
  perGroup: boolean,
  split?: ReduceSplit,
): string {
  const nOut = plan.keepShape.reduce((a, b) => a * b, 1);
  const nRed = plan.redShape.reduce((a, b) => a * b, 1);
  const outType = op === "argmax" ? "i32" : "f32";
  const result = op === "argmax" ? "i32(best)" : "acc";
  const init = op === "sum" ? "0.0" : "bitcast<f32>(0xff800000u)";
  const decl = inputs.map((inp, k) =>
    `@group(0) @binding(${k}) var<storage, read> in${k}: array<${inp.dtype}>;`
  );
  const head = `${decl.join("\n")}
@group(0) @binding(${inputs.length}) var<storage, read_write> out: array<${
    split ? "f32" : outType
  }>;
${NAN_HELPERS}
${EXPR_HELPERS}`;
  const bases = inputs.map((_, k) =>
    offsetCode(`base${k}`, "OUT", plan.keepShape, plan.keepStrides[k])
  ).join("\n  ");
  const offs = inputs.map((_, k) => offsetCode(`off${k}`, "r", plan.redShape, plan.redStrides[k]))
    .join("\n    ");
  const { stmts, result: value } = exprStatements(
    expr,
    inputs.map((i) => i.dtype),
    "f32",
    (k) => `in${k}[base${k} + off${k}${inputs[k].offset ? ` + ${u32(inputs[k].offset!)}` : ""}]`,
    "0.0",
  );
  const element = `${offs}
    ${stmts.join("\n    ")}
    let v = ${value};
    ${combine(op)}`;
  if (!perGroup) {
    return `${head}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let o = ${linearIndex(nx)};
  if (o >= ${u32(nOut)}) { return; }
  ${bases.replaceAll("OUT", "o")}
  var acc: f32 = ${init};
  var best = 0u;
  for (var r = 0u; r < ${u32(nRed)}; r++) {
    ${element}
  }
  out[o] = ${result};
}`;
  }
  // One workgroup per output: strided partial reductions, then a tree in shared memory.
  const merge = op === "sum"
    ? "sacc[lid] = sacc[lid] + sacc[lid + s];"
    : `{ let a = sacc[lid]; let v = sacc[lid + s];
      if (!is_nan(a) && (is_nan(v) || v > a || (v == a && sbest[lid + s] < sbest[lid]))) {
        sacc[lid] = v; sbest[lid] = sbest[lid + s]; } }`;
  const parts = split?.parts ?? 1;
  const range = split
    ? `let part = g % ${u32(parts)};
  let o = g / ${u32(parts)};
  let rBeg = part * ${u32(split.chunk)};
  let rEnd = min(rBeg + ${u32(split.chunk)}, ${u32(nRed)});`
    : `let o = g;
  let rBeg = 0u;
  let rEnd = ${u32(nRed)};`;
  const store = !split
    ? `out[o] = ${result};`
    : op === "argmax"
    ? `out[g] = acc; out[${u32(nOut * parts)} + g] = bitcast<f32>(best);`
    : "out[g] = acc;";
  return `${head}
var<workgroup> sacc: array<f32, 64>;
var<workgroup> sbest: array<u32, 64>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let g = wid.x + wid.y * ${u32(nx)};
  ${range}
  let live = o < ${u32(nOut)};
  let oc = min(o, ${u32(nOut - 1)});
  ${bases.replaceAll("OUT", "oc")}
  var acc: f32 = ${init};
  var best = 0u;
  for (var r = rBeg + lid; r < rEnd; r += 64u) {
    ${element}
  }
  sacc[lid] = acc;
  sbest[lid] = best;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) { ${merge} }
    workgroupBarrier();
  }
  if (lid == 0u && live) {
    let acc = sacc[0];
    let best = sbest[0];
    ${store}
  }
}`;
}

/** How the two-pass reduction splits each output's reduced elements. */
export interface ReduceSplit {
  /** Slices (workgroups) per output, >= 2. */
  parts: number;
  /** Reduced elements per slice (the last one shorter). */
  chunk: number;
}

/** The split of `nRed` reduced elements into about `parts` slices of at least 64. */
export function reduceSplit(nRed: number, parts: number): ReduceSplit {
  const chunk = Math.max(64, Math.ceil(nRed / parts / 64) * 64);
  return { parts: Math.ceil(nRed / chunk), chunk };
}

/** Scratch f32 elements the partials of a split reduction take. */
export function reduceScratch(op: ReduceOp, nOut: number, parts: number): number {
  return nOut * parts * (op === "argmax" ? 2 : 1);
}

/**
 * WGSL combining the partials of a split reduction (binding 0: `nOut * parts` values, slice-major
 * within each output, then for argmax as many u32 indices as f32 bits) into the outputs
 * (binding 1), one thread per output over a folded grid, slices in order: sums add, max keeps the
 * first NaN or the first strictly greater value (so argmax keeps the first maximum).
 */
export function reduceCombineShader(
  op: ReduceOp,
  nOut: number,
  parts: number,
  nx: number,
): string {
  const outType = op === "argmax" ? "i32" : "f32";
  const step = op === "sum"
    ? "acc = acc + v;"
    : `let b = ${
      op === "argmax" ? `bitcast<u32>(P[${u32(nOut * parts)} + o * ${u32(parts)} + p])` : "0u"
    };
    if (p == 0u || (!is_nan(acc) && (is_nan(v) || v > acc))) { acc = v; best = b; }`;
  return `@group(0) @binding(0) var<storage, read> P: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<${outType}>;
${NAN_HELPERS}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let o = ${linearIndex(nx)};
  if (o >= ${u32(nOut)}) { return; }
  var acc = 0.0;
  var best = 0u;
  for (var p = 0u; p < ${u32(parts)}; p++) {
    let v = P[o * ${u32(parts)} + p];
    ${step}
  }
  out[o] = ${op === "argmax" ? "i32(best)" : "acc"};
}`;
}

/** Threads of a norm-partial workgroup (as the single-workgroup norm). */
const NORM_THREADS = 256;

function normTree(): string {
  return `part[lid] = acc;
    workgroupBarrier();
    for (var s = ${u32(NORM_THREADS / 2)}; s > 0u; s = s >> 1u) {
      if (lid < s) { part[lid] += part[lid + s]; }
      workgroupBarrier();
    }`;
}

/**
 * WGSL of the first pass of a two-pass L2 norm over elements [start, start + n) of binding 0:
 * `split.parts` sums of squares over consecutive slices of `split.chunk` elements, written to
 * binding 1 (the scratch). Correct for ANY dispatch size (the slices are fixed; workgroups loop
 * over them with a stride of the workgroup count), so it can be gated like the optimizer kernels.
 */
export function normPartialShader(start: number, n: number, split: ReduceSplit): string {
  return `@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> P: array<f32>;
var<workgroup> part: array<f32, ${NORM_THREADS}>;
@compute @workgroup_size(${NORM_THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32,
    @builtin(num_workgroups) nwg: vec3u) {
  let groups = nwg.x * nwg.y * nwg.z;
  for (var p = wid.x + nwg.x * (wid.y + nwg.y * wid.z); p < ${u32(split.parts)}; p += groups) {
    let end = min((p + 1u) * ${u32(split.chunk)}, ${u32(n)});
    var acc = 0.0;
    for (var i = p * ${u32(split.chunk)} + lid; i < end; i += ${u32(NORM_THREADS)}) {
      let g = x[${u32(start)} + i];
      acc += g * g;
    }
    ${normTree()}
    if (lid == 0u) { P[p] = part[0]; }
    workgroupBarrier();
  }
}`;
}

/**
 * WGSL of the second pass of a two-pass L2 norm: workgroup 0 sums the `parts` partials of
 * binding 0 (in a fixed order, so the result does not depend on the dispatch size) and writes
 * their square root into element `outIndex` of binding 1; other workgroups exit.
 */
export function normCombineShader(parts: number, outIndex: number): string {
  return `@group(0) @binding(0) var<storage, read> P: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
var<workgroup> part: array<f32, ${NORM_THREADS}>;
@compute @workgroup_size(${NORM_THREADS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  if (wid.x + wid.y + wid.z != 0u) { return; }
  var acc = 0.0;
  for (var i = lid; i < ${u32(parts)}; i += ${u32(NORM_THREADS)}) { acc += P[i]; }
  ${normTree()}
  if (lid == 0u) { out[${u32(outIndex)}] = sqrt(part[0]); }
}`;
}
