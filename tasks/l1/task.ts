/**
 * The shared machinery of the two "task loss vs L1" problems (quadratic regression, MLP
 * classification): a population of P independent models trained in lockstep, each member
 * choosing per step between a task-loss step and an L1 step (paper section 4.1).
 *
 * ## One step, no host sync
 *
 * Members are independent, so the gradient of `sum_p task_p` is, for each member, the gradient of
 * its own task loss; the L1 term's gradient is `lambda_p * sign(theta_p)`. Each step therefore
 * writes into the flat gradient buffer exactly the gradient of the masked sum
 * `L = sum_p ([a_p = 0] task_p + [a_p = 1] lambda_p L1_p)`: one `where` over the flat buffer with
 * the per-member action broadcast to its elements (built on the GPU from the i32 actions), then
 * ONE fused Adam step over all members (one Adam state, shared across actions, as the authors'
 * code). The task-loss gradient itself comes from the backward pass that also produces the
 * features of the state the controller sees, so a step costs one forward and one backward.
 *
 * "Joint" mode (DGS, W/O L1) applies `task_p + lambda_p L1_p` every step and ignores actions.
 *
 * ## State, features and validation, all on the GPU
 *
 * After every update the task evaluates, at the new parameters: the training loss and its
 * gradient (per member), the L1 value and gradient norm, the validation loss every
 * `featureValEvery` steps (1 in the authors' code) and, every `valEvery` steps, the validation
 * selection metric and the test metric. Best-validation tracking (`where`/`minimum`) keeps, per
 * member, the best validation score, the test metric at that point (the authors' best
 * checkpoint, scored once on the test set), its step, and an early-stopping counter. Feature sets:
 *
 * - `authors`: the authors' hand-scaled state (rl/features.ts `featureSet`), all quantities
 *   computed every step;
 * - `paper`: the paper's generic vector (t/T, normalized gradient norms and loss values kept as
 *   lazy history, validation metric with EMAs of it and its differences);
 * - `rules`: the eager quantities the S1-S3 threshold schedules compare ({@link RULE_FEATURES}).
 *
 * Any feature group can be dropped (Table 3's ablation).
 * @module
 */

import { FeatureHistory, ImprovementEma } from "../../rl/features.ts";
import { featureSet } from "../../rl/feature_sets.ts";
import { type Action, memberSeed, type ScheduleTask } from "../../rl/task.ts";
import { backend } from "../../gpu/backend.ts";
import { FlatParams } from "../../nn/module.ts";
import { Adam } from "../../nn/optim.ts";
import * as ops from "../../tensor/ops.ts";
import { compare, full, tensor } from "../../tensor/functional.ts";
import { keep, noGrad, Tensor, tidy } from "../../tensor/tensor.ts";
import { Rng } from "./data/rng.ts";

/** The two actions: a task-loss step or an L1 step, both on all parameters. */
export const L1_ACTIONS: readonly Action[] = [
  { name: "task", loss: "task", group: "all" },
  { name: "l1", loss: "l1", group: "all" },
];

/** Selectable feature sets (see the module doc). */
export type FeatureSetKind = "authors" | "paper" | "rules";

/**
 * The eager quantities the threshold rules S1-S3 compare (rl/schedules.ts `thresholdRule` finds
 * them by these names): validation loss, training task loss, L1 value, normalized gradient
 * norms of the task loss and of the L1 term, all at the current parameters.
 */
export const RULE_FEATURES: readonly string[] = [
  "val",
  "loss.task",
  "loss.l1",
  "grad.task",
  "grad.l1",
];

/** Feature groups that can be dropped (Table 3). */
export type FeatureGroup = "grad" | "loss" | "val";

/** How the loss is applied: per-step actions, or the joint loss every step. */
export type StepMode = "schedule" | "joint";

