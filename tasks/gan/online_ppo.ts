/**
 * Online PPO for a {@link GanTask} (paper section 4.4): the run is cut into segments of T steps
 * driven by the learned loop of tasks/gan/driver.ts (actions sampled and applied on the GPU, no
 * host sync inside a segment); each segment ends with an inception score, a normalized-improvement reward and one PPO
 * update; collapse or NaN rolls back to the last checkpoint and resets the controller (the rule
 * documented in tasks/gan/driver.ts). Save and restore continue with the same actions.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { Generator } from "../../gpu/random.ts";
import { loadCheckpoint } from "../../nn/checkpoint.ts";
import type { Checkpoint } from "../../nn/checkpoint.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { runningNormalization } from "../../rl/normalization.ts";
import type { NormalizationSpec } from "../../rl/normalization.ts";
import { makeActor, Ppo, type PpoArgs, type PpoStats } from "../../rl/ppo.ts";
import { NormalizedImprovementReward } from "../../rl/rewards.ts";
import { TrajectoryBuffer } from "../../rl/trajectory.ts";
import {
  endPpoSegment,
  ppoCheckpoint,
  ppoRollout,
  ppoRunState,
  restorePpo,
} from "../../rl/training.ts";
import { zeros } from "../../tensor/functional.ts";
import { keep, readMany, tidy } from "../../tensor/tensor.ts";
import type { GanTask } from "./task.ts";
import { G_ACTION } from "./actions.ts";
import { decodeStatus, type GanStatus } from "./status.ts";
import {
  type AbortReason,
  checkpointMeta,
  learnedLoop,
  type LoopOptions,
  type LoopStats,
  saveGanCheckpoint,
} from "./driver.ts";

/** Settings of {@link OnlinePpo}. */
export interface OnlinePpoOptions {
  /** T: steps per segment (one PPO update each). */
  segment: number;
  /** PPO hyperparameters (numSteps is set to `segment`). */
  ppo: Partial<PpoArgs>;
  /** The paper's segment reward: C and k of `C (P(t+T) - P(t)) / ((P(t) - P(t-kT)) / k)`. */
  reward: { c: number; k: number };
  /** Running mean/std normalization of the features (default true). */
  normalize?: boolean;
  /** Seed of the controller initialization and sampling. */
  seed: number;
  /** Rollbacks tolerated before the run stops. */
  maxRollbacks: number;
}

/** One segment of online training, in plain numbers. */
export interface SegmentLog {
  /** Segment index. */
  segment: number;
  /** Steps done after it. */
  step: number;
  /** IS at its end. */
  is: number;
  /** The segment reward given to each of its steps. */
  reward: number;
  /** Share of G actions in the segment. */
  gShare: number;
  /** PPO debug scalars. */
  ppo: PpoStats;
  /** The loop's counters. */
  loop: LoopStats;
  /** Status after the segment. */
  status: GanStatus;
}

/**
 * The run's JSON in an online-PPO checkpoint; the controller's state is rl/training.ts
 * `ppoCheckpoint`'s (under "ctrl.").
 */
export interface OnlineMeta {
  /** Always "ppo". */
  kind: "ppo";
  /** Segments completed. */
  segments: number;
  /** Rollbacks so far. */
  rollbacks: number;
  /** Seed the current controller was initialized with. */
  controllerSeed: number;
  /** The reward's IS history (at most k + 1 values). */
  isHistory: number[];
}

/** Checkpoints written before the controller state was `ppoCheckpoint`'s kept it in run.meta. */
interface LegacyOnlineMeta extends OnlineMeta {
  sampler?: { seed: number; counter: number };
  updates?: number;
  normalization?: NormalizationSpec;
  optim?: Record<string, string>;
}

