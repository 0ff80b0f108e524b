/**
 * Driving a {@link GanTask}: fixed schedules, and learned controllers that decide from features
 * ONE STEP OLD without ever leaving the GPU idle; online PPO in segments of T steps (paper section
 * 4.4) and episodic REINFORCE (the authors' code); checkpoints and the collapse/NaN rule.
 *
 * ## The pipelined controller loop
 *
 * A GAN step is a different graph for G and for D, so the host must know the action before it
 * records the step; reading a freshly sampled action back would stall every step (>= 10 ms of
 * readback latency plus the whole step's GPU time). Instead, with F_k the features after k steps,
 * step t uses the action sampled from F_{t-1}:
 *
 * ```
 * iteration t:  record step t with a_t            (a_t ~ pi(F_{t-1}), already on the host)
 *               sample c ~ pi(F_{t+1}) on the GPU; start the read of [c, status]  (submits step t)
 *               a_{t+1} = await the read started at iteration t-1               (c ~ pi(F_t))
 * ```
 *
 * While the JS thread awaits the read covering step t-1, step t is already submitted, so the GPU
 * always has a step queued: {@link LoopStats.minQueuedAtWait} counts the steps recorded beyond
 * the awaited read at every wait (1 by construction; tests check it). Each step costs exactly one
 * readback (counted by the backend's `hostSyncs`), overlapped with the next step; the JS time
 * spent waiting is {@link LoopStats.waitMs}. A segment starts by sampling two actions from its
 * first features and reading them with one blocking read, so segments are self-contained (the
 * PPO update at the segment end is a blocking read anyway). Transitions recorded for learning are
 * exactly what the controller saw: (F_{t-1}, a_t).
 *
 * Fixed schedules know their actions in advance: no per-step read at all, only a status read every
 * `readEvery` steps.
 *
 * On llvmpipe (no GPU) the "GPU" is the same two CPU cores, and `queue.submit` itself blocks while
 * an earlier submission is still executing (measured: about 500 ms per submit during GAN steps on
 * a busy 2-core machine, against 3-36 ms into an idle queue), so there
 * {@link LoopStats.recordMs} absorbs most of the device time and {@link LoopStats.waitMs} stays a
 * few milliseconds per step: the JS thread is never the one holding the device up. The overlap
 * pays off on a real GPU, where submits return at once.
 *
 * ## Collapse and NaN: the documented rule
 *
 * The task flags, on the GPU, (a) a non-finite loss or gradient norm and (b) a collapse (the same
 * action more than `maxRun` times in a row, the authors' criterion). The loop sees the flags in
 * its per-step read (fixed schedules: every `readEvery` steps) and stops the segment. The trainer
 * then ROLLS BACK the GAN, its optimizer, data iterator and the reward history to the last
 * checkpoint (or re-initializes the GAN from its seed when there is none yet), RESETS the
 * controller (fresh weights, optimizer and normalization, with a new seed, as the authors
 * re-initialize the controller on collapse) and continues. After `maxRollbacks` rollbacks the run
 * stops cleanly, keeping its directory, checkpoint and samples. A run is never lost to a crash.
 * @module
 */

