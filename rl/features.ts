/**
 * Controller features, kept on the GPU for a population of P members.
 *
 * - {@link FeatureHistory}: the paper's generic feature vector (section 4.1): training progress
 *   t/T; per-loss gradient norm / sqrt(dim) and loss value kept as LAZY history (member p's entry
 *   for loss j changes only on steps where p chose an action on loss j: `where(mask, new, old)`);
 *   the validation metric with an exponential moving average of it and of its higher-order
 *   differences, refreshed every k steps; and extras appended by the task.
 * - Named feature sets from the authors' code: rl/feature_sets.ts.
 * - {@link ImprovementEma}: the EMA of validation improvement that the authors use both as a
 *   feature and in the dense step reward.
 * - Normalization (`FeatureNormalizer`, rl/normalization.ts): none, a per-feature affine map, or
 *   running mean/std; described by a plain `NormalizationSpec` that is saved with the controller.
 *
 * Nothing here reads the GPU back: every update is a handful of elementwise kernels.
 * @module
 */

import * as ops from "../tensor/ops.ts";
import { full, tensor, zeros } from "../tensor/functional.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import { columns } from "./feature_sets.ts";
import {
  type Checkpoint,
  checkpointJson,
  type CheckpointPart,
  checkpointTensor,
} from "../nn/checkpoint.ts";

/** `||g|| / sqrt(dim)`: a gradient norm made comparable across parameter groups of any size. */
export function normalizedGradNorm(norm: Tensor, dim: number): Tensor {
  return norm.mul(1 / Math.sqrt(Math.max(dim, 1)));
}

/** Replaces the kept tensor `old` by `next` (kept), disposing `old`. */
function swap(old: Tensor | null, next: Tensor): Tensor {
  old?.dispose();
  return keep(next);
}

// ---------------------------------------------------------------- the paper's feature history

/** Options of {@link FeatureHistory}. */
export interface FeatureHistoryOptions {
  /** P: population members. */
  population: number;
  /** Loss names M, in feature order (e.g. `["mse", "l1"]`). */
  losses: readonly string[];
  /**
   * For each action index, the index in `losses` of the loss it optimizes (e.g. `[0, 1]`).
   * Several actions may share a loss.
   */
  actionLoss: readonly number[];
  /** T: the episode length used for the progress feature t/T. */
  totalSteps: number;
  /** k: the validation metric is refreshed every k steps (see `validationDue`; default 1). */
  valEvery?: number;
  /** Decay of the validation EMAs (default 0.9). */
  valEmaDecay?: number;
  /** Highest difference order whose EMA is a feature (default 2: first and second differences). */
  valDiffOrders?: number;
  /** Names of task-specific extra features, appended last (set with `setExtras`). */
  extras?: readonly string[];
}

/**
 * Feature names of the paper's generic set: `progress`, `grad.<loss>` per loss, `loss.<loss>` per
 * loss, `val`, `val.ema`, `val.d<o>.ema` for o = 1..valDiffOrders, then the extras.
 */
export function paperFeatureNames(
  opts: Pick<FeatureHistoryOptions, "losses" | "valDiffOrders" | "extras">,
): string[] {
  const orders = opts.valDiffOrders ?? 2;
  return [
    "progress",
    ...opts.losses.map((l) => `grad.${l}`),
    ...opts.losses.map((l) => `loss.${l}`),
    "val",
    "val.ema",
    ...Array.from({ length: orders }, (_, o) => `val.d${o + 1}.ema`),
    ...(opts.extras ?? []),
  ];
}

/**
 * The paper's feature vector for P members, kept on the GPU (section 4.1):
 *
 * 1. training progress t/T;
 * 2. per loss m, `||grad l_m|| / sqrt(dim)` (see {@link normalizedGradNorm});
 * 3. per loss m, the loss value;
 * 4. the validation metric, its EMA, and the EMAs of its 1st..D-th differences;
 * 5. task extras.
 *
 * (2) and (3) are LAZY: the task computes the loss and gradient of the action each member took
 * and calls {@link FeatureHistory.recordStep}; member p's entry for loss j is replaced only when
 * p's action optimizes loss j (`where(mask, new, old)`, mask = one-hot of the action's loss).
 * (4) is refreshed when the task calls {@link FeatureHistory.recordValidation} (every k steps).
 *
 * Per step the task calls `recordStep` (or `recordAll`), then `advance()`. Tensors passed in are
 * only read; the history keeps its own state.
 */
