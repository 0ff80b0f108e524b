/**
 * The controller training loops built on the runner (rl/runner.ts):
 *
 * - {@link trainReinforce}: episodes of REINFORCE (rl/reinforce.ts);
 * - {@link trainPpo}: online PPO in segments of T steps (rl/ppo.ts).
 *
 * Seeding as in rl/runner.ts.
 * @module
 */

import * as ops from "../tensor/ops.ts";
import { Generator } from "../gpu/random.ts";
import { type Checkpoint, checkpointJson, type CheckpointPart } from "../nn/checkpoint.ts";
import { zeros } from "../tensor/functional.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import type { PolicyController } from "./controller.ts";
import type { NormalizationSpec } from "./normalization.ts";
import { Ppo, type PpoArgs, type PpoStats } from "./ppo.ts";
import { DenseStepReward, Reinforce, type ReinforceArgs } from "./reinforce.ts";
import {
  type NormalizedImprovementOptions,
  NormalizedImprovementReward,
  type RewardFn,
} from "./rewards.ts";
import type { ScheduleTask } from "./task.ts";
import { TrajectoryBuffer } from "./trajectory.ts";
import {
  deriveSeed,
  memberSeedTensor,
  runEpisode,
  type RunStats,
  runSteps,
  type RunStepsOptions,
  type StepInfo,
} from "./runner.ts";

/** Options of {@link trainReinforce}. */
export interface TrainReinforceOptions {
  /** Episodes to run (updates = episodes / S). */
  episodes: number;
  /** Steps per episode (T). */
  steps: number;
  /** Training seed: episode e resets the task with `deriveSeed(seed, e)`. */
  seed: number;
  /** Sampling seed: episode e samples with `deriveSeed(sampleSeed, e)` (default `seed + 1`). */
  sampleSeed?: number;
  /** Final rewards from an episode's metrics. */
  reward: RewardFn;
  /** REINFORCE hyperparameters. */
  args?: Partial<ReinforceArgs>;
  /** Called after each episode (and its update, when one was taken). */
  onEpisode?: (log: ReinforceEpisodeLog) => void | Promise<void>;
  /**
   * First episode to run (default 0): resuming from a checkpoint taken after episode
   * `startEpisode - 1`, at an update boundary (a multiple of S). Episodes keep their seeds.
   */
  startEpisode?: number;
  /**
   * Train through this instance (e.g. one whose optimizer state and baseline were restored from
   * a checkpoint) instead of a new one; it must wrap `controller`. The caller keeps ownership:
   * it is returned, and not disposed on error.
   */
  reinforce?: Reinforce;
}

/** One episode of REINFORCE training, in plain numbers. */
export interface ReinforceEpisodeLog {
  /** Episode index. */
  episode: number;
  /** Per-member final rewards. */
  rewards: number[];
  /** Mean reward. */
  meanReward: number;
  /** Per-member clipped advantages. */
  advantages: number[];
  /** Baseline after this episode. */
  baseline: number;
  /** The previous update's loss (read with this episode's metrics; NaN when none). */
  previousLoss: number;
  /** The episode's final metrics. */
  metrics: Record<string, number[]>;
  /** Run counters. */
  stats: RunStats;
}

/**
 * Trains `controller` on `task` with REINFORCE: per update, S episodes recorded into one GPU
 * buffer [S*T, P, K] (features, actions and, with a dense step reward, rewards), rewards read back
 * once per episode, advantages on the host, then one batched forward/backward and Adam step. The
 * controller's running normalization (if any) is updated from the buffer after each update.
 */