/** The checkpoint with a legacy run.meta's controller entries moved to where they are now. */
function upgradeLegacy(ckpt: Checkpoint, meta: LegacyOnlineMeta): Checkpoint {
  if (ckpt.metadata["ctrl.run"] !== undefined || meta.updates === undefined) return ckpt;
  const run = { normalization: meta.normalization, sampler: meta.sampler };
  return {
    ...ckpt,
    metadata: {
      ...ckpt.metadata,
      ...meta.optim,
      "ctrl.updates": String(meta.updates),
      "ctrl.run": JSON.stringify(run),
    },
  };
}

/**
 * Online PPO on a GAN (paper section 4.4): segments of T steps driven by the learned loop; at
 * each segment end the IS is evaluated, the segment reward (rl/rewards.ts
 * `NormalizedImprovementReward`) is given to every step of the segment, and one PPO update runs.
 * Owns the actor (saved as the controller file) and the critic.
 */
export class OnlinePpo {
  /** The GAN. */
  readonly task: GanTask;
  /** Settings. */
  readonly opts: OnlinePpoOptions;
  /** The actor (the controller). */
  actor!: PolicyController;
  /** PPO (critic, optimizer). */
  ppo!: Ppo;
  /** Segments completed. */
  segments = 0;
  /** Rollbacks so far. */
  rollbacks = 0;
  /** IS at the end of each recent segment (the reward's history; the first is at step 0). */
  isHistory: number[] = [];
  #buffer: TrajectoryBuffer;
  #reward!: NormalizedImprovementReward;
  #sampler!: Generator;
  #controllerSeed = 0;

