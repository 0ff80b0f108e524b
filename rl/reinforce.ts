/**
 * Episodic REINFORCE for AutoLoss controllers (paper eq. 2 and Algorithm 1, with the authors'
 * code's details).
 *
 * For each update: run S episodes (S = 1 in all the paper's experiments), each of T steps for a
 * population of P members; read each member's final reward R once; turn it into an advantage
 * with a moving-average baseline; add the optional dense step reward r_t; take ONE Adam step on
 *
 *     loss = -mean_{s,t,p} [ log pi(a_t | x_t) * (adv_p + r_t,p) ]  (- entCoef * mean entropy)
 *
 * computed as one batched forward/backward over all S * T * P recorded samples.
 *
 * Baseline (scalar, shared by all members): `B <- eta * B + (1 - eta) * mean_p R_p`.
 * - order "authors" (safpla/AutoLossRelease master): B is updated BEFORE the advantage is taken,
 *   `adv_p = R_p - B_new` (= eta * (R - B_old) for P = 1);
 * - order "dev" (safpla/autoLoss): `adv_p = R_p - B_old`, then B is updated.
 * The first episode initializes B to the mean reward (so its advantage is 0 for P = 1).
 *
 * Advantage clipping: symmetric `[-c, c]` (regression 20, classification 5), or the authors' GAN
 * rule, magnitude clipped into [lo, hi] = [1, 20] keeping the sign (adv = 0 becomes +lo).
 * @module
 */

