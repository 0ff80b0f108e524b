/**
 * The `Tensor` class: a contiguous, typed view of GPU memory with a shape, plus its autograd
 * links. Ops live in `ops.ts` (primitives) and `functional.ts` (compositions); gradient rules in
 * `autograd.ts`. Memory is released by `dispose()`, `using`, or a `tidy()` scope.
 * @module
 */

import { backend, type BufferRef, type Storage } from "../gpu/backend.ts";
import { contiguousStrides, type DType, numel } from "../gpu/kernel.ts";
// Circular by design: methods delegate to the op modules, which construct Tensors. Nothing from
// these modules is used while this module is being evaluated.
import * as ops from "./ops.ts";
import * as F from "./functional.ts";
import { backward as runBackward } from "./autograd.ts";
import { runLeafMap } from "./leaf_map.ts";
import {
  forgetZero,
  hookBackend,
  type HostArray,
  type Leaf,
  livePending,
  type PendingMap,
  readers,
} from "./pending.ts";

// The pending-tensor and known-zero bookkeeping lives in pending.ts; its public names are
// re-exported so they stay importable from `tensor.ts`.
export {
  type HostArray,
  isKnownZero,
  type Leaf,
  markZero,
  type PendingMap,
  realizeAllPending,
  realizeReaders,
} from "./pending.ts";

/** An autograd record: the primitive that produced a tensor, its inputs, and saved values. */
export interface Node {
  /** Primitive name (a key of the rule table in autograd.ts). */
  op: string;
  /** The inputs, in order. */
  inputs: Tensor[];
  /** Op parameters and anything the rule needs besides inputs and output. */
  params: Record<string, unknown>;
}

let nextTensorId = 1;

/** Scopes opened by {@link tidy}: every tensor created inside is recorded in the innermost. */
const scopes: Set<Tensor>[] = [];

/** Whether ops record autograd nodes (false inside {@link noGrad}). */
let gradEnabled = true;

/** True when autograd recording is on. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Runs `fn` without recording gradients (like `torch.no_grad()`).
 * @returns what `fn` returns.
 */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Values {@link tidy} looks through to find the tensors to keep. */
export type TensorContainer =
  | Tensor
  | null
  | undefined
  | void
  | number
  | string
  | boolean
  | TensorContainer[]
  | { [key: string]: TensorContainer };

function collect(value: unknown, out: Set<Tensor>): void {
  if (value instanceof Tensor) out.add(value);
  else if (Array.isArray(value)) { for (const v of value) collect(v, out); }
  else if (
    value && typeof value === "object" && Object.getPrototypeOf(value) === Object.prototype
  ) {
    for (const v of Object.values(value)) collect(v, out);
  }
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors it returns (found in
 * arrays and plain objects) and tensors passed to {@link keep}. Returned tensors move to the
 * enclosing scope. Parameter gradients assigned by `backward()` are never disposed by a scope.
 */
export function tidy<T extends TensorContainer>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of scope) if (!kept.has(t)) t.dispose();
  const parent = scopes[scopes.length - 1];
  // Only tensors of this scope move up: a returned input (an identity layer) stays where it was.
  if (parent) { for (const t of kept) if (!t.isDisposed && scope.has(t)) parent.add(t); }
  return result;
}

/**
 * Removes `t` from every open {@link tidy} scope, so the scope will not dispose it. A kept tensor
 * is long-lived state, so a pending (fused) one is computed here: state carried from step to step
 * must not grow into an ever longer expression.
 */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  t.realize();
  return t;
}

/** A multi-dimensional array on the GPU. Create with `tensor()`, `zeros()`, `randn()`, ... */
export class Tensor {
  /** Unique id (debugging and graph bookkeeping). */
  readonly id: number = nextTensorId++;
  /** Dimensions. */
  readonly shape: readonly number[];
  /** Element type. */
  readonly dtype: DType;
  #offset: number;
  /** Whether gradients flow to this tensor. */
  requiresGrad = false;
  /** Accumulated gradient (set by `backward()` on tensors with `requiresGrad`). */
  grad: Tensor | null = null;
  /** The autograd node that produced this tensor, or null for leaves. */
  node: Node | null = null;
  /** Optional name (parameters); shown in errors. */
  name?: string;
  #storage: Storage | null;
  #pending: PendingMap | null = null;
  #inlined = false;
  #disposed = false;
  #createdBy: string;

