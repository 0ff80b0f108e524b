/**
 * PPO actor-critic for online controller training in fixed-length segments (paper section 4.4,
 * appendix A.3), written after CleanRL's `ppo.py` and its 13 core implementation details
 * (Huang et al., "The 37 Implementation Details of PPO", 2022):
 *
 * 1. vectorized environments: the task's population P;
 * 2. orthogonal init, zero bias (sqrt 2 hidden gain, 0.01 policy head, 1.0 value head);
 * 3. Adam with eps 1e-5;
 * 4. linear learning-rate annealing (`annealLr`, needs `numUpdates`);
 * 5. GAE with done masking and a bootstrap value (rl/gae.ts);
 * 6. `updateEpochs` epochs of `numMinibatches` shuffled minibatches of the T * P segment;
 * 7. per-minibatch advantage normalization;
 * 8. clipped surrogate objective;
 * 9. clipped value loss;
 * 10. total loss `pg - entCoef * entropy + vfCoef * v`;
 * 11. global gradient-norm clipping (0.5) over actor and critic together;
 * 12. debug scalars: policy_loss, value_loss, entropy, old_approx_kl, approx_kl, clipfrac,
 *     explained_variance (read back ONCE per update);
 * 13. separate actor and critic networks.
 *
 * Extras: `targetKl` early stop, decided ON THE GPU (no host sync): once an epoch ends with
 * approx_kl > targetKl, a flag turns the optimizer's indirect dispatch counts to zero, so the
 * remaining minibatches change nothing. Old-policy sync: by default the old policy is the
 * rollout's log-probabilities (synced at every update, as CleanRL and the authors' code);
 * `oldPolicySyncEvery: k` keeps a frozen copy synced every k updates (the paper's "every 10").
 *
 * The rollout loop lives in rl/training.ts (`trainPpo`); this file is the agent and the update.
 * @module
 */

import {
  type Checkpoint,
  type CheckpointPart,
  learnerPart,
  loadLearnerPart,
} from "../nn/checkpoint.ts";
import { mulberry32 } from "../nn/host_random.ts";
import { Adam } from "../nn/optim.ts";
import { clipGradNorm } from "../nn/optim.ts";
import { FlatParams, Module } from "../nn/module.ts";
import { full, tensor } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { type Activation, entropyOf, MlpNet, PolicyController } from "./controller.ts";
import type { FeatureNormalizer, NormalizationSpec } from "./normalization.ts";
import { gae } from "./gae.ts";
import type { TrajectoryBuffer } from "./trajectory.ts";

/** PPO hyperparameters (CleanRL's defaults; the authors' NMT values in {@link PPO_AUTHORS_NMT}). */
export interface PpoArgs {
  /** Adam learning rate. */
  learningRate: number;
  /** Anneal the learning rate linearly to 0 over `numUpdates` updates. */
  annealLr: boolean;
  /** Total updates planned (needed by `annealLr`; null disables annealing). */
  numUpdates: number | null;
  /** T: steps per segment (rollout length per member). */
  numSteps: number;
  /** Discount gamma. */
  gamma: number;
  /** GAE lambda. */
  gaeLambda: number;
  /** Minibatches per epoch. */
  numMinibatches: number;
  /** Epochs over each segment (K). */
  updateEpochs: number;
  /** Normalize advantages per minibatch. */
  normAdv: boolean;
  /** Surrogate clipping coefficient epsilon. */
  clipCoef: number;
  /** Clip the value loss as in CleanRL. */
  clipVloss: boolean;
  /** Entropy bonus coefficient. */
  entCoef: number;
  /** Value loss coefficient. */
  vfCoef: number;
  /** Global gradient-norm clip. */
  maxGradNorm: number;
  /** Early-stop an update once approx_kl exceeds this (null: never). */
  targetKl: number | null;
  /**
   * Sync the old (behavior) policy every this many updates. 1 (CleanRL, and the authors' code):
   * the ratio's denominator is the rollout's own log-probabilities. k > 1 (the paper's NMT
   * controller: 10): a frozen copy of the actor, synced after every k-th update, provides it.
   */
  oldPolicySyncEvery: number;
  /** Hidden sizes of actor and critic. */
  hidden: number[];
  /** Hidden nonlinearity. */
  activation: Activation;
  /** Softmax temperature of the actor. */
  temperature: number;
  /** Adam epsilon. */
  adamEps: number;
  /** Seed of network init and minibatch shuffling. */
  seed: number;
}