import { UserError } from "../run/errors.ts";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/kernels/random.ts";
import { loadCheckpoint, saveCheckpoint } from "../nn/checkpoint.ts";
import type { Checkpoint } from "../nn/checkpoint.ts";
import { MlpController, type PolicyController } from "../rl/controller.ts";
import { runningNormalization } from "../rl/features.ts";
import type { NormalizationSpec } from "../rl/features.ts";
import { makeActor, Ppo, type PpoArgs, type PpoStats } from "../rl/ppo.ts";
import { Reinforce, type ReinforceArgs } from "../rl/reinforce.ts";
import { inceptionReward, NormalizedImprovementReward } from "../rl/rewards.ts";
import { StepPatternSchedule } from "../rl/schedules.ts";
import { TrajectoryBuffer } from "../rl/trajectory.ts";
import { tensor, zeros } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { type HostArray, keep, noGrad, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { D_ACTION, decodeStatus, G_ACTION, type GanStatus, type GanTask } from "./gan.ts";

// ---------------------------------------------------------------- fixed schedules

/**
 * The paper's fixed schedule "GAN d:g" (D:G, e.g. "1:5" = one D update then five G updates, the
 * "GAN 1:K" of section 5.1.2) as a schedule over the actions [G, D]: D first in each cycle, as the
 * authors' `train()` loop.
 */
export function ganSchedule(ratio: string): StepPatternSchedule {
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(ratio);
  const d = m ? Number(m[1]) : NaN;
  const g = m ? Number(m[2]) : NaN;
  if (!(d >= 0 && g >= 0 && d + g > 0)) {
    throw new UserError(`invalid GAN schedule '${ratio}': expected D:G counts such as "1:5"`);
  }
  return new StepPatternSchedule(`GAN ${d}:${g}`, (t) => (t % (d + g) < d ? D_ACTION : G_ACTION));
}

/** The fixed schedules of section 5.1.2: 1:1, then 1:K and K:1 for K in {3, 5, 7, 9, 11}. */
export const PAPER_SCHEDULES: readonly string[] = [
  "1:1",
  ...[3, 5, 7, 9, 11].map((k) => `1:${k}`),
  ...[3, 5, 7, 9, 11].map((k) => `${k}:1`),
];

// ---------------------------------------------------------------- step loops

/** Counters of a step loop (see the module doc). */
export interface LoopStats {
  /** Steps recorded. */
  steps: number;
  /** Backend host syncs during the loop (each readback counts one). */
  hostSyncs: number;
  /** Reads awaited while a later step was already submitted (the pipelined ones). */
  pipelinedReads: number;
  /** Reads awaited with no step queued behind them (segment starts, status reads). */
  blockingReads: number;
  /** Minimum, over the pipelined waits, of steps recorded beyond the awaited read (-1: none). */
  minQueuedAtWait: number;
  /** JS milliseconds spent awaiting reads. */
  waitMs: number;
  /** JS milliseconds spent recording steps and sampling. */
  recordMs: number;
  /** Wall-clock seconds. */
  seconds: number;
}

/** Why a loop stopped before its last step. */
export type AbortReason = "nonfinite" | "collapse" | "stop";

/** What a loop returns. */
export interface LoopResult {
  /** Steps completed. */
  completed: number;
  /** Why it stopped early, or null. */
  aborted: AbortReason | null;
  /** The actions taken (0 = G, 1 = D), in order. */
  actions: number[];
  /** The last status read (after step `lastStatusStep`). */
  status: GanStatus | null;
  /** Counters. */
  stats: LoopStats;
}

/** Options common to both loops. */
export interface LoopOptions {
  /** Steps to run. */
  steps: number;
  /** Called with every status read (the step it describes is `t`, counted from 1). */
  onStatus?: (t: number, status: GanStatus) => void;
  /** Polled after every step: return true to stop (Ctrl-C, time budget). */
  shouldStop?: () => boolean;
  /** Non-finite steps already counted before this loop (the task's counter is cumulative). */
  nonfiniteBefore?: number;
}

/** Counters at zero. */
function zeroStats(): LoopStats {
  return {
    steps: 0,
    hostSyncs: 0,
    pipelinedReads: 0,
    blockingReads: 0,
    minQueuedAtWait: -1,
    waitMs: 0,
    recordMs: 0,
    seconds: 0,
  };
}

function newStats(): LoopStats & { start: number; syncs0: number } {
  return { ...zeroStats(), start: performance.now(), syncs0: backend().stats.hostSyncs };
}

function finish(s: LoopStats & { start: number; syncs0: number }): LoopStats {
  const { start, syncs0, ...rest } = s;
  return {
    ...rest,
    hostSyncs: backend().stats.hostSyncs - syncs0,
    seconds: (performance.now() - start) / 1000,
  };
}

/** The flag in a status that stops a loop, if any. */
function alarm(st: GanStatus, maxRun: number, nonfiniteBefore: number): AbortReason | null {
  if (st.nonfinite > nonfiniteBefore) return "nonfinite";
  if (st.run > maxRun) return "collapse";
  return null;
}

/**
 * Runs a fixed schedule for `opts.steps` steps (actions known on the host: no per-step read),
 * reading the status every `readEvery` steps and after the last step.
 */
export async function runFixed(
  task: GanTask,
  schedule: StepPatternSchedule,
  opts: LoopOptions & { readEvery: number },
): Promise<LoopResult> {
  const s = newStats();
  const actions: number[] = [];
  let status: GanStatus | null = null;
  let aborted: AbortReason | null = null;
  const before = opts.nonfiniteBefore ?? 0;
  for (let i = 0; i < opts.steps; i++) {
    const t0 = performance.now();
    const a = schedule.actionAt(task.t);
    task.step(Int32Array.of(a));
    actions.push(a);
    s.steps++;
    s.recordMs += performance.now() - t0;
    if ((i + 1) % opts.readEvery === 0 || i + 1 === opts.steps) {
      const w0 = performance.now();
      const st = tidy(() => task.status());
      const [v] = await readMany([st]);
      st.dispose();
      s.waitMs += performance.now() - w0;
      s.blockingReads++;
      status = decodeStatus(v);
      opts.onStatus?.(task.t, status);
      aborted = alarm(status, task.opts.maxRun, before);
      if (aborted) break;
    } else {
      // Let signal handlers (Ctrl-C) run between steps; no GPU wait is involved.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    if (opts.shouldStop?.()) {
      aborted = "stop";
      break;
    }
  }
  return { completed: s.steps, aborted, actions, status, stats: finish(s) };
}

/** What a learned loop records for learning (row i = the transition of the i-th step). */
export interface Recording {
  /** Features, actions, log-probabilities (and values when `critic` is given). */
  buffer: TrajectoryBuffer;
  /** V(F) for the value field (PPO's critic), or none. */
  critic?: (features: Tensor) => Tensor;
  /** Buffer row of the loop's first step (default 0). */
  offset?: number;
}

/** Options of {@link runLearned}. */
export interface LearnedLoopOptions extends LoopOptions {
  /** The sampling stream (its counter advances once per sample). */
  gen: Generator;
  /** Argmax instead of sampling. */
  greedy?: boolean;
  /** Record transitions (rows 0 .. steps-1). */
  record?: Recording;
}

/**
 * Runs `opts.steps` steps with `controller` choosing every action from features one step old,
 * with one overlapped readback per step (see the module doc). Stops at the first collapse or
 * non-finite flag, or when `shouldStop` says so.
 */
export async function runLearned(
  task: GanTask,
  controller: PolicyController,
  opts: LearnedLoopOptions,
): Promise<LoopResult> {
  const s = newStats();
  const n = opts.steps;
  const before = opts.nonfiniteBefore ?? 0;
  const actions: number[] = [];
  let status: GanStatus | null = null;
  let aborted: AbortReason | null = null;
  if (n <= 0) return { completed: 0, aborted, actions, status, stats: finish(s) };

  // Samples an action from the current features; records it as row `row`; returns it (i32 [1]).
  const sample = (row: number): Tensor =>
    noGrad(() => {
      const f = task.features();
      const { actions: a, logProbs } = controller.act(f, {
        t: task.t,
        greedy: opts.greedy ?? false,
        gen: opts.gen,
      });
      const rec = opts.record;
      if (rec && row < n) {
        const at = (rec.offset ?? 0) + row;
        rec.buffer.record("features", at, f);
        rec.buffer.record("actions", at, a);
        if (logProbs && rec.buffer.scalars.logProbs) rec.buffer.record("logProbs", at, logProbs);
        if (rec.critic && rec.buffer.scalars.values) {
          tidy(() => rec.buffer.record("values", at, rec.critic!(f)));
        }
      }
      logProbs?.dispose();
      return a;
    });

  // Prime: two actions from the first features, one blocking read.
  let t0 = performance.now();
  const first = [sample(0), sample(1)];
  const primed = readMany(first);
  for (const a of first) a.dispose();
  s.recordMs += performance.now() - t0;
  let w0 = performance.now();
  const [r0, r1] = await primed;
  s.waitMs += performance.now() - w0;
  s.blockingReads++;
  const next: number[] = [r0[0], r1[0]];
  let pending: Promise<HostArray[]> | null = null;
  let pendingCovers = -1; // the step index whose status the pending read carries

  for (let i = 0; i < n; i++) {
    t0 = performance.now();
    const a = next.shift()!;
    task.step(Int32Array.of(a));
    actions.push(a);
    s.steps++;
    let started: Promise<HostArray[]> | null = null;
    if (i + 2 < n) {
      const c = sample(i + 2);
      const st = tidy(() => task.status());
      started = readMany([c, st]);
      c.dispose();
      st.dispose();
    }
    s.recordMs += performance.now() - t0;
    if (pending) {
      s.minQueuedAtWait = s.minQueuedAtWait < 0
        ? i - pendingCovers
        : Math.min(s.minQueuedAtWait, i - pendingCovers);
      w0 = performance.now();
      const [c, v] = await pending;
      s.waitMs += performance.now() - w0;
      s.pipelinedReads++;
      next.push(c[0]);
      status = decodeStatus(v);
      opts.onStatus?.(task.t - 1, status);
      aborted = alarm(status, task.opts.maxRun, before);
    }
    pending = started;
    pendingCovers = i;
    if (!aborted && opts.shouldStop?.()) aborted = "stop";
    if (aborted) break;
  }
  if (pending) {
    // Drain the read in flight, so nothing dangles (and its status is not lost).
    const [, v] = await pending;
    s.blockingReads++;
    status = decodeStatus(v);
    if (!aborted) aborted = alarm(status, task.opts.maxRun, before);
  }
  return { completed: s.steps, aborted, actions, status, stats: finish(s) };
}

// ---------------------------------------------------------------- checkpoints

/** Saves the task and `extra` tensors with `meta` (JSON) to `path`, atomically. */
export async function saveGanCheckpoint(
  path: string,
  task: GanTask,
  extra: Record<string, Tensor> = {},
  meta: Record<string, unknown> = {},
): Promise<void> {
  const { tensors, metadata } = task.checkpointState("task.");
  await saveCheckpoint(path, { ...tensors, ...extra }, {
    ...metadata,
    "run.meta": JSON.stringify(meta),
  });
}

/** The run-level metadata saved by {@link saveGanCheckpoint}. */
export function checkpointMeta<T>(ckpt: Checkpoint): T {
  const text = ckpt.metadata["run.meta"];
  if (!text) throw new Error("not a GAN run checkpoint (no run.meta)");
  return JSON.parse(text) as T;
}

/** Writes the checkpoint's values of `named` (names prefixed by `prefix`) into the tensors. */
function restoreNamed(ckpt: Checkpoint, named: [string, Tensor][], prefix: string): void {
  const be = backend();
  const problems: string[] = [];
  for (const [n, t] of named) {
    const src = ckpt.tensors.get(prefix + n);
    if (!src || src.data.length !== t.size) problems.push(`${prefix}${n}`);
    else be.write(t.storageFor("restore"), src.data, t.offset);
  }
  if (problems.length) {
    throw new Error(`checkpoint lacks or mis-sizes: ${problems.join(", ")}`);
  }
}

// ---------------------------------------------------------------- online PPO

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

/** The JSON saved with an online-PPO checkpoint. */
export interface OnlineMeta {
  /** Always "ppo". */
  kind: "ppo";
  /** Segments completed. */
  segments: number;
  /** Rollbacks so far. */
  rollbacks: number;
  /** Seed the current controller was initialized with. */
  controllerSeed: number;
  /** State of the sampling generator. */
  sampler: { seed: number; counter: number };
  /** The reward's IS history (at most k + 1 values). */
  isHistory: number[];
  /** PPO updates taken. */
  updates: number;
  /** The actor's feature normalization. */
  normalization: NormalizationSpec;
}

/**
 * Online PPO on a GAN (paper section 4.4): segments of T steps driven by the pipelined loop; at
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
    const h = this.isHistory;
    tidy(() => {
      this.#reward.reset(tensor(Float32Array.of(h[0]), [1]));
      for (const v of h.slice(1)) this.#reward.next(tensor(Float32Array.of(v), [1]));
    });
  }

  /**
   * Runs one segment and its update. Returns its log, or the abort reason when the loop stopped
   * early (then no update ran; the caller rolls back or stops).
   */
  async segment(
    hooks: Pick<LoopOptions, "onStatus" | "shouldStop"> & { nonfiniteBefore: number },
  ): Promise<SegmentLog | { aborted: AbortReason; loop: LoopStats }> {
    const t = this.opts.segment;
    this.#buffer.clear();
    const loop = await runLearned(this.task, this.actor, {
      steps: t,
      gen: this.#sampler,
      record: { buffer: this.#buffer, critic: (f) => this.ppo.value(f) },
      ...hooks,
    });
    if (loop.aborted) return { aborted: loop.aborted, loop: loop.stats };
    // Segment end: IS, reward on every step, one PPO update (one readback).
    this.task.evaluateIs();
    const reward = keep(tidy(() => this.#reward.next(this.task.metrics().is)));
    const rewards = this.#buffer.field("rewards");
    tidy(() => noGrad(() => ops.assign_(rewards, rewards.add(reward.reshape([1, 1])))));
    const status = tidy(() => this.task.status());
    const done = zeros([1]);
    const stats = await this.ppo.update(
      this.#buffer,
      { features: this.task.features(), done },
      [reward, status],
    );
    for (const x of [reward, status, done]) x.dispose();
    tidy(() => noGrad(() => this.actor.normalizer.update(this.#buffer.flat("features"))));
    const st = decodeStatus(stats.extra[1]);
    this.isHistory.push(st.is);
    while (this.isHistory.length > this.opts.reward.k + 1) this.isHistory.shift();
    this.segments++;
    const g = loop.actions.filter((a) => a === G_ACTION).length;
    const { extra: _extra, ...ppoStats } = stats;
    return {
      segment: this.segments - 1,
      step: this.task.t,
      is: st.is,
      reward: stats.extra[0][0],
      gShare: g / Math.max(loop.actions.length, 1),
      ppo: ppoStats,
      loop: loop.stats,
      status: st,
    };
  }

  /** The controller's tensors and the JSON state, for a checkpoint. */
  async checkpointParts(): Promise<{ tensors: Record<string, Tensor>; meta: OnlineMeta }> {
    const tensors: Record<string, Tensor> = {};
    this.ppo.flat.names.forEach((n, i) => (tensors[`ctrl.${n}`] = this.ppo.flat.params[i]));
    Object.assign(tensors, this.ppo.optimizer.state("ctrl.optim.").tensors);
    return {
      tensors,
      meta: {
        kind: "ppo",
        segments: this.segments,
        rollbacks: this.rollbacks,
        controllerSeed: this.#controllerSeed,
        sampler: this.#sampler.state(),
        isHistory: [...this.isHistory],
        updates: this.ppo.updates,
        normalization: await this.actor.normalizer.toSpec(),
      },
    };
  }

  /** Saves task and controller to `path`. */
  async save(path: string): Promise<void> {
    const { tensors, meta } = await this.checkpointParts();
    const optMeta = this.ppo.optimizer.state("ctrl.optim.").metadata;
    await saveGanCheckpoint(path, this.task, tensors, { ...meta, optim: optMeta });
  }

  /** Restores task and controller from a checkpoint written by {@link OnlinePpo.save}. */
  restore(ckpt: Checkpoint): void {
    const meta = checkpointMeta<OnlineMeta & { optim: Record<string, string> }>(ckpt);
    if (meta.kind !== "ppo") {
      throw new UserError(
        `checkpoint holds a '${meta.kind}' run, not PPO: resume it with the command that made it`,
      );
    }
    this.task.loadCheckpoint(ckpt);
    this.#newController(meta.controllerSeed, meta.normalization);
    const named = this.ppo.flat.names.map((n, i) =>
      [n, this.ppo.flat.params[i]] as [string, Tensor]
    );
    restoreNamed(ckpt, named, "ctrl.");
    this.ppo.optimizer.loadState(
      { tensors: ckpt.tensors, metadata: meta.optim },
      "ctrl.optim.",
    );
    this.ppo.updates = meta.updates;
    this.#sampler.setState(meta.sampler);
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

// ---------------------------------------------------------------- episodic REINFORCE

/** Settings of {@link EpisodicReinforce}. */
export interface EpisodicOptions {
  /** Steps per episode (the authors stop on IS patience or 200k steps). */
  episodeSteps: number;
  /** Early stop: IS evaluations without a new best (0: never). */
  patience: number;
  /** REINFORCE hyperparameters (default: the authors' GAN settings). */
  args: Partial<ReinforceArgs>;
  /** C of the reward `C * IS^2` (authors: 10). */
  c: number;
  /** Hidden units of the controller (authors: 16). */
  hidden: number;
  /** Controller seed. */
  seed: number;
}

/** One episode, in plain numbers. */
export interface EpisodeLog {
  /** Episode index. */
  episode: number;
  /** Steps run. */
  steps: number;
  /** Best IS of the episode. */
  bestIs: number;
  /** Reward `C * bestIS^2` (0 on collapse). */
  reward: number;
  /** Advantage used (clipped; -20 on collapse). */
  advantage: number;
  /** Whether it ended in collapse (or non-finite values). */
  collapsed: boolean;
  /** Whether it was cut short by `shouldStop` (then no update was taken and it does not count). */
  stopped: boolean;
  /** Share of G actions. */
  gShare: number;
  /** Loop counters. */
  loop: LoopStats;
}

/**
 * Episodic REINFORCE as the authors' code (reference doc 3.1-3.2, 4.3): each episode trains a
 * fresh GAN under the controller (4 features, MLP 4-16-2, temperature 1), the IS is evaluated
 * every `task.opts.isEvery` steps, the episode ends at `episodeSteps`, on IS patience, or on
 * collapse; the reward is `C * bestIS^2` with a moving-average baseline and the advantage
 * magnitude clipped into [1, 20]; a collapse gives advantage -20 and re-initializes the
 * controller after the update. One difference from the authors: the reward uses the best IS
 * measured during the episode (on `task.opts.isSamples` samples) instead of re-scoring the best
 * checkpoint on 500k samples, which would cost about 100 evaluations per episode.
 */
export class EpisodicReinforce {
  /** The GAN (reset every episode). */
  readonly task: GanTask;
  /** Settings. */
  readonly opts: EpisodicOptions;
  /** The controller. */
  controller!: MlpController;
  /** REINFORCE state. */
  reinforce!: Reinforce;
  /** Episodes done. */
  episodes = 0;
  /** Best reward so far and the episode it came from. */
  best = { reward: -Infinity, episode: -1 };
  #reinits = 0;
  #seed = 0;

  /** Builds the controller. */
  constructor(task: GanTask, opts: EpisodicOptions) {
    this.task = task;
    this.opts = opts;
    this.#newController(opts.seed);
  }

  #newController(seed: number): void {
    const baseline = this.reinforce?.baseline ?? null;
    this.#seed = seed;
    this.reinforce?.dispose();
    this.controller?.dispose();
    this.controller = new MlpController({
      featureNames: this.task.featureNames,
      actions: 2,
      hidden: this.opts.hidden,
      temperature: 1,
      seed,
    });
    this.reinforce = new Reinforce(this.controller, this.opts.args);
    this.reinforce.baseline = baseline;
  }

  /** Runs one episode from `seed` and takes one controller update. */
  async episode(
    seed: number,
    hooks: Pick<LoopOptions, "onStatus" | "shouldStop"> = {},
  ): Promise<EpisodeLog> {
    const o = this.opts;
    const task = this.task;
    task.reset(seed);
    const every = task.opts.isEvery;
    const chunk = every > 0 ? every : o.episodeSteps;
    const buffer = new TrajectoryBuffer(o.episodeSteps, 1, task.featureNames.length, {
      logProbs: true,
    });
    const gen = new Generator(seed ^ 0x2545f491);
    const loops: LoopStats[] = [];
    let best = 0;
    let sinceBest = 0;
    let collapsed = false;
    let stopped = false;
    const actions: number[] = [];
    try {
      // Chunks of `isEvery` steps: the IS is evaluated at each chunk end inside task.step().
      while (task.t < o.episodeSteps) {
        const r = await runLearned(task, this.controller, {
          steps: Math.min(chunk, o.episodeSteps - task.t),
          gen,
          record: { buffer, offset: task.t },
          ...hooks,
        });
        loops.push(r.stats);
        actions.push(...r.actions);
        if (r.aborted === "stop") {
          stopped = true;
          break;
        }
        if (r.aborted) {
          collapsed = true;
          break;
        }
        const st = tidy(() => task.status());
        const [v] = await readMany([st]);
        st.dispose();
        const status = decodeStatus(v);
        if (alarm(status, task.opts.maxRun, 0)) {
          collapsed = true;
          break;
        }
        const now = status.is;
        if (now > best) {
          best = now;
          sinceBest = 0;
        } else if (o.patience > 0 && ++sinceBest >= o.patience) break;
      }
      const steps = actions.length;
      const reward = collapsed ? 0 : inceptionReward(best, o.c);
      let advantage: number;
      if (collapsed) {
        const clip = this.reinforce.args.advantageClip;
        advantage =
          -(clip.kind === "magnitude" ? clip.hi : clip.kind === "symmetric" ? clip.c : 20);
      } else {
        advantage = this.reinforce.advantages([reward])[0];
      }
      if (!stopped && steps > 0) {
        const used = steps === buffer.steps ? buffer : truncate(buffer, steps);
        const loss = this.reinforce.update(used, [[advantage]]);
        loss.dispose();
        if (used !== buffer) used.dispose();
      }
      if (!stopped) {
        if (collapsed) this.#newController(this.opts.seed + 7919 * ++this.#reinits);
        if (!collapsed && reward > this.best.reward) this.best = { reward, episode: this.episodes };
        this.episodes++;
      }
      return {
        episode: stopped ? this.episodes : this.episodes - 1,
        stopped,
        steps,
        bestIs: best,
        reward,
        advantage,
        collapsed,
        gShare: actions.filter((a) => a === G_ACTION).length / Math.max(steps, 1),
        loop: mergeStats(loops),
      };
    } finally {
      buffer.dispose();
    }
  }

  /**
   * Saves the controller, its Adam state and the REINFORCE bookkeeping (episodes, best, baseline)
   * to `path`: resuming continues with the next episode exactly as if uninterrupted.
   */
  async save(path: string): Promise<void> {
    const tensors: Record<string, Tensor> = {};
    this.reinforce.flat.names.forEach((
      n,
      i,
    ) => (tensors[`ctrl.${n}`] = this.reinforce.flat.params[i]));
    const opt = this.reinforce.optimizer.state("ctrl.optim.");
    Object.assign(tensors, opt.tensors);
    const meta = {
      kind: "reinforce",
      episodes: this.episodes,
      best: this.best,
      baseline: this.reinforce.baseline,
      reinits: this.#reinits,
      seed: this.#seed,
      updates: this.reinforce.updates,
    };
    await saveCheckpoint(path, tensors, { ...opt.metadata, "run.meta": JSON.stringify(meta) });
  }

  /** Restores what {@link EpisodicReinforce.save} wrote. */
  restore(ckpt: Checkpoint): void {
    const meta = checkpointMeta<{
      kind: string;
      episodes: number;
      best: { reward: number; episode: number };
      baseline: number | null;
      reinits: number;
      seed: number;
      updates: number;
    }>(ckpt);
    if (meta.kind !== "reinforce") {
      throw new UserError(
        `checkpoint holds a '${meta.kind}' run, not REINFORCE: resume it with the command that made it`,
      );
    }
    this.#newController(meta.seed);
    const flat = this.reinforce.flat;
    restoreNamed(ckpt, flat.names.map((n, i) => [n, flat.params[i]]), "ctrl.");
    this.reinforce.optimizer.loadState(ckpt, "ctrl.optim.");
    this.reinforce.baseline = meta.baseline;
    this.reinforce.updates = meta.updates;
    this.episodes = meta.episodes;
    this.best = meta.best;
    this.#reinits = meta.reinits;
  }

  /** Frees the controller (the task is the caller's). */
  dispose(): void {
    this.reinforce.dispose();
    this.controller.dispose();
  }
}

/** A new buffer holding the first `rows` rows of `src` (features, actions, logProbs). */
function truncate(src: TrajectoryBuffer, rows: number): TrajectoryBuffer {
  const out = new TrajectoryBuffer(rows, 1, src.featureSize, { logProbs: true });
  const be = backend();
  for (
    const [field, width] of [["features", src.featureSize], ["actions", 1], [
      "logProbs",
      1,
    ]] as const
  ) {
    const a = src.field(field);
    const b = out.field(field);
    be.copy(
      a.storageFor("truncate"),
      a.offset,
      b.storageFor("truncate"),
      b.offset,
      rows * width * 4,
    );
  }
  return out;
}

/** Sums the counters of several loops. */
export function mergeStats(list: LoopStats[]): LoopStats {
  const out = zeroStats();
  for (const s of list) {
    out.steps += s.steps;
    out.hostSyncs += s.hostSyncs;
    out.pipelinedReads += s.pipelinedReads;
    out.blockingReads += s.blockingReads;
    out.waitMs += s.waitMs;
    out.recordMs += s.recordMs;
    out.seconds += s.seconds;
    if (s.minQueuedAtWait >= 0) {
      out.minQueuedAtWait = out.minQueuedAtWait < 0
        ? s.minQueuedAtWait
        : Math.min(out.minQueuedAtWait, s.minQueuedAtWait);
    }
  }
  return out;
}
