/**
 * Elementwise WGSL: one generator for every map over 1-3 inputs with broadcasting, and the table
 * of scalar expressions that names each unary, binary and ternary op.
 * @module
 */

import {
  BUILTINS,
  contiguousStrides,
  type DType,
  elementLoop,
  linearIndex,
  NAN_HELPERS,
  offsetFromIndex,
  u32,
} from "./common.ts";

/** Name of a unary op. */
export type UnaryOp =
  | "neg"
  | "exp"
  | "log"
  | "sqrt"
  | "abs"
  | "sign"
  | "tanh"
  | "sigmoid"
  | "relu"
  | "sin"
  | "cos"
  | "recip"
  | "square"
  | "isnan"
  | "isinf"
  | "floor";

/** Scalar WGSL expressions of unary ops over `x` (f32 in, f32 out). */
export const UNARY_EXPR: Record<UnaryOp, string> = {
  neg: "-x",
  exp: "exp(x)",
  log: "log(x)",
  sqrt: "sqrt(x)",
  abs: "abs(x)",
  sign: "select(select(0.0, -1.0, x < 0.0), 1.0, x > 0.0)",
  tanh: "tanh_safe(x)",
  sigmoid: "sigmoid(x)",
  relu: "select(x, 0.0, !is_nan(x) && x < 0.0)",
  sin: "sin(x)",
  cos: "cos(x)",
  recip: "1.0 / x",
  square: "x * x",
  isnan: "select(0.0, 1.0, is_nan(x))",
  isinf: "select(0.0, 1.0, is_inf(x))",
  floor: "floor(x)",
};

/** Name of a binary op. */
export type BinaryOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "pow"
  | "maximum"
  | "minimum"
  | "eq"
  | "ne"
  | "lt"
  | "le"
  | "gt"
  | "ge";

/** Scalar WGSL expressions of binary ops over `x`, `y` (f32 in, f32 out). */
export const BINARY_EXPR: Record<BinaryOp, string> = {
  add: "x + y",
  sub: "x - y",
  mul: "x * y",
  div: "x / y",
  pow: "pow_signed(x, y)",
  maximum: "fmax_nan(x, y)",
  minimum: "fmin_nan(x, y)",
  eq: "select(0.0, 1.0, x == y)",
  ne: "select(0.0, 1.0, x != y)",
  lt: "select(0.0, 1.0, x < y)",
  le: "select(0.0, 1.0, x <= y)",
  gt: "select(0.0, 1.0, x > y)",
  ge: "select(0.0, 1.0, x >= y)",
};

/** Scalar helper functions the expressions above may call. */
const HELPERS = `${NAN_HELPERS}
// max/min that propagate NaN on every driver (GL compilers may assume comparisons see no NaN).
fn fmax_nan(x: f32, y: f32) -> f32 {
  if (is_nan(x)) { return x; }
  if (is_nan(y)) { return y; }
  return select(y, x, x >= y);
}
fn fmin_nan(x: f32, y: f32) -> f32 {
  if (is_nan(x)) { return x; }
  if (is_nan(y)) { return y; }
  return select(y, x, x <= y);
}
fn sigmoid(x: f32) -> f32 {
  // Stable for large |x|: never evaluates exp of a large positive number.
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn tanh_safe(x: f32) -> f32 {
  if (is_nan(x)) { return x; }
  let e = exp(-2.0 * abs(x));
  return sign(x) * (1.0 - e) / (1.0 + e);
}
fn pow_signed(x: f32, y: f32) -> f32 {
  // pow() of a negative base is undefined in WGSL; follow IEEE for integral exponents.
  if (x >= 0.0 || is_nan(x)) { return pow(x, y); }
  let r = pow(-x, y);
  if (floor(y) != y) { return bitcast<f32>(0x7fc00000u); }
  return select(r, -r, (i32(y) & 1) == 1);
}`;

/** One input of a map kernel: its element type and its strides in output coordinates. */
export interface MapInput {
  /** Element type. */
  dtype: DType;
  /** Strides (in elements) per output dimension; 0 where the input is broadcast. */
  strides: number[];
  /** Element offset of the first element read (views such as slices); default 0. */
  offset?: number;
}

/**
 * Collapses adjacent output dimensions whose strides are contiguous in every input (and in the
 * output), so that index arithmetic stays short.
 */
export function collapseDims(
  shape: readonly number[],
  inputs: readonly number[][],
): { shape: number[]; inputs: number[][] } {
  const outStrides = contiguousStrides(shape);
  const all = [outStrides, ...inputs];
  const s: number[] = [];
  const st: number[][] = all.map(() => []);
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = s.length - 1;
    const mergeable = last >= 0 &&
      all.every((strides, k) => st[k][last] === strides[d] * shape[d]);
    if (mergeable) {
      s[last] *= shape[d];
      all.forEach((strides, k) => (st[k][last] = strides[d]));
    } else {
      s.push(shape[d]);
      all.forEach((strides, k) => st[k].push(strides[d]));
    }
  }
  return { shape: s, inputs: st.slice(1) };
}

/**
 * WGSL for `out[i] = expr(x0, x1, x2)` over a broadcast output of `shape`. In `expr`, inputs are
 * named `x`, `y`, `z` (in order) and the output dtype is `outDtype`.
 */