/** CleanRL's `ppo.py` defaults (discrete actions). */
export const PPO_DEFAULTS: PpoArgs = {
  learningRate: 2.5e-4,
  annealLr: true,
  numUpdates: null,
  numSteps: 128,
  gamma: 0.99,
  gaeLambda: 0.95,
  numMinibatches: 4,
  updateEpochs: 4,
  normAdv: true,
  clipCoef: 0.2,
  clipVloss: true,
  entCoef: 0.01,
  vfCoef: 0.5,
  maxGradNorm: 0.5,
  targetKl: null,
  oldPolicySyncEvery: 1,
  hidden: [64, 64],
  activation: "tanh",
  temperature: 1,
  adamEps: 1e-5,
  seed: 1,
};

/** The paper's NMT controller (appendix A.3): 32-unit tanh actor/critic, gamma 0.95, lr 1e-3. */
export const PPO_AUTHORS_NMT: Partial<PpoArgs> = {
  learningRate: 1e-3,
  gamma: 0.95,
  hidden: [32],
  activation: "tanh",
};

/** Options of {@link makeActor}. */
export interface ActorOptions {
  /** K. */
  inputs: number;
  /** |A|. */
  actions: number;
  /** Feature names (saved with the controller). */
  featureNames?: readonly string[];
  /** Input normalization (default none). */
  normalization?: NormalizationSpec;
}

/** The PPO actor: a {@link PolicyController} with orthogonal init and a 0.01-gain head. */
export function makeActor(opts: ActorOptions, args: Partial<PpoArgs> = {}): PolicyController {
  const a = { ...PPO_DEFAULTS, ...args };
  return new PolicyController({
    architecture: {
      kind: a.hidden.length ? "mlp" : "linear",
      inputs: opts.inputs,
      actions: opts.actions,
      hidden: [...a.hidden],
      activation: a.activation,
    },
    temperature: a.temperature,
    init: "orthogonal",
    headGain: 0.01,
    seed: a.seed,
    normalization: opts.normalization,
    featureNames: opts.featureNames,
    name: "ppo-actor",
  });
}

/** The critic: an MLP to one value per row, reading features through the actor's normalizer. */
export class ValueNet extends Module {
  /** The network (orthogonal init, value head gain 1). */
  readonly net: MlpNet;
  /** The normalizer applied to the inputs (shared with the actor, not owned). */
  readonly normalizer: FeatureNormalizer;

  /** Builds the critic for `inputs` features. */
  constructor(inputs: number, normalizer: FeatureNormalizer, args: Partial<PpoArgs> = {}) {
    super();
    const a = { ...PPO_DEFAULTS, ...args };
    this.normalizer = normalizer;
    this.net = this.child(
      "net",
      new MlpNet({
        inputs,
        outputs: 1,
        hidden: a.hidden,
        activation: a.activation,
        init: "orthogonal",
        headGain: 1,
        seed: a.seed + 1,
      }),
    );
  }

  /** V(x) for features [N, K]: [N]. */
  forward(features: Tensor): Tensor {
    const v = this.net.forward(this.normalizer.apply(features));
    return v.reshape([v.shape[0]]);
  }
}

// ---------------------------------------------------------------- losses (tested in isolation)

/**
 * The clipped surrogate policy loss `mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps)))` with
 * `r = exp(newLogProb - oldLogProb)` (all [N]). Outside the clip range on the side the advantage
 * favors, the gradient is zero.
 */
export function clippedSurrogate(
  newLogProb: Tensor,
  oldLogProb: Tensor,
  advantages: Tensor,
  clipCoef: number,
): Tensor {
  const ratio = newLogProb.sub(oldLogProb).exp();
  const negAdv = advantages.neg();
  const pg1 = negAdv.mul(ratio);
  const pg2 = negAdv.mul(ratio.clamp(1 - clipCoef, 1 + clipCoef));
  return pg1.maximum(pg2).mean();
}

/**
 * The value loss: `0.5 * mean(max((v - R)^2, (v_old + clip(v - v_old, -eps, eps) - R)^2))` when
 * `clip`, else `0.5 * mean((v - R)^2)` (all [N]).
 */