export class FeatureHistory {
  /** P. */
  readonly population: number;
  /** Loss names. */
  readonly losses: readonly string[];
  /** Feature names in order (see {@link paperFeatureNames}). */
  readonly names: readonly string[];
  /** T for the progress feature. */
  readonly totalSteps: number;
  /** k: validation cadence. */
  readonly valEvery: number;
  /** EMA decay of the validation features. */
  readonly valEmaDecay: number;
  /** D: highest difference order. */
  readonly valDiffOrders: number;
  /** Extra feature names. */
  readonly extras: readonly string[];
  #t = 0;
  #valCount = 0;
  #actionLoss: Tensor;
  #loss: Tensor | null = null;
  #grad: Tensor | null = null;
  #val: Tensor | null = null;
  #prev: (Tensor | null)[] = [];
  #ema: (Tensor | null)[] = [];
  #extras: Tensor | null = null;
  #cache: Tensor | null = null;

  /** Allocates the history (all zeros). */
  constructor(opts: FeatureHistoryOptions) {
    this.population = opts.population;
    this.losses = [...opts.losses];
    this.totalSteps = opts.totalSteps;
    this.valEvery = opts.valEvery ?? 1;
    this.valEmaDecay = opts.valEmaDecay ?? 0.9;
    this.valDiffOrders = opts.valDiffOrders ?? 2;
    this.extras = [...(opts.extras ?? [])];
    this.names = paperFeatureNames(opts);
    const m = this.losses.length;
    if (opts.actionLoss.some((j) => !Number.isInteger(j) || j < 0 || j >= m)) {
      throw new Error(
        `FeatureHistory: actionLoss [${opts.actionLoss}] must index the ${m} losses ` +
          `[${this.losses.join(", ")}]`,
      );
    }
    const table = new Float32Array(opts.actionLoss.length * m);
    opts.actionLoss.forEach((j, a) => (table[a * m + j] = 1));
    this.#actionLoss = keep(tensor(table, [opts.actionLoss.length, m]));
    this.reset();
  }

  /** Steps recorded since the last reset. */
  get t(): number {
    return this.#t;
  }