  /** Creates the controller for `task` (call {@link OnlinePpo.start} or `resume` next). */
  constructor(task: GanTask, opts: OnlinePpoOptions) {
    this.task = task;
    this.opts = opts;
    this.#buffer = new TrajectoryBuffer(opts.segment, 1, task.featureNames.length, {
      logProbs: true,
      values: true,
      rewards: true,
      dones: true,
    });
    this.#newController(opts.seed);
  }

  #args(seed: number): Partial<PpoArgs> {
    return { annealLr: false, ...this.opts.ppo, numSteps: this.opts.segment, seed };
  }

  #newController(seed: number, normalization?: NormalizationSpec): void {
    this.ppo?.dispose();
    this.actor?.dispose();
    this.#controllerSeed = seed;
    const k = this.task.featureNames.length;
    this.actor = makeActor({
      inputs: k,
      actions: 2,
      featureNames: this.task.featureNames,
      normalization: normalization ??
        (this.opts.normalize === false ? { kind: "none" } : runningNormalization(k)),
    }, this.#args(seed));
    this.ppo = new Ppo(this.actor, this.#args(seed));
    this.#sampler = new Generator((seed ^ 0x1f83d9ab) >>> 0);
  }

  /** Starts from the task's current state (IS at this point opens the reward history). */
  async start(): Promise<void> {
    const is = tidy(() => this.task.metrics().is);
    const [v] = await readMany([is]);
    is.dispose();
    this.isHistory = [v[0]];
    this.#resetReward();
  }

  /** Rebuilds the reward's GPU history from the host copy (exactly: the values are f32). */
  #resetReward(): void {
    this.#reward?.dispose();
    this.#reward = new NormalizedImprovementReward({
      c: this.opts.reward.c,
      k: this.opts.reward.k,
      higherIsBetter: true,
    });
    this.#reward.restore(this.isHistory);
  }

  /**
   * Runs one segment and its update. Returns its log, or the abort reason when the loop stopped
   * early (then no update ran; the caller rolls back or stops).
   */
  async segment(
    hooks: Pick<LoopOptions, "onStatus" | "shouldStop"> & { nonfiniteBefore: number },
  ): Promise<SegmentLog | { aborted: AbortReason; loop: LoopStats }> {
    // The rollout (rl/training.ts ppoRollout) with the GAN's learned-loop hooks: status reads,
    // the collapse/NaN stop, Ctrl-C.
    const gan = learnedLoop(this.task, { steps: this.opts.segment, ...hooks });
    const done = keep(zeros([1]));
    const started = performance.now();
    try {
      await ppoRollout(this.task, this.ppo, this.#buffer, {
        gen: this.#sampler,
        t0: this.task.t,
        done: () => done,
        onAct: gan.onAct,
        onStep: gan.onStep,
        afterStep: gan.afterStep,
      });
    } catch (err) {
      gan.finish(0);
      done.dispose();
      throw err;
    }
    const loop = gan.finish(performance.now() - started);
    if (loop.aborted) {
      done.dispose();
      return { aborted: loop.aborted, loop: loop.stats };
    }
    // Segment end: IS, reward on every step, one PPO update (one readback).
    this.task.evaluateIs();
    const reward = keep(tidy(() => this.#reward.next(this.task.metrics().is)));
    const status = tidy(() => this.task.status());
    // extra: [mean step reward, the segment's reward, the status vector].
    const stats = await endPpoSegment(
      this.ppo,
      this.actor,
      this.#buffer,
      reward,
      { features: this.task.features(), done },
      [reward, status],
    ).finally(() => {
      for (const x of [reward, status, done]) x.dispose();
    });
    const st = decodeStatus(stats.extra[2]);
    this.isHistory.push(st.is);
    while (this.isHistory.length > this.opts.reward.k + 1) this.isHistory.shift();
    this.segments++;
    const g = loop.actions.filter((a) => a === G_ACTION).length;
    const { extra: _extra, ...ppoStats } = stats;
    return {
      segment: this.segments - 1,
      step: this.task.t,
      is: st.is,
      reward: stats.extra[1][0],
      gShare: g / Math.max(loop.actions.length, 1),
      ppo: ppoStats,
      loop: loop.stats,
      status: st,
    };
  }

  /** Saves task and controller to `path`. */
  async save(path: string): Promise<void> {
    const ctrl = await ppoCheckpoint(this.ppo, this.#sampler, "ctrl.");
    const meta: OnlineMeta = {
      kind: "ppo",
      segments: this.segments,
      rollbacks: this.rollbacks,
      controllerSeed: this.#controllerSeed,
      isHistory: [...this.isHistory],
    };
    await saveGanCheckpoint(path, this.task, ctrl.tensors, meta, ctrl.metadata);
  }

  /** Restores task and controller from a checkpoint written by {@link OnlinePpo.save}. */
  restore(saved: Checkpoint): void {
    const meta = checkpointMeta<LegacyOnlineMeta>(saved);
    if (meta.kind !== "ppo") {
      throw new UserError(
        `checkpoint holds a '${meta.kind}' run, not PPO: resume it with the command that made it`,
      );
    }
    const ckpt = upgradeLegacy(saved, meta);
    this.task.loadCheckpoint(ckpt);
    this.#newController(meta.controllerSeed, ppoRunState(ckpt, "ctrl.").normalization);
    restorePpo(ckpt, this.ppo, this.#sampler, "ctrl.");
    this.segments = meta.segments;
    this.rollbacks = meta.rollbacks;
    this.isHistory = [...meta.isHistory];
    this.#resetReward();
  }

  /**
   * The collapse/NaN rule: restore the GAN from `checkpoint` (or re-initialize it from its seed
   * when null), then reset the controller with a new seed. Returns false when `maxRollbacks` is
   * exhausted (the caller stops).
   */
  async rollback(checkpoint: string | null): Promise<boolean> {
    if (this.rollbacks >= this.opts.maxRollbacks) return false;
    const count = this.rollbacks + 1;
    if (checkpoint) {
      this.restore(await loadCheckpoint(checkpoint));
    } else {
      this.task.reset(this.task.seed);
      this.segments = 0;
      await this.start();
    }
    this.rollbacks = count;
    this.#newController(this.opts.seed + 1000 * count);
    return true;
  }

  /** Frees the controller and buffers (the task is the caller's). */
  dispose(): void {
    this.ppo.dispose();
    this.actor.dispose();
    this.#buffer.dispose();
    this.#reward?.dispose();
  }
}
