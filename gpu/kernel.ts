/**
 * The backend-neutral kernel description: what the layers above `gpu/` ask a backend to run.
 *
 * A {@link KernelSpec} names one kernel family with its parameters (shapes, strides, geometry);
 * each backend renders it its own way (WGSL for WebGPU in gpu/webgpu/, JavaScript and WebAssembly
 * for the CPU in gpu/cpu/) and caches the result under {@link kernelKey}. Elementwise work is an
 * expression tree ({@link Expr}) over the inputs, so a chain of unary/binary/where ops can be ONE
 * kernel (the fusion itself is decided in one place, tensor/lazy.ts).
 *
 * Buffers are passed to `Backend.run` as a list of {@link BufferRef}s in the order each family
 * documents; the last buffer of most families is the output. Element types are 4 bytes.
 * @module
 */

/** Element types a tensor can hold. */
export type DType = "f32" | "i32" | "u32";

/** Bytes per element of every {@link DType}. */
export const BYTES_PER_ELEMENT = 4;

/** Product of a shape's dimensions. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major (contiguous) strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}

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

// ---------------------------------------------------------------- other families

/** Reduction operator. */
export type ReduceOp = "sum" | "max" | "argmax";

/** A reduction split into kept (output) dims and reduced dims, with each input's strides. */
export interface ReducePlan {
  /** Kept dimensions (output shape after collapsing). */
  keepShape: number[];
  /** Per input: its strides over the kept dimensions. */
  keepStrides: number[][];
  /** Reduced dimensions (collapsed). */
  redShape: number[];
  /** Per input: its strides over the reduced dimensions. */
  redStrides: number[][];
}

/**
 * Splits `shape` into kept and reduced dimensions for inputs read through `strides` (one array
 * per input, over `shape`'s dims; default: one contiguous input), merging adjacent dims of the
 * same kind where every input allows it.
 */
export function planReduce(
  shape: readonly number[],
  axes: readonly number[],
  strides: readonly (readonly number[])[] = [contiguousStrides(shape)],
): ReducePlan {
  const plan: ReducePlan = {
    keepShape: [],
    keepStrides: strides.map(() => []),
    redShape: [],
    redStrides: strides.map(() => []),
  };
  let lastKind: "keep" | "red" | null = null;
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const kind = axes.includes(d) ? "red" : "keep";
    const s = kind === "red" ? plan.redShape : plan.keepShape;
    const st = kind === "red" ? plan.redStrides : plan.keepStrides;
    const n = s.length;
    if (kind === lastKind && strides.every((x, k) => st[k][n - 1] === x[d] * shape[d])) {
      s[n - 1] *= shape[d];
      strides.forEach((x, k) => (st[k][n - 1] = x[d]));
    } else {
      s.push(shape[d]);
      strides.forEach((x, k) => st[k].push(x[d]));
    }
    lastKind = kind;
  }
  return plan;
}

/**
 * One map of a `pack` kernel: `out[outOffset + i] = expr(inputs...)` over `shape`, where input k
 * is the kernel's buffer `bind[k]` read through `inputs[k]`'s strides and offset.
 */
export interface PackPart {
  /** The value of each element. */
  expr: Expr;
  /** The part's shape. */
  shape: number[];
  /** The part's inputs (dtype, strides over `shape`, element offset). */
  inputs: MapInput[];
  /** The kernel buffer each input reads. */
  bind: number[];
  /** Element offset of the part's block in the output. */
  outOffset: number;
}

/** Shape and layout of a (batched) matmul C[b] = op(A[b]) @ op(B[b]). */
export interface MatmulSpec {
  /** Batch count of the output. */
  batch: number;
  /** Rows of C. */
  m: number;
  /** Contraction length. */
  k: number;
  /** Columns of C. */
  n: number;
  /** A is stored as [K, M] (and read transposed). */
  transA: boolean;
  /** B is stored as [N, K] (and read transposed). */
  transB: boolean;
  /** Element stride between consecutive batches of A (0 broadcasts A). */
  batchStrideA: number;
  /** Element stride between consecutive batches of B (0 broadcasts B). */
  batchStrideB: number;
}

