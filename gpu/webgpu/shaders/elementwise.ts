/**
 * Elementwise WGSL: one generator for every map (an {@link Expr} tree over any number of inputs,
 * with broadcasting and strided views), rendered as straight-line `let` statements so a fused
 * chain of ops is one kernel; and the strided placement used by pad/concat/assign.
 * @module
 */

import {
  type BinaryOp,
  type DType,
  type Expr,
  exprNodes,
  exprType,
  inputKinds,
  isUnary,
  type MapInput,
  type PackPart,
  type UnaryOp,
} from "../../kernel.ts";
import {
  BUILTINS,
  elementLoop,
  f32,
  linearIndex,
  NAN_HELPERS,
  numel,
  offsetFromIndex,
  u32,
} from "./common.ts";

/** WGSL of each unary op over the operand `a` (f32). */
const UNARY_WGSL: Record<UnaryOp, (a: string) => string> = {
  neg: (a) => `-${a}`,
  exp: (a) => `exp(${a})`,
  log: (a) => `log(${a})`,
  sqrt: (a) => `sqrt(${a})`,
  abs: (a) => `abs(${a})`,
  sign: (a) => `select(select(0.0, -1.0, ${a} < 0.0), 1.0, ${a} > 0.0)`,
  tanh: (a) => `tanh_safe(${a})`,
  sigmoid: (a) => `sigmoid(${a})`,
  relu: (a) => `select(${a}, 0.0, !is_nan(${a}) && ${a} < 0.0)`,
  sin: (a) => `sin(${a})`,
  cos: (a) => `cos(${a})`,
  recip: (a) => `1.0 / ${a}`,
  square: (a) => `${a} * ${a}`,
  isnan: (a) => `select(0.0, 1.0, is_nan(${a}))`,
  isinf: (a) => `select(0.0, 1.0, is_inf(${a}))`,
  floor: (a) => `floor(${a})`,
  softplus: (a) => `softplus(${a})`,
};

const CMP: Partial<Record<BinaryOp, string>> = {
  eq: "==",
  ne: "!=",
  lt: "<",
  le: "<=",
  gt: ">",
  ge: ">=",
};

/** WGSL of a binary op over operands `a`, `b` of type `t`. */
function binaryWgsl(op: BinaryOp, a: string, b: string, t: DType): string {
  const [zero, one] = t === "f32" ? ["0.0", "1.0"] : t === "i32" ? ["0i", "1i"] : ["0u", "1u"];
  const cmp = CMP[op];
  if (cmp) return `select(${zero}, ${one}, ${a} ${cmp} ${b})`;
  switch (op) {
    case "add":
      return `${a} + ${b}`;
    case "sub":
      return `${a} - ${b}`;
    case "mul":
      return `${a} * ${b}`;
    case "div":
      return `${a} / ${b}`;
    case "pow":
      return `pow_signed(${a}, ${b})`;
    case "maximum":
      return t === "f32" ? `fmax_nan(${a}, ${b})` : `max(${a}, ${b})`;
    case "minimum":
      return t === "f32" ? `fmin_nan(${a}, ${b})` : `min(${a}, ${b})`;
    case "leaky_relu":
      return `select(${a}, ${a} * ${b}, !is_nan(${a}) && ${a} < 0.0)`;
    case "clamp_min":
      return `select(${a}, ${b}, !is_nan(${a}) && ${a} < ${b})`;
    case "clamp_max":
      return `select(${a}, ${b}, !is_nan(${a}) && ${a} > ${b})`;
    case "step":
      return `select(0.0, 1.0, ${a} > ${b})`;
    default:
      throw new Error(`no WGSL for binary op '${op}'`);
  }
}

/** A WGSL literal of `value` as `dtype` (non-finite f32 through their bit patterns). */
function literal(value: number, dtype: DType): string {
  if (dtype === "i32") return `${value | 0}i`;
  if (dtype === "u32") return `${value >>> 0}u`;
  if (Number.isNaN(value)) return "bitcast<f32>(0x7fc00000u)";
  if (value === Infinity) return "bitcast<f32>(0x7f800000u)";
  if (value === -Infinity) return "bitcast<f32>(0xff800000u)";
  return f32(value);
}

/**
 * WGSL statements evaluating `expr` (one `let` per node), with `load(k)` the WGSL of input k at
 * this element and `outValue` that of the output's current value. Returns the statements and
 * the name holding the result.
 */
