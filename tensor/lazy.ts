/**
 * Elementwise fusion, decided in this one place. Elementwise primitives (unary, binary, where,
 * cast, expand, permute, slice) do not run a kernel: they return a PENDING tensor holding an
 * expression tree over its inputs ({@link PendingMap}). A pending input read by broadcasting is
 * inlined into its consumer's expression, so a chain of ops becomes one kernel; the chain runs
 * when something needs the memory (a matmul, a reduction, a read, an in-place write): then
 * `Tensor.realize()` runs ONE map kernel for it.
 *
 * Rules:
 * - an input is inlined only when read whole through broadcasting and/or a permutation of its
 *   dims (the leaves are then read through the same dims), at most once: a pending tensor that a second consumer reads is computed instead (so shared
 *   subexpressions are not recomputed more than once), unless it is cheap (a slice, a cast, at
 *   most {@link MAX_CHEAP_NODES} simple ops): then every reader recomputes it, which costs less
 *   than a kernel that stores it;
 * - a fused expression has at most {@link MAX_LEAVES} distinct inputs and {@link MAX_NODES}
 *   nodes, else its pending inputs are computed and read as plain inputs;
 * - writes never race a pending tensor: before any storage is written, the backend's write hook
 *   computes the pending tensors that read it (tensor/tensor.ts `realizeReaders`);
 * - an in-place map (`runInPlace`) never inlines an input that reads its own destination (a
 *   kernel cannot read and write one buffer).
 * @module
 */

import { backend, type BufferRef } from "../gpu/backend.ts";
import {
  contiguousStrides,
  type DType,
  E,
  type Expr,
  exprNodes,
  numel,
  type PackPart,
} from "../gpu/kernel.ts";
import { Bindings, runLeafMap } from "./leaf_map.ts";
import { type Leaf, type PendingMap, Tensor } from "./tensor.ts";

/**
 * Most distinct input buffers of a fused kernel (WebGPU binds each as a storage buffer; a map
 * binds a buffer read at several offsets once, a reduction's prologue once per input).
 */
export const MAX_LEAVES = 6;

/** Most nodes of a fused expression. */
export const MAX_NODES = 48;

let fusion = true;

/**
 * Turns elementwise fusion on (default) or off; returns the previous setting. Off, every
 * elementwise op runs its own kernel when its result is used (tests compare both ways).
 */
export function setFusion(on: boolean): boolean {
  const was = fusion;
  fusion = on;
  return was;
}

/** An operand of a map: a tensor (maybe pending) or a raw region, read through strides. */
export interface Operand {
  /** The tensor read (computed first unless it can be inlined). */
  tensor?: Tensor;
  /** A raw region (constant buffers). */
  ref?: BufferRef;
  /** Element type. */
  dtype: DType;
  /** Strides per output dimension over the operand's contiguous layout (0 = broadcast). */
  strides: number[];
  /** Element offset of the first element read (default 0). */
  offset?: number;
}

/**
 * How `strides` read a contiguous tensor of `shape` into `out`, when each output dim reads one
 * dim of the tensor whole or broadcasts (stride 0), every tensor dim above size 1 read exactly
 * once (plain broadcasting, permutations, and both): for each output dim the tensor dim it
 * reads, or -1 (broadcast or size 1). Null for any other read (slices, offsets, overlaps).
 */
function dimMap(
  shape: readonly number[],
  strides: readonly number[],
  out: readonly number[],
): number[] | null {
  const own = new Array<number>(shape.length);
  let expect = 1;
  for (let j = shape.length - 1; j >= 0; j--) {
    own[j] = expect;
    expect *= shape[j];
  }
  const used = new Set<number>();
  const map: number[] = [];
  for (let d = 0; d < out.length; d++) {
    if (strides[d] === 0 || out[d] === 1) {
      map.push(-1);
      continue;
    }
    const j = own.findIndex((st, k) => shape[k] > 1 && st === strides[d]);
    if (j < 0 || shape[j] !== out[d] || used.has(j)) return null;
    used.add(j);
    map.push(j);
  }
  return shape.every((n, j) => n === 1 || used.has(j)) ? map : null;
}

/** `e` with every `in(i)` replaced by `subs[i]` (shared subtrees stay shared). */
function substitute(e: Expr, subs: readonly Expr[]): Expr {
  const memo = new Map<Expr, Expr>();
  const walk = (x: Expr): Expr => {
    const hit = memo.get(x);
    if (hit) return hit;
    let r: Expr;
    if (x.op === "in") r = subs[x.i];
    else if (x.op === "out" || x.op === "const") r = x;
    else if (x.op === "where") r = { op: "where", c: walk(x.c), a: walk(x.a), b: walk(x.b) };
    else if (x.op === "cast") r = { op: "cast", to: x.to, a: walk(x.a) };
    else if ("b" in x) r = { op: x.op, a: walk(x.a), b: walk(x.b) } as Expr;
    else r = { op: x.op, a: walk(x.a) } as Expr;
    memo.set(x, r);
    return r;
  };
  return walk(e);
}