export async function trainReinforce(
  task: ScheduleTask,
  controller: PolicyController,
  opts: TrainReinforceOptions,
): Promise<{ history: ReinforceEpisodeLog[]; reinforce: Reinforce }> {
  const given = opts.reinforce;
  if (given && given.controller !== controller) {
    throw new Error("trainReinforce: opts.reinforce trains another controller");
  }
  const reinforce = given ?? new Reinforce(controller, opts.args);
  const a = reinforce.args;
  const s = a.episodesPerUpdate;
  const start = opts.startEpisode ?? 0;
  if (!Number.isInteger(start) || start < 0 || start % s !== 0) {
    throw new Error(
      `trainReinforce: startEpisode ${start} is not an update boundary (a multiple of S = ${s})`,
    );
  }
  const p = task.population;
  const k = task.featureNames.length;
  const buffer = new TrajectoryBuffer(s * opts.steps, p, k, { rewards: a.stepReward !== null });
  const dense = a.stepReward ? new DenseStepReward(p, a.stepReward, a) : null;
  const sampleSeed = opts.sampleSeed ?? opts.seed + 1;
  const history: ReinforceEpisodeLog[] = [];
  let pendingLoss: Tensor | null = null;
  let advantages: number[][] = [];
  try {
    for (let e = start; e < opts.episodes; e++) {
      const slot = e % s;
      dense?.reset();
      const onStep = dense
        ? (info: StepInfo) => {
          const metric = task.metrics()[a.stepReward!.metric];
          if (!metric) {
            throw new Error(
              `step reward: task '${task.name}' has no metric '${a.stepReward!.metric}'`,
            );
          }
          buffer.record("rewards", slot * opts.steps + info.i, dense.step(metric));
        }
        : undefined;
      const run = await runEpisode(task, controller, {
        steps: opts.steps,
        seed: deriveSeed(opts.seed, e),
        sampleSeed: deriveSeed(sampleSeed, e),
        buffer,
        bufferOffset: slot * opts.steps,
        onStep,
        reward: opts.reward,
        alsoRead: pendingLoss ? [pendingLoss] : [],
      });
      const previousLoss = pendingLoss ? run.extra[0][0] : NaN;
      pendingLoss?.dispose();
      pendingLoss = null;
      const adv = reinforce.advantages(run.rewards);
      advantages.push(adv);
      if (advantages.length === s) {
        pendingLoss = keep(reinforce.update(buffer, advantages));
        tidy(() => noGrad(() => controller.normalizer.update(buffer.flat("features"))));
        advantages = [];
      }
      const log: ReinforceEpisodeLog = {
        episode: e,
        rewards: run.rewards,
        meanReward: run.rewards.reduce((x, y) => x + y, 0) / run.rewards.length,
        advantages: adv,
        baseline: reinforce.baseline!,
        previousLoss,
        metrics: run.metrics,
        stats: run.stats,
      };
      history.push(log);
      await opts.onEpisode?.(log);
    }
  } catch (err) {
    if (!given) reinforce.dispose();
    throw err;
  } finally {
    pendingLoss?.dispose();
    buffer.dispose();
    dense?.dispose();
  }
  return { history, reinforce };
}

// ---------------------------------------------------------------- PPO

/** Options of {@link trainPpo}. */
export interface TrainPpoOptions {
  /** Segments (= PPO updates) to run. */
  updates: number;
  /** Task seed (one reset at the start: online training). */
  seed: number;
  /** Sampling seed (default `seed + 1`); the stream continues across segments. */
  sampleSeed?: number;
  /** PPO hyperparameters (numSteps is the segment length T). */
  args?: Partial<PpoArgs>;
  /** Metric with the per-step reward [P] (default "reward"; null: none). */
  stepReward?: string | null;
  /** The paper's segment reward on this metric, added to every step of the segment. */
  segmentReward?: NormalizedImprovementOptions & { metric: string };
  /** Metric with per-step episode ends [P] (1 = the step ended an episode; default "done"). */
  doneMetric?: string;
  /** Called after each update with its debug scalars. */
  onUpdate?: (log: PpoUpdateLog) => void | Promise<void>;
}

/** One PPO update, in plain numbers. */
export interface PpoUpdateLog extends PpoStats {
  /** Update index. */
  update: number;
  /** Mean per-step reward over the segment and members. */
  meanReward: number;
  /** Environment steps per second over the segment and update (steps * P / seconds). */
  sps: number;
  /** Counters of the segment's rollout. */
  rollout: RunStats;
}

/**
 * The end of an online PPO segment, the one copy every PPO loop uses (trainPpo here, the NMT
 * method in tasks/nmt/train.ts): adds the segment's reward `r` ([P], or null) to every recorded
 * step's reward, runs one `Ppo.update` bootstrapped from `next` whose one readback carries the
 * mean step reward (`stats.extra[0]`) and then each of `extra`, and lets the actor's feature
 * normalizer take the segment's features.
 */