import {
  type Checkpoint,
  type CheckpointPart,
  learnerPart,
  loadLearnerPart,
} from "../nn/checkpoint.ts";
import { Adam } from "../nn/optim.ts";
import { FlatParams } from "../nn/module.ts";
import { tensor } from "../tensor/functional.ts";
import { noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import type { PolicyController } from "./controller.ts";
import { ImprovementEma } from "./features.ts";
import { improvementStepReward } from "./rewards.ts";
import type { TrajectoryBuffer } from "./trajectory.ts";

/** When the baseline is updated relative to taking the advantage (see module doc). */
export type BaselineOrder = "authors" | "dev";

/** How advantages are clipped. */
export type AdvantageClip =
  | { kind: "none" }
  | { kind: "symmetric"; c: number }
  | { kind: "magnitude"; lo: number; hi: number };

/** The authors' dense step reward settings (reference doc section 3.3). */
export interface StepRewardArgs {
  /** Task metric holding the current validation loss, [P] (e.g. "val"). */
  metric: string;
  /** EMA decay of the improvement (default: the baseline decay, as the authors). */
  decay?: number;
  /** Magnitude cap (default: the symmetric clip c, else 20; the authors' `reward_max_value`). */
  rmax?: number;
  /** Scale (authors: 1 regression, 0.1 classification). */
  scale?: number;
  /** Improvement assumed at the first step (default 0.1). */
  firstDelta?: number;
}

/** REINFORCE hyperparameters. */
export interface ReinforceArgs {
  /** Adam learning rate (authors: 1e-3 regression/classification, 0.02 GAN). */
  learningRate: number;
  /** Adam epsilon. */
  adamEps: number;
  /** Baseline decay eta (authors: 0.8 regression, 0.9 classification and GAN). */
  baselineDecay: number;
  /** Baseline update order. */
  baselineOrder: BaselineOrder;
  /** Advantage clipping. */
  advantageClip: AdvantageClip;
  /** Dense per-step reward added to the final advantage, or null (the paper). */
  stepReward: StepRewardArgs | null;
  /** S: episodes per controller update (the paper: 1). */
  episodesPerUpdate: number;
  /** Entropy bonus coefficient (authors: 0). */
  entropyCoef: number;
}

/** Defaults: the authors' regression settings without the dense step reward. */
export const REINFORCE_DEFAULTS: ReinforceArgs = {
  learningRate: 1e-3,
  adamEps: 1e-8,
  baselineDecay: 0.8,
  baselineOrder: "authors",
  advantageClip: { kind: "symmetric", c: 20 },
  stepReward: null,
  episodesPerUpdate: 1,
  entropyCoef: 0,
};

/** The authors' settings per task (reference doc sections 3.2, 3.3, 4). */
export const REINFORCE_PRESETS: {
  readonly regression: Partial<ReinforceArgs>;
  readonly classification: Partial<ReinforceArgs>;
  readonly gan: Partial<ReinforceArgs>;
} = {
  regression: {
    learningRate: 1e-3,
    baselineDecay: 0.8,
    advantageClip: { kind: "symmetric", c: 20 },
    stepReward: { metric: "val", scale: 1 },
  },
  classification: {
    learningRate: 1e-3,
    baselineDecay: 0.9,
    advantageClip: { kind: "symmetric", c: 5 },
    stepReward: { metric: "val", scale: 0.1 },
  },
  gan: {
    learningRate: 0.02,
    baselineDecay: 0.9,
    advantageClip: { kind: "magnitude", lo: 1, hi: 20 },
    stepReward: null,
  },
};

/**
 * Advantages from rewards and a scalar moving-average baseline (host arithmetic; see module doc
 * for the two orders). Returns the unclipped advantages and the new baseline.
 */
export function baselineAdvantages(
  rewards: readonly number[],
  baseline: number | null,
  decay: number,
  order: BaselineOrder,
): { advantages: number[]; baseline: number } {
  if (rewards.length === 0) throw new Error("baselineAdvantages: no rewards");
  const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
  const old = baseline ?? mean;
  const updated = decay * old + (1 - decay) * mean;
  const ref = order === "authors" ? updated : old;
  return { advantages: rewards.map((r) => r - ref), baseline: updated };
}

/** Clips one advantage (see {@link AdvantageClip}). */
export function clipAdvantage(adv: number, clip: AdvantageClip): number {
  switch (clip.kind) {
    case "none":
      return adv;
    case "symmetric":
      return Math.min(Math.max(adv, -clip.c), clip.c);
    case "magnitude": {
      const m = Math.min(Math.max(Math.abs(adv), clip.lo), clip.hi);
      return adv < 0 ? -m : m;
    }
  }
}

/**
 * The authors' dense step reward for a population: each step, observe the validation loss
 * [P], update the improvement EMA, and return `sign(d) * min(sqrt(|d|/(|I|+1e-5)), rmax) * scale`.
 */
export class DenseStepReward {
  /** The improvement tracker. */
  readonly improvement: ImprovementEma;
  /** Magnitude cap. */
  readonly rmax: number;
  /** Scale. */
  readonly scale: number;

  /** Creates the tracker for P members. */
  constructor(population: number, args: StepRewardArgs, defaults: ReinforceArgs) {
    this.improvement = new ImprovementEma(population, {
      decay: args.decay ?? defaults.baselineDecay,
      firstDelta: args.firstDelta ?? 0.1,
    });
    this.rmax = args.rmax ??
      (defaults.advantageClip.kind === "symmetric" ? defaults.advantageClip.c : 20);
    this.scale = args.scale ?? 1;
  }

  /** Starts a new episode. */
  reset(): void {
    this.improvement.reset();
  }

  /** This step's reward [P] from the validation loss [P] (caller's scope). */
  step(valLoss: Tensor): Tensor {
    return tidy(() => {
      const delta = this.improvement.observe(valLoss);
      return improvementStepReward(delta, this.improvement.ema, {
        rmax: this.rmax,
        scale: this.scale,
      });
    });
  }

  /** Frees the tracker. */
  dispose(): void {
    this.improvement.dispose();
  }
}

/** REINFORCE on a {@link PolicyController}: baseline bookkeeping plus one Adam step per update. */
export class Reinforce {
  /** Hyperparameters. */
  readonly args: ReinforceArgs;
  /** The controller trained (its parameters are packed into `flat`). */
  readonly controller: PolicyController;
  /** The controller's parameters and gradients. */
  readonly flat: FlatParams;
  /** Adam over `flat`. */
  readonly optimizer: Adam;
  /** The moving-average baseline (null before the first episode). */
  baseline: number | null = null;
  /** Controller updates taken. */
  updates = 0;

  /** Packs the controller's parameters and creates the optimizer. */
  constructor(controller: PolicyController, args: Partial<ReinforceArgs> = {}) {
    this.args = { ...REINFORCE_DEFAULTS, ...args };
    this.controller = controller;
    this.flat = new FlatParams(controller.namedParameters());
    this.optimizer = new Adam(this.flat, { lr: this.args.learningRate, eps: this.args.adamEps });
  }

  /**
   * The controller's parameters (`${prefix}<name>`), the Adam state (`${prefix}optim.`), the
   * baseline and the update count, for a checkpoint.
   */
  checkpointState(prefix: string): CheckpointPart {
    const counters = { baseline: this.baseline, updates: this.updates };
    return learnerPart(this.flat, this.optimizer, prefix, counters);
  }

  /**
   * Restores a state saved by {@link Reinforce.checkpointState} under `prefix` (every size is
   * checked before anything is written). `metadata` overrides entries of the checkpoint's (files
   * written before the counters were there).
   */
  loadCheckpoint(ckpt: Checkpoint, prefix: string, metadata: Record<string, string> = {}): void {
    const c = loadLearnerPart(ckpt, this.flat, this.optimizer, prefix, ["baseline", "updates"], {
      metadata,
    });
    this.baseline = c.baseline as number | null;
    this.updates = c.updates as number;
  }

  /** Per-member advantages for one episode's rewards; updates the baseline. */
  advantages(rewards: readonly number[]): number[] {
    const { advantages, baseline } = baselineAdvantages(
      rewards,
      this.baseline,
      this.args.baselineDecay,
      this.args.baselineOrder,
    );
    this.baseline = baseline;
    return advantages.map((a) => clipAdvantage(a, this.args.advantageClip));
  }

  /**
   * The REINFORCE loss `-mean(log pi(a|x) * w) - entCoef * mean(H)` for features [N, K], i32
   * actions [N] and per-sample weights [N] (differentiable in the controller's parameters).
   */
  loss(features: Tensor, actions: Tensor, weights: Tensor): Tensor {
    const logp = this.controller.logProb(features, actions);
    let loss = logp.mul(weights.reshape([logp.size])).mean().neg();
    if (this.args.entropyCoef !== 0) {
      loss = loss.sub(this.controller.entropy(features).mean().mul(this.args.entropyCoef));
    }
    return loss;
  }

  /**
   * One controller update from `buffer`, which holds S = advantages.length episodes of
   * `buffer.steps / S` steps each (episode s in rows s*T .. s*T+T-1); `advantages[s][p]` is member
   * p's advantage in episode s; dense step rewards, when the buffer has a "rewards" field, are
   * added per step. Returns the loss (a 1-element tensor; read it with the next readback).
   */
  update(buffer: TrajectoryBuffer, advantages: readonly (readonly number[])[]): Tensor {
    const s = advantages.length;
    const p = buffer.population;
    if (s === 0 || buffer.steps % s !== 0 || advantages.some((a) => a.length !== p)) {
      throw new Error(
        `Reinforce.update: need S advantage rows of ${p} for a buffer of ${buffer.steps} steps ` +
          `(a multiple of S), got ${s} rows`,
      );
    }
    const t = buffer.steps / s;
    this.flat.zeroGrad();
    const loss = tidy(() => {
      const adv = tensor(Float32Array.from(advantages.flat()), [s, 1, p]);
      const dense = buffer.scalars.rewards;
      const weights = dense ? dense.reshape([s, t, p]).add(adv) : adv.expand([s, t, p]);
      const l = this.loss(buffer.flat("features"), buffer.flat("actions"), weights.reshape([-1]));
      l.backward();
      return noGrad(() => l.detach());
    });
    this.optimizer.step();
    this.updates++;
    return loss;
  }

  /** Frees the optimizer state (the controller keeps its parameters). */
  dispose(): void {
    this.optimizer.dispose();
  }
}