/** The geometry of a 2-D convolution window sliding over an NCHW image. */
export interface ConvGeometry {
  /** Batch size. */
  n: number;
  /** Channels. */
  c: number;
  /** Image height. */
  h: number;
  /** Image width. */
  w: number;
  /** Kernel height. */
  kh: number;
  /** Kernel width. */
  kw: number;
  /** Vertical stride. */
  strideH: number;
  /** Horizontal stride. */
  strideW: number;
  /** Zero rows added above the image (rows added below follow from `outH`). */
  padTop: number;
  /** Zero columns added left of the image (columns added right follow from `outW`). */
  padLeft: number;
  /** Vertical dilation (1 = dense kernel). */
  dilationH: number;
  /** Horizontal dilation. */
  dilationW: number;
  /** Output (window-position) height. */
  outH: number;
  /** Output (window-position) width. */
  outW: number;
}

/** Rows of the im2col column matrix: `c * kh * kw`. */
export function colRows(g: ConvGeometry): number {
  return g.c * g.kh * g.kw;
}

/** Columns of the im2col column matrix: `n * outH * outW`. */
export function colCols(g: ConvGeometry): number {
  return g.n * g.outH * g.outW;
}

/** Where an optimizer update works: elements [start, start + n) of flat buffers, counter `slot`. */
export interface UpdateSpan {
  /** First element. */
  start: number;
  /** Number of elements. */
  n: number;
  /** Index of the step counter in the counters buffer. */
  slot: number;
}

/** How weight decay enters an update: added to the gradient (L2), or decoupled (AdamW). */
export type WeightDecayMode = "l2" | "decoupled";

/**
 * Layout of the Adam hyperparameter buffer (f32 each, in this order). `oneMinusBeta1/2` and
 * `logBeta1/2` are computed on the host in double precision: in f32, `1 - 0.999` is off by 1e-5
 * relative (as PyTorch, which computes it in Python floats); the logs feed the bias corrections
 * `1 - beta^t = -expm1(t ln beta)`.
 */
export const ADAM_HYPER = [
  "lr",
  "beta1",
  "beta2",
  "eps",
  "weightDecay",
  "oneMinusBeta1",
  "oneMinusBeta2",
  "logBeta1",
  "logBeta2",
] as const;

/** Layout of the SGD hyperparameter buffer (f32 each, in this order). */
export const SGD_HYPER = [
  "lr",
  "momentum",
  "dampening",
  "weightDecay",
  "oneMinusDampening",
] as const;

/** Most f32 values a hyperparameter buffer holds. */
export const HYPER_SLOTS = 16;

/**
 * The counts a {@link Gate} over an optimizer kernel of `n` elements should hold when the work
 * is to run. Any non-zero counts are correct (the kernels loop over their range); these are the
 * fastest on WebGPU, where they are the workgroup counts: one 64-thread workgroup per 64
 * elements, at most 4096.
 */
export function gateSize(n: number): [number, number, number] {
  return [Math.min(Math.max(Math.ceil(n / 64), 1), 4096), 1, 1];
}

/** Distribution of a random fill. */
export type RandomKind = "uniform" | "normal" | "bernoulli";

/**
 * Every kernel family, with the buffers `Backend.run` takes in order:
 *
 * | kind | buffers |
 * |---|---|
 * | map | inputs..., out (read_write, from element `outOffset`; `E.out()` reads it) |
 * | pack | inputs..., out: several maps in one kernel, part p into `out[outOffset_p + i]` |
 * | place | src, out: `out[offset + Σ coord_d outStrides[d]] = src[i]` (or `+=`) |
 * | reduce | inputs..., out (kept dims, row-major; argmax out is i32): reduces `expr` over `shape` |
 * | matmul | A, B, C |
 * | im2col / col2im | image, cols / cols, image |
 * | maxPool2d | x, out (maxima, then i32 argmax indices from element `idxOffset`) |
 * | maxPool2dBackward | grad, idx (i32), dx |
 * | gatherRows / scatterAddRows | table, idx, out / src, idx, table |
 * | pick / unpick | x, idx, out / g, idx, out |
 * | adam | hyper, counters, params, grads, m, v |
 * | sgd | hyper, counters, params, grads, [momentum buffer] |
 * | advance | counters (slot += 1) |
 * | norm | x, out (`out[outIndex] = ‖x[start, start+n)‖₂`) |
 * | clipScale | norm, grads (scaled by min(1, maxNorm / (norm + 1e-6))) |
 * | random | params (u32 seed, stream), out |
 * | categorical | params, [row seeds], probs, out (i32) |
 *
 * Only the optimizer families (adam, sgd, advance, norm, clipScale) may be gated (see `Gate`).
 */
