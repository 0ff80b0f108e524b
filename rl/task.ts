/**
 * The contract between AutoLoss and a training problem it schedules.
 *
 * A task trains P independent models in lockstep (the population dimension; P = 1 for a GAN).
 * At every step the controller reads each member's feature vector and picks one action per
 * member: a (loss, parameter group) pair. The task records that update without waiting on the
 * GPU. Features, validation metrics and rewards stay on the GPU; the runner reads them back at
 * most once per reporting interval or controller update (see `RunStats.hostSyncs`).
 * @module
 */

import type { Generator } from "../gpu/random.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** One thing the controller can choose: minimize `loss` by updating parameter group `group`. */
export interface Action {
  /** Display name, e.g. "task" / "l1", "D" / "G", "MT" / "POS" / "NER". */
  name: string;
  /** The loss minimized (a name the task understands). */
  loss: string;
  /** The parameter group updated (a FlatParams group name, or several joined by "+"). */
  group: string;
}

/** A training problem that AutoLoss can schedule. */
export interface ScheduleTask {
  /** Task name (registry key), e.g. "regression". */
  readonly name: string;
  /** The action space, in index order. */
  readonly actions: readonly Action[];
  /** P: models trained in lockstep, each with its own action per step. */
  readonly population: number;
  /** Feature names, in the order of the feature vector (length K). */
  readonly featureNames: readonly string[];
  /** Steps taken since the last reset. */
  readonly t: number;
  /**
   * Re-initializes all P models from `seed` and clears the feature history. Member p must draw
   * everything (init, data order, noise) from `memberSeed(seed, p)` and never from its index, so
   * that member p of a population behaves exactly like a population of one reset with
   * `memberSeed(seed, p)`.
   */
  reset(seed: number): void;
  /**
   * Records one training step: member p applies action `actions[p]`. `actions` is an i32 tensor
   * [P] on the GPU (sampled there, no host sync) or a host array. Must not await.
   */
  step(actions: Tensor | Int32Array): void;
  /**
   * The current features [P, K] (f32, GPU), in the scale the task's feature set documents (see
   * rl/features.ts). A learned controller applies its own saved normalization on top. The task
   * owns the returned tensor (it must `keep()` tensors it holds across steps); callers do not
   * dispose it.
   */
  features(): Tensor;
  /** Scalar metrics per member for rewards and reports, e.g. `{ val: [P], best: [P] }` (GPU). */
  metrics(): Record<string, Tensor>;
  /** Frees the task's GPU memory. */
  dispose(): void;
}

/** Anything that picks actions from features: learned controllers and hand-made schedules. */
export interface Controller {
  /** Display name, e.g. "mlp", "fixed 1:5", "S2". */
  readonly name: string;
  /**
   * Picks one action per member for features [P, K] at step `t`. Returns i32 actions [P] on the
   * GPU (and, for learned controllers in sampling mode, their log-probabilities [P]).
   */
  act(features: Tensor, ctx: ActContext): { actions: Tensor; logProbs?: Tensor };
}

/** What a controller may use besides the features. */
export interface ActContext {
  /** Step index within the episode. */
  t: number;
  /** Greedy (argmax) instead of sampling: evaluation mode. */
  greedy: boolean;
  /** Random stream for sampling (seeded per episode for reproducibility). */
  gen: Generator;
  /**
   * Per-member sampling seeds, u32 [P]: `memberSeed(sampleSeed, p)`. Controllers that sample pass
   * them to `categorical(probs, gen, memberSeeds)` so each member draws from its own stream.
   */
  memberSeeds?: Tensor;
}

/**
 * The seed of population member `member` under `seed`: `seed` itself for member 0, a hash of
 * (seed, member) otherwise. Since `memberSeed(memberSeed(s, p), 0) === memberSeed(s, p)`, member p
 * of a population run with seed s reproduces a population-of-one run with seed
 * `memberSeed(s, p)`.
 */
export function memberSeed(seed: number, member: number): number {
  const s = seed >>> 0;
  if (member === 0) return s;
  return mix32((s ^ mix32((member >>> 0) + 0x9e3779b9)) >>> 0);
}

/** The "lowbias32" integer finalizer (C. Wellons), as the GPU random kernels use. */
function mix32(v: number): number {
  let x = v >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * A plain, serializable description of one episode, so rollouts can later run in workers or on
 * other machines: the task config, seeds, and the controller to use.
 */
export interface EpisodeSpec {
  /** Registry name of the task. */
  task: string;
  /** Resolved task config (plain JSON). */
  config: Record<string, unknown>;
  /** Seed for the task models' init and data order. */
  seed: number;
  /** Seed for action sampling. */
  sampleSeed: number;
  /** Controller file contents (JSON) or a hand-made schedule's name. */
  controller: unknown;
  /** Steps to run. */
  steps: number;
}

/** What an episode returns: plain arrays, no tensors. */
export interface EpisodeResult {
  /** The spec that produced it. */
  spec: EpisodeSpec;
  /** Per-member final reward. */
  rewards: number[];
  /** Per-member reward metric (e.g. best validation MSE). */
  metrics: Record<string, number[]>;
  /** Actions taken, [steps][P], when recorded. */
  actions?: number[][];
}