export function exprStatements(
  expr: Expr,
  types: readonly DType[],
  outType: DType,
  load: (k: number) => string,
  outValue: string,
  prefix = "t",
): { stmts: string[]; result: string } {
  const names = new Map<Expr, string>();
  const stmts: string[] = [];
  const inputs = new Map<number, string>();
  for (const node of exprNodes(expr)) {
    if (node.op === "in" && inputs.has(node.i)) {
      // Every read of one input shares one load.
      names.set(node, inputs.get(node.i)!);
      continue;
    }
    const name = `${prefix}${stmts.length}`;
    names.set(node, name);
    if (node.op === "in") inputs.set(node.i, name);
    const arg = (e: Expr) => names.get(e)!;
    let value: string;
    if (node.op === "in") value = load(node.i);
    else if (node.op === "out") value = outValue;
    else if (node.op === "const") value = literal(node.value, node.dtype);
    else if (node.op === "cast") value = `${node.to}(${arg(node.a)})`;
    else if (node.op === "where") {
      const ct = exprType(node.c, types, outType);
      const zero = ct === "f32" ? "0.0" : ct === "i32" ? "0i" : "0u";
      value = `select(${arg(node.b)}, ${arg(node.a)}, ${arg(node.c)} != ${zero})`;
    } else if (isUnary(node)) value = UNARY_WGSL[node.op](arg(node.a));
    else {
      const b = node as { op: BinaryOp; a: Expr; b: Expr };
      value = binaryWgsl(b.op, arg(b.a), arg(b.b), exprType(b.a, types, outType));
    }
    stmts.push(`let ${name} = ${value};`);
  }
  return { stmts, result: names.get(expr)! };
}

/** Scalar helper functions the expressions above may call (needs {@link NAN_HELPERS}). */
export const EXPR_HELPERS = `
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
fn softplus(x: f32) -> f32 {
  // log(1 + e^x) without overflow: relu(x) + log(1 + e^-|x|); NaN stays NaN.
  return select(x, 0.0, x < 0.0) + log(1.0 + exp(-abs(x)));
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

/**
 * Whether {@link mapShader} uses its vec4 path: every input is either laid out like the output or
 * a broadcast scalar, the element count is a multiple of 4, and offsets keep vec4 alignment.
 */
export function mapIsVec4(
  shape: readonly number[],
  inputs: readonly MapInput[],
  outOffset = 0,
): boolean {
  const n = numel(shape);
  if (n % 4 !== 0 || n === 0 || outOffset % 4 !== 0) return false;
  const { kinds } = inputKinds(shape, inputs);
  return kinds.every((k, i) =>
    k === "scalar" || (k === "contiguous" && (inputs[i].offset ?? 0) % 4 === 0)
  );
}

/**
 * WGSL for `out[i] = expr(inputs...)` over a broadcast output of `shape`; bindings are the inputs
 * in order, then the output (read_write). The vec4 path runs one thread per 4 elements; the
 * scalar path {@link elementLoop}'s elements per thread.
 */
export function mapShader(
  expr: Expr,
  shape: readonly number[],
  inputs: readonly MapInput[],
  outDtype: DType,
  nx: number,
  outOffset = 0,
): string {
  const c = inputKinds(shape, inputs);
  const n = numel(shape);
  const types = inputs.map((i) => i.dtype);
  const vec = mapIsVec4(shape, inputs, outOffset);
  const oi = (scale: number) => (outOffset ? `out[i + ${u32(outOffset / scale)}]` : "out[i]");
  const vt = (t: DType) => (vec ? `vec4<${t}>` : t);
  const decl = inputs.map((inp, k) =>
    `@group(0) @binding(${k}) var<storage, read> in${k}: array<${
      c.kinds[k] === "contiguous" ? vt(inp.dtype) : inp.dtype
    }>;`
  );
  decl.push(
    `@group(0) @binding(${inputs.length}) var<storage, read_write> out: array<${vt(outDtype)}>;`,
  );
  const base = (inp: MapInput, scale = 1) => inp.offset ? ` + ${u32(inp.offset / scale)}` : "";
  const usesOut = exprNodes(expr).some((e) => e.op === "out");
  let body: string;
  if (vec) {
    // Four elements per thread through vec4 loads/stores; the expression per component.
    const loads = inputs.map((inp, k) =>
      c.kinds[k] === "scalar"
        ? `let s${k} = in${k}[0u${base(inp)}];`
        : `let v${k} = in${k}[i${base(inp, 4)}];`
    );
    if (usesOut) loads.push(`let vout = ${oi(4)};`);
    const comps = [0, 1, 2, 3].map((q) => {
      const { stmts, result } = exprStatements(
        expr,
        types,
        outDtype,
        (k) => (c.kinds[k] === "scalar" ? `s${k}` : `v${k}[${q}]`),
        `vout[${q}]`,
      );
      return `{ ${stmts.join(" ")} r[${q}] = ${result}; }`;
    });
    body = [...loads, `var r: vec4<${outDtype}>;`, ...comps, `${oi(4)} = r;`].join("\n");
  } else {
    const offsets: string[] = [];
    const { stmts, result } = exprStatements(expr, types, outDtype, (k) => {
      const inp = inputs[k];
      if (c.kinds[k] === "scalar") return `in${k}[0u${base(inp)}]`;
      if (c.kinds[k] === "contiguous") return `in${k}[i${base(inp)}]`;
      offsets.push(offsetFromIndex(`o${k}`, "i", c.shape, c.strides[k]));
      return `in${k}[o${k}${base(inp)}]`;
    }, oi(1));
    body = [...offsets, ...stmts, `${oi(1)} = ${result};`].join("\n");
  }
  return `${decl.join("\n")}
