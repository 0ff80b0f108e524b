/**
 * The AutoLoss method of the NMT task: an online PPO controller (a 3-way softmax over MT, POS and
 * NER) trained while it schedules, in segments of `valEvery` batches through rl/training.ts
 * `ppoSegment`; checkpoints, resume and a clean stop for `train nmt`.
 * @module
 */

import { backend } from "../../gpu/backend.ts";
import { Generator } from "../../gpu/random.ts";
import {
  type Checkpoint,
  checkpointJson,
  mergeParts,
  saveCheckpoint,
} from "../../nn/checkpoint.ts";
import { runningNormalization } from "../../rl/normalization.ts";
import { makeActor, Ppo, PPO_AUTHORS_NMT, type PpoArgs } from "../../rl/ppo.ts";
import { NormalizedImprovementReward } from "../../rl/rewards.ts";
import { TrajectoryBuffer } from "../../rl/trajectory.ts";
import { ppoCheckpoint, ppoRunState, ppoSegment, restorePpo } from "../../rl/training.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { zeros } from "../../tensor/functional.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../../tensor/tensor.ts";
import {
  type CurvePoint,
  finish,
  type MethodContext,
  type MethodResult,
  POINT_METRICS,
  pointOf,
  Tracker,
} from "./results.ts";

/** Options of {@link runAutoLoss} besides the context. */
export interface AutoLossHooks {
  /** Called with the trained actor before it is freed (e.g. to save it). */
  onActor?: (actor: PolicyController, ppo: Ppo) => Promise<void> | void;
  /** Checkpoints, resume and a clean stop (`train nmt`). */
  checkpoint?: AutoLossCheckpoint;
}

/** How {@link runAutoLoss} checkpoints a resumable run. */
export interface AutoLossCheckpoint {
  /** The checkpoint file (written atomically). */
  path: string;
  /** Save after every this many segments, after the last one, and when stopping. */
  everySegments: number;
  /** Continue from this checkpoint (of a run with the same config). */
  resume?: Checkpoint;
  /** Polled after each segment: true saves a checkpoint and stops the run (Ctrl-C). */
  shouldStop?: () => boolean;
}

/** Segments completed and curve points recorded by the run an AutoLoss checkpoint holds. */
export function autoLossProgress(ckpt: Checkpoint): { segments: number; points: number } {
  const meta = checkpointJson<AutoLossRunMeta>(ckpt, "run.meta");
  return { segments: meta.segments, points: meta.curve.length };
}

/** The run's own JSON in an AutoLoss checkpoint. */
interface AutoLossRunMeta {
  /** Segments (PPO updates) completed. */
  segments: number;
  /** The budget, seed and segment length the run was started with (checked on resume). */
  batches: number;
  seed: number;
  segment: number;
  /** Curve, best point, per-task updates, probabilities and PPO log so far. */
  curve: CurvePoint[];
  best: number;
  bestEpoch: number;
  updates: number[];
  probs: number[][];
  ppo: NonNullable<MethodResult["ppo"]>;
  /** Training seconds before this process. */
  seconds: number;
}

/**
 * AutoLoss with an online PPO controller: the run is cut into segments of `valEvery` batches;
 * each segment ends with a validation, its reward is the normalized improvement of the MT
 * validation loss (every step of the segment receives it), and one PPO update follows. With
 * `hooks.checkpoint` the run saves task, controller and its own state at segment ends, resumes
 * from such a checkpoint exactly (same results as an uninterrupted run), and returns null when
 * `shouldStop` stopped it.
 */