  /**
   * Wraps a storage. Library code creates tensors through ops and factories; this constructor is
   * public for kernels written outside tensor/ (it takes a reference on `storage`'s behalf: the
   * caller's reference is transferred to the tensor).
   */
  constructor(
    storage: Storage,
    shape: readonly number[],
    dtype: DType,
    offset = 0,
    createdBy = "",
  ) {
    this.#storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.#offset = offset;
    this.#createdBy = createdBy;
    scopes[scopes.length - 1]?.add(this);
  }

  /**
   * A pending tensor: its value is `p` (computed on first use of its memory). Takes a reference
   * on each leaf's storage until then. Used by tensor/lazy.ts.
   */
  static pending(
    shape: readonly number[],
    dtype: DType,
    p: PendingMap,
    createdBy = "",
  ): Tensor {
    hookBackend();
    const t = new Tensor(null as unknown as Storage, shape, dtype, 0, createdBy);
    t.#pending = p;
    livePending.add(t);
    const be = backend();
    for (const leaf of p.leaves) {
      be.retain(leaf.ref.storage);
      let set = readers.get(leaf.ref.storage);
      if (!set) readers.set(leaf.ref.storage, set = new Set());
      set.add(t);
    }
    return t;
  }

  /** The pending expression, or null once computed (or for tensors that never were pending). */
  get pendingMap(): PendingMap | null {
    return this.#pending;
  }

  /**
   * Records that a consumer's kernel computes this pending tensor's expression itself; returns
   * whether one already did (a second consumer should then use the computed tensor instead).
   */
  markInlined(): boolean {
    const was = this.#inlined;
    this.#inlined = true;
    return was;
  }

