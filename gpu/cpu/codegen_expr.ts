/**
 * Elementwise expressions in generated JavaScript for gpu/cpu/codegen.ts: the helper functions
 * every generated kernel receives, the unary, binary, comparison and cast renderings, and the
 * statements that evaluate a map's expression tree with f32 rounding after every op.
 * @module
 */

import {
  type BinaryOp,
  type DType,
  type Expr,
  exprNodes,
  exprType,
  isUnary,
  lowerExpr,
  type UnaryOp,
} from "../kernel.ts";
import { expf, logf, sigmoidf, tanhf } from "./mathf.ts";

/** JavaScript helpers the generated code may call (passed in as arguments, never global). */
export const HELPERS = {
  fr: Math.fround,
  expf,
  logf,
  tanhf,
  sigmoidf,
  fmax(x: number, y: number): number {
    return x !== x ? x : y !== y ? y : x >= y ? x : y;
  },
  fmin(x: number, y: number): number {
    return x !== x ? x : y !== y ? y : x <= y ? x : y;
  },
  toI32(x: number): number {
    if (x !== x) return 0;
    if (x >= 2147483647) return 2147483647;
    if (x <= -2147483648) return -2147483648;
    return Math.trunc(x) | 0;
  },
  toU32(x: number): number {
    if (x !== x || x <= 0) return 0;
    if (x >= 4294967295) return 4294967295;
    return Math.trunc(x) >>> 0;
  },
  /** 1 - beta^t as -expm1(t ln beta), accurate near 0. */
  oneMinusPow(logBeta: number, t: number): number {
    return -Math.expm1(t * logBeta);
  },
  mix32(v: number): number {
    let x = v >>> 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7feb352d);
    x ^= x >>> 15;
    x = Math.imul(x, 0x846ca68b | 0);
    x ^= x >>> 16;
    return x >>> 0;
  },
  /** Element i of draw `stream` under `seed` (the same hash as the WGSL kernels). */
  rand(seed: number, stream: number, i: number, lane: number): number {
    const m = HELPERS.mix32;
    const key = m((seed ^ m((stream + Math.imul(0x9e3779b9 | 0, lane + 1)) >>> 0)) >>> 0);
    return m((m((i ^ key) >>> 0) + key) >>> 0);
  },
};

export const H = Object.keys(HELPERS);

/** JavaScript of a unary f32 op. */
const UNARY_JS: Record<UnaryOp, (a: string) => string> = {
  neg: (a) => `-${a}`,
  exp: (a) => `expf(${a})`,
  log: (a) => `logf(${a})`,
  sqrt: (a) => `fr(Math.sqrt(${a}))`,
  abs: (a) => `Math.abs(${a})`,
  sign: (a) => `(${a} > 0 ? 1 : ${a} < 0 ? -1 : 0)`,
  tanh: (a) => `tanhf(${a})`,
  sigmoid: (a) => `sigmoidf(${a})`,
  relu: (a) => `(${a} < 0 ? 0 : ${a})`,
  sin: (a) => `fr(Math.sin(${a}))`,
  cos: (a) => `fr(Math.cos(${a}))`,
  recip: (a) => `fr(1 / ${a})`,
  square: (a) => `fr(${a} * ${a})`,
  isnan: (a) => `(${a} !== ${a} ? 1 : 0)`,
  isinf: (a) => `(${a} === Infinity || ${a} === -Infinity ? 1 : 0)`,
  floor: (a) => `Math.floor(${a})`,
  softplus: () => {
    throw new Error("softplus is lowered (lowerExpr) before JavaScript is generated");
  },
};

const CMP: Partial<Record<BinaryOp, string>> = {
  eq: "===",
  ne: "!==",
  lt: "<",
  le: "<=",
  gt: ">",
  ge: ">=",
};

