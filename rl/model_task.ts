/**
 * `ModelTask`: schedule your own model. Give it a module, a loss function per objective, the
 * parameter groups, the actions (loss, group) and a validation metric; it becomes a
 * {@link ScheduleTask} (population 1) that any controller, learned or hand-made, can drive.
 *
 * One step, with no host sync, whatever action the controller sampled on the GPU:
 *
 * 1. every loss is evaluated and ONE backward runs on `sum_j mask_j * loss_j`, where `mask_j` is 1
 *    for the chosen action's loss (built on the GPU from the action), so the gradient buffer holds
 *    exactly the chosen loss's gradient;
 * 2. each action's optimizer step is gated with `dispatchWorkgroupsIndirect`: its workgroup count
 *    is written on the GPU as 0 unless the action was chosen, so only the chosen group moves and
 *    only its Adam step counter advances.
 *
 * The cost is one forward of every loss per step (the unchosen ones are wasted work); tasks that
 * care (the built-in GAN) specialize. Features are the paper's generic set (rl/features.ts):
 * progress t/T, each loss's value and normalized gradient norm as lazy history, and the
 * validation metric with its EMAs and differences.
 * @module
 */

import { FlatParams, type Module } from "../nn/module.ts";
import { Adam, gradNorm, type Optimizer } from "../nn/optim.ts";
import { full, tensor } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import { FeatureHistory } from "./features.ts";
import type { Action, ScheduleTask } from "./task.ts";

/** What {@link ModelTask} needs to know about your model. */
export interface ModelTaskOptions {
  /** Task name (shown in controller files). */
  name?: string;
  /** The model whose parameters are trained (packed into one flat buffer). */
  model: Module;
  /** Parameter groups by name-prefix, e.g. `{ G: ["gen."], D: ["disc."] }` (default: one "all"). */
  groups?: Record<string, string[]>;
  /** Each objective as a function returning a scalar loss (it may draw a fresh batch). */
  losses: Record<string, () => Tensor>;
  /** The action space: which loss each action minimizes and which group it updates. */
  actions: readonly Action[];
  /** A validation metric, lower is better (a scalar tensor), evaluated every `valEvery` steps. */
  validate: () => Tensor;
  /** Validation interval in steps (default 10). */
  valEvery?: number;
  /** Episode length T for the progress feature (default 1000). */
  totalSteps?: number;
  /** Optimizer factory (default Adam, lr 1e-3, one step counter shared by all groups). */
  optimizer?: (flat: FlatParams) => Optimizer;
  /** Re-initializes the model's parameters for a new episode (default: keep training them). */
  reinit?: (seed: number, flat: FlatParams) => void;
}

/** A user's model as a schedule task (population 1); see the module doc. */
export class ModelTask implements ScheduleTask {
  /** Task name. */
  readonly name: string;
  /** The action space. */
  readonly actions: readonly Action[];
  /** Always 1: one model. */
  readonly population = 1;
  /** The paper's generic feature names. */
  readonly featureNames: readonly string[];
  /** The packed parameters. */
  readonly flat: FlatParams;
  /** The optimizer. */
  readonly optimizer: Optimizer;
  #opts: ModelTaskOptions;
  #lossNames: string[];
  #history: FeatureHistory;
  #val: Tensor;
  #best: Tensor;

  /** Packs the model's parameters and builds the optimizer and feature history. */
  constructor(opts: ModelTaskOptions) {
    this.#opts = opts;
    this.name = opts.name ?? "model";
    this.actions = opts.actions;
    this.#lossNames = Object.keys(opts.losses);
    for (const a of opts.actions) {
      if (!this.#lossNames.includes(a.loss)) {
        throw new Error(
          `ModelTask: action '${a.name}' minimizes unknown loss '${a.loss}'; losses: ${
            this.#lossNames.join(", ")
          }`,
        );
      }
    }
    this.flat = new FlatParams(opts.model.namedParameters(), opts.groups ?? {});
    for (const a of opts.actions) this.flat.group(a.group); // throws with the valid names
    this.optimizer = opts.optimizer?.(this.flat) ?? new Adam(this.flat, { lr: 1e-3 });
    this.#history = new FeatureHistory({
      population: 1,
      losses: this.#lossNames,
      actionLoss: opts.actions.map((a) => this.#lossNames.indexOf(a.loss)),
      totalSteps: opts.totalSteps ?? 1000,
      valEvery: opts.valEvery ?? 10,
    });
    this.featureNames = this.#history.names;
    this.#val = keep(full([1], 0));
    this.#best = keep(full([1], 3.4e38));
  }

  /** Steps taken since the last reset. */
  get t(): number {
    return this.#history.t;
  }

  /** Starts a new episode: optional re-initialization, fresh history and best metric. */
  reset(seed: number): void {
    this.#opts.reinit?.(seed, this.flat);
    this.#history.reset();
    ops.fill_(this.#best, 3.4e38);
  }

  /** One training step with the action chosen for the (single) member. */
  step(actions: Tensor | Int32Array): void {
    const owned = actions instanceof Int32Array ? tensor(actions, [1], "i32") : null;
    const a = owned ?? (actions as Tensor);
    tidy(() => {
      const af = ops.cast(a, "f32").reshape([1]);
      // is[k] = 1 when action k was chosen (|a - k| < 0.5), built on the GPU.
      const chosen = this.actions.map((_, k) =>
        ops.scalarOp("add_scalar", ops.scalarOp("step", af.sub(k).abs(), 0.5).neg(), 1)
      );
      this.flat.zeroGrad();
      let total: Tensor | null = null;
      let value: Tensor | null = null;
      for (const name of this.#lossNames) {
        const mask = this.actions.reduce<Tensor | null>(
          (m, act, k) => (act.loss === name ? (m ? m.add(chosen[k]) : chosen[k]) : m),
          null,
        );
        if (!mask) continue;
        const loss = this.#opts.losses[name]().reshape([1]);
        const term = loss.mul(mask);
        total = total ? total.add(term) : term;
        const v = noGrad(() => loss.detach().mul(mask));
        value = value ? value.add(v) : v;
      }
      total!.sum().backward();
      const norm = gradNorm(this.flat).mul(1 / Math.sqrt(this.flat.size));
      this.#history.recordStep(a.reshape([1]), value!, norm);
      for (const [k, act] of this.actions.entries()) {
        const size = this.optimizer.dispatchSize(act.group)[0];
        const args = ops.cast(ops.concat([chosen[k].mul(size), full([2], 1)]), "u32");
        this.optimizer.step(act.group, { indirect: args });
      }
      if (this.#history.validationDue()) {
        const val = noGrad(() => this.#opts.validate().reshape([1]));
        this.#history.recordValidation(val);
        ops.assign_(this.#val, val);
        ops.assign_(this.#best, ops.binary("minimum", this.#best, val));
      }
      this.#history.advance();
    });
    owned?.dispose();
  }

  /** The feature vector [1, K]. */
  features(): Tensor {
    return this.#history.features();
  }

  /** `val`: the latest validation metric; `best`: the best so far this episode. */
  metrics(): Record<string, Tensor> {
    return { val: this.#val, best: this.#best };
  }

  /** Frees the flat buffers, optimizer state and history. */
  dispose(): void {
    this.#history.dispose();
    this.optimizer.dispose();
    this.flat.dispose();
    this.#val.dispose();
    this.#best.dispose();
  }
}