export type KernelSpec =
  | {
    kind: "map";
    /** The value of each output element. */
    expr: Expr;
    /** Output shape. */
    shape: number[];
    /** The inputs, read through their strides. */
    inputs: MapInput[];
    /** Output element type. */
    out: DType;
    /**
     * Element offset in the output buffer of output element 0 (default 0): the map writes (and
     * `E.out()` reads) a contiguous region inside a larger buffer, e.g. one part of a concat.
     */
    outOffset?: number;
  }
  | {
    kind: "pack";
    /** Output element type (the output is the last buffer). */
    out: DType;
    /** Element type of each input buffer (the buffers before the output). */
    buffers: DType[];
    /** The maps run by this one kernel, each into its own contiguous block of the output. */
    parts: PackPart[];
  }
  | {
    kind: "place";
    shape: number[];
    outStrides: number[];
    offset: number;
    dtype: DType;
    /** Add into the region instead of overwriting it (f32). */
    accumulate?: boolean;
  }
  | {
    kind: "reduce";
    op: ReduceOp;
    /** The shape reduced over (before reduction). */
    shape: number[];
    /** Reduced axes of `shape`. */
    axes: number[];
    /** The value reduced at each element of `shape` (a fused elementwise prologue). */
    expr: Expr;
    /** The expression's inputs, read through strides over `shape`. */
    inputs: MapInput[];
  }
  | ({ kind: "matmul" } & MatmulSpec)
  | { kind: "im2col"; g: ConvGeometry }
  | { kind: "col2im"; g: ConvGeometry }
  | { kind: "maxPool2d"; g: ConvGeometry; idxOffset: number }
  | { kind: "maxPool2dBackward"; g: ConvGeometry }
  | { kind: "gatherRows"; rows: number; dim: number; n: number }
  | { kind: "scatterAddRows"; rows: number; dim: number; n: number }
  | { kind: "pick"; rows: number; k: number }
  | { kind: "unpick"; rows: number; k: number }
  | { kind: "adam"; span: UpdateSpan; decay: WeightDecayMode }
  | { kind: "sgd"; span: UpdateSpan; momentum: boolean; nesterov: boolean }
  | { kind: "advance"; slot: number }
  | { kind: "norm"; start: number; n: number; outIndex: number }
  | { kind: "clipScale"; start: number; n: number; maxNorm: number }
  | { kind: "random"; dist: RandomKind; n: number; a: number; b: number }
  | { kind: "categorical"; rows: number; k: number; rowSeeds: boolean }
  | ({ kind: "lstmStep" } & LstmStepSpec);

/**
 * One time step of a fused LSTM scan (tensor/rnn_ops.ts), forward or backward, one thread per
 * (batch row, hidden unit). The step index `t` is read from a one-element i32 buffer bound at a
 * 256-byte-aligned offset, so every step of a sequence runs the same kernel.
 *
 * The state storage holds `steps + 1` slots of `[h | c]`, each part `slot` elements (>= b * h,
 * padded to 64 so each part starts 256-byte aligned), then the gate activations `[b, steps, 4h]`
 * (sigmoid i, sigmoid f, tanh g, sigmoid o). Step `t` reads slot `t` and writes slot `t + 1`
 * (`reverse`: reads `t + 1`, writes `t`). A masked step (mask[b, t] == 0) carries the state.
 *
 * Buffers, forward: proj `[b, steps, 4h]` (input projection with bias), r `[b, 4h]` (h_prev @
 * W_hh^T), mask `[b, steps]` (when `masked`), step, state (read_write).
 * Backward: state, mask (when `masked`), step, dState (the gradient of the state slots), dhIn
 * `[b, h]` (dGates of the later step @ W_hh), cin (the later step's cout), then written: dProj
 * `[b, steps, 4h]` (slice t), cout `[dGates b*4h | dc_prev b*h | dh pass-through b*h]`.
 */
export interface LstmStepSpec {
  /** Backward step (else forward). */
  backward: boolean;
  /** Steps run from the last to the first. */
  reverse: boolean;
  /** Padded sequences: a mask buffer `[b, steps]` gates the update. */
  masked: boolean;
  /** Batch rows. */
  b: number;
  /** Hidden units. */
  h: number;
  /** Sequence length. */
  steps: number;
  /** Elements per state part (see above). */
  slot: number;
}