export function mapShader(
  expr: string,
  shape: readonly number[],
  inputs: MapInput[],
  outDtype: DType,
  nx: number,
): string {
  const c = collapseDims(shape, inputs.map((i) => i.strides));
  const n = shape.reduce((a, b) => a * b, 1);
  const names = ["x", "y", "z"];
  const cStrides = contiguousStrides(c.shape);
  const kinds = inputs.map((_inp, k) => {
    const st = c.inputs[k];
    if (st.every((v) => v === 0)) return "scalar";
    return st.length === c.shape.length && st.every((v, d) => v === cStrides[d])
      ? "contiguous"
      : "strided";
  });
  const vec = mapIsVec4(shape, inputs, kinds);
  const vt = (t: DType) => (vec ? `vec4<${t}>` : t);
  const decl = inputs.map((inp, k) =>
    `@group(0) @binding(${k}) var<storage, read> in${k}: array<${
      kinds[k] === "contiguous" ? vt(inp.dtype) : inp.dtype
    }>;`
  );
  decl.push(
    `@group(0) @binding(${inputs.length}) var<storage, read_write> out: array<${vt(outDtype)}>;`,
  );
  const base = (inp: MapInput, scale = 1) => inp.offset ? ` + ${u32(inp.offset / scale)}` : "";
  let body: string;
  if (vec) {
    // Four elements per thread through vec4 loads/stores; the scalar expression per component.
    const loads = inputs.map((inp, k) =>
      kinds[k] === "scalar"
        ? `let ${names[k]}s = in${k}[0u${base(inp)}];`
        : `let ${names[k]}v = in${k}[i${base(inp, 4)}];`
    );
    const comps = [0, 1, 2, 3].map((q) => {
      const lets = inputs.map((_, k) =>
        kinds[k] === "scalar"
          ? `let ${names[k]} = ${names[k]}s;`
          : `let ${names[k]} = ${names[k]}v[${q}];`
      );
      return `{ ${lets.join(" ")} r[${q}] = ${expr}; }`;
    });
    body = [...loads, `var r: vec4<${outDtype}>;`, ...comps, "out[i] = r;"].join("\n");
  } else {
    const loads = inputs.map((inp, k) => {
      if (kinds[k] === "scalar") return `let ${names[k]} = in${k}[0u${base(inp)}];`;
      if (kinds[k] === "contiguous") return `let ${names[k]} = in${k}[i${base(inp)}];`;
      return `${offsetFromIndex(`o${k}`, "i", c.shape, c.inputs[k])}\nlet ${
        names[k]
      } = in${k}[o${k}${base(inp)}];`;
    });
    body = `${loads.join("\n")}\nout[i] = ${expr};`;
  }
  return `${decl.join("\n")}
${HELPERS}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${
    vec
      ? `let i = ${linearIndex(nx)};\n  if (i >= ${u32(n / 4)}) { return; }\n  ${
        body.split("\n").join("\n  ")
      }`
      : elementLoop(nx, n, body)
  }
}`;
}

/**
 * Whether {@link mapShader} uses its vec4 path: every input is either laid out like the output or
 * a broadcast scalar, the element count is a multiple of 4, and offsets keep vec4 alignment.
 */
export function mapIsVec4(
  shape: readonly number[],
  inputs: MapInput[],
  kinds?: string[],
): boolean {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n % 4 !== 0 || n === 0) return false;
  if (!kinds) {
    const c = collapseDims(shape, inputs.map((i) => i.strides));
    const cs = contiguousStrides(c.shape);
    kinds = c.inputs.map((st) =>
      st.every((v) => v === 0)
        ? "scalar"
        : st.length === c.shape.length && st.every((v, d) => v === cs[d])
        ? "contiguous"
        : "strided"
    );
  }
  return kinds.every((k, i) =>
    k === "scalar" || (k === "contiguous" && (inputs[i].offset ?? 0) % 4 === 0)
  );
}

/**
 * WGSL writing a contiguous input (binding 0) into a strided region of the output (binding 1):
 * `out[offset + Σ coord_d * outStrides[d]] = in[i]`. Used by pad and concat.
 */
export function placeShader(
  shape: readonly number[],
  outStrides: readonly number[],
  offset: number,
  dtype: DType,
  nx: number,
): string {
  const n = shape.reduce((a, b) => a * b, 1);
  return `@group(0) @binding(0) var<storage, read> src: array<${dtype}>;
@group(0) @binding(1) var<storage, read_write> out: array<${dtype}>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${
    elementLoop(
      nx,
      n,
      `${offsetFromIndex("o", "i", shape, outStrides)}\nout[o + ${u32(offset)}] = src[i];`,
    )
  }
}`;
}

/** WGSL filling `n` elements of the output (binding 0) with a constant WGSL expression. */
export function fillShader(n: number, dtype: DType, value: string, nx: number): string {
  return `@group(0) @binding(0) var<storage, read_write> out: array<${dtype}>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${elementLoop(nx, n, `out[i] = ${value};`)}
}`;
}

/** WGSL: out[i] = out[i] + src[i] over n contiguous elements (in-place gradient accumulation). */
export function accumulateShader(n: number, nx: number): string {
  return `@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${elementLoop(nx, n, "out[i] = out[i] + src[i];")}
}`;
}
