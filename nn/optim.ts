/**
 * Optimizers over {@link FlatParams}: SGD (momentum, Nesterov) and Adam (bias-corrected; L2 or
 * decoupled weight decay), each ONE fused kernel over a group's element range; global-norm
 * gradient clipping and gradient norms computed on the GPU; learning-rate schedules; and
 * optimizer state for checkpoints.
 *
 * ## Step counters and state sharing
 *
 * Per-element state (Adam's m and v, SGD's momentum buffer) is one flat buffer the size of the
 * parameters, so every element has its own moments whatever the grouping. What groups may share is
 * the STEP COUNTER `t` that Adam's bias corrections `1 - beta^t` (and SGD's first-step rule) use:
 *
 * - `stateSharing: "shared"` (default): one counter for the whole optimizer. Stepping group G and
 *   then group D counts two steps, exactly like the authors' AutoLoss code, where one TF
 *   `AdamOptimizer` applies both the G and the D updates and shares `beta1_power`/`beta2_power`.
 *   A group's first update can therefore see `t > 1` (a weaker bias correction).
 * - `stateSharing: "per-group"`: one counter per parameter group, advanced only when that group
 *   steps, as if each group had its own optimizer (PyTorch semantics with two optimizers).
 *
 * ## GPU-side gating
 *
 * The counters live ON THE GPU (a small f32 buffer, one slot each, exact to 2^24 steps). A step is
 * two dispatches: a one-thread kernel that advances the counter, then the fused update that reads
 * it. Both kernels are correct for any dispatch size (grid-stride loops; the counter advance runs
 * in workgroup 0 only), so `step(group, { indirect })` can gate BOTH with one indirect-args
 * tensor written on the GPU: 0 workgroups for the branch not taken skips the update and leaves
 * that counter alone, with no host round trip. `dispatchSize(group)` gives the counts to write for
 * the branch taken (any non-zero count is correct; that one is fastest).
 *
 * Hyperparameters (lr, betas, eps, weight decay, momentum) are uploaded into a small storage
 * buffer when they change (a fresh buffer, so no pending work is flushed), never baked into the
 * kernels: changing `lr` every step compiles nothing.
 * @module
 */

import { backend, type BufferRef, type Gate } from "../gpu/backend.ts";
import { gateSize, HYPER_SLOTS, type UpdateSpan } from "../gpu/kernel.ts";
import { assign_, empty, fill_ } from "../tensor/ops.ts";
import { keep, Tensor } from "../tensor/tensor.ts";
import type { CheckpointTensor } from "./checkpoint.ts";
import type { FlatParams, Range } from "./module.ts";

export type { UpdateSpan };

/** The buffers of an update: hyperparameters, counters, params, grads, and optimizer state. */
export interface UpdateBuffers {
  /** Hyperparameter buffer (layout: ADAM_HYPER or SGD_HYPER of gpu/kernel.ts). */
  hyper: BufferRef;
  /** Step counters, one f32 per slot. */
  counters: BufferRef;
  /** Flat parameters. */
  params: BufferRef;
  /** Flat gradients. */
  grads: BufferRef;
  /** Per-element state buffers (Adam: m, v; SGD with momentum: the momentum buffer). */
  state: BufferRef[];
}

function updateBuffers(b: UpdateBuffers): BufferRef[] {
  return [b.hyper, b.counters, b.params, b.grads, ...b.state];
}

/** Whether parameter groups share one step counter or each keep their own (see module doc). */
export type StateSharing = "shared" | "per-group";

/** Indirect dispatch arguments: three u32 workgroup counts at element `at` (default 0) of `args`. */
export interface IndirectGrid {
  /** A u32/i32 tensor holding the counts (written on the GPU). */
  args: Tensor;
  /** Element index of the first count. */
  at?: number;
}

/** Options of a step or clip: optionally gate it with indirect dispatch arguments. */
export interface StepOptions {
  /** Workgroup counts read on the GPU; a zero count skips the work (GPU-side gating). */
  indirect?: Tensor | IndirectGrid;
}

