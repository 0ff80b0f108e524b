/**
 * Renders a {@link KernelSpec} into a JavaScript function over the CPU backend's memory: shapes,
 * strides and geometry are baked into the generated text as constants (as the WGSL renderer
 * does), so V8 compiles tight typed-array loops. The CPU backend caches the compiled function
 * under the spec's key. Large products do not come here: gpu/cpu/gemm.ts runs them in WebAssembly.
 *
 * Every generated function has the signature `(F, I, U, o)`: Float32Array, Int32Array and
 * Uint32Array views of the whole memory, and the element offsets of the spec's buffers in order.
 * f32 arithmetic is rounded to f32 after every op (`Math.fround`), so a fused expression gives
 * the same bits as the chain of single ops it replaces.
 * @module
 */

import {
  type BinaryOp,
  colCols,
  colRows,
  contiguousStrides,
  type DType,
  type Expr,
  exprNodes,
  exprType,
  inputKinds,
  isUnary,
  type KernelSpec,
  lowerExpr,
  lstmActsOffset,
  numel,
  planReduce,
  type UnaryOp,
} from "../kernel.ts";
import { expf, logf, sigmoidf, tanhf } from "./mathf.ts";

/** A compiled CPU kernel: views of the memory, then the element offsets of the buffers. */
export type CpuKernel = (F: Float32Array, I: Int32Array, U: Uint32Array, o: Int32Array) => void;

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

