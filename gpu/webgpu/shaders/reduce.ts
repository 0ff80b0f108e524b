/**
 * Reduction WGSL (sum, max, argmax) over any set of axes of an elementwise expression of the
 * inputs (a fused prologue: `sum(x * x)` is one kernel).
 *
 * Two variants: one thread per output (many outputs or short rows), and one 64-thread workgroup
 * per output with a shared-memory tree (few outputs, long rows). Max propagates NaN.
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
 */
export function reduceShader(
  op: ReduceOp,
  plan: ReducePlan,
  expr: Expr,
  inputs: readonly MapInput[],
  nx: number,
  perGroup: boolean,
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
@group(0) @binding(${inputs.length}) var<storage, read_write> out: array<${outType}>;
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
  return `${head}
var<workgroup> sacc: array<f32, 64>;
var<workgroup> sbest: array<u32, 64>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  let o = wid.x + wid.y * ${u32(nx)};
  let live = o < ${u32(nOut)};
  let oc = min(o, ${u32(nOut - 1)});
  ${bases.replaceAll("OUT", "oc")}
  var acc: f32 = ${init};
  var best = 0u;
  for (var r = lid; r < ${u32(nRed)}; r += 64u) {
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
    out[o] = ${result};
  }
}`;
}
