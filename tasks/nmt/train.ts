/**
 * The training methods compared on the multi-task translation task (paper section 5.1.3), all on
 * one {@link NmtTask} with the same data, seed and budget of training batches:
 *
 * | method | what it does |
 * |---|---|
 * | `mt` | MT only (the paper's single-task baseline) |
 * | `fixed` | FIXED RATIO: tasks interleaved in proportion to their training-set sizes (rl/schedules.ts `proportionalSchedule`) |
 * | `finetune` | FINE-TUNED MT: FIXED RATIO for the first `finetuneAt` of the budget, then MT only |
 * | `autoloss` | AutoLoss: an online PPO controller (3-way softmax) picks the task each step; reward = the paper's normalized improvement of the MT validation loss per segment |
 * | `uw` | uncertainty weighting (Kendall et al. 2018), beyond the paper: joint loss `sum exp(-s_k) L_k + s_k` with learned s_k |
 * | `dwa` | dynamic weight average (Liu et al. 2019), beyond the paper: `w_k = 3 softmax(r_k / Temp)`, r_k the ratio of task k's last two average training losses |
 *
 * Budget: every method consumes the same number of training batches; a joint step (UW, DWA)
 * consumes one batch of each task, so it makes a third as many updates. Curves are plotted
 * against epochs = batches consumed / MT batches per epoch.
 *
 * AutoLoss is tasks/nmt/autoloss.ts: each segment is rl/training.ts `ppoSegment` (the actions
 * sampled on the GPU and handed to `NmtTask.step` as a GPU tensor, the three task updates gated
 * on it), so a segment has no host sync: the actions, the probabilities of every step (the
 * paper's Fig. 3M) and the validation metrics come back in the one read of the segment's PPO
 * update. Curves, the tracker and the test evaluation: tasks/nmt/results.ts.
 * @module
 */

import { FlatParams } from "../../nn/module.ts";
import { Adam } from "../../nn/optim.ts";
import { proportionalSchedule, StepPatternSchedule } from "../../rl/schedules.ts";
import { tensor, zeros } from "../../tensor/functional.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor } from "../../tensor/tensor.ts";
import { NMT_TASKS } from "./task.ts";
import { type AutoLossHooks, runAutoLoss } from "./autoloss.ts";
import {
  finish,
  type MethodContext,
  type MethodResult,
  type NmtMethod,
  Tracker,
} from "./results.ts";

export {
  type CurvePoint,
  evaluateTest,
  METHOD_LABELS,
  type MethodContext,
  type MethodResult,
  NMT_METHODS,
  type NmtMethod,
  type NmtPpoOptions,
  PAPER_PPL,
} from "./results.ts";
export {
  type AutoLossCheckpoint,
  type AutoLossHooks,
  autoLossProgress,
  runAutoLoss,
} from "./autoloss.ts";

/** A host schedule: the action at schedule step t. */
type HostPolicy = (t: number) => number;

/** The FIXED RATIO schedule over the task's training-set sizes (deterministic interleaving). */
export function fixedRatioPolicy(sizes: readonly number[]): StepPatternSchedule {
  const s = proportionalSchedule(sizes, "interleave");
  if (!(s instanceof StepPatternSchedule)) throw new Error("expected an interleaved schedule");
  return s;
}

async function runSchedule(
  ctx: MethodContext,
  method: NmtMethod,
  policy: HostPolicy,
): Promise<MethodResult> {
  const task = ctx.task;
  const t0 = performance.now();
  task.reset(ctx.seed);
  const tracker = new Tracker(ctx, method);
  const updates = [0, 0, 0];
  await tracker.poll(updates);
  while (task.batches < ctx.batches) {
    const a = policy(task.t);
    task.step(Int32Array.of(a));
    updates[a]++;
    await tracker.poll(updates);
  }
  return finish(ctx, method, tracker, updates, t0);
}

/** MT only. */
export function runMtOnly(ctx: MethodContext): Promise<MethodResult> {
  return runSchedule(ctx, "mt", () => 0);
}

/** FIXED RATIO: proportional to the training-set sizes. */
export function runFixedRatio(ctx: MethodContext): Promise<MethodResult> {
  const s = fixedRatioPolicy(ctx.task.trainSizes);
  return runSchedule(ctx, "fixed", (t) => s.actionAt(t)).finally(() => s.dispose());
}

/** FINE-TUNED MT: FIXED RATIO for `finetuneAt` of the budget, then MT only. */
export function runFineTuned(ctx: MethodContext): Promise<MethodResult> {
  const s = fixedRatioPolicy(ctx.task.trainSizes);
  const switchAt = Math.round(ctx.finetuneAt * ctx.batches);
  return runSchedule(ctx, "finetune", (t) => (t < switchAt ? s.actionAt(t) : 0))
    .finally(() => s.dispose());
}