/** Common optimizer options. */
export interface OptimizerOptions {
  /** Learning rate (may be changed between steps through the `lr` field). */
  lr?: number;
  /** Weight decay coefficient (default 0). */
  weightDecay?: number;
  /** One step counter for all groups (default) or one per group. */
  stateSharing?: StateSharing;
}

/** A tensor given to {@link Optimizer.loadState} or read from a checkpoint. */
export type TensorSource = Tensor | Float32Array | CheckpointTensor;

/** Optimizer state as named tensors plus string metadata (the shape of a checkpoint). */
export interface OptimizerState {
  /** Named tensors: views of the optimizer's GPU buffers (disposing them frees nothing). */
  tensors: Record<string, Tensor>;
  /** String metadata: kind, state sharing, counter slots, hyperparameters (JSON). */
  metadata: Record<string, string>;
}

/** Resolves a group name (or a range) of `flat` to its element range. */
export function rangeOf(flat: FlatParams, range: Range | string = "all"): Range {
  if (typeof range === "string") return flat.group(range);
  if (range.start < 0 || range.end > flat.size || range.end < range.start) {
    throw new Error(`range [${range.start}, ${range.end}) is outside the ${flat.size} parameters`);
  }
  return range;
}

function toGate(indirect: Tensor | IndirectGrid): Gate {
  const { args, at = 0 } = indirect instanceof Tensor ? { args: indirect } : indirect;
  if (args.dtype === "f32" || at < 0 || at + 3 > args.size) {
    throw new Error(
      `indirect: expects 3 u32/i32 workgroup counts at element ${at} of ${args.describe()}`,
    );
  }
  return { storage: args.storageFor("indirect"), offset: args.offset + at * 4 };
}

/**
 * Base class of the optimizers: step counters, per-element state buffers, the hyperparameter
 * buffer, gating, and state for checkpoints. Subclasses supply the kernel and hyperparameters.
 */
export abstract class Optimizer {
  /** The parameters this optimizer updates. */
  readonly flat: FlatParams;
  /** Counter sharing mode. */
  readonly stateSharing: StateSharing;
  /** Counter slot names: `["shared"]`, or the group names in per-group mode. */
  readonly slots: readonly string[];
  /** Learning rate used by the next step (uploaded when it changes; never recompiles). */
  lr: number;
  /** Weight decay used by the next step. */
  weightDecay: number;
  /** Kind name stored in checkpoints. */
  abstract readonly kind: string;
  readonly #counters: Tensor;
  readonly #state = new Map<string, Tensor>();
  #hyper: BufferRef | null = null;
  #hyperKey = "";

  /**
   * Allocates zeroed step counters and one zeroed flat state buffer per name in `stateNames`.
   */
  protected constructor(
    flat: FlatParams,
    opts: OptimizerOptions,
    lr: number,
    stateNames: string[],
  ) {
    this.flat = flat;
    this.stateSharing = opts.stateSharing ?? "shared";
    if (this.stateSharing !== "shared" && this.stateSharing !== "per-group") {
      throw new Error(`stateSharing must be "shared" or "per-group", got '${this.stateSharing}'`);
    }
    const groups = [...flat.groups.keys()].filter((g) => g !== "all");
    this.slots = this.stateSharing === "shared" ? ["shared"] : groups.length ? groups : ["all"];
    this.lr = lr;
    this.weightDecay = opts.weightDecay ?? 0;
    if (!(lr >= 0) || !(this.weightDecay >= 0)) {
      throw new Error(`invalid lr ${lr} or weightDecay ${this.weightDecay} (must be >= 0)`);
    }
    this.#counters = keep(fill_(empty([this.slots.length], "f32", "optim.steps"), 0));
    for (const name of stateNames) {
      this.#state.set(name, keep(fill_(empty([flat.size], "f32", `optim.${name}`), 0)));
    }
  }

  /** Hyperparameter values in the kernel's buffer layout. */
  protected abstract hyperValues(): number[];