export function valueLoss(
  newValue: Tensor,
  oldValue: Tensor,
  returns: Tensor,
  clipCoef: number,
  clip: boolean,
): Tensor {
  const unclipped = newValue.sub(returns).square();
  if (!clip) return unclipped.mean().mul(0.5);
  const clipped = oldValue.add(newValue.sub(oldValue).clamp(-clipCoef, clipCoef))
    .sub(returns).square();
  return unclipped.maximum(clipped).mean().mul(0.5);
}

/** `(A - mean A) / (std A + 1e-8)` with the unbiased std (as `torch.std`); [N]. */
export function normalizeAdvantages(adv: Tensor): Tensor {
  const n = adv.size;
  const centered = adv.sub(adv.mean());
  if (n < 2) return centered;
  const std = centered.square().sum().mul(1 / (n - 1)).sqrt();
  return centered.div(std.add(1e-8));
}

// ---------------------------------------------------------------- the agent

/** Debug scalars of one update (CleanRL's names), plus what the update did. */
export interface PpoStats {
  /** Surrogate loss of the last minibatch run. */
  policy_loss: number;
  /** Value loss of the last minibatch run. */
  value_loss: number;
  /** Mean entropy of the last minibatch run. */
  entropy: number;
  /** `mean(-log r)` of the last minibatch run. */
  old_approx_kl: number;
  /** `mean((r - 1) - log r)` of the last minibatch run. */
  approx_kl: number;
  /** Fraction of samples with |r - 1| > eps, averaged over the minibatches run. */
  clipfrac: number;
  /** `1 - Var(R - V) / Var(R)` over the segment (NaN when Var(R) = 0). */
  explained_variance: number;
  /** Learning rate used. */
  learning_rate: number;
  /** Epochs run (fewer than `updateEpochs` after a target-KL stop). */
  epochs: number;
}

/** The observation after a segment, for the bootstrap. */
export interface NextObservation {
  /** Features [P, K]. */
  features: Tensor;
  /** 1 where it starts a new episode, [P] (zeros when the task never ends). */
  done: Tensor;
}

/** PPO on an actor ({@link PolicyController}) and a critic ({@link ValueNet}). */
export class Ppo {
  /** Hyperparameters. */
  readonly args: PpoArgs;
  /** The policy (the controller that is saved and transferred). */
  readonly actor: PolicyController;
  /** The value function. */
  readonly critic: ValueNet;
  /** Actor and critic parameters, groups "actor" and "critic". */
  readonly flat: FlatParams;
  /** One Adam over both (eps 1e-5). */
  readonly optimizer: Adam;
  /** The frozen old policy when `oldPolicySyncEvery` > 1 (else null: the rollout's). */
  readonly oldActor: PolicyController | null;
  /** Updates taken. */
  updates = 0;
  #gateScale: Tensor;

  /** Packs actor and critic (a new critic unless given) and creates the optimizer. */
  constructor(actor: PolicyController, args: Partial<PpoArgs> = {}, critic?: ValueNet) {
    this.args = { ...PPO_DEFAULTS, ...args };
    this.actor = actor;
    this.critic = critic ?? new ValueNet(actor.architecture.inputs, actor.normalizer, this.args);
    this.flat = new FlatParams(
      [...actor.namedParameters("actor."), ...this.critic.namedParameters("critic.")],
      { actor: ["actor."], critic: ["critic."] },
    );
    this.optimizer = new Adam(this.flat, { lr: this.args.learningRate, eps: this.args.adamEps });
    this.#gateScale = keep(tensor(new Float32Array([this.optimizer.dispatchSize("all")[0], 1, 1])));
    this.oldActor = this.args.oldPolicySyncEvery > 1
      ? new PolicyController({
        architecture: actor.architecture,
        temperature: actor.temperature,
        name: "ppo-old-actor",
      })
      : null;
    this.syncOldPolicy();
  }

  /** Copies the actor's parameters into the old policy (no-op without one). */
  syncOldPolicy(): void {
    if (!this.oldActor) return;
    const old = new Map(this.oldActor.namedParameters());
    for (const [name, t] of this.actor.namedParameters()) ops.assign_(old.get(name)!, t);
  }