const H = Object.keys(HELPERS);

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
function view(dtype: DType): string {
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

/**
 * Nested loops over `shape` keeping one running element offset per entry of `strides` (named
 * `<ptr><k>`, starting at `bases[k]`), with `body` innermost; `<counter>` (declared by the
 * caller) counts the iterations row-major and `<loopVar><d>` are the loop indices.
 */
function nestedLoops(
  shape: readonly number[],
  strides: readonly (readonly number[])[],
  bases: readonly string[],
  body: string,
  names = { loopVar: "a", ptr: "p", counter: "i" },
): string {
  const { loopVar, ptr, counter } = names;
  if (shape.length === 0) {
    const ptrs = strides.map((_, k) => `const ${ptr}${k} = ${bases[k]};`).join(" ");
    return `{ ${ptrs} ${body} ${counter}++; }`;
  }
  const lines: string[] = [];
  const depth = shape.length;
  for (let d = 0; d < depth; d++) {
    const prev = (k: number) => (d === 0 ? bases[k] : `${ptr}${k}_${d - 1}`);
    lines.push(`for (let ${loopVar}${d} = 0; ${loopVar}${d} < ${shape[d]}; ${loopVar}${d}++) {`);
    for (let k = 0; k < strides.length; k++) {
      const st = strides[k][d];
      const name = d === depth - 1 ? `${ptr}${k}` : `${ptr}${k}_${d}`;
      lines.push(`const ${name} = ${prev(k)}${st ? ` + ${loopVar}${d} * ${st}` : ""};`);
    }
  }
  lines.push(body, `${counter}++;`);
  for (let d = 0; d < depth; d++) lines.push("}");
  return lines.join("\n");
}

function mapSource(spec: Extract<KernelSpec, { kind: "map" }>): string {
  const n = numel(spec.shape);
  const c = inputKinds(spec.shape, spec.inputs);
  const types = spec.inputs.map((i) => i.dtype);
  const outIdx = spec.inputs.length;
  const O = view(spec.out);
  const pre: string[] = [];
  const strided: number[] = [];
  spec.inputs.forEach((inp, k) => {
    const base = `o[${k}] + ${inp.offset ?? 0}`;
    if (c.kinds[k] === "scalar") pre.push(`const s${k} = ${view(inp.dtype)}[${base}];`);
    else pre.push(`const b${k} = ${base};`);
    if (c.kinds[k] === "strided") strided.push(k);
  });
  const { stmts, result } = exprStatements(spec.expr, types, spec.out, (k) => {
    if (c.kinds[k] === "scalar") return `s${k}`;
    if (c.kinds[k] === "contiguous") return `${view(types[k])}[b${k} + i]`;
    return `${view(types[k])}[p${strided.indexOf(k)}]`;
  }, `${O}[ob + i]`);
  const body = [...stmts, `${O}[ob + i] = ${result};`].join("\n");
  pre.push(`const ob = o[${outIdx}] + ${spec.outOffset ?? 0};`);
  if (strided.length === 0) {
    return `${pre.join("\n")}\nfor (let i = 0; i < ${n}; i++) {\n${body}\n}`;
  }
  const loops = nestedLoops(
    c.shape,
    strided.map((k) => c.strides[k]),
    strided.map((k) => `b${k}`),
    body,
  );
  return `${pre.join("\n")}\nlet i = 0;\n${loops}`;
}

function placeSource(spec: Extract<KernelSpec, { kind: "place" }>): string {
  const v = view(spec.dtype);
  // Collapse the placement like a map whose "input" is the destination.
  const c = inputKinds(spec.shape, [{ dtype: spec.dtype, strides: spec.outStrides }]);
  if (spec.accumulate) {
    return `const s = o[0];
let i = 0;
${nestedLoops(c.shape, [c.strides[0]], [`o[1] + ${spec.offset}`], `${v}[p0] += ${v}[s + i];`)}`;
  }
  if (c.kinds[0] === "contiguous") {
    const n = numel(spec.shape);
    return `const s = o[0], d = o[1] + ${spec.offset};
${v}.copyWithin(d, s, s + ${n});`;
  }
  return `const s = o[0];
let i = 0;
${nestedLoops(c.shape, [c.strides[0]], [`o[1] + ${spec.offset}`], `${v}[p0] = ${v}[s + i];`)}`;
}

function reduceSource(spec: Extract<KernelSpec, { kind: "reduce" }>): string {
  const plan = planReduce(spec.shape, spec.axes, spec.inputs.map((i) => i.strides));
  const out = spec.op === "argmax" ? "I" : "F";
  const n = spec.inputs.length;
  const bases = spec.inputs.map((inp, k) => `o[${k}] + ${inp.offset ?? 0}`);
  const outer = nestedLoops(plan.keepShape, plan.keepStrides, bases, "BODY");
  const { stmts, result } = exprStatements(
    spec.expr,
    spec.inputs.map((i) => i.dtype),
    "f32",
    (k) => `${view(spec.inputs[k].dtype)}[q${k}]`,
    "0",
  );
  const names = { loopVar: "c", ptr: "q", counter: "r" };
  const red = (combine: string) => {
    const body = `${stmts.join("\n")}\nconst v = ${result};\n${combine}`;
    const starts = spec.inputs.map((_, k) => `p${k}`);
    return `let r = 0;\n${nestedLoops(plan.redShape, plan.redStrides, starts, body, names)}`;
  };
  let inner: string;
  if (spec.op === "sum") {
    inner = `let acc = 0;\n${red("acc += v;")}\n${out}[o[${n}] + i] = acc;`;
  } else {
    inner = `let acc = -Infinity, best = 0;
${red("if (acc === acc && (v !== v || v > acc)) { acc = v; best = r; }")}
${out}[o[${n}] + i] = ${spec.op === "argmax" ? "best" : "acc"};`;
  }
  return `let i = 0;\n${outer.replace("BODY", inner)}`;
}

function matmulSource(spec: Extract<KernelSpec, { kind: "matmul" }>): string {
  const { m, n, k } = spec;
  const [sai, sap] = spec.transA ? [1, m] : [k, 1];
  const [sbp, sbj] = spec.transB ? [1, k] : [n, 1];
  return `const acc = new Float64Array(${n});
for (let bat = 0; bat < ${spec.batch}; bat++) {
  const a0 = o[0] + bat * ${spec.batchStrideA}, b0 = o[1] + bat * ${spec.batchStrideB};
  const c0 = o[2] + bat * ${m * n};
  for (let r = 0; r < ${m}; r++) {
    acc.fill(0);
    for (let p = 0; p < ${k}; p++) {
      const a = F[a0 + r * ${sai} + p * ${sap}];
      const bp = b0 + p * ${sbp};
      for (let j = 0; j < ${n}; j++) acc[j] += a * F[bp + j * ${sbj}];
    }
    const cr = c0 + r * ${n};
    for (let j = 0; j < ${n}; j++) F[cr + j] = acc[j];
  }
}`;
}

function im2colSource(spec: Extract<KernelSpec, { kind: "im2col" }>): string {
  const g = spec.g;
  const cols = colCols(g);
  return `const x = o[0], out = o[1];
for (let c = 0; c < ${g.c}; c++)
for (let ki = 0; ki < ${g.kh}; ki++)
for (let kj = 0; kj < ${g.kw}; kj++) {
  let q = out + ((c * ${g.kh} + ki) * ${g.kw} + kj) * ${cols};
  for (let nn = 0; nn < ${g.n}; nn++) {
    const plane = x + (nn * ${g.c} + c) * ${g.h * g.w};
    for (let oh = 0; oh < ${g.outH}; oh++) {
      const ih = oh * ${g.strideH} - ${g.padTop} + ki * ${g.dilationH};
      if (ih < 0 || ih >= ${g.h}) { F.fill(0, q, q + ${g.outW}); q += ${g.outW}; continue; }
      const row = plane + ih * ${g.w};
      for (let ow = 0; ow < ${g.outW}; ow++) {
        const iw = ow * ${g.strideW} - ${g.padLeft} + kj * ${g.dilationW};
        F[q++] = iw >= 0 && iw < ${g.w} ? F[row + iw] : 0;
      }
    }
  }
}`;
}

function col2imSource(spec: Extract<KernelSpec, { kind: "col2im" }>): string {
  const g = spec.g;
  const cols = colCols(g);
  // Scatter form (each column entry added into its pixel), in the same summation order per
  // pixel as the gather of the WGSL kernel: taps (ki, kj) ascending.
  return `const src = o[0], x = o[1];
F.fill(0, x, x + ${g.n * g.c * g.h * g.w});
for (let c = 0; c < ${g.c}; c++)
for (let ki = 0; ki < ${g.kh}; ki++)
for (let kj = 0; kj < ${g.kw}; kj++) {
  let q = src + ((c * ${g.kh} + ki) * ${g.kw} + kj) * ${cols};
  for (let nn = 0; nn < ${g.n}; nn++) {
    const plane = x + (nn * ${g.c} + c) * ${g.h * g.w};
    for (let oh = 0; oh < ${g.outH}; oh++) {
      const ih = oh * ${g.strideH} - ${g.padTop} + ki * ${g.dilationH};
      if (ih < 0 || ih >= ${g.h}) { q += ${g.outW}; continue; }
      const row = plane + ih * ${g.w};
      for (let ow = 0; ow < ${g.outW}; ow++, q++) {
        const iw = ow * ${g.strideW} - ${g.padLeft} + kj * ${g.dilationW};
        if (iw >= 0 && iw < ${g.w}) F[row + iw] = fr(F[row + iw] + F[q]);
      }
    }
  }
}`;
}

function maxPoolSource(spec: Extract<KernelSpec, { kind: "maxPool2d" }>): string {
  const g = spec.g;
  return `const x = o[0], out = o[1], idx = o[1] + ${spec.idxOffset};
let i = 0;
for (let plane = 0; plane < ${g.n * g.c}; plane++) {
  const base = x + plane * ${g.h * g.w};
  for (let oh = 0; oh < ${g.outH}; oh++)
  for (let ow = 0; ow < ${g.outW}; ow++, i++) {
    const h0 = oh * ${g.strideH} - ${g.padTop}, w0 = ow * ${g.strideW} - ${g.padLeft};
    let best = 0, bestIdx = -1;
    for (let ki = 0; ki < ${g.kh}; ki++) {
      const h = h0 + ki;
      if (h < 0 || h >= ${g.h}) continue;
      for (let kj = 0; kj < ${g.kw}; kj++) {
        const w = w0 + kj;
        if (w < 0 || w >= ${g.w}) continue;
        const at = h * ${g.w} + w, v = F[base + at];
        if (bestIdx < 0 || (best === best && (v !== v || v > best))) { best = v; bestIdx = at; }
      }
    }
    F[out + i] = best;
    I[idx + i] = bestIdx;
  }
}`;
}

function maxPoolBackwardSource(spec: Extract<KernelSpec, { kind: "maxPool2dBackward" }>): string {
  const g = spec.g;
  return `const grad = o[0], idx = o[1], dx = o[2];
F.fill(0, dx, dx + ${g.n * g.c * g.h * g.w});
let i = 0;
for (let plane = 0; plane < ${g.n * g.c}; plane++) {
  const base = dx + plane * ${g.h * g.w};
  for (let k = 0; k < ${g.outH * g.outW}; k++, i++) {
    const at = I[idx + i];
    if (at >= 0) F[base + at] = fr(F[base + at] + F[grad + i]);
  }
}`;
}

function adamSource(spec: Extract<KernelSpec, { kind: "adam" }>): string {
  const { start, n, slot } = spec.span;
  const grad = spec.decay === "l2" ? "F[g + e] + wd * p" : "F[g + e]";
  const decayed = spec.decay === "decoupled" ? "p - lr * wd * p" : "p";
  return `const h = o[0], t = F[o[1] + ${slot}], par = o[2], g = o[3], m = o[4], v = o[5];
const lr = F[h], b1 = F[h + 1], b2 = F[h + 2], eps = F[h + 3], wd = F[h + 4];
const omb1 = F[h + 5], omb2 = F[h + 6];
const stepSize = lr / oneMinusPow(F[h + 7], t);
const rootBc2 = Math.sqrt(oneMinusPow(F[h + 8], t));
for (let e = ${start}; e < ${start + n}; e++) {
  const p = F[par + e];
  const gr = ${grad};
  const m1 = fr(b1 * F[m + e] + omb1 * gr);
  const v1 = fr(b2 * F[v + e] + omb2 * gr * gr);
  F[m + e] = m1;
  F[v + e] = v1;
  F[par + e] = ${decayed} - stepSize * m1 / (Math.sqrt(v1) / rootBc2 + eps);
}`;
}

function sgdSource(spec: Extract<KernelSpec, { kind: "sgd" }>): string {
  const { start, n, slot } = spec.span;
  const dir = spec.momentum
    ? `const b = first ? gr : fr(mom * F[buf + e] + omd * gr);
  F[buf + e] = b;
  const d = ${spec.nesterov ? "fr(gr + mom * b)" : "b"};`
    : "const d = gr;";
  return `const h = o[0], first = F[o[1] + ${slot}] === 1, par = o[2], g = o[3], buf = o[4];
const lr = F[h], mom = F[h + 1], wd = F[h + 3], omd = F[h + 4];
for (let e = ${start}; e < ${start + n}; e++) {
  const p = F[par + e];
  const gr = fr(F[g + e] + wd * p);
  ${dir}
  F[par + e] = p - lr * d;
}`;
}

function randomSource(spec: Extract<KernelSpec, { kind: "random" }>): string {
  const a = Math.fround(spec.a), b = Math.fround(spec.b);
  const unit = (lane: number) => `((rand(seed, stream, i, ${lane}) >>> 8) * ${1 / 16777216})`;
  const value = spec.dist === "uniform"
    ? `${a} + ${Math.fround(b - a)} * ${unit(0)}`
    : spec.dist === "normal"
    ? `${a} + ${b} * Math.sqrt(-2 * Math.log(((rand(seed, stream, i, 0) >>> 8) + 1) * ${
      1 / 16777216
    })) * Math.cos(6.283185307179586 * ${unit(1)})`
    : `(${unit(0)} < ${a} ? 1 : 0)`;
  return `const seed = U[o[0]], stream = U[o[0] + 1], out = o[1];
for (let i = 0; i < ${spec.n}; i++) F[out + i] = ${value};`;
}

/** One step of the fused LSTM scan (buffers and layout: `LstmStepSpec` in gpu/kernel.ts). */
function lstmStepSource(s: Extract<KernelSpec, { kind: "lstmStep" }>): string {
  const H = s.h, bh = s.b * s.h, acts = lstmActsOffset(s), m = s.masked ? 1 : 0;
  const head = `const t = I[o[${s.backward ? 1 + m : 2 + m}]];
const hp0 = ${s.reverse ? "(t + 1)" : "t"} * ${2 * s.slot}, hn0 = ${
    s.reverse ? "t" : "(t + 1)"
  } * ${2 * s.slot};
for (let b = 0; b < ${s.b}; b++) {
  const valid = ${s.masked ? `F[MASK + b * ${s.steps} + t] !== 0` : "true"};
  for (let j = 0; j < ${H}; j++) {
    const i = b * ${H} + j, hp = S + hp0 + i, hn = S + hn0 + i;
    const g0 = (b * ${s.steps} + t) * ${4 * H} + j, a = S + ${acts} + g0;`;
  if (!s.backward) {
    return `const P = o[0], R = o[1]${s.masked ? ", MASK = o[2]" : ""}, S = o[${3 + m}];
${head}
    const r0 = R + b * ${4 * H} + j, p0 = P + g0;
    const ig = sigmoidf(fr(F[p0] + F[r0]));
    const fg = sigmoidf(fr(F[p0 + ${H}] + F[r0 + ${H}]));
    const gg = tanhf(fr(F[p0 + ${2 * H}] + F[r0 + ${2 * H}]));
    const og = sigmoidf(fr(F[p0 + ${3 * H}] + F[r0 + ${3 * H}]));
    const cPrev = F[hp + ${s.slot}];
    const c = fr(fr(fg * cPrev) + fr(ig * gg));
    const h = fr(og * tanhf(c));
    F[hn] = valid ? h : F[hp];
    F[hn + ${s.slot}] = valid ? c : cPrev;
    F[a] = ig; F[a + ${H}] = fg; F[a + ${2 * H}] = gg; F[a + ${3 * H}] = og;
  }
}`;
  }
  return `const S = o[0]${s.masked ? ", MASK = o[1]" : ""}, DS = o[${2 + m}], DH = o[${
    3 + m
  }], CI = o[${4 + m}], DP = o[${5 + m}], CO = o[${6 + m}];
${head}
    const ig = F[a], fg = F[a + ${H}], gg = F[a + ${2 * H}], og = F[a + ${3 * H}];
    const cPrev = F[hp + ${s.slot}];
    const c = fr(fr(fg * cPrev) + fr(ig * gg));
    const tc = tanhf(c);
    const gh = fr(fr(F[DS + hn0 + i] + F[DH + i]) + F[CI + ${5 * bh} + i]);
    const gc = fr(F[DS + hn0 + ${s.slot} + i] + F[CI + ${4 * bh} + i]);
    const dh = valid ? gh : 0;
    const dc = fr((valid ? gc : 0) + fr(fr(dh * og) * fr(1 - fr(tc * tc))));
    const di = fr(fr(fr(dc * gg) * ig) * fr(1 - ig));
    const df = fr(fr(fr(dc * cPrev) * fg) * fr(1 - fg));
    const dg = fr(fr(dc * ig) * fr(1 - fr(gg * gg)));
    const dO = fr(fr(fr(dh * tc) * og) * fr(1 - og));
    const d = DP + g0, q = CO + b * ${4 * H} + j;
    F[d] = di; F[d + ${H}] = df; F[d + ${2 * H}] = dg; F[d + ${3 * H}] = dO;
    F[q] = di; F[q + ${H}] = df; F[q + ${2 * H}] = dg; F[q + ${3 * H}] = dO;
    F[CO + ${4 * bh} + i] = fr(fr(dc * fg) + (valid ? 0 : gc));
    F[CO + ${5 * bh} + i] = valid ? 0 : gh;
  }
}`;
}

function categoricalSource(spec: Extract<KernelSpec, { kind: "categorical" }>): string {
  const [probs, out] = spec.rowSeeds ? ["o[2]", "o[3]"] : ["o[1]", "o[2]"];
  const unit = spec.rowSeeds
    ? `(rand(U[o[1] + row], stream, 0, 0) >>> 8) * ${1 / 16777216}`
    : `(rand(seed, stream, row, 0) >>> 8) * ${1 / 16777216}`;
  return `const seed = U[o[0]], stream = U[o[0] + 1], probs = ${probs}, out = ${out};
for (let row = 0; row < ${spec.rows}; row++) {
  const base = probs + row * ${spec.k};
  let total = 0;
  for (let j = 0; j < ${spec.k}; j++) total = fr(total + Math.max(F[base + j], 0));
  const u = fr(fr(${unit}) * total);
  let acc = 0, pick = ${spec.k - 1};
  for (let j = 0; j < ${spec.k}; j++) {
    acc = fr(acc + Math.max(F[base + j], 0));
    if (u < acc) { pick = j; break; }
  }
  I[out + row] = pick;
}`;
}

/** The JavaScript body of `spec`'s kernel (the parameters are `F, I, U, o` and the helpers). */
export function kernelSource(spec: KernelSpec): string {
  switch (spec.kind) {
    case "map":
      return mapSource(spec);
    case "place":
      return placeSource(spec);
    case "pack":
      throw new Error("kernelSource: a pack runs as its parts' maps (CpuBackend)");
    case "reduce":
      return reduceSource(spec);
    case "matmul":
      return matmulSource(spec);
    case "im2col":
      return im2colSource(spec);
    case "col2im":
      return col2imSource(spec);
    case "maxPool2d":
      return maxPoolSource(spec);
    case "maxPool2dBackward":
      return maxPoolBackwardSource(spec);
    case "gatherRows":
      return `const t = o[0], idx = o[1], out = o[2];
for (let r = 0; r < ${spec.n}; r++) {
  const row = I[idx + r], dst = out + r * ${spec.dim};
  if (row >= 0 && row < ${spec.rows}) F.copyWithin(dst, t + row * ${spec.dim}, t + (row + 1) * ${spec.dim});
  else F.fill(0, dst, dst + ${spec.dim});
}`;
    case "scatterAddRows":
      return `const src = o[0], idx = o[1], t = o[2];
for (let r = 0; r < ${spec.n}; r++) {
  const row = I[idx + r];
  if (row < 0 || row >= ${spec.rows}) continue;
  const s = src + r * ${spec.dim}, d = t + row * ${spec.dim};
  for (let j = 0; j < ${spec.dim}; j++) F[d + j] = fr(F[d + j] + F[s + j]);
}`;
    case "pick":
      return `const x = o[0], idx = o[1], out = o[2];
for (let r = 0; r < ${spec.rows}; r++) {
  const c = I[idx + r];
  F[out + r] = c >= 0 && c < ${spec.k} ? F[x + r * ${spec.k} + c] : 0;
}`;
    case "unpick":
      return `const g = o[0], idx = o[1], out = o[2];
F.fill(0, out, out + ${spec.rows * spec.k});
for (let r = 0; r < ${spec.rows}; r++) {
  const c = I[idx + r];
  if (c >= 0 && c < ${spec.k}) F[out + r * ${spec.k} + c] = F[g + r];
}`;
    case "adam":
      return adamSource(spec);
    case "sgd":
      return sgdSource(spec);
    case "advance":
      return `F[o[0] + ${spec.slot}] += 1;`;
    case "norm":
      return `const x = o[0] + ${spec.start};
let acc = 0;
for (let i = 0; i < ${spec.n}; i++) { const g = F[x + i]; acc += g * g; }
F[o[1] + ${spec.outIndex}] = Math.sqrt(acc);`;
    case "clipScale":
      return `const total = F[o[0]], g = o[1] + ${spec.start};
const bad = total !== total || total === Infinity || total === -Infinity;
const coef = bad ? NaN : fr(Math.min(fr(${Math.fround(spec.maxNorm)} / fr(total + 1e-6)), 1));
for (let i = 0; i < ${spec.n}; i++) F[g + i] = fr(F[g + i] * coef);`;
    case "random":
      return randomSource(spec);
    case "categorical":
      return categoricalSource(spec);
    case "lstmStep":
      return lstmStepSource(spec);
  }
}

/** Compiles `spec` into a {@link CpuKernel}. */
export function compileKernel(spec: KernelSpec): CpuKernel {
  const body = kernelSource(spec);
  let make: (...helpers: unknown[]) => CpuKernel;
  try {
    make = new Function(
      ...H,
      `"use strict";\nreturn function kernel(F, I, U, o) {\n${body}\n};`,
    ) as (
      ...helpers: unknown[]
    ) => CpuKernel;
  } catch (err) {
    const numbered = body.split("\n").map((l, i) => `${String(i + 1).padStart(4)}| ${l}`);
    throw new Error(
      `CPU kernel '${spec.kind}' failed to compile: ${(err as Error).message}\n--- source ---\n` +
        numbered.join("\n"),
    );
  }
  return make(...H.map((h) => HELPERS[h as keyof typeof HELPERS]));
}

/** Rows and columns of im2col output (re-exported for the backend's size checks). */
export { colCols, colRows, contiguousStrides };