/** Ops cheap enough to recompute in every reader (no transcendental, no division). */
const CHEAP_OPS: ReadonlySet<string> = new Set([
  "in",
  "const",
  "out",
  "cast",
  "neg",
  "abs",
  "sign",
  "relu",
  "square",
  "floor",
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
  "step",
  "where",
]);

/** Most op nodes of a pending expression that every reader may recompute. */
export const MAX_CHEAP_NODES = 2;

/** Whether `p` is cheap enough that recomputing it in a reader beats a kernel that stores it. */
function isCheap(p: PendingMap): boolean {
  const nodes = exprNodes(p.expr);
  return nodes.every((e) => CHEAP_OPS.has(e.op)) &&
    nodes.filter((e) => e.op !== "in" && e.op !== "const").length <= MAX_CHEAP_NODES;
}

/**
 * Whether a consumer may compute pending `t` itself: the first consumer may; later ones only if
 * `t` is cheap (a slice, a cast, one or two simple ops), else they read the computed tensor.
 */
function claimInline(t: Tensor, p: PendingMap): boolean {
  return !t.markInlined() || isCheap(p);
}

/**
 * The buffers `leaves` bind: one per leaf, or with `byRef` one per distinct buffer region (a map
 * binds a region read at several offsets once, see `runLeafMap`).
 */
function bindings(leaves: readonly Leaf[], byRef: boolean): number {
  return byRef ? new Set(leaves.map(Bindings.key)).size : leaves.length;
}

function leafKey(l: Leaf): string {
  return `${l.ref.storage.id}:${l.ref.offset}:${l.ref.numel}:${l.dtype}:${l.offset}:${l.strides}`;
}

/**
 * Builds the expression and leaves of `build(operands)` over `shape`, inlining pending operands
 * where the rules allow (see the module doc). `avoid` is a storage no leaf may read (the
 * destination of an in-place map).
 */
function plan(
  build: (ins: Expr[]) => Expr,
  shape: readonly number[],
  operands: readonly Operand[],
  op: string,
  avoid?: BufferRef,
  fuse = true,
  byRef = false,
): { expr: Expr; leaves: Leaf[] } {
  const leaves: Leaf[] = [];
  const index = new Map<string, number>();
  const add = (l: Leaf): Expr => {
    const key = leafKey(l);
    let i = index.get(key);
    if (i === undefined) {
      i = leaves.length;
      leaves.push(l);
      index.set(key, i);
    }
    return { op: "in", i };
  };
  const inlined: Tensor[] = [];
  const operandExpr = (o: Operand): Expr => {
    const t = o.tensor;
    const p = t?.pendingMap;
    const dims = fuse && t && p && !o.offset ? dimMap(t.shape, o.strides, shape) : null;
    if (
      t && p && dims && !(avoid && p.leaves.some((l) => l.ref.storage === avoid.storage)) &&
      claimInline(t, p)
    ) {
      inlined.push(t);
      // The leaves read through the same dims: broadcast and permutations commute with maps.
      const subs = p.leaves.map((l) =>
        add({ ...l, strides: dims.map((j) => (j < 0 ? 0 : l.strides[j])) })
      );
      return substitute(p.expr, subs);
    }
    const ref = t ? t.refFor(op) : o.ref!;
    return add({ ref, dtype: o.dtype, strides: o.strides, offset: o.offset ?? 0 });
  };
  // One operand tensor read the same way twice (`x.mul(x)`) is one subexpression, not a second
  // reader that would have to compute it.
  const same = new Map<Tensor, { o: Operand; e: Expr }[]>();
  const ins = operands.map((o): Expr => {
    const t = o.tensor;
    const prev = t &&
      same.get(t)?.find((x) =>
        x.o.dtype === o.dtype && (x.o.offset ?? 0) === (o.offset ?? 0) &&
        x.o.strides.length === o.strides.length && x.o.strides.every((v, d) => v === o.strides[d])
      );
    if (prev) return prev.e;
    const e = operandExpr(o);
    if (t) same.set(t, [...(same.get(t) ?? []), { o, e }]);
    return e;
  });
  const expr = build(ins);
  if (
    fuse && inlined.length &&
    (bindings(leaves, byRef) > MAX_LEAVES || exprNodes(expr).length > MAX_NODES)
  ) {
    // Too big to fuse: compute the pending operands and read them as plain inputs.
    for (const t of inlined) t.realize();
    return plan(build, shape, operands, op, avoid, false, byRef);
  }
  return { expr, leaves };
}