${NAN_HELPERS}
${EXPR_HELPERS}
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
 * WGSL for a pack: several maps in one kernel. Thread element `i` in part p's range of the
 * concatenated part sizes computes that part's element `q = i - start_p` into
 * `out[outOffset_p + q]`; bindings are the input buffers (of `buffers` dtypes) in order, then the
 * output (read_write).
 */
export function packShader(
  parts: readonly PackPart[],
  buffers: readonly DType[],
  outDtype: DType,
  nx: number,
): string {
  const decl = buffers.map((t, k) =>
    `@group(0) @binding(${k}) var<storage, read> in${k}: array<${t}>;`
  );
  decl.push(
    `@group(0) @binding(${buffers.length}) var<storage, read_write> out: array<${outDtype}>;`,
  );
  let start = 0;
  const branches = parts.map((part, p) => {
    const n = numel(part.shape);
    const c = inputKinds(part.shape, part.inputs);
    const types = part.inputs.map((i) => i.dtype);
    part.inputs.forEach((inp, k) => {
      if (buffers[part.bind[k]] !== inp.dtype) {
        throw new Error(
          `pack: part ${p} reads buffer ${part.bind[k]} as ${inp.dtype}, bound as ${
            buffers[part.bind[k]]
          }`,
        );
      }
    });
    const at = `out[q + ${u32(part.outOffset)}]`;
    const offsets: string[] = [];
    const { stmts, result } = exprStatements(
      part.expr,
      types,
      outDtype,
      (k) => {
        const inp = part.inputs[k];
        const buf = `in${part.bind[k]}`;
        const base = inp.offset ? ` + ${u32(inp.offset)}` : "";
        if (c.kinds[k] === "scalar") return `${buf}[0u${base}]`;
        if (c.kinds[k] === "contiguous") return `${buf}[q${base}]`;
        offsets.push(offsetFromIndex(`o${p}_${k}`, "q", c.shape, c.strides[k]));
        return `${buf}[o${p}_${k}${base}]`;
      },
      at,
      `p${p}_`,
    );
    const cond = `i < ${u32(start + n)}`;
    const body = [`let q = i - ${u32(start)};`, ...offsets, ...stmts, `${at} = ${result};`];
    start += n;
    return `if (${cond}) {\n  ${body.join("\n  ")}\n}`;
  });
  return `${decl.join("\n")}
${NAN_HELPERS}
${EXPR_HELPERS}
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${elementLoop(nx, start, branches.join(" else "))}
}`;
}

/**
 * WGSL writing a contiguous input (binding 0) into a strided region of the output (binding 1):
 * `out[offset + Σ coord_d * outStrides[d]] = in[i]`. Used by pad, concat and assign.
 */
export function placeShader(
  shape: readonly number[],
  outStrides: readonly number[],
  offset: number,
  dtype: DType,
  nx: number,
  accumulate = false,
): string {
  const n = numel(shape);
  const at = `out[o + ${u32(offset)}]`;
  return `@group(0) @binding(0) var<storage, read> src: array<${dtype}>;
@group(0) @binding(1) var<storage, read_write> out: array<${dtype}>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${
    elementLoop(
      nx,
      n,
      `${offsetFromIndex("o", "i", shape, outStrides)}\n${at} = ${
        accumulate ? `${at} + ` : ""
      }src[i];`,
    )
  }
}`;
}
