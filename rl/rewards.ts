/**
 * Reward functions.
 *
 * Final (episodic) rewards, computed on the host from the metrics an episode reads back once:
 *
 * | form | formula | authors' C | task |
 * |---|---|---|---|
 * | {@link inverseErrorReward} | `C / err` | 20000 | regression (err = best validation MSE) |
 * | {@link classificationReward} | `-C / max(acc, 0.5)` (= the paper's `C / (err - 1)`) | 1000 | classification |
 * | {@link inceptionReward} | `C * IS^2` | 10 | GAN |
 * | {@link perplexityReward} | `C / PPL` | - | NMT |
 *
 * GPU-side rewards:
 * - {@link improvementStepReward}: the authors' dense per-step reward (not in the paper),
 *   `sign(d) * min(sqrt(|d| / (|I| + 1e-5)), rmax) * scale`, with d the validation improvement
 *   and I its EMA (see `ImprovementEma` in rl/features.ts).
 * - {@link NormalizedImprovementReward}: the paper's segment reward for online PPO (section 4.4),
 *   `C * (P(t+T) - P(t)) / ((P(t) - P(t-kT)) / k)`.
 * @module
 */

import { tensor } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";

/** Per-member final rewards from an episode's metrics (plain arrays, one entry per member). */
export type RewardFn = (metrics: Record<string, number[]>) => number[];

/** Regression: `C / err` with err the best validation MSE (authors: C = 20000, noise floor kept). */
export function inverseErrorReward(err: number, c = 20000): number {
  return c / err;
}

/**
 * Classification: `-C / max(acc, floor)` (authors: C = 1000, floor = 1 / classes = 0.5). Equal to
 * the paper's `C / (err - 1)` for acc >= floor.
 */
export function classificationReward(acc: number, c = 1000, floor = 0.5): number {
  return -c / Math.max(acc, floor);
}

/** GAN: `C * IS^2` (authors: C = 10, IS of the best checkpoint). */
export function inceptionReward(inceptionScore: number, c = 10): number {
  return c * inceptionScore * inceptionScore;
}

/** NMT: `C / PPL` (lower perplexity, larger reward). */
export function perplexityReward(perplexity: number, c = 1): number {
  return c / perplexity;
}

/** A {@link RewardFn} applying `f` to each member's value of `metric`. */
export function metricReward(metric: string, f: (value: number) => number): RewardFn {
  return (metrics) => {
    const values = metrics[metric];
    if (!values) {
      throw new Error(
        `reward: the episode has no metric '${metric}'; metrics: ${
          Object.keys(metrics).join(", ") || "(none)"
        }`,
      );
    }
    return values.map(f);
  };
}

/** The reward forms by task kind, as {@link RewardFn} factories over a metric name. */
export const REWARDS: {
  readonly regression: (metric?: string, c?: number) => RewardFn;
  readonly classification: (metric?: string, c?: number) => RewardFn;
  readonly gan: (metric?: string, c?: number) => RewardFn;
  readonly perplexity: (metric?: string, c?: number) => RewardFn;
} = {
  regression: (metric = "best", c = 20000) => metricReward(metric, (v) => inverseErrorReward(v, c)),
  classification: (metric = "best", c = 1000) =>
    metricReward(metric, (v) => classificationReward(v, c)),
  gan: (metric = "best", c = 10) => metricReward(metric, (v) => inceptionReward(v, c)),
  perplexity: (metric = "best", c = 1) => metricReward(metric, (v) => perplexityReward(v, c)),
};

// ---------------------------------------------------------------- dense step reward

/** Options of {@link improvementStepReward}. */
export interface StepRewardOptions {
  /** Cap on the magnitude before scaling (authors: the advantage clip, 20 reg / 5 cls). */
  rmax?: number;
  /** Scale (authors' `reward_step_ctrl`: 1 reg, 0.1 cls). */
  scale?: number;
}

/**
 * The authors' dense step reward on the GPU, per member:
 * `sign(d) * min(sqrt(|d| / (|I| + 1e-5)), rmax) * scale` for improvement d [P] and its EMA
 * I [P] (updated with d before this call, as in the authors' code).
 */