export async function endPpoSegment(
  ppo: Ppo,
  actor: PolicyController,
  buffer: TrajectoryBuffer,
  r: Tensor | null,
  next: { features: Tensor; done: Tensor },
  extra: readonly Tensor[] = [],
): Promise<PpoStats & { extra: number[][] }> {
  if (r) {
    const rewards = buffer.field("rewards");
    const p = rewards.shape[1];
    tidy(() => noGrad(() => ops.assign_(rewards, rewards.add(r.reshape([1, p])))));
  }
  const meanReward = keep(
    tidy(() => noGrad(() => buffer.field("rewards").mean().reshape([1]))),
  );
  try {
    return await ppo.update(buffer, next, [meanReward, ...extra]);
  } finally {
    meanReward.dispose();
    tidy(() => noGrad(() => actor.normalizer.update(buffer.flat("features"))));
  }
}

/** Options of {@link ppoSegment}. */
export interface PpoSegmentOptions {
  /** The sampler (its stream continues across segments). */
  gen: Generator;
  /** Per-member sampling seeds (rl/runner.ts `runSteps`); without, all members draw from `gen`. */
  memberSeeds?: Tensor;
  /** ActContext.t of the segment's first step. */
  t0: number;
  /** The done flags [P] recorded with each step (called when the step is recorded). */
  done: () => Tensor;
  /** More GPU-only recording after each act, before the step (e.g. the action probabilities). */
  onAct?: (info: StepInfo) => void;
  /** GPU-only hook after each step (per-step rewards, done flags). */
  onStep?: (info: StepInfo) => void;
  /** Host hook after each step (rl/runner.ts `runSteps`: may await a read, true ends the loop). */
  afterStep?: RunStepsOptions["afterStep"];
  /** The segment's reward [P], given to every step; called after the rollout (null: none). */
  reward?: () => Tensor | null;
  /** Tensors read back with the update, after the mean step reward (called after `reward`). */
  alsoRead?: () => Tensor[];
}

/**
 * The rollout of an online PPO segment, which every PPO loop records the same way (trainPpo here,
 * the NMT method in tasks/nmt/train.ts, the GAN's online PPO in tasks/gan/online_ppo.ts):
 * `ppo.args.numSteps` steps of `task` under `ppo.actor` (rl/runner.ts `runSteps`) with the
 * features, actions, log-probabilities, the critic's values and the done flags recorded into
 * `buffer` on the GPU; nothing read back unless a hook does. {@link endPpoSegment} ends it.
 */
export function ppoRollout(
  task: ScheduleTask,
  ppo: Ppo,
  buffer: TrajectoryBuffer,
  opts: Omit<PpoSegmentOptions, "reward" | "alsoRead">,
): Promise<RunStats> {
  buffer.clear();
  return runSteps(task, ppo.actor, {
    steps: ppo.args.numSteps,
    gen: opts.gen,
    memberSeeds: opts.memberSeeds,
    t0: opts.t0,
    buffer,
    onAct: (info) => {
      buffer.record("values", info.i, ppo.value(info.features));
      buffer.record("dones", info.i, opts.done());
      opts.onAct?.(info);
    },
    onStep: opts.onStep,
    afterStep: opts.afterStep,
  });
}

/**
 * One online PPO segment: {@link ppoRollout}, then {@link endPpoSegment} with the segment reward,
 * bootstrapped from the task's next features (one readback, nothing awaited between the steps).
 */
export async function ppoSegment(
  task: ScheduleTask,
  ppo: Ppo,
  buffer: TrajectoryBuffer,
  opts: PpoSegmentOptions,
): Promise<PpoStats & { extra: number[][]; rollout: RunStats }> {
  const rollout = await ppoRollout(task, ppo, buffer, opts);
  const r = opts.reward?.() ?? null;
  try {
    const next = { features: task.features(), done: opts.done() };
    const stats = await endPpoSegment(ppo, ppo.actor, buffer, r, next, opts.alsoRead?.() ?? []);
    return { ...stats, rollout };
  } finally {
    r?.dispose();
  }
}

/** The JSON half of an online PPO controller's checkpoint (see {@link ppoCheckpoint}). */
export interface PpoRunState {
  /** The actor's input normalization (the actor is built with it before restoring). */
  normalization: NormalizationSpec;
  /** The action sampler's state. */
  sampler: { seed: number; counter: number };
}

/**
 * The controller side of an online PPO run for a checkpoint, the one format every PPO loop
 * writes (the GAN's online PPO, the NMT method): {@link Ppo.checkpointState} under `prefix`
 * (actor, critic, old policy, Adam, updates) and, as `${prefix}run`, the actor's input
 * normalization and the sampler's state. Restore with {@link ppoRunState} (to build the actor)
 * and {@link restorePpo}.
 */