/** Options common to both tasks. */
export interface L1TaskOptions {
  /** P: members trained in lockstep. */
  population: number;
  /** L1 weight lambda, one value or one per member. */
  lambda: number | readonly number[];
  /** Per-step actions ("schedule") or `task + lambda L1` every step ("joint"). */
  mode?: StepMode;
  /** Adam learning rate. */
  lr: number;
  /** Feature set (default "authors"). */
  features?: FeatureSetKind;
  /** Feature groups to drop (default none). */
  dropFeatures?: readonly FeatureGroup[];
  /** T: the episode length (the paper's t/T feature). */
  totalSteps: number;
  /** Best-validation tracking every this many steps (authors: 10). */
  valEvery?: number;
  /** The validation loss feeding the features is refreshed every this many steps (authors: 1). */
  featureValEvery?: number;
  /** Validations without improvement after which a member is done (null: never). */
  patience?: number | null;
  /** Decay of the improvement EMA feature (authors: 0.8 regression, 0.9 classification). */
  improvementDecay?: number;
  /**
   * Every member starts from the initialization of member 0 (common random numbers: episodes of
   * a controller-training round then differ only by their actions). Default false: member p
   * draws from `memberSeed(seed, p)`.
   */
  sharedInit?: boolean;
  /**
   * Members start in groups of this size from one initialization each (common random numbers
   * within a group, e.g. 2 for the antithetic pairs of ES): member p draws from
   * `memberSeed(seed, floor(p / initGroup))` (default 1: its own; `sharedInit` overrides).
   */
  initGroup?: number;
  /**
   * Member m of this task is member `memberOffset + m` of a larger population: it draws from
   * `memberSeed(seed, memberOffset + m)` (default 0; a slice of a round run elsewhere, dist/).
   */
  memberOffset?: number;
}

/** What {@link L1ScheduleTask.forward} returns, each [P]. */
export interface Forward {
  /** Training task loss (differentiable). */
  trainLoss: Tensor;
  /** Training accuracy (classification). */
  trainAcc?: Tensor;
  /** Validation task loss, when asked. */
  valLoss?: Tensor;
  /** Validation accuracy (classification). */
  valAcc?: Tensor;
  /** Test metric (MSE or error rate), present when asked for. */
  test?: Tensor;
}

/** A per-member stacked parameter: name, per-member shape, and its host initializer. */
export interface ParamSpec {
  /** Parameter name. */
  name: string;
  /** Shape of the stacked tensor, population dim first (or folded into the first dim). */
  shape: number[];
  /** Values per member. */
  perMember: number;
  /** Draws one member's values from its stream. */
  init(rng: Rng, out: Float32Array): void;
}

/** Elements of a per-member tensor [P, n]: the sum over axis 1. */
function rowSum(x: Tensor): Tensor {
  return x.sum(1);
}

/** Replaces a kept tensor, disposing the old one. */
function swap(old: Tensor | null, next: Tensor): Tensor {
  if (old && old !== next) old.dispose();
  return keep(next);
}

const BIG = 1e30;

/**
 * Base class of the population L1-scheduling tasks. Subclasses supply the parameters
 * ({@link L1ScheduleTask.paramSpecs}), the training loss and the evaluation.
 */
export abstract class L1ScheduleTask implements ScheduleTask {
  /** Registry name. */
  abstract readonly name: string;
  /** task / l1. */
  readonly actions: readonly Action[] = L1_ACTIONS;
  /** P. */
  readonly population: number;
  /** Feature names in order. */
  featureNames: readonly string[] = [];
  /** The options. */
  readonly options: Required<Omit<L1TaskOptions, "lambda" | "dropFeatures">> & {
    lambda: number[];
    dropFeatures: readonly FeatureGroup[];
  };
  /** Whether the selection metric is maximized (accuracy) rather than minimized (MSE). */
  protected abstract readonly higherIsBetter: boolean;
  /** The packed parameters (created by {@link L1ScheduleTask.build}). */
  protected flat!: FlatParams;
  /** The stacked parameter tensors, in spec order. */
  protected params: Tensor[] = [];
  #specs: ParamSpec[] = [];
  #opt: Adam | null = null;
  #lamElem!: Tensor;
  #memberOfElem!: Tensor;
  #lamP!: Tensor;
  #history: FeatureHistory | null = null;
  #improvement!: ImprovementEma;
  #select: Tensor | null = null;
  #t = 0;
  #s: Record<string, Tensor | null> = {};

