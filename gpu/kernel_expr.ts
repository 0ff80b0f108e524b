/**
 * Elementwise expressions of the `map` kernel family (gpu/kernel.ts re-exports it): the unary and
 * binary operators, the {@link Expr} tree and its builders, type inference and lowering, and the
 * strided inputs of a map with their dimension collapsing.
 * @module
 */

import { contiguousStrides, type DType } from "./dtype.ts";

// ---------------------------------------------------------------- elementwise expressions

/** Unary ops of the expression tree (f32 in, f32 out unless noted). */
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
  | "floor"
  | "softplus";

/** Every unary op, in a fixed order. */
export const UNARY_OPS: readonly UnaryOp[] = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "abs",
  "sign",
  "tanh",
  "sigmoid",
  "relu",
  "sin",
  "cos",
  "recip",
  "square",
  "isnan",
  "isinf",
  "floor",
  "softplus",
];

/**
 * Binary ops of the expression tree. Comparisons give 1 or 0 in the operands' type. The last
 * four take a parameter as their second operand: `leaky_relu(x, slope)`, `clamp_min(x, lo)`,
 * `clamp_max(x, hi)`, `step(x, t) = x > t`; all four pass NaN through (step gives 0).
 */
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
  | "ge"
  | "leaky_relu"
  | "clamp_min"
  | "clamp_max"
  | "step";

/** Binary ops defined for i32/u32 operands as well as f32. */
export const INT_BINARY_OPS: ReadonlySet<BinaryOp> = new Set<BinaryOp>([
  "add",
  "sub",
  "mul",
  "maximum",
  "minimum",
  "eq",
  "ne",
  "lt",
  "le",
  "gt",
  "ge",
]);

/**
 * An elementwise expression evaluated at each output element:
 * - `in`: input `i` at this element (read through that input's strides);
 * - `out`: the output's current value at this element (in-place kernels such as accumulation);
 * - `const`: a constant baked into the kernel (use a constant INPUT for values that change);
 * - `where`: `c != 0 ? a : b`; `cast`: conversion (float to int truncates toward zero).
 */
export type Expr =
  | { readonly op: "in"; readonly i: number }
  | { readonly op: "out" }
  | { readonly op: "const"; readonly value: number; readonly dtype: DType }
  | { readonly op: UnaryOp; readonly a: Expr }
  | { readonly op: BinaryOp; readonly a: Expr; readonly b: Expr }
  | { readonly op: "where"; readonly c: Expr; readonly a: Expr; readonly b: Expr }
  | { readonly op: "cast"; readonly to: DType; readonly a: Expr };

/**
 * `e` with composite ops written out in primitive ones, for backends that render only those
 * (the CPU backend, so that its JavaScript and WebAssembly kernels stay bit for bit equal):
 * `softplus(x) = relu(x) + log(exp(-|x|) + 1)`. Shared subtrees stay shared.
 */
export function lowerExpr(e: Expr): Expr {
  if (!exprNodes(e).some((x) => x.op === "softplus")) return e;
  const memo = new Map<Expr, Expr>();
  const walk = (x: Expr): Expr => {
    const hit = memo.get(x);
    if (hit) return hit;
    let r: Expr;
    if (x.op === "in" || x.op === "out" || x.op === "const") r = x;
    else if (x.op === "where") r = E.where(walk(x.c), walk(x.a), walk(x.b));
    else if (x.op === "cast") r = E.cast(x.to, walk(x.a));
    else if (x.op === "softplus") {
      const a = walk(x.a);
      const tail = E.unary("exp", E.unary("neg", E.unary("abs", a)));
      r = E.binary(
        "add",
        E.unary("relu", a),
        E.unary("log", E.binary("add", tail, E.const(1))),
      );
    } else if (isUnary(x)) r = E.unary(x.op, walk(x.a));
    else {
      const b = x as { op: BinaryOp; a: Expr; b: Expr };
      r = E.binary(b.op, walk(b.a), walk(b.b));
    }
    memo.set(x, r);
    return r;
  };
  return walk(e);
}