export function improvementStepReward(
  delta: Tensor,
  ema: Tensor,
  opts: StepRewardOptions = {},
): Tensor {
  const rmax = opts.rmax ?? 20;
  const scale = opts.scale ?? 1;
  return noGrad(() =>
    tidy(() => {
      const ratio = delta.abs().div(ema.abs().add(1e-5)).sqrt().minimum(rmax);
      return delta.sign().mul(ratio).mul(scale);
    })
  );
}

/** Host reference of {@link improvementStepReward} (for tests and reports). */
export function improvementStepRewardHost(
  delta: number,
  ema: number,
  opts: StepRewardOptions = {},
): number {
  const v = Math.min(Math.sqrt(Math.abs(delta) / (Math.abs(ema) + 1e-5)), opts.rmax ?? 20);
  return Math.sign(delta) * v * (opts.scale ?? 1);
}

// ---------------------------------------------------------------- segment reward (online PPO)

/** Options of {@link NormalizedImprovementReward}. */
export interface NormalizedImprovementOptions {
  /** C (default 1). */
  c?: number;
  /** k: segments over which the recent rate of improvement is averaged (default 3). */
  k?: number;
  /** Whether larger metric values are better (IS: true; PPL: false). Default true. */
  higherIsBetter?: boolean;
  /** Floor on the normalizer's magnitude (default 1e-8). */
  eps?: number;
}

/**
 * The paper's reward for a segment of T steps (section 4.4), per member, on the GPU:
 * `R = C * (P(t+T) - P(t)) / |(P(t) - P(t-hT)) / h|` with h = min(k, segments seen so far), the
 * improvement measured in the "better" direction. Deviations from the printed formula, both to
 * keep the sign meaningful: the normalizer is taken in absolute value (floored at `eps`), and on
 * the first segment (no history) the segment's own improvement normalizes, so R = C * sign.
 * Every step of the segment receives R.
 */
export class NormalizedImprovementReward {
  /** C. */
  readonly c: number;
  /** k. */
  readonly k: number;
  /** Direction. */
  readonly higherIsBetter: boolean;
  /** Normalizer floor. */
  readonly eps: number;
  #history: Tensor[] = [];

  /** Creates it (call `reset` with the metric at the start of training). */
  constructor(opts: NormalizedImprovementOptions = {}) {
    this.c = opts.c ?? 1;
    this.k = opts.k ?? 3;
    this.higherIsBetter = opts.higherIsBetter ?? true;
    this.eps = opts.eps ?? 1e-8;
  }

  /** Starts over from the metric `start` [P] (P(0)). */
  reset(start: Tensor): void {
    for (const t of this.#history) t.dispose();
    this.#history = [keep(ops.assign_(ops.empty(start.shape), start))];
  }

  /**
   * Restores the history from host values of one member, oldest first (a checkpoint keeps the
   * metric of the last k + 1 segment ends): the same state as `reset(h[0])` then `next(h[i])`.
   */
  restore(history: readonly number[]): void {
    if (!history.length) throw new Error("NormalizedImprovementReward.restore: empty history");
    for (const t of this.#history) t.dispose();
    this.#history = history.slice(-(this.k + 1)).map((v) => keep(tensor(Float32Array.of(v), [1])));
  }

  /** The reward [P] of the segment that ends with metric `now` [P]; then records `now`. */
  next(now: Tensor): Tensor {
    if (!this.#history.length) throw new Error("NormalizedImprovementReward: call reset() first");
    const sgn = this.higherIsBetter ? 1 : -1;
    const hist = this.#history;
    const h = Math.min(this.k, hist.length - 1);
    const reward = noGrad(() =>
      tidy(() => {
        const pt = hist[hist.length - 1];
        const gain = now.sub(pt).mul(sgn);
        const rate = h > 0 ? pt.sub(hist[hist.length - 1 - h]).mul(sgn / h) : gain;
        const den = rate.abs().maximum(this.eps);
        return gain.div(den).mul(this.c);
      })
    );
    hist.push(keep(ops.assign_(ops.empty(now.shape), now)));
    while (hist.length > this.k + 1) hist.shift()!.dispose();
    return reward;
  }

  /** Frees the history. */
  dispose(): void {
    for (const t of this.#history) t.dispose();
    this.#history = [];
  }
}