/**
 * The expression and inputs of `build(operands)` over `shape`, with pending operands fused where
 * the rules allow: for kernels that take an elementwise prologue (reductions).
 */
export function planMap(
  build: (ins: Expr[]) => Expr,
  shape: readonly number[],
  operands: readonly Operand[],
  op: string,
): { expr: Expr; leaves: Leaf[] } {
  return plan(build, shape, operands, op, undefined, fusion);
}

/**
 * A pending tensor of `shape` whose elements are `build(operands)` (computed, with whatever it
 * fused, on first use).
 */
export function lazyMap(
  build: (ins: Expr[]) => Expr,
  shape: readonly number[],
  operands: readonly Operand[],
  outDtype: DType,
  op: string,
): Tensor {
  const p = plan(build, shape, operands, op, undefined, fusion, true);
  return Tensor.pending(shape, outDtype, p, op);
}

/**
 * Runs `dst = build(operands)` now, in place (`E.out()` reads `dst`'s current value); `shape`
 * must have `dst`'s element count, or, with `outOffset`, fit in `dst` from that element (a
 * contiguous block of it). Pending operands are fused unless they read `dst`.
 */
export function runInPlace(
  build: (ins: Expr[]) => Expr,
  shape: readonly number[],
  operands: readonly Operand[],
  dst: Tensor,
  op: string,
  outOffset?: number,
): void {
  const n = numel(shape);
  if (outOffset === undefined ? n !== dst.size : n + outOffset > dst.size) {
    throw new Error(
      `${op}: ${n} values${
        outOffset ? ` at element ${outOffset}` : ""
      } do not fit ${dst.describe()}`,
    );
  }
  if (n === 0) return;
  const out = dst.refFor(op);
  const { expr, leaves } = plan(build, shape, operands, op, out, fusion, true);
  runLeafMap(expr, shape, leaves, out, dst.dtype, outOffset ?? 0);
}

/** One block of {@link packInto}: `t`'s elements (row-major) written from element `outOffset`. */
export interface PackBlock {
  /** The values (pending or computed, any dtype equal to the output's). */
  t: Tensor;
  /** Element offset of the block in the output. */
  outOffset: number;
}

/** Most maps in one `pack` kernel. */
export const MAX_PACK_PARTS = 16;

/** Most input buffers of one `pack` kernel (fewer where the backend binds fewer). */
export const MAX_PACK_BUFFERS = 15;

/**
 * Writes every block into `out` (a storage no pending tensor reads, e.g. fresh) in as few kernels
 * as the binding limit allows: one `pack` kernel per run of at most {@link MAX_PACK_PARTS} blocks
 * binding at most {@link MAX_PACK_BUFFERS} buffers. A pending block runs its own map into its place (when it may be
 * inlined; it stays pending for later readers), a computed one is copied.
 */
export function packInto(blocks: readonly PackBlock[], out: BufferRef, dtype: DType): void {
  const maxBuffers = Math.min(MAX_PACK_BUFFERS, backend().maxBindings - 1);
  type Block = { expr: Expr; shape: number[]; leaves: readonly Leaf[]; outOffset: number };
  let group: Block[] = [];
  let b = new Bindings();
  const flush = () => {
    if (group.length === 1) {
      const [p] = group;
      runLeafMap(p.expr, p.shape, p.leaves, out, dtype, p.outOffset);
    } else if (group.length > 1) {
      const parts: PackPart[] = group.map((p) => ({
        expr: p.expr,
        shape: p.shape,
        inputs: p.leaves.map((l) => ({ dtype: l.dtype, strides: l.strides, offset: l.offset })),
        bind: p.leaves.map((l) => b.bind(l)),
        outOffset: p.outOffset,
      }));
      backend().run({ kind: "pack", out: dtype, buffers: b.types, parts }, [...b.refs, out]);
    }
    group = [];
    b = new Bindings();
  };
  for (const { t, outOffset } of blocks) {
    if (t.size === 0) continue;
    if (t.dtype !== dtype) throw new Error(`packInto: ${t.describe()} into a ${dtype} output`);
    const p = t.pendingMap;
    const leaves: readonly Leaf[] = fusion && p && claimInline(t, p) ? p.leaves : [{
      ref: t.refFor("pack"),
      dtype,
      strides: contiguousStrides(t.shape),
      offset: 0,
    }];
    const expr = leaves === p?.leaves ? p.expr : E.in(0);
    const fresh = new Set(leaves.filter((l) => !b.has(l)).map(Bindings.key)).size;
    if (group.length >= MAX_PACK_PARTS || b.refs.length + fresh > maxBuffers) flush();
    for (const l of leaves) b.bind(l);
    group.push({ expr, shape: [...t.shape], leaves, outOffset });
  }
  flush();
}