/** Joint training with weights from `weigh` (called before each step with the step index). */
async function runJoint(
  ctx: MethodContext,
  method: NmtMethod,
  combine: (losses: Tensor[]) => Tensor,
  afterStep: (losses: Tensor) => void,
  currentWeights: () => Promise<number[]>,
): Promise<MethodResult> {
  const task = ctx.task;
  const t0 = performance.now();
  task.reset(ctx.seed);
  const tracker = new Tracker(ctx, method);
  const updates = [0, 0, 0];
  const weights: number[][] = [];
  await tracker.poll(updates);
  weights.push(await currentWeights());
  while (task.batches + 3 <= ctx.batches) {
    const losses = task.jointStep(combine);
    afterStep(losses);
    losses.dispose();
    for (let i = 0; i < 3; i++) updates[i]++;
    if (await tracker.poll(updates)) weights.push(await currentWeights());
  }
  return finish(ctx, method, tracker, updates, t0, { weights });
}

/**
 * Uncertainty weighting: learned s_k = log sigma_k^2 (init 0), loss `sum_k exp(-s_k) L_k + s_k`
 * (Kendall et al. 2018 for classification losses), s updated by its own Adam at the task's rate.
 */
export async function runUncertainty(ctx: MethodContext): Promise<MethodResult> {
  const s = zeros([3]);
  s.requiresGrad = true;
  const flat = new FlatParams([["uw.s", s]]);
  const opt = new Adam(flat, { lr: ctx.task.opts.lr });
  try {
    return await runJoint(
      ctx,
      "uw",
      (losses) => {
        flat.zeroGrad();
        const l = ops.concat(losses.map((x) => x.reshape([1])), 0);
        return s.neg().exp().mul(l).add(s).sum();
      },
      () => opt.step(),
      async () => Array.from((await readMany([s]))[0], (v) => Math.exp(-v)),
    );
  } finally {
    opt.dispose();
    flat.dispose();
  }
}

/**
 * Dynamic weight average: the weights change at each validation (our "epoch", as runs are short):
 * `w_k = 3 softmax_k(r_k / Temp)` with r_k = (mean training loss of task k over the last
 * interval) / (over the interval before); weights 1 until two intervals have passed.
 */
export async function runDwa(ctx: MethodContext): Promise<MethodResult> {
  const task = ctx.task;
  let w = [1, 1, 1];
  let wTensor = keep(tensor(Float32Array.from(w), [3]));
  let acc = keep(zeros([3]));
  let count = 0;
  const history: number[][] = [];
  let seen = 0;
  try {
    return await runJoint(
      ctx,
      "dwa",
      (losses) => ops.concat(losses.map((x) => x.reshape([1])), 0).mul(wTensor).sum(),
      (losses) => {
        const next = keep(noGrad(() => acc.add(losses)));
        acc.dispose();
        acc = next;
        count++;
      },
      async () => {
        if (task.validations === seen || count === 0) return w;
        seen = task.validations;
        const [sum] = await readMany([acc]);
        history.push(Array.from(sum, (v) => v / count));
        acc.dispose();
        acc = keep(zeros([3]));
        count = 0;
        if (history.length >= 2) {
          const [a, b] = history.slice(-2);
          const r = a.map((_, i) => b[i] / a[i] / ctx.dwaTemperature);
          const mx = Math.max(...r);
          const e = r.map((v) => Math.exp(v - mx));
          const z = e.reduce((x, y) => x + y, 0);
          w = e.map((v) => (3 * v) / z);
          wTensor.dispose();
          wTensor = keep(tensor(Float32Array.from(w), [3]));
        }
        return w;
      },
    );
  } finally {
    wTensor.dispose();
    acc.dispose();
  }
}

/** Runs one method by key. */
export function runMethod(
  method: NmtMethod,
  ctx: MethodContext,
  hooks: AutoLossHooks = {},
): Promise<MethodResult> {
  switch (method) {
    case "mt":
      return runMtOnly(ctx);
    case "fixed":
      return runFixedRatio(ctx);
    case "finetune":
      return runFineTuned(ctx);
    case "autoloss":
      return runAutoLoss(ctx, { ...hooks, checkpoint: undefined }).then((r) => r!);
    case "uw":
      return runUncertainty(ctx);
    case "dwa":
      return runDwa(ctx);
  }
}

/** The tasks in action order (re-exported for reports). */
export const TASK_NAMES: readonly string[] = NMT_TASKS.map((t) => t.toUpperCase());