  /** Stores the options (subclasses call {@link L1ScheduleTask.build} once their data is set). */
  constructor(opts: L1TaskOptions) {
    const p = opts.population;
    if (!(p > 0) || !Number.isInteger(p)) throw new Error(`population must be a positive integer`);
    const lam = typeof opts.lambda === "number" ? new Array(p).fill(opts.lambda) : [...opts.lambda];
    if (lam.length !== p) throw new Error(`lambda: ${lam.length} values for ${p} members`);
    this.population = p;
    this.options = {
      population: p,
      lambda: lam,
      mode: opts.mode ?? "schedule",
      lr: opts.lr,
      features: opts.features ?? "authors",
      dropFeatures: opts.dropFeatures ?? [],
      totalSteps: opts.totalSteps,
      valEvery: opts.valEvery ?? 10,
      featureValEvery: opts.featureValEvery ?? 1,
      patience: opts.patience ?? null,
      improvementDecay: opts.improvementDecay ?? 0.9,
      sharedInit: opts.sharedInit ?? false,
      initGroup: opts.initGroup ?? 1,
      memberOffset: opts.memberOffset ?? 0,
    };
  }

  /** The stacked parameters and their per-member initializers. */
  protected abstract paramSpecs(): ParamSpec[];

  /**
   * One forward pass: the per-member training loss [P] (differentiable; its backward gives each
   * member's task gradient), the training accuracy for classifiers, and, when asked, the
   * validation loss/accuracy and the test metric (no autograd).
   */
  protected abstract forward(withVal: boolean, withTest: boolean): Forward;

  /** Name of the authors' feature set for this task. */
  protected abstract readonly authorsFeatureSet: "authors-regression" | "authors-classification";