/** Element offset of the gate activations in an LSTM scan's state storage. */
export function lstmActsOffset(s: LstmStepSpec): number {
  return (s.steps + 1) * 2 * s.slot;
}

/** The kernel families. */
export type KernelKind = KernelSpec["kind"];

/** Families whose work may be gated by a GPU value (correct for any dispatch size). */
export const GATEABLE: ReadonlySet<KernelKind> = new Set<KernelKind>([
  "adam",
  "sgd",
  "advance",
  "norm",
  "clipScale",
]);

/**
 * A compact cache key for a spec (backends cache what they render under it). Specs are plain
 * data built with a fixed property order, so their JSON is a stable key.
 */
export function kernelKey(spec: KernelSpec): string {
  return JSON.stringify(spec);
}

/** A short name for a spec (profiles and error messages): the family, or the map's op. */
export function kernelName(spec: KernelSpec): string {
  if (spec.kind !== "map" && spec.kind !== "reduce") return spec.kind;
  const e = spec.expr;
  const ops = exprNodes(e).filter((x) => x.op !== "in" && x.op !== "const" && x.op !== "out");
  const body = ops.length <= 3 ? ops.map((x) => x.op).join("_") : `fused${ops.length}`;
  if (spec.kind === "reduce") return body ? `${spec.op}(${body})` : spec.op;
  return e.op === "in" ? "copy" : e.op === "const" ? "fill" : body;
}

/** Useful floating-point work of a spec, for GFLOP/s in profiles (multiply-add = 2). */
export function kernelFlops(spec: KernelSpec): number {
  switch (spec.kind) {
    case "matmul":
      return 2 * spec.batch * spec.m * spec.n * spec.k;
    case "map":
      return numel(spec.shape) *
        exprNodes(spec.expr).filter((x) => !["in", "out", "const"].includes(x.op)).length;
    case "pack":
      return spec.parts.reduce(
        (acc, p) =>
          acc +
          numel(p.shape) *
            exprNodes(p.expr).filter((x) => !["in", "out", "const"].includes(x.op)).length,
        0,
      );
    case "reduce":
      return numel(spec.shape) *
        (1 + exprNodes(spec.expr).filter((x) => !["in", "out", "const"].includes(x.op)).length);
    default:
      return 0;
  }
}

/** The shape part of a spec (profiles group calls of one family by it). */
export function kernelShape(spec: KernelSpec): string {
  switch (spec.kind) {
    case "map":
    case "place":
    case "reduce":
      return `[${spec.shape.join(",")}]`;
    case "pack":
      return `${spec.parts.length}x[${spec.parts.reduce((a, p) => a + numel(p.shape), 0)}]`;
    case "matmul":
      return `${spec.batch > 1 ? `${spec.batch}x` : ""}${spec.m}x${spec.k}x${spec.n}${
        spec.transA ? " tA" : ""
      }${spec.transB ? " tB" : ""}`;
    case "im2col":
    case "col2im":
    case "maxPool2d":
    case "maxPool2dBackward": {
      const g = spec.g;
      return `[${g.n},${g.c},${g.h},${g.w}] k${g.kh}x${g.kw} s${g.strideH}`;
    }
    case "gatherRows":
    case "scatterAddRows":
      return `${spec.n}x${spec.dim} of ${spec.rows}`;
    case "pick":
    case "unpick":
      return `${spec.rows}x${spec.k}`;
    case "adam":
    case "sgd":
      return `${spec.span.n}`;
    case "norm":
    case "clipScale":
      return `${spec.n}`;
    case "random":
      return `${spec.n}`;
    case "categorical":
      return `${spec.rows}x${spec.k}`;
    case "lstmStep":
      return `${spec.b}x${spec.h}${spec.backward ? " bwd" : ""}`;
    default:
      return "";
  }
}

/**
 * Indices of the buffers a spec's kernel writes (the rest are only read): what a backend reports
 * to the write hook before running it (see `Backend.setWriteHook`).
 */
export function writtenBuffers(spec: KernelSpec, count: number): number[] {
  switch (spec.kind) {
    case "adam":
      return [2, 4, 5];
    case "sgd":
      return spec.momentum ? [2, 4] : [2];
    case "advance":
      return [0];
    case "lstmStep":
      return spec.backward ? [count - 2, count - 1] : [count - 1];
    default:
      return [count - 1];
  }
}