  /** Clears the history: zeros everywhere, t = 0. */
  reset(): void {
    const p = this.population;
    const m = this.losses.length;
    this.#t = 0;
    this.#valCount = 0;
    this.#loss = swap(this.#loss, zeros([p, m]));
    this.#grad = swap(this.#grad, zeros([p, m]));
    this.#val = swap(this.#val, zeros([p]));
    for (const t of [...this.#prev, ...this.#ema]) t?.dispose();
    this.#prev = new Array(this.valDiffOrders + 1).fill(null);
    this.#ema = new Array(this.valDiffOrders + 1).fill(null);
    this.#extras = this.extras.length ? swap(this.#extras, zeros([p, this.extras.length])) : null;
    this.#invalidate();
  }

  #invalidate(): void {
    this.#cache?.dispose();
    this.#cache = null;
  }

  /**
   * Lazy update: member p took action `actions[p]` (i32 [P]) and `loss[p]` / `gradNorm[p]` are
   * the value and normalized gradient norm of that action's loss. Only that loss's entries change.
   */
  recordStep(actions: Tensor, loss: Tensor, gradNorm: Tensor): void {
    const p = this.population;
    const [l, g] = noGrad(() =>
      tidy(() => {
        const mask = ops.gatherRows(this.#actionLoss, actions.reshape([p]));
        return [
          ops.where(mask, loss.reshape([p, 1]), this.#loss!),
          ops.where(mask, gradNorm.reshape([p, 1]), this.#grad!),
        ];
      })
    );
    this.#loss = swap(this.#loss, l);
    this.#grad = swap(this.#grad, g);
    this.#invalidate();
  }

  /** Eager update (the authors' code): all M loss values and gradient norms, each [P, M]. */
  recordAll(losses: Tensor, gradNorms: Tensor): void {
    const shape = [this.population, this.losses.length];
    this.#loss = swap(this.#loss, noGrad(() => ops.assign_(ops.empty(shape), losses)));
    this.#grad = swap(this.#grad, noGrad(() => ops.assign_(ops.empty(shape), gradNorms)));
    this.#invalidate();
  }

  /** Whether the validation metric is due at the current step (t % k === 0). */
  validationDue(): boolean {
    return this.#t % this.valEvery === 0;
  }

  /**
   * Records a fresh validation metric val [P]: x_0 = val, x_o = x_{o-1} - previous x_{o-1}; each
   * EMA starts at the first defined value of its x_o and then decays with `valEmaDecay`. Orders
   * not yet defined (fewer observations than o + 1) read 0.
   */
  recordValidation(val: Tensor): void {
    const p = this.population;
    const beta = this.valEmaDecay;
    const top = this.valDiffOrders;
    // Copies, so the history never aliases the caller's tensor.
    let x = keep(ops.assign_(ops.empty([p]), val));
    this.#val = swap(this.#val, ops.assign_(ops.empty([p]), x));
    for (let o = 0; o <= top; o++) {
      const ema = this.#ema[o];
      this.#ema[o] = ema
        ? swap(ema, noGrad(() => tidy(() => ema.mul(beta).add(x.mul(1 - beta)))))
        : keep(ops.assign_(ops.empty([p]), x));
      const prev = o < top ? this.#prev[o] : null;
      if (o < top) this.#prev[o] = keep(ops.assign_(ops.empty([p]), x));
      if (!prev) break;
      const next = keep(noGrad(() => x.sub(prev)));
      prev.dispose();
      x.dispose();
      x = next;
    }
    x.dispose();
    this.#invalidate();
  }

  /** Sets the task extras, x [P, E] (E = number of extra names). */
  setExtras(x: Tensor): void {
    if (!this.extras.length) throw new Error("FeatureHistory: no extra features were declared");
    const shape = [this.population, this.extras.length];
    this.#extras = swap(this.#extras, ops.assign_(ops.empty(shape), x));
    this.#invalidate();
  }

  /** Advances the step counter (call once per training step, after recording). */
  advance(): void {
    this.#t++;
    this.#invalidate();
  }

  /** The feature vector [P, K] (computed once per step and cached; owned by the history). */
  features(): Tensor {
    if (this.#cache) return this.#cache;
    const p = this.population;
    this.#cache = keep(noGrad(() =>
      tidy(() => {
        // Uploaded, not baked into a kernel: a constant that changes every step would compile a
        // new pipeline every step (scalar ops bake their constant into the WGSL).
        const progress = ops.expand(
          tensor(new Float32Array([this.#t / Math.max(this.totalSteps, 1)]), [1, 1]),
          [p, 1],
        );
        const val = [this.#val!, ...this.#ema.map((e) => e ?? zeros([p]))];
        const parts = [progress, this.#grad!, this.#loss!, columns(val)];
        if (this.#extras) parts.push(this.#extras);
        return ops.concat(parts, 1);
      })
    ));
    return this.#cache;
  }

  /** The history for a checkpoint: its tensors under `prefix` and the step counters. */
  checkpointState(prefix: string): CheckpointPart {
    const tensors: Record<string, Tensor> = {
      [`${prefix}loss`]: this.#loss!,
      [`${prefix}grad`]: this.#grad!,
      [`${prefix}val`]: this.#val!,
    };
    if (this.#extras) tensors[`${prefix}extras`] = this.#extras;
    this.#prev.forEach((t, o) => t && (tensors[`${prefix}prev.${o}`] = t));
    this.#ema.forEach((t, o) => t && (tensors[`${prefix}ema.${o}`] = t));
    const meta = {
      t: this.#t,
      valCount: this.#valCount,
      prev: this.#prev.map((t) => t !== null),
      ema: this.#ema.map((t) => t !== null),
    };
    return { tensors, metadata: { [`${prefix}meta`]: JSON.stringify(meta) } };
  }

  /** Restores a history saved by {@link FeatureHistory.checkpointState} (same options). */
  loadCheckpoint(ckpt: Checkpoint, prefix: string): void {
    const meta = checkpointJson<{ t: number; valCount: number; prev: boolean[]; ema: boolean[] }>(
      ckpt,
      `${prefix}meta`,
    );
    const order = this.valDiffOrders + 1;
    if (meta.prev.length !== order || meta.ema.length !== order) {
      throw new Error(
        `checkpoint's feature history has ${meta.ema.length - 1} difference orders, ` +
          `this one ${order - 1}`,
      );
    }
    const p = this.population;
    const m = this.losses.length;
    const load = (name: string, shape: number[]) => checkpointTensor(ckpt, prefix + name, shape);
    this.reset();
    this.#loss = swap(this.#loss, load("loss", [p, m]));
    this.#grad = swap(this.#grad, load("grad", [p, m]));
    this.#val = swap(this.#val, load("val", [p]));
    if (this.#extras) this.#extras = swap(this.#extras, load("extras", [p, this.extras.length]));
    for (let o = 0; o < order; o++) {
      if (meta.prev[o]) this.#prev[o] = keep(load(`prev.${o}`, [p]));
      if (meta.ema[o]) this.#ema[o] = keep(load(`ema.${o}`, [p]));
    }
    this.#t = meta.t;
    this.#valCount = meta.valCount;
    this.#invalidate();
  }

  /** Frees the history's GPU memory. */
  dispose(): void {
    for (
      const t of [
        this.#actionLoss,
        this.#loss,
        this.#grad,
        this.#val,
        this.#extras,
        this.#cache,
        ...this.#prev,
        ...this.#ema,
      ]
    ) t?.dispose();
  }
}

// ---------------------------------------------------------------- improvement EMA

/** Options of {@link ImprovementEma}. */
export interface ImprovementEmaOptions {
  /** EMA decay eta (the authors reuse the reward-baseline decay: 0.8 reg, 0.9 cls). */
  decay?: number;
  /** Improvement assumed on the first observation (the authors' 0.1). */
  firstDelta?: number;
}

/**
 * The authors' EMA of validation improvement, per member: on each observation of a validation
 * loss v, `delta = v_prev - v` (`firstDelta` on the first one, which also seeds the EMA), then
 * `ema <- decay * ema + (1 - decay) * delta`. Used as a feature (`1 + ln(|ema| + eps) / c`) and by
 * the dense step reward (rl/rewards.ts).
 */
export class ImprovementEma {
  /** P. */
  readonly population: number;
  /** eta. */
  readonly decay: number;
  /** The first observation's improvement. */
  readonly firstDelta: number;
  #prev: Tensor | null = null;
  #ema: Tensor | null = null;
  #ones: Tensor | null = null;

  /** Creates the tracker (no observation yet). */
  constructor(population: number, opts: ImprovementEmaOptions = {}) {
    this.population = population;
    this.decay = opts.decay ?? 0.9;
    this.firstDelta = opts.firstDelta ?? 0.1;
  }

  /** Forgets all observations (start of an episode). */
  reset(): void {
    this.#prev?.dispose();
    this.#ema?.dispose();
    this.#prev = null;
    this.#ema = null;
  }

  /** Whether at least one value was observed since the last reset. */
  get started(): boolean {
    return this.#prev !== null;
  }

  /** Observes val [P]; returns this step's improvement delta [P] (in the caller's scope). */
  observe(val: Tensor): Tensor {
    const p = this.population;
    const eta = this.decay;
    const [delta, ema, prev] = noGrad(() =>
      tidy(() => {
        const v = val.reshape([p]);
        const d = this.#prev ? this.#prev.sub(v) : full([p], this.firstDelta);
        const base = this.#ema ?? d;
        return [d, base.mul(eta).add(d.mul(1 - eta)), ops.assign_(ops.empty([p]), v)];
      })
    );
    this.#ema = swap(this.#ema, ema);
    this.#prev = swap(this.#prev, prev);
    return delta;
  }

  /** The EMA [P] (a view; ones before the first observation, as the authors' `ib = 1`). */
  get ema(): Tensor {
    if (this.#ema) return this.#ema.view([this.population], "ImprovementEma.ema");
    this.#ones ??= keep(full([this.population], 1));
    return this.#ones.view([this.population], "ImprovementEma.ema");
  }

  /** Frees the GPU state. */
  dispose(): void {
    this.reset();
    this.#ones?.dispose();
    this.#ones = null;
  }
}