  /** Allocates parameters, optimizer state and feature machinery; call from the constructor. */
  protected build(): void {
    const p = this.population;
    this.#specs = this.paramSpecs();
    this.params = this.#specs.map((s) => keep(ops.fill_(ops.empty(s.shape), 0)).requiresGrad_());
    this.flat = new FlatParams(this.#specs.map((s, i) => [s.name, this.params[i]]));
    // Member index and lambda of every flat element (padding: member 0, lambda 0).
    const member = new Int32Array(this.flat.size);
    const lam = new Float32Array(this.flat.size);
    this.#specs.forEach((s) => {
      const r = this.flat.ranges.get(s.name)!;
      for (let e = 0; e < s.perMember * p; e++) {
        const m = Math.floor(e / s.perMember);
        member[r.start + e] = m;
        lam[r.start + e] = this.options.lambda[m];
      }
    });
    this.#memberOfElem = keep(tensor(member, [this.flat.size], "i32"));
    this.#lamElem = keep(tensor(lam, [this.flat.size]));
    this.#lamP = keep(tensor(Float32Array.from(this.options.lambda), [p]));
    this.#improvement = new ImprovementEma(p, { decay: this.options.improvementDecay });
    this.featureNames = this.#setupFeatures();
  }

  #rawFeatureNames(): string[] {
    switch (this.options.features) {
      case "authors":
        return [...featureSet(this.authorsFeatureSet).names];
      case "paper":
        return [...this.#newHistory().names];
      case "rules":
        return [...RULE_FEATURES];
    }
  }

  #newHistory(): FeatureHistory {
    return new FeatureHistory({
      population: this.population,
      losses: ["task", "l1"],
      actionLoss: [0, 1],
      totalSteps: this.options.totalSteps,
      valEvery: this.options.featureValEvery,
    });
  }

  #setupFeatures(): string[] {
    const names = this.#rawFeatureNames();
    if (this.options.features === "paper") this.#history = this.#newHistory();
    const drop = new Set<string>(this.options.dropFeatures);
    const keepIdx = names.flatMap((n, i) => (drop.has(featureGroup(n)) ? [] : [i]));
    if (keepIdx.length === 0) throw new Error("dropFeatures removes every feature");
    if (keepIdx.length < names.length) {
      const sel = new Float32Array(names.length * keepIdx.length);
      keepIdx.forEach((src, j) => (sel[src * keepIdx.length + j] = 1));
      this.#select = keep(tensor(sel, [names.length, keepIdx.length]));
    }
    return keepIdx.map((i) => names[i]);
  }

  /** Steps since the last reset. */
  get t(): number {
    return this.#t;
  }

  /** The per-member L1 weights. */
  get lambdas(): readonly number[] {
    return this.options.lambda;
  }

  /** Number of parameters of one member. */
  get memberSize(): number {
    return this.#specs.reduce((a, s) => a + s.perMember, 0);
  }

  #set(name: string, t: Tensor): void {
    this.#s[name] = swap(this.#s[name] ?? null, t);
  }

  #get(name: string): Tensor {
    const t = this.#s[name];
    if (!t) throw new Error(`${this.name}: state '${name}' is not available (call reset first)`);
    return t;
  }

  /** The member whose initialization member m takes (see `L1TaskOptions.initGroup`). */
  #initMember(m: number): number {
    const { sharedInit, initGroup, memberOffset } = this.options;
    return sharedInit ? 0 : Math.floor((memberOffset + m) / initGroup);
  }

  /**
   * Re-initializes every member from `memberSeed(seed, memberOffset + p)` and evaluates the
   * initial state.
   */
  reset(seed: number): void {
    const p = this.population;
    const host = new Float32Array(this.flat.size);
    for (let m = 0; m < p; m++) {
      const rng = new Rng(
        memberSeed(seed, this.#initMember(m)),
      );
      this.#specs.forEach((s) => {
        const vals = new Float32Array(s.perMember);
        s.init(rng, vals);
        host.set(vals, this.flat.ranges.get(s.name)!.start + m * s.perMember);
      });
    }
    backend().write(this.flat.data.storageFor("reset"), host, this.flat.data.offset);
    this.#opt?.dispose();
    this.#opt = new Adam(this.flat, { lr: this.options.lr });
    this.#t = 0;
    this.#history?.reset();
    this.#improvement.reset();
    this.#set("best", full([p], this.higherIsBetter ? -BIG : BIG));
    this.#set("testAtBest", full([p], 0));
    this.#set("bestStep", full([p], 0));
    this.#set("since", full([p], 0));
    this.#set("done", full([p], 0));
    this.#set("l1Count", full([p], 0));
    // The step count on the GPU: a step-dependent number written into a kernel would compile a
    // new pipeline every step (constants are baked into the WGSL).
    this.#set("steps", full([1], 0));
    this.#observe();
  }

  /**
   * One training step: member p applies `actions[p]` (0 = task loss, 1 = L1). Records GPU work
   * only; never awaits.
   */
  step(actions: Tensor | Int32Array): void {
    const p = this.population;
    const opt = this.#opt;
    if (!opt) throw new Error(`${this.name}: call reset(seed) before step()`);
    tidy(() => {
      const a = actions instanceof Tensor ? actions : tensor(actions, [p], "i32");
      if (a.size !== p) throw new Error(`${this.name}.step: expected ${p} actions, got ${a.size}`);
      noGrad(() => {
        const joint = this.options.mode === "joint";
        const af = joint ? full([p], 0) : a.reshape([p]).cast("f32");
        if (this.#history) {
          this.#history.recordStep(
            a.reshape([p]),
            ops.where(af, this.#get("l1"), this.#get("trainLoss")),
            ops.where(af, this.#get("gradL1"), this.#get("gradTask")),
          );
        }
        const theta = this.flat.data;
        const l1Grad = theta.sign().mul(this.#lamElem);
        const g = joint ? this.flat.grad.add(l1Grad) : ops.where(
          ops.gatherRows(af.reshape([p, 1]), this.#memberOfElem).reshape([this.flat.size]),
          l1Grad,
          this.flat.grad,
        );
        ops.assign_(this.flat.grad, g);
        this.#set("l1Count", this.#get("l1Count").add(af));
      });
      opt.step();
    });
    this.#t++;
    this.#set("steps", tidy(() => noGrad(() => this.#get("steps").add(1))));
    this.#history?.advance();
    this.#observe();
  }

  /** Per-member sum over all parameters of `f(param [P, n])` reduced over axis 1: [P]. */
  #memberReduce(src: (i: number) => Tensor, f: (x: Tensor) => Tensor): Tensor {
    const p = this.population;
    return this.params.map((_, i) => rowSum(f(src(i).reshape([p, -1]))))
      .reduce((acc, x) => acc.add(x));
  }

  /** Evaluates the state at the current parameters (see module doc); GPU work only. */
  #observe(): void {
    const o = this.options;
    const n = this.memberSize;
    const validate = this.#t % o.valEvery === 0;
    const refresh = validate || this.#t % o.featureValEvery === 0 || !this.#s.val;
    this.flat.zeroGrad();
    tidy(() => {
      const fw = this.forward(refresh, validate);
      fw.trainLoss.sum().backward();
      noGrad(() => {
        this.#set("trainLoss", fw.trainLoss.detach());
        if (fw.trainAcc) this.#set("trainAcc", fw.trainAcc);
        const theta = (i: number) => this.params[i];
        const grad = (i: number) => this.params[i].grad!;
        this.#set("l1", this.#memberReduce(theta, (x) => x.abs()).mul(this.#lamP));
        this.#set(
          "gradTask",
          this.#memberReduce(grad, (x) => x.square()).sqrt().mul(1 / Math.sqrt(n)),
        );
        this.#set(
          "gradL1",
          this.#memberReduce(theta, (x) => x.sign().abs()).sqrt().mul(this.#lamP).mul(
            1 / Math.sqrt(n),
          ),
        );
        if (refresh) {
          const valLoss = fw.valLoss!;
          this.#set("val", valLoss);
          if (fw.valAcc) this.#set("valAcc", fw.valAcc);
          this.#improvement.observe(valLoss);
          this.#history?.recordValidation(valLoss);
          if (validate) this.#track(this.higherIsBetter ? fw.valAcc! : valLoss, fw.test!);
        }
        this.#set("features", this.#computeFeatures());
      });
    });
  }

  /** Best-validation tracking and early stopping (per member, on the GPU). */
  #track(score: Tensor, test: Tensor): void {
    const alive = this.#get("done").neg().add(1);
    const better = this.higherIsBetter
      ? compare("gt", score, this.#get("best"))
      : compare("lt", score, this.#get("best"));
    const improved = better.mul(alive);
    this.#set("best", ops.where(improved, score, this.#get("best")));
    this.#set("testAtBest", ops.where(improved, test, this.#get("testAtBest")));
    this.#set("bestStep", ops.where(improved, this.#get("steps"), this.#get("bestStep")));
    const since = ops.where(improved, full([1], 0), this.#get("since").add(alive));
    this.#set("since", since);
    const patience = this.options.patience;
    if (patience !== null) {
      this.#set("done", this.#get("done").maximum(compare("ge", since, patience)));
    }
  }

  #computeFeatures(): Tensor {
    const p = this.population;
    let f: Tensor;
    switch (this.options.features) {
      case "authors": {
        const fs = featureSet(this.authorsFeatureSet);
        const task = this.#get("trainLoss");
        const raw: Record<string, Tensor> = {
          valLoss: this.#get("val"),
          trainLoss: task,
          improvementEma: this.#improvement.ema,
          mseLoss: task,
          ceLoss: task,
          l1Loss: this.#get("l1"),
          gradMse: this.#get("gradTask"),
          gradCe: this.#get("gradTask"),
          gradL1: this.#get("gradL1"),
        };
        if (this.#s.trainAcc) raw.trainAcc = this.#get("trainAcc");
        if (this.#s.valAcc) raw.valAcc = this.#get("valAcc");
        f = fs.compute(raw);
        break;
      }
      case "paper":
        f = this.#history!.features().detach();
        break;
      case "rules": {
        const cols = ["val", "trainLoss", "l1", "gradTask", "gradL1"].map((n) => this.#get(n));
        f = ops.concat(cols.map((c) => c.reshape([p, 1])), 1);
        break;
      }
    }
    return this.#select ? f.matmul(this.#select) : f;
  }

  /** The current features [P, K] (owned by the task; valid until the next step or reset). */
  features(): Tensor {
    return this.#get("features");
  }

  /**
   * Per-member metrics, each [P] (views owned by the task): `val` (current validation loss),
   * `best` (best validation score: MSE, or accuracy for classifiers), `test` (test metric at the
   * best validation point), `bestStep`, `done` (1 once early-stopped), `l1Fraction` (share of L1
   * steps), `trainLoss`, `l1`, `gradTask`, `gradL1`, and `valAcc`/`trainAcc` for classifiers.
   * Each entry is created when first read (a per-step hook reading only `val` costs nothing else).
   */
  metrics(): Record<string, Tensor> {
    const p = this.population;
    const out: Record<string, Tensor> = {};
    const define = (name: string, make: () => Tensor) => {
      let cached: Tensor | null = null;
      Object.defineProperty(out, name, {
        enumerable: true,
        get: () => (cached ??= make()),
      });
    };
    const views: [string, string][] = [
      ["val", "val"],
      ["best", "best"],
      ["test", "testAtBest"],
      ["bestStep", "bestStep"],
      ["done", "done"],
      ["trainLoss", "trainLoss"],
      ["l1", "l1"],
      ["gradTask", "gradTask"],
      ["gradL1", "gradL1"],
    ];
    if (this.#s.valAcc) views.push(["valAcc", "valAcc"]);
    if (this.#s.trainAcc) views.push(["trainAcc", "trainAcc"]);
    for (const [name, key] of views) define(name, () => this.#get(key).view([p], `metric.${name}`));
    define(
      "l1Fraction",
      () => noGrad(() => this.#get("l1Count").div(this.#get("steps").maximum(1))),
    );
    return out;
  }

  /** The flat parameter buffer (for tests and checkpoints). */
  get parameters(): FlatParams {
    return this.flat;
  }

  /** Frees all GPU memory of the task. */
  dispose(): void {
    for (const t of Object.values(this.#s)) t?.dispose();
    this.#s = {};
    this.#opt?.dispose();
    this.#history?.dispose();
    this.#improvement.dispose();
    this.#select?.dispose();
    this.#lamElem.dispose();
    this.#lamP.dispose();
    this.#memberOfElem.dispose();
    this.flat.dispose();
    this.disposeData();
  }

  /** Frees the subclass's data tensors. */
  protected abstract disposeData(): void;
}

/** The group a feature belongs to, by name (for {@link FeatureGroup} ablations). */
export function featureGroup(name: string): FeatureGroup | "other" {
  if (/grad/.test(name)) return "grad";
  if (/^(loss\.|mse_loss|ce_loss|l1_loss)/.test(name)) return "loss";
  if (/^(val|rel_val|log_improvement|rel_train_val_acc)/.test(name)) return "val";
  return "other";
}