  /** Records the fused update over `span` (its counter already advanced). */
  protected abstract update(span: UpdateSpan, buffers: UpdateBuffers, gate?: Gate): void;

  /** The (range, counter slot) pairs a step on `group` updates. */
  #plan(group: string): { range: Range; slot: number }[] {
    if (this.stateSharing === "shared") return [{ range: this.flat.group(group), slot: 0 }];
    if (group === "all") return this.slots.map((g, slot) => ({ range: this.flat.group(g), slot }));
    const slot = this.slots.indexOf(group);
    if (slot < 0) {
      throw new Error(
        `${this.kind}: unknown parameter group '${group}'; groups: ${this.slots.join(", ")}, all`,
      );
    }
    return [{ range: this.flat.group(group), slot }];
  }

  /** The hyperparameter buffer for the current values (re-uploaded only when they changed). */
  #hyperRef(): BufferRef {
    const values = this.hyperValues();
    const key = values.join(",");
    if (this.#hyper && key === this.#hyperKey) return this.#hyper;
    const be = backend();
    if (this.#hyper) be.release(this.#hyper.storage);
    // A fresh storage is never used by recorded work, so writing it does not force a submit.
    const storage = be.alloc(HYPER_SLOTS * 4);
    be.write(storage, Float32Array.from({ length: HYPER_SLOTS }, (_, i) => values[i] ?? 0));
    this.#hyper = { storage, offset: 0, numel: HYPER_SLOTS };
    this.#hyperKey = key;
    return this.#hyper;
  }

  /**
   * Updates the parameters of `group` (default all) from their gradients: advances the group's
   * step counter (the shared one in shared mode) and runs the fused update, both on the GPU with
   * no host sync. With `indirect`, both dispatches read their workgroup counts from the GPU.
   */
  step(group = "all", opts: StepOptions = {}): void {
    const be = backend();
    const gate = opts.indirect ? toGate(opts.indirect) : undefined;
    const buffers: UpdateBuffers = {
      hyper: this.#hyperRef(),
      counters: this.#counters.refFor("step"),
      params: this.flat.data.refFor("step"),
      grads: this.flat.grad.refFor("step"),
      state: [...this.#state.values()].map((t) => t.refFor("step")),
    };
    for (const { range, slot } of this.#plan(group)) {
      be.run({ kind: "advance", slot }, [buffers.counters], gate);
      this.update({ start: range.start, n: range.end - range.start, slot }, buffers, gate);
    }
  }

  /**
   * The workgroup counts a direct step on `group` uses: what a GPU-side decision should write
   * into indirect args for the branch taken (zeros for the branch not taken). In per-group mode,
   * a step on "all" dispatches once per group with the same args; any non-zero count is correct.
   */
  dispatchSize(group = "all"): [number, number, number] {
    const sizes = this.#plan(group).map(({ range }) => gateSize(range.end - range.start)[0]);
    return [Math.max(...sizes), 1, 1];
  }

  /** Step counts per slot (a view of the GPU counters, f32 [slots]; read it outside the step). */
  stepCounts(): Tensor {
    return this.#counters.view(this.#counters.shape, "optim.steps");
  }

  /** Per-element state buffers by name (views). */
  #stateViews(): [string, Tensor][] {
    return [...this.#state].map(([n, t]) => [n, t.view(t.shape, `optim.${n}`)]);
  }

  /**
   * The state to checkpoint: `${prefix}steps` and the per-element buffers as tensor views, and
   * metadata naming the kind, the sharing mode, the counter slots and the hyperparameters.
   */
  state(prefix = "optim."): OptimizerState {
    const tensors: Record<string, Tensor> = { [`${prefix}steps`]: this.stepCounts() };
    for (const [n, t] of this.#stateViews()) tensors[prefix + n] = t;
    return {
      tensors,
      metadata: {
        [`${prefix}kind`]: this.kind,
        [`${prefix}stateSharing`]: this.stateSharing,
        [`${prefix}slots`]: JSON.stringify(this.slots),
        [`${prefix}hyper`]: JSON.stringify(this.hyperValues()),
      },
    };
  }

  /**
   * Restores state saved by {@link Optimizer.state} (directly or through a checkpoint). Checks
   * the kind, sharing mode, slots and every size before writing anything; hyperparameters are
   * not restored (the configuration and schedules own them).
   */
  loadState(
    src: {
      tensors: Map<string, TensorSource> | Record<string, TensorSource>;
      metadata: Record<string, string>;
    },
    prefix = "optim.",
  ): void {
    const lookup = src.tensors instanceof Map ? src.tensors : new Map(Object.entries(src.tensors));
    const problems: string[] = [];
    const expect = (key: string, want: string) => {
      const got = src.metadata[prefix + key];
      const shown = got === undefined ? "missing" : `'${got}'`;
      if (got !== want) problems.push(`${prefix}${key} is ${shown}, expected '${want}'`);
    };
    expect("kind", this.kind);
    expect("stateSharing", this.stateSharing);
    expect("slots", JSON.stringify(this.slots));
    const copies: [Tensor, Tensor | Float32Array][] = [];
    for (const [n, t] of [["steps", this.#counters], ...this.#state] as [string, Tensor][]) {
      const s = lookup.get(prefix + n);
      if (!s) {
        problems.push(`tensor '${prefix}${n}' is missing`);
        continue;
      }
      const value = s instanceof Tensor || s instanceof Float32Array ? s : s.data;
      const size = value instanceof Tensor ? value.size : value.length;
      const f32 = value instanceof Tensor ? value.dtype === "f32" : value instanceof Float32Array;
      if (size !== t.size || !f32) {
        const got = `${size} ${f32 ? "f32" : "non-f32"} values`;
        problems.push(`tensor '${prefix}${n}' has ${got}, expected ${t.size} f32`);
      }
      copies.push([t, value as Tensor | Float32Array]);
    }
    if (problems.length) {
      const list = problems.join("\n  ");
      throw new Error(
        `${this.kind}.loadState: the state does not match this optimizer:\n  ${list}`,
      );
    }
    for (const [dst, value] of copies) {
      if (value instanceof Tensor) assign_(dst, value);
      else backend().write(dst.storageFor("loadState"), value, dst.offset);
    }
  }

  /** Frees the counters, state buffers and hyperparameter buffer. */
  dispose(): void {
    this.#counters.dispose();
    for (const t of this.#state.values()) t.dispose();
    if (this.#hyper) backend().release(this.#hyper.storage);
    this.#hyper = null;
  }
}

/** Options of {@link SGD}. */
export interface SgdOptions extends OptimizerOptions {
  /** Learning rate (required). */
  lr: number;
  /** Momentum factor (default 0: no momentum buffer is allocated). */
  momentum?: number;
  /** Dampening of the momentum (default 0). */
  dampening?: number;
  /** Nesterov momentum (needs momentum > 0 and dampening 0). */
  nesterov?: boolean;
}

/**
 * Stochastic gradient descent as PyTorch's `torch.optim.SGD`: `g = grad + wd * p`; with momentum
 * `buf = g` on the first step, then `buf = momentum * buf + (1 - dampening) * g`; the step uses
 * `g + momentum * buf` (Nesterov) or `buf`; `p -= lr * step`. One fused kernel per group.
 */
export class SGD extends Optimizer {
  /** Kind name stored in checkpoints. */
  readonly kind = "sgd";
  /** Momentum factor (changeable between steps if it was non-zero at construction). */
  momentum: number;
  /** Dampening of the momentum. */
  dampening: number;
  /** Whether Nesterov momentum is used (fixed at construction). */
  readonly nesterov: boolean;

  /** Creates the optimizer over `flat` (allocating a momentum buffer when momentum > 0). */
  constructor(flat: FlatParams, opts: SgdOptions) {
    const momentum = opts.momentum ?? 0;
    super(flat, opts, opts.lr, momentum > 0 ? ["momentum"] : []);
    this.momentum = momentum;
    this.dampening = opts.dampening ?? 0;
    this.nesterov = opts.nesterov ?? false;
    if (this.nesterov && (momentum <= 0 || this.dampening !== 0)) {
      throw new Error("SGD: Nesterov momentum requires momentum > 0 and dampening 0");
    }
  }

  /** Values in the order of `SGD_HYPER`. */
  protected hyperValues(): number[] {
    return [this.lr, this.momentum, this.dampening, this.weightDecay, 1 - this.dampening];
  }

  /** Records the fused SGD kernel. */
  protected update(span: UpdateSpan, buffers: UpdateBuffers, gate?: Gate): void {
    backend().run(
      { kind: "sgd", span, momentum: buffers.state.length > 0, nesterov: this.nesterov },
      updateBuffers(buffers),
      gate,
    );
  }
}

/** Options of {@link Adam}. */
export interface AdamOptions extends OptimizerOptions {
  /** Coefficients of the running averages of the gradient and its square (default [0.9, 0.999]). */
  betas?: [number, number];
  /** Added to the denominator (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay (AdamW) instead of L2 added to the gradient (default false). */
  decoupledWeightDecay?: boolean;
}

/**
 * Adam as PyTorch's `torch.optim.Adam` (`AdamW` with `decoupledWeightDecay`): `m = b1 m + (1-b1) g`,
 * `v = b2 v + (1-b2) g^2`, `p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)`, with `t` the
 * group's (or the shared) GPU step counter. One fused kernel per group.
 */
export class Adam extends Optimizer {
  /** Kind name stored in checkpoints. */
  readonly kind: string = "adam";
  /** [beta1, beta2] (changeable between steps). */
  betas: [number, number];
  /** Denominator epsilon. */
  eps: number;
  /** Whether weight decay is decoupled (AdamW); fixed at construction. */
  readonly decoupledWeightDecay: boolean;

  /** Creates the optimizer over `flat` with zeroed moments (lr default 1e-3). */
  constructor(flat: FlatParams, opts: AdamOptions = {}) {
    super(flat, opts, opts.lr ?? 1e-3, ["m", "v"]);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.decoupledWeightDecay = opts.decoupledWeightDecay ?? false;
    if (this.betas.some((b) => !(b >= 0 && b < 1))) {
      throw new Error(`Adam: betas must be in [0, 1), got [${this.betas}]`);
    }
  }

  /** Values in the order of `ADAM_HYPER` (derived values computed in double precision). */
  protected hyperValues(): number[] {
    const [b1, b2] = this.betas;
    return [
      this.lr,
      b1,
      b2,
      this.eps,
      this.weightDecay,
      1 - b1,
      1 - b2,
      Math.log(b1),
      Math.log(b2),
    ];
  }

  /** Records the fused Adam kernel. */
  protected update(span: UpdateSpan, buffers: UpdateBuffers, gate?: Gate): void {
    const decay = this.decoupledWeightDecay ? "decoupled" : "l2";
    backend().run({ kind: "adam", span, decay }, updateBuffers(buffers), gate);
  }
}

/** Adam with decoupled weight decay (default 0.01), as PyTorch's `torch.optim.AdamW`. */
export class AdamW extends Adam {
  /** Kind name stored in checkpoints. */
  override readonly kind: string = "adamw";

  /** Creates the optimizer (weight decay 0.01 unless given). */
  constructor(flat: FlatParams, opts: Omit<AdamOptions, "decoupledWeightDecay"> = {}) {
    super(flat, { weightDecay: 0.01, ...opts, decoupledWeightDecay: true });
  }
}

// ---------------------------------------------------------------- gradient norms and clipping

/**
 * The L2 norm of the gradients in `range` (a group name or element range; default all), as a
 * 1-element tensor computed by one kernel on the GPU (no host sync). For AutoLoss features such
 * as `||grad G|| / sqrt(n_G)`.
 */
export function gradNorm(flat: FlatParams, range: Range | string = "all"): Tensor {
  const r = rangeOf(flat, range);
  const out = empty([1], "f32", "gradNorm");
  backend().run({ kind: "norm", start: r.start, n: r.end - r.start, outIndex: 0 }, [
    flat.grad.refFor("gradNorm"),
    out.refFor("gradNorm"),
  ]);
  return out;
}

/**
 * Global-norm gradient clipping over `range` (as PyTorch's `clip_grad_norm_`): one reduction
 * kernel computes the norm, one kernel scales the gradients by `min(1, maxNorm / (norm + 1e-6))`,
 * both on the GPU. Returns the norm before clipping (1-element tensor). A NaN or infinite norm
 * turns every gradient in the range into NaN, as in PyTorch. `indirect` gates both kernels.
 */
export function clipGradNorm(
  flat: FlatParams,
  maxNorm: number,
  range: Range | string = "all",
  opts: StepOptions = {},
): Tensor {
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) {
    throw new Error(`clipGradNorm: maxNorm must be a positive finite number, got ${maxNorm}`);
  }
  const r = rangeOf(flat, range);
  const n = r.end - r.start;
  const be = backend();
  const gate = opts.indirect ? toGate(opts.indirect) : undefined;
  const norm = empty([1], "f32", "clipGradNorm");
  const grads = flat.grad.refFor("clipGradNorm");
  const normRef = norm.refFor("clipGradNorm");
  be.run({ kind: "norm", start: r.start, n, outIndex: 0 }, [grads, normRef], gate);
  be.run({ kind: "clipScale", start: r.start, n, maxNorm }, [normRef, grads], gate);
  return norm;
}

// ---------------------------------------------------------------- learning-rate schedules

/** A learning rate as a function of the (0-based) training step. */
export type LrSchedule = (step: number) => number;

/** A constant learning rate. */
export function constantLr(lr: number): LrSchedule {
  return () => lr;
}

/** Options of the warmup/decay schedules. */
export interface DecayScheduleOptions {
  /** Peak learning rate. */
  lr: number;
  /** Step at which the decay reaches `finalLr` (constant afterwards). */
  totalSteps: number;
  /** Linear warmup steps: step s < warmupSteps uses lr * (s + 1) / warmupSteps (default 0). */
  warmupSteps?: number;
  /** Learning rate at `totalSteps` (default 0). */
  finalLr?: number;
}

function decayProgress(step: number, o: DecayScheduleOptions): number | null {
  const warmup = o.warmupSteps ?? 0;
  if (step < warmup) return null;
  const span = o.totalSteps - warmup;
  return span <= 0 ? 1 : Math.min(Math.max((step - warmup) / span, 0), 1);
}

/** Linear warmup, then linear decay from `lr` to `finalLr` at `totalSteps`. */
export function linearLr(o: DecayScheduleOptions): LrSchedule {
  return (step) => {
    const p = decayProgress(step, o);
    if (p === null) return (o.lr * (step + 1)) / o.warmupSteps!;
    return o.lr + ((o.finalLr ?? 0) - o.lr) * p;
  };
}

/** Linear warmup, then cosine decay from `lr` to `finalLr` at `totalSteps`. */
export function cosineLr(o: DecayScheduleOptions): LrSchedule {
  return (step) => {
    const p = decayProgress(step, o);
    if (p === null) return (o.lr * (step + 1)) / o.warmupSteps!;
    const lo = o.finalLr ?? 0;
    return lo + (o.lr - lo) * 0.5 * (1 + Math.cos(Math.PI * p));
  };
}

/** Step decay: `lr * gamma^floor(step / stepSize)` (gamma default 0.1). */
export function stepLr(o: { lr: number; stepSize: number; gamma?: number }): LrSchedule {
  if (!(o.stepSize > 0)) throw new Error(`stepLr: stepSize must be > 0, got ${o.stepSize}`);
  return (step) => o.lr * (o.gamma ?? 0.1) ** Math.floor(step / o.stepSize);
}
