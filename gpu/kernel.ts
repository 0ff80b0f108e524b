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

import { contiguousStrides, type DType, numel } from "./dtype.ts";
import { type Expr, exprNodes, type MapInput } from "./kernel_expr.ts";

// Element types and shape helpers (dtype.ts) and the elementwise expressions (kernel_expr.ts) live
// in their own files; re-exported whole so `kernel.ts` stays the one module to import.
export * from "./dtype.ts";
export * from "./kernel_expr.ts";

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