export async function ppoCheckpoint(
  ppo: Ppo,
  sampler: Generator,
  prefix = "ctrl.",
): Promise<CheckpointPart> {
  const part = ppo.checkpointState(prefix);
  const run: PpoRunState = {
    normalization: await ppo.actor.normalizer.toSpec(),
    sampler: sampler.state(),
  };
  part.metadata[`${prefix}run`] = JSON.stringify(run);
  return part;
}

/** The JSON state saved by {@link ppoCheckpoint} under `prefix`. */
export function ppoRunState(ckpt: Checkpoint, prefix = "ctrl."): PpoRunState {
  return checkpointJson<PpoRunState>(ckpt, `${prefix}run`);
}

/**
 * Restores what {@link ppoCheckpoint} saved into `ppo` (whose actor was built with the saved
 * normalization) and `sampler`.
 */
export function restorePpo(
  ckpt: Checkpoint,
  ppo: Ppo,
  sampler: Generator,
  prefix = "ctrl.",
): void {
  ppo.loadCheckpoint(ckpt, prefix);
  sampler.setState(ppoRunState(ckpt, prefix).sampler);
}

/**
 * Online PPO: reset the task once, then per update run a segment of T steps recording features,
 * actions, log-probabilities, values (critic, one forward per step), rewards and done flags on
 * the GPU, bootstrap from the next observation, and call `Ppo.update` (one readback, which also
 * carries the segment's mean reward).
 */
export async function trainPpo(
  task: ScheduleTask,
  actor: PolicyController,
  opts: TrainPpoOptions,
): Promise<{ history: PpoUpdateLog[]; ppo: Ppo }> {
  const ppo = new Ppo(actor, { numUpdates: opts.updates, ...opts.args });
  const a = ppo.args;
  const t = a.numSteps;
  const p = task.population;
  const k = task.featureNames.length;
  const rewardKey = opts.stepReward === undefined ? "reward" : opts.stepReward;
  const doneKey = opts.doneMetric ?? "done";
  const buffer = new TrajectoryBuffer(t, p, k, {
    logProbs: true,
    values: true,
    rewards: true,
    dones: true,
  });
  const sampleSeed = opts.sampleSeed ?? opts.seed + 1;
  const gen = new Generator(sampleSeed);
  const memberSeeds = keep(memberSeedTensor(sampleSeed, p));
  const segment = opts.segmentReward ? new NormalizedImprovementReward(opts.segmentReward) : null;
  const history: PpoUpdateLog[] = [];
  task.reset(opts.seed);
  let done = keep(zeros([p]));
  const metricOf = (key: string) => {
    const m = task.metrics()[key];
    if (!m) {
      throw new Error(
        `trainPpo: task '${task.name}' has no metric '${key}'; metrics: ${
          Object.keys(task.metrics()).join(", ")
        }`,
      );
    }
    return m;
  };
  try {
    if (segment) segment.reset(metricOf(opts.segmentReward!.metric));
    for (let u = 0; u < opts.updates; u++) {
      const began = performance.now();
      const stats = await ppoSegment(task, ppo, buffer, {
        gen,
        memberSeeds,
        t0: u * t,
        done: () => done,
        onStep: (info) => {
          if (rewardKey !== null) {
            buffer.record("rewards", info.i, metricOf(rewardKey).reshape([p]));
          }
          const m = task.metrics()[doneKey];
          const next = m ? ops.assign_(ops.empty([p]), m) : null;
          if (next) {
            done.dispose();
            done = keep(next);
          }
        },
        reward: () => segment ? segment.next(metricOf(opts.segmentReward!.metric)) : null,
      });
      const seconds = (performance.now() - began) / 1000;
      const log: PpoUpdateLog = {
        ...stats,
        update: u,
        meanReward: stats.extra[0][0],
        sps: (t * p) / seconds,
        rollout: stats.rollout,
      };
      history.push(log);
      await opts.onUpdate?.(log);
    }
  } catch (err) {
    ppo.dispose();
    throw err;
  } finally {
    buffer.dispose();
    memberSeeds.dispose();
    done.dispose();
    segment?.dispose();
  }
  return { history, ppo };
}