  /** `log pi_old(a | x)` [N] from the old policy (reading inputs through the actor's normalizer). */
  #oldLogProb(features: Tensor, actions: Tensor): Tensor {
    const old = this.oldActor!;
    return noGrad(() => {
      const z = old.net.forward(this.actor.normalizer.apply(features)).mul(1 / old.temperature);
      return ops.pick(z.logSoftmax(-1), actions.reshape([actions.size]));
    });
  }

  /**
   * Actor and critic parameters (`${prefix}actor.*`, `${prefix}critic.*`), the old policy's
   * (`${prefix}old.*`, with `oldPolicySyncEvery` > 1), the Adam state (`${prefix}optim.`) and the
   * update count, for a checkpoint. The actor's input normalization is not included (it decides
   * how the actor is built: {@link PolicyController}'s normalizer `toSpec`).
   */
  checkpointState(prefix: string): CheckpointPart {
    return learnerPart(this.flat, this.optimizer, prefix, { updates: this.updates }, this.#old());
  }

  /** The old policy's parameters under `old.` (none without one). */
  #old(): [string, Tensor][] {
    return (this.oldActor?.namedParameters() ?? []).map(([n, t]) => [`old.${n}`, t]);
  }

  /**
   * Restores a state saved by {@link Ppo.checkpointState} under `prefix` (same architecture and
   * options; every size is checked before anything is written). `metadata` overrides entries of
   * the checkpoint's (for files written before the optimizer's entries were top-level).
   */
  loadCheckpoint(ckpt: Checkpoint, prefix: string, metadata: Record<string, string> = {}): void {
    const { updates } = loadLearnerPart(ckpt, this.flat, this.optimizer, prefix, ["updates"], {
      more: this.#old(),
      metadata,
    });
    this.updates = updates as number;
  }

  /** V(x) for features [N, K] without autograd: [N]. */
  value(features: Tensor): Tensor {
    return noGrad(() => this.critic.forward(features));
  }

  /** The learning rate the next update uses (annealed when configured). */
  currentLearningRate(): number {
    const a = this.args;
    if (!a.annealLr || !a.numUpdates) return a.learningRate;
    return Math.max(0, 1 - this.updates / a.numUpdates) * a.learningRate;
  }

  /**
   * One PPO update from a segment: `buffer` holds features, actions, logProbs, values, rewards
   * and dones for T steps of P members; `next` is the observation after it. Runs GAE, then
   * `updateEpochs` epochs of shuffled minibatches; reads the debug scalars back once, together
   * with `alsoRead` (returned in `extra`).
   */
  async update(
    buffer: TrajectoryBuffer,
    next: NextObservation,
    alsoRead: Tensor[] = [],
  ): Promise<PpoStats & { extra: number[][] }> {
    const a = this.args;
    const t = buffer.steps;
    const p = buffer.population;
    const n = t * p;
    this.optimizer.lr = this.currentLearningRate();
    // ---- advantages and returns (GAE, on the GPU), flattened into one [N, 5] table
    const [scalars, varianceParts] = tidy(() => {
      const { advantages, returns } = gae({
        rewards: buffer.field("rewards"),
        values: buffer.field("values"),
        dones: buffer.field("dones"),
        nextValue: this.value(next.features),
        nextDone: next.done,
        gamma: a.gamma,
        lambda: a.gaeLambda,
      });
      const col = (x: Tensor) => x.reshape([n, 1]);
      const values = buffer.field("values");
      const table = ops.concat([
        col(buffer.field("actions").cast("f32")),
        col(
          this.oldActor
            ? this.#oldLogProb(buffer.flat("features"), buffer.flat("actions"))
            : buffer.field("logProbs"),
        ),
        col(advantages),
        col(returns),
        col(values),
      ], 1);
      // explained variance = 1 - Var(R - V) / Var(R), finished on the host.
      const ret = returns.reshape([n]);
      const diff = ret.sub(values.reshape([n]));
      const v = (x: Tensor) => x.sub(x.mean()).square().mean().reshape([1]);
      return [table, ops.concat([v(ret), v(diff)], 0)];
    });
    const features = buffer.flat("features");
    // ---- optimize the policy and value networks
    const mbSize = Math.ceil(n / a.numMinibatches);
    const rng = mulberry32((a.seed * 1000003 + this.updates * 7919) >>> 0);
    const perm = Int32Array.from({ length: n }, (_, i) => i);
    let active: Tensor | null = a.targetKl === null ? null : keep(full([1], 1));
    const rows: Tensor[] = [];
    for (let epoch = 0; epoch < a.updateEpochs; epoch++) {
      for (let i = n - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [perm[i], perm[j]] = [perm[j], perm[i]];
      }
      for (let start = 0; start < n; start += mbSize) {
        const idx = perm.subarray(start, Math.min(start + mbSize, n));
        rows.push(keep(this.#minibatch(features, scalars, idx, active)));
      }
      if (active) {
        const last = rows[rows.length - 1];
        const kept = noGrad(() =>
          tidy(() => {
            const kl = ops.slice(last, [4], [5]);
            return active!.mul(ops.scalarOp("step", kl, a.targetKl!).neg().add(1));
          })
        );
        active.dispose();
        active = keep(kept);
      }
    }
    const table = ops.concat(rows, 0);
    const [values, vars, ...extra] = await readMany([table, varianceParts, ...alsoRead]);
    for (const r of [...rows, table, scalars, varianceParts, features, active]) r?.dispose();
    this.updates++;
    if (this.updates % a.oldPolicySyncEvery === 0) this.syncOldPolicy();
    // ---- debug scalars (host): last minibatch run, clipfrac averaged over those run
    const perEpoch = Math.ceil(n / mbSize);
    const run: number[] = [];
    for (let r = 0; r < rows.length; r++) if (values[r * 7 + 6] > 0.5) run.push(r);
    const last = run.length ? run[run.length - 1] : 0;
    const at = (r: number, j: number) => values[r * 7 + j];
    return {
      policy_loss: at(last, 0),
      value_loss: at(last, 1),
      entropy: at(last, 2),
      old_approx_kl: at(last, 3),
      approx_kl: at(last, 4),
      clipfrac: run.reduce((s, r) => s + at(r, 5), 0) / Math.max(run.length, 1),
      explained_variance: vars[0] === 0 ? NaN : 1 - vars[1] / vars[0],
      learning_rate: this.optimizer.lr,
      epochs: run.length / perEpoch,
      extra: extra.map((e) => Array.from(e)),
    };
  }

  /**
   * One minibatch step; returns its debug row [7]: policy_loss, value_loss, entropy,
   * old_approx_kl, approx_kl, clipfrac, active (1 when the step was applied).
   */
  #minibatch(
    features: Tensor,
    scalars: Tensor,
    perm: Int32Array,
    active: Tensor | null,
  ): Tensor {
    const a = this.args;
    const m = perm.length;
    return tidy(() => {
      const idx = tensor(perm, [m], "i32");
      const x = ops.gatherRows(features, idx);
      const sc = ops.gatherRows(scalars, idx);
      const col = (j: number) => ops.slice(sc, [0, j], [m, j + 1]).reshape([m]);
      const actions = col(0).cast("i32");
      const oldLogProb = col(1);
      const advantages = col(2);
      const returns = col(3);
      const oldValue = col(4);
      // forward
      const logPolicy = this.actor.logPolicy(x);
      const newLogProb = ops.pick(logPolicy, actions);
      const entropy = entropyOf(logPolicy).mean();
      const [oldApproxKl, approxKl, clipfrac] = noGrad(() => {
        const logratio = newLogProb.sub(oldLogProb);
        const ratio = logratio.exp();
        return [
          logratio.neg().mean(),
          ratio.sub(1).sub(logratio).mean(),
          ops.scalarOp("step", ratio.sub(1).abs(), a.clipCoef).mean(),
        ];
      });
      const adv = a.normAdv ? normalizeAdvantages(advantages) : advantages;
      const pgLoss = clippedSurrogate(newLogProb, oldLogProb, adv, a.clipCoef);
      const vLoss = valueLoss(this.critic.forward(x), oldValue, returns, a.clipCoef, a.clipVloss);
      const loss = pgLoss.sub(entropy.mul(a.entCoef)).add(vLoss.mul(a.vfCoef));
      // backward, global-norm clip, step (gated on the GPU after a target-KL stop)
      this.flat.zeroGrad();
      loss.backward();
      clipGradNorm(this.flat, a.maxGradNorm);
      const gate = active ? active.mul(this.#gateScale).cast("u32") : null;
      this.optimizer.step("all", gate ? { indirect: gate } : {});
      return noGrad(() =>
        ops.concat(
          [pgLoss, vLoss, entropy, oldApproxKl, approxKl, clipfrac, active ?? full([1], 1)]
            .map((s) => s.reshape([1])),
          0,
        )
      );
    });
  }

  /** Frees the optimizer, the critic and the old policy (the actor stays usable). */
  dispose(): void {
    this.optimizer.dispose();
    this.#gateScale.dispose();
    this.critic.dispose();
    this.oldActor?.dispose();
  }
}