  #dropLeaves(): void {
    const p = this.#pending;
    if (!p) return;
    this.#pending = null;
    livePending.delete(this);
    const be = backend();
    for (const leaf of p.leaves) {
      const set = readers.get(leaf.ref.storage);
      if (set) {
        set.delete(this);
        if (set.size === 0) readers.delete(leaf.ref.storage);
      }
      be.release(leaf.ref.storage);
    }
  }

  /** Computes a pending tensor now (one elementwise kernel); a no-op for computed tensors. */
  realize(): void {
    const p = this.#pending;
    if (!p) return;
    const be = backend();
    const storage = be.alloc(this.size * 4);
    if (this.size > 0) {
      runLeafMap(
        p.expr,
        this.shape,
        p.leaves,
        { storage, offset: 0, numel: this.size },
        this.dtype,
      );
    }
    this.#storage = storage;
    this.#offset = 0;
    this.#dropLeaves();
  }

  /** Byte offset into the storage (non-zero only for views into flat buffers; 256-aligned). */
  get offset(): number {
    return this.#offset;
  }

  /**
   * Moves this tensor onto another storage region (same shape), releasing its old storage. The
   * caller transfers one reference on `storage`. Used to pack a model's parameters into one flat
   * buffer; not for general use.
   */
  rebind(storage: Storage, offset: number): void {
    this.realize();
    if (this.#storage) backend().release(this.#storage);
    this.#storage = storage;
    this.#offset = offset;
  }

  /** Number of elements. */
  get size(): number {
    return numel(this.shape);
  }

  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }

  /** True once disposed. */
  get isDisposed(): boolean {
    return this.#disposed;
  }

  /** A short description such as `Tensor[2,3] f32 'w'` for error messages. */
  describe(): string {
    return `Tensor[${this.shape.join(",")}] ${this.dtype}${this.name ? ` '${this.name}'` : ""}`;
  }

  /** The underlying storage; throws a clear error if the tensor was disposed. */
  storageFor(op: string): Storage {
    if (this.#pending) this.realize();
    if (!this.#storage) {
      throw new Error(
        `${op}: ${this.describe()}${
          this.#createdBy ? ` (made by '${this.#createdBy}')` : ""
        } was disposed and cannot be used. Keep it alive (keep() or return it from tidy()).`,
      );
    }
    return this.#storage;
  }

  /** The buffer ref kernels bind; throws if disposed. */
  refFor(op: string): BufferRef {
    return { storage: this.storageFor(op), offset: this.offset, numel: this.size };
  }

  /** Releases the memory (a pending tensor only drops its inputs). Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#dropLeaves();
    if (this.#storage) {
      forgetZero(this, this.#storage);
      backend().release(this.#storage);
    }
    this.#storage = null;
    this.node = null;
  }

  /** `using t = ...` support. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A new tensor object sharing this tensor's storage (no copy), with another shape. */
  view(shape: readonly number[], createdBy = "view"): Tensor {
    if (numel(shape) !== this.size) {
      throw new Error(`${createdBy}: cannot view ${this.describe()} as [${shape.join(",")}]`);
    }
    const p = this.#pending;
    if (p && !this.#disposed) {
      // A pending tensor stays pending under a new shape when every leaf is read contiguously
      // (in this tensor's layout) or as one broadcast scalar.
      const own = contiguousStrides(this.shape);
      const same = (st: readonly number[]) =>
        st.length === own.length && st.every((v, d) => v === own[d] || this.shape[d] === 1);
      const leaves = p.leaves.map((l) =>
        l.strides.every((v) => v === 0)
          ? { ...l, strides: shape.map(() => 0) }
          : same(l.strides)
          ? { ...l, strides: contiguousStrides(shape) }
          : null
      );
      if (leaves.every((l) => l !== null)) {
        return Tensor.pending(
          shape,
          this.dtype,
          { expr: p.expr, leaves: leaves as Leaf[] },
          createdBy,
        );
      }
    }
    const s = this.storageFor(createdBy);
    backend().retain(s);
    return new Tensor(s, shape, this.dtype, this.offset, createdBy);
  }

  /** Copies the values to the host (one GPU round trip, >= 10 ms in Deno). */
  async data(): Promise<HostArray> {
    const [buf] = await backend().read([{
      storage: this.storageFor("data"),
      offset: this.offset,
      bytes: this.size * 4,
    }]);
    return hostArray(this.dtype, buf);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw new Error(`item(): ${this.describe()} has ${this.size} elements, not 1`);
    }
    return (await this.data())[0];
  }

  /** The values as a nested JS array. */
  async array(): Promise<unknown> {
    const flat = Array.from(await this.data());
    const build = (dim: number, start: number): unknown => {
      if (dim === this.shape.length) return flat[start];
      const step = numel(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim] }, (_, i) => build(dim + 1, start + i * step));
    };
    return build(0, 0);
  }
  // ------------------------------------------------------------ ops as methods (PyTorch names)

  /** `this + other` with broadcasting. */
  add(other: Tensor | number): Tensor {
    return F.add(this, other);
  }
  /** `this - other` with broadcasting. */
  sub(other: Tensor | number): Tensor {
    return F.sub(this, other);
  }
  /** `this * other` with broadcasting. */
  mul(other: Tensor | number): Tensor {
    return F.mul(this, other);
  }
  /** `this / other` with broadcasting. */
  div(other: Tensor | number): Tensor {
    return F.div(this, other);
  }
  /** `this ** other` with broadcasting. */
  pow(other: Tensor | number): Tensor {
    return F.pow(this, other);
  }
  /** Elementwise maximum with `other`. */
  maximum(other: Tensor | number): Tensor {
    return F.maximum(this, other);
  }
  /** Elementwise minimum with `other`. */
  minimum(other: Tensor | number): Tensor {
    return F.minimum(this, other);
  }
  /** `-this`. */
  neg(): Tensor {
    return ops.unary("neg", this);
  }
  /** `e ** this`. */
  exp(): Tensor {
    return ops.unary("exp", this);
  }
  /** Natural logarithm. */
  log(): Tensor {
    return ops.unary("log", this);
  }
  /** Square root. */
  sqrt(): Tensor {
    return ops.unary("sqrt", this);
  }
  /** Absolute value. */
  abs(): Tensor {
    return ops.unary("abs", this);
  }
  /** Sign (-1, 0, 1). */
  sign(): Tensor {
    return ops.unary("sign", this);
  }
  /** Hyperbolic tangent. */
  tanh(): Tensor {
    return ops.unary("tanh", this);
  }
  /** Logistic sigmoid (stable for large |x|). */
  sigmoid(): Tensor {
    return ops.unary("sigmoid", this);
  }
  /** max(x, 0). */
  relu(): Tensor {
    return ops.unary("relu", this);
  }
  /** Leaky ReLU with negative slope `alpha`. */
  leakyRelu(alpha = 0.01): Tensor {
    return F.leakyRelu(this, alpha);
  }
  /** `this * this`. */
  square(): Tensor {
    return ops.unary("square", this);
  }
  /** Clamps to [lo, hi]. */
  clamp(lo: number, hi: number): Tensor {
    return F.clamp(this, lo, hi);
  }
  /** Matrix product (batched, NumPy broadcasting of batch dims). */
  matmul(other: Tensor): Tensor {
    return ops.matmul(this, other);
  }
  /** Sum over `axis` (all when omitted). */
  sum(axis?: number | number[], keepdim = false): Tensor {
    return ops.sum(this, axis, keepdim);
  }
  /** Mean over `axis` (all when omitted). */
  mean(axis?: number | number[], keepdim = false): Tensor {
    return F.mean(this, axis, keepdim);
  }
  /** Maximum over `axis` (all when omitted). */
  max(axis?: number | number[], keepdim = false): Tensor {
    return ops.max(this, axis, keepdim);
  }
  /** Index of the maximum along `axis` (i32). */
  argmax(axis = -1, keepdim = false): Tensor {
    return ops.argmax(this, axis, keepdim);
  }
  /** log(sum(exp(x))) over `axis`, stable. */
  logsumexp(axis: number | number[] = -1, keepdim = false): Tensor {
    return F.logsumexp(this, axis, keepdim);
  }
  /** Softmax over `axis`. */
  softmax(axis = -1): Tensor {
    return F.softmax(this, axis);
  }
  /** Log-softmax over `axis`. */
  logSoftmax(axis = -1): Tensor {
    return F.logSoftmax(this, axis);
  }
  /** Same data, new shape (one dim may be -1). */
  reshape(shape: readonly number[]): Tensor {
    return ops.reshape(this, shape);
  }
  /** Swaps two dims (default the last two). */
  transpose(d0 = -2, d1 = -1): Tensor {
    return F.transpose(this, d0, d1);
  }
  /** Reorders dims. */
  permute(perm: readonly number[]): Tensor {
    return ops.permute(this, perm);
  }
  /** The block `starts <= i < ends` per dim. */
  slice(starts: readonly number[], ends: readonly number[]): Tensor {
    return ops.slice(this, starts, ends);
  }
  /** Joins `this` and `others` along `axis`. */
  concat(others: Tensor[], axis = 0): Tensor {
    return ops.concat([this, ...others], axis);
  }
  /** Zero padding, `[before, after]` per dim. */
  pad(pads: readonly (readonly [number, number])[]): Tensor {
    return ops.pad(this, pads);
  }
  /** Broadcasts to `shape` (copying). */
  expand(shape: readonly number[]): Tensor {
    return ops.expand(this, shape);
  }
  /** Converts the element type. */
  cast(dtype: DType): Tensor {
    return ops.cast(this, dtype);
  }
  /** A tensor sharing data but cut from the graph. */
  detach(): Tensor {
    return F.detach(this);
  }
  /** Marks this tensor as a leaf that receives gradients; returns `this`. */
  requiresGrad_(on = true): Tensor {
    this.requiresGrad = on;
    return this;
  }
  /** Back-propagates from this (scalar) tensor into the `.grad` of leaves. */
  backward(grad?: Tensor): void {
    runBackward(this, grad);
  }
}

/** Wraps raw bytes in the typed array of `dtype`. */
export function hostArray(dtype: DType, buf: ArrayBuffer): HostArray {
  return dtype === "f32"
    ? new Float32Array(buf)
    : dtype === "i32"
    ? new Int32Array(buf)
    : new Uint32Array(buf);
}

/**
 * Reads several tensors in one GPU round trip (one staging buffer, one `mapAsync`). Use this to
 * fetch all per-interval metrics at once.
 */
export async function readMany(tensors: Tensor[]): Promise<HostArray[]> {
  const bufs = await backend().read(
    tensors.map((t) => ({
      storage: t.storageFor("readMany"),
      offset: t.offset,
      bytes: t.size * 4,
    })),
  );
  return bufs.map((b, i) => hostArray(tensors[i].dtype, b));
}