/** Expression builders. */
export const E = {
  /** Input `i`. */
  in: (i: number): Expr => ({ op: "in", i }),
  /** The output's current value. */
  out: (): Expr => ({ op: "out" }),
  /** A baked constant. */
  const: (value: number, dtype: DType = "f32"): Expr => ({ op: "const", value, dtype }),
  /** A unary op. */
  unary: (op: UnaryOp, a: Expr): Expr => ({ op, a }),
  /** A binary op. */
  binary: (op: BinaryOp, a: Expr, b: Expr): Expr => ({ op, a, b }),
  /** `c != 0 ? a : b`. */
  where: (c: Expr, a: Expr, b: Expr): Expr => ({ op: "where", c, a, b }),
  /** Conversion to `to`. */
  cast: (to: DType, a: Expr): Expr => ({ op: "cast", to, a }),
};

const UNARY_SET: ReadonlySet<string> = new Set(UNARY_OPS);

/** True for unary-op nodes. */
export function isUnary(e: Expr): e is { op: UnaryOp; a: Expr } {
  return UNARY_SET.has(e.op);
}

/** True for binary-op nodes. */
export function isBinary(e: Expr): e is { op: BinaryOp; a: Expr; b: Expr } {
  return "b" in e && e.op !== "where";
}

/** The type of `e` given the input types; throws on an op applied to the wrong type. */
export function exprType(e: Expr, inputs: readonly DType[], out: DType): DType {
  switch (e.op) {
    case "in":
      if (e.i < 0 || e.i >= inputs.length) {
        throw new Error(`expression reads input ${e.i} of ${inputs.length}`);
      }
      return inputs[e.i];
    case "out":
      return out;
    case "const":
      return e.dtype;
    case "cast":
      exprType(e.a, inputs, out);
      return e.to;
    case "where": {
      exprType(e.c, inputs, out);
      const a = exprType(e.a, inputs, out);
      const b = exprType(e.b, inputs, out);
      if (a !== b) throw new Error(`where: branches of types ${a} and ${b}`);
      return a;
    }
    default: {
      if (isUnary(e)) {
        const t = exprType(e.a, inputs, out);
        if (t !== "f32") throw new Error(`${e.op}: expects f32, got ${t}`);
        return t;
      }
      const b = e as { op: BinaryOp; a: Expr; b: Expr };
      const ta = exprType(b.a, inputs, out);
      const tb = exprType(b.b, inputs, out);
      if (ta !== tb) throw new Error(`${b.op}: operands of types ${ta} and ${tb}`);
      if (ta !== "f32" && !INT_BINARY_OPS.has(b.op)) {
        throw new Error(`${b.op}: not defined for ${ta}`);
      }
      return ta;
    }
  }
}

/** Nodes of `e` in evaluation order (operands first), shared subtrees once. */
export function exprNodes(e: Expr): Expr[] {
  const order: Expr[] = [];
  const seen = new Set<Expr>();
  const visit = (x: Expr) => {
    if (seen.has(x)) return;
    seen.add(x);
    if ("c" in x) visit(x.c);
    if ("a" in x) visit(x.a);
    if ("b" in x) visit(x.b);
    order.push(x);
  };
  visit(e);
  return order;
}

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
 * output), so that index arithmetic stays short. Size-1 dimensions are dropped.
 */
export function collapseDims(
  shape: readonly number[],
  inputs: readonly (readonly number[])[],
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

/** How a map input is read after {@link collapseDims}. */
export type InputKind = "scalar" | "contiguous" | "strided";

/** Classifies each input of a map over `shape` (after collapsing). */
export function inputKinds(shape: readonly number[], inputs: readonly MapInput[]): {
  shape: number[];
  strides: number[][];
  kinds: InputKind[];
} {
  const c = collapseDims(shape, inputs.map((i) => i.strides));
  const cs = contiguousStrides(c.shape);
  const kinds = c.inputs.map((st): InputKind =>
    st.every((v) => v === 0)
      ? "scalar"
      : st.length === c.shape.length && st.every((v, d) => v === cs[d])
      ? "contiguous"
      : "strided"
  );
  return { shape: c.shape, strides: c.inputs, kinds };
}