export async function runAutoLoss(
  ctx: MethodContext,
  hooks: AutoLossHooks = {},
): Promise<MethodResult | null> {
  const task = ctx.task;
  const t0 = performance.now();
  const segment = task.opts.valEvery;
  const updatesPlanned = Math.max(1, Math.ceil(ctx.batches / segment));
  const k = task.featureNames.length;
  const ck = hooks.checkpoint;
  const saved = ck?.resume ? checkpointJson<AutoLossRunMeta>(ck.resume, "run.meta") : null;
  if (saved) {
    const want = { batches: ctx.batches, seed: ctx.seed, segment };
    const got = { batches: saved.batches, seed: saved.seed, segment: saved.segment };
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      throw new Error(
        `nmt: the checkpoint is of a run with ${JSON.stringify(got)}, this one has ` +
          `${JSON.stringify(want)}`,
      );
    }
  }
  const args: Partial<PpoArgs> = {
    ...PPO_AUTHORS_NMT,
    temperature: 1,
    numMinibatches: 1,
    updateEpochs: 4,
    seed: ctx.seed,
    ...ctx.ppo.args,
    numSteps: segment,
    numUpdates: updatesPlanned,
  };
  const actor = makeActor({
    inputs: k,
    actions: 3,
    featureNames: task.featureNames,
    normalization: ck?.resume ? ppoRunState(ck.resume).normalization : runningNormalization(k),
  }, args);
  const ppo = new Ppo(actor, args);
  const buffer = new TrajectoryBuffer(segment, 1, k, {
    logProbs: true,
    values: true,
    rewards: true,
    dones: true,
  });
  const reward = new NormalizedImprovementReward({
    c: ctx.ppo.rewardC,
    k: ctx.ppo.rewardK,
    higherIsBetter: false,
  });
  const done = keep(zeros([1]));
  const gen = new Generator((ctx.seed * 2654435761 + 17) >>> 0);
  const segProbs = keep(ops.empty([segment, 3]));
  const tracker = new Tracker(ctx, "autoloss");
  const updates = [0, 0, 0];
  const probs: number[][] = [];
  const ppoLog: NonNullable<MethodResult["ppo"]> = [];
  const be = backend();
  let first = 0;
  const seconds = () => (saved?.seconds ?? 0) + (performance.now() - t0) / 1000;
  const save = async (segments: number) => {
    const meta: AutoLossRunMeta = {
      segments,
      batches: ctx.batches,
      seed: ctx.seed,
      segment,
      curve: tracker.curve,
      best: tracker.best,
      bestEpoch: tracker.bestEpoch,
      updates,
      probs,
      ppo: ppoLog,
      seconds: seconds(),
    };
    const part = mergeParts(task.checkpointState("task."), await ppoCheckpoint(ppo, gen, "ctrl."));
    await saveCheckpoint(ck!.path, part.tensors, {
      ...part.metadata,
      "run.meta": JSON.stringify(meta),
    });
  };
  try {
    if (saved && ck?.resume) {
      task.loadCheckpoint(ck.resume, "task.");
      restorePpo(ck.resume, ppo, gen, "ctrl.");
      tracker.restore(saved.curve, saved.best, saved.bestEpoch);
      reward.restore(saved.curve.map((p) => p.val));
      updates.splice(0, 3, ...saved.updates);
      probs.push(...saved.probs);
      ppoLog.push(...saved.ppo);
      first = saved.segments;
    } else {
      task.reset(ctx.seed);
      await tracker.poll(updates);
      const m = task.metrics();
      reward.reset(m.val);
      for (const t of Object.values(m)) t.dispose();
    }
    for (let u = first; u < updatesPlanned && task.batches < ctx.batches; u++) {
      // The segment ends with a validation (segment = valEvery): its reward goes to every step.
      const names = Object.keys(POINT_METRICS);
      let metrics: Record<string, Tensor> = {};
      const stats = await ppoSegment(task, ppo, buffer, {
        gen,
        t0: task.t,
        done: () => done,
        onAct: ({ i, features }) => {
          const p = noGrad(() => actor.probabilities(features));
          be.copy(p.storageFor("nmt"), p.offset, segProbs.storageFor("nmt"), 12 * i, 12);
        },
        reward: () => tidy(() => reward.next(task.metrics().val)),
        alsoRead: () => {
          metrics = task.metrics();
          return [buffer.field("actions"), segProbs, ...names.map((n) => metrics[n])];
        },
      }).finally(() => {
        for (const t of Object.values(metrics)) t.dispose();
      });
      const [, acts, pr, ...values] = stats.extra;
      acts.forEach((a, i) => {
        updates[a]++;
        probs.push(Array.from(pr.slice(3 * i, 3 * i + 3)));
      });
      await tracker.add(pointOf(task, updates, values));
      ppoLog.push({
        update: u,
        reward: stats.extra[0][0],
        entropy: stats.entropy,
        approxKl: stats.approx_kl,
      });
      if (!ck) continue;
      const last = u + 1 >= updatesPlanned || task.batches >= ctx.batches;
      const stop = !last && (ck.shouldStop?.() ?? false);
      if (last || stop || (u + 1) % ck.everySegments === 0) await save(u + 1);
      if (stop) return null;
    }
    await hooks.onActor?.(actor, ppo);
    const result = await finish(ctx, "autoloss", tracker, updates, t0, { probs, ppo: ppoLog });
    return { ...result, trainSeconds: result.trainSeconds + (saved?.seconds ?? 0) };
  } finally {
    buffer.dispose();
    reward.dispose();
    done.dispose();
    segProbs.dispose();
    ppo.dispose();
    ppo.flat.dispose(); // Ppo.dispose() leaves its FlatParams (actor + critic buffers) alive
    actor.dispose();
  }
}