function binaryJs(op: BinaryOp, a: string, b: string, t: DType): string {
  const cmp = CMP[op];
  if (cmp) return `(${a} ${cmp} ${b} ? 1 : 0)`;
  if (t !== "f32") {
    const wrap = t === "i32" ? (x: string) => `(${x}) | 0` : (x: string) => `(${x}) >>> 0`;
    switch (op) {
      case "add":
        return wrap(`${a} + ${b}`);
      case "sub":
        return wrap(`${a} - ${b}`);
      case "mul":
        return wrap(`Math.imul(${a}, ${b})`);
      case "maximum":
        return `Math.max(${a}, ${b})`;
      case "minimum":
        return `Math.min(${a}, ${b})`;
    }
    throw new Error(`no integer JavaScript for '${op}'`);
  }
  switch (op) {
    case "add":
      return `fr(${a} + ${b})`;
    case "sub":
      return `fr(${a} - ${b})`;
    case "mul":
      return `fr(${a} * ${b})`;
    case "div":
      return `fr(${a} / ${b})`;
    case "pow":
      // Math.pow follows IEEE for negative bases (NaN for non-integral exponents), as pow_signed.
      return `fr(Math.pow(${a}, ${b}))`;
    case "maximum":
      return `fmax(${a}, ${b})`;
    case "minimum":
      return `fmin(${a}, ${b})`;
    case "leaky_relu":
      return `(${a} < 0 ? fr(${a} * ${b}) : ${a})`;
    case "clamp_min":
      return `(${a} < ${b} ? ${b} : ${a})`;
    case "clamp_max":
      return `(${a} > ${b} ? ${b} : ${a})`;
    case "step":
      return `(${a} > ${b} ? 1 : 0)`;
  }
  throw new Error(`no JavaScript for binary op '${op}'`);
}

function literal(value: number, dtype: DType): string {
  if (dtype === "i32") return `${value | 0}`;
  if (dtype === "u32") return `${value >>> 0}`;
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "Infinity" : "-Infinity";
  return `${Math.fround(value)}`;
}

function castJs(from: DType, to: DType, a: string): string {
  if (from === to) return a;
  if (to === "f32") return `fr(${a})`;
  if (from === "f32") return to === "i32" ? `toI32(${a})` : `toU32(${a})`;
  return to === "i32" ? `(${a} | 0)` : `(${a} >>> 0)`;
}

/** The typed-array view that holds `dtype`. */
export function view(dtype: DType): string {
  return dtype === "f32" ? "F" : dtype === "i32" ? "I" : "U";
}

/**
 * JavaScript statements evaluating `expr` (one `const` per node); `load(k)` gives input k's
 * value and `outValue` the output's current value.
 */
export function exprStatements(
  expr: Expr,
  types: readonly DType[],
  outType: DType,
  load: (k: number) => string,
  outValue: string,
): { stmts: string[]; result: string } {
  expr = lowerExpr(expr);
  const names = new Map<Expr, string>();
  const stmts: string[] = [];
  const inputs = new Map<number, string>();
  for (const node of exprNodes(expr)) {
    if (node.op === "in" && inputs.has(node.i)) {
      // Every read of one input shares one load.
      names.set(node, inputs.get(node.i)!);
      continue;
    }
    const name = `t${stmts.length}`;
    names.set(node, name);
    if (node.op === "in") inputs.set(node.i, name);
    const arg = (e: Expr) => names.get(e)!;
    let value: string;
    if (node.op === "in") value = load(node.i);
    else if (node.op === "out") value = outValue;
    else if (node.op === "const") value = literal(node.value, node.dtype);
    else if (node.op === "cast") {
      value = castJs(exprType(node.a, types, outType), node.to, arg(node.a));
    } else if (node.op === "where") {
      value = `(${arg(node.c)} !== 0 ? ${arg(node.a)} : ${arg(node.b)})`;
    } else if (isUnary(node)) value = UNARY_JS[node.op](arg(node.a));
    else {
      const b = node as { op: BinaryOp; a: Expr; b: Expr };
      value = binaryJs(b.op, arg(b.a), arg(b.b), exprType(b.a, types, outType));
    }
    stmts.push(`const ${name} = ${value};`);
  }
  return { stmts, result: names.get(expr)! };
}
