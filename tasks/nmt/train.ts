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
 * The PPO loop uses the core's pieces: `makeActor`, `Ppo.update` (GAE, clipped surrogate, value
 * loss), `TrajectoryBuffer` and `NormalizedImprovementReward`. Each step samples the action on the
 * GPU from the actor's probabilities (a seeded stream) and hands it to `NmtTask.step` as a GPU
 * tensor (the three task updates are gated on it), so a segment has no host sync: the actions,
 * the probabilities of every step (the paper's Fig. 3M) and the validation metrics come back in
 * the one read of the segment's PPO update.
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
import { FlatParams } from "../../nn/module.ts";
import { Adam } from "../../nn/optim.ts";
import { runningNormalization } from "../../rl/normalization.ts";
import { makeActor, Ppo, PPO_AUTHORS_NMT, type PpoArgs } from "../../rl/ppo.ts";
import { NormalizedImprovementReward } from "../../rl/rewards.ts";
import { proportionalSchedule, StepPatternSchedule } from "../../rl/schedules.ts";
import { TrajectoryBuffer } from "../../rl/trajectory.ts";
import { ppoCheckpoint, ppoRunState, ppoSegment, restorePpo } from "../../rl/training.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { tensor, zeros } from "../../tensor/functional.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { disposeBatch, makeBatch } from "./model.ts";
import { beamDecode, corpusBleu, greedyDecode } from "./decode.ts";
import { NMT_TASKS, type NmtTask } from "./task.ts";

/** The method keys, in report order. */
export const NMT_METHODS = ["mt", "fixed", "finetune", "autoloss", "uw", "dwa"] as const;

/** A method key. */
export type NmtMethod = typeof NMT_METHODS[number];

/** Display names of the methods (the paper's names where it has them). */
export const METHOD_LABELS: Record<NmtMethod, string> = {
  mt: "MT",
  fixed: "FIXED RATIO",
  finetune: "FINE-TUNED MT",
  autoloss: "AutoLoss (PPO)",
  uw: "Uncertainty weighting",
  dwa: "Dynamic weight average",
};

/** The paper's converged validation perplexities (section 5.1.3; its own data). */
export const PAPER_PPL: Partial<Record<NmtMethod, number>> = {
  mt: 3.77,
  fixed: 3.68,
  finetune: 3.64,
  autoloss: 3.54,
};

/** PPO settings of the AutoLoss method (besides the core's {@link PpoArgs}). */
export interface NmtPpoOptions {
  /** Core PPO arguments (numSteps is the segment length and must equal the task's valEvery). */
  args: Partial<PpoArgs>;
  /** C of the normalized-improvement reward. */
  rewardC: number;
  /** k of the normalized-improvement reward (segments averaged in the normalizer). */
  rewardK: number;
}

/** What a method run needs besides the task. */
export interface MethodContext {
  /** The task (reset by the method). */
  task: NmtTask;
  /** Seed of the model, data order, and sampling. */
  seed: number;
  /** Training batches to consume. */
  batches: number;
  /** Fraction of the budget trained with FIXED RATIO before MT-only fine-tuning. */
  finetuneAt: number;
  /** DWA temperature (Liu et al.: 2). */
  dwaTemperature: number;
  /** AutoLoss PPO settings. */
  ppo: NmtPpoOptions;
  /** Decoding settings for the test BLEU. */
  decode: { beam: number; maxLenRatio: number; maxLenExtra: number; batch: number };
  /** Called after each validation (for progress lines and metrics.jsonl). */
  onValidation?: (point: CurvePoint, method: NmtMethod) => void | Promise<void>;
}

/** One validation point of a curve. */
export interface CurvePoint {
  /** Training batches consumed. */
  batches: number;
  /** batches / MT batches per epoch. */
  epoch: number;
  /** MT validation perplexity. */
  ppl: number;
  /** MT validation loss per token. */
  val: number;
  /** POS validation loss per token. */
  valPos: number;
  /** NER validation loss per token. */
  valNer: number;
  /** Updates of each task so far (joint steps count for all three). */
  updates: number[];
}

/** The result of one method. */
export interface MethodResult {
  /** Method key. */
  method: NmtMethod;
  /** Display name. */
  label: string;
  /** Validation curve (the first point is before training). */
  curve: CurvePoint[];
  /** Final validation perplexity. */
  finalPpl: number;
  /** Best validation perplexity and its epoch. */
  bestPpl: number;
  /** Epoch of the best validation perplexity. */
  bestEpoch: number;
  /** Test results at the best validation point. */
  test: { ppl: number; bleuGreedy: number; bleuBeam: number; sentences: number };
  /** Updates per task (MT, POS, NER). */
  updates: number[];
  /** AutoLoss only: the actor's probabilities [MT, POS, NER] at every step. */
  probs?: number[][];
  /** Joint methods: the task weights at each validation. */
  weights?: number[][];
  /** PPO only: per-update statistics (mean reward, entropy, approx KL). */
  ppo?: { update: number; reward: number; entropy: number; approxKl: number }[];
  /** Wall-clock seconds (training and validation). */
  trainSeconds: number;
  /** Wall-clock seconds of the test evaluation (perplexity, greedy and beam decoding). */
  testSeconds: number;
}

/** The metrics of a curve point, by the task's metric names. */
const POINT_METRICS = { val: "val", ppl: "ppl", "val.pos": "valPos", "val.ner": "valNer" } as const;

/** A curve point from the values of the {@link POINT_METRICS}, read in that order. */
function pointOf(task: NmtTask, updates: number[], values: ArrayLike<number>[]): CurvePoint {
  return {
    batches: task.batches,
    epoch: task.batches / task.mtBatchesPerEpoch,
    val: values[0][0],
    ppl: values[1][0],
    valPos: values[2][0],
    valNer: values[3][0],
    updates: [...updates],
  };
}

/** Reads the task's metrics once and returns a curve point (disposes the metric tensors). */
async function readPoint(task: NmtTask, updates: number[]): Promise<CurvePoint> {
  const m = task.metrics();
  const values = await readMany(Object.keys(POINT_METRICS).map((n) => m[n]));
  for (const t of Object.values(m)) t.dispose();
  return pointOf(task, updates, values);
}

/** Keeps the curve and the best parameters; calls the hook. */
class Tracker {
  readonly curve: CurvePoint[] = [];
  best = Infinity;
  bestEpoch = 0;
  #seen = 0;

  constructor(readonly ctx: MethodContext, readonly method: NmtMethod) {}

  /** Records a point after every new validation (reading the metrics). */
  async poll(updates: number[]): Promise<boolean> {
    const task = this.ctx.task;
    if (task.validations === this.#seen) return false;
    await this.add(await readPoint(task, updates));
    return true;
  }

  /** Continues a checkpointed run: its curve and best point (the task holds the best weights). */
  restore(curve: CurvePoint[], best: number, bestEpoch: number): void {
    this.curve.splice(0, this.curve.length, ...curve);
    this.best = best;
    this.bestEpoch = bestEpoch;
    this.#seen = this.ctx.task.validations;
  }

  /** Records the point of the latest validation, read by the caller. */
  async add(p: CurvePoint): Promise<void> {
    this.#seen = this.ctx.task.validations;
    this.curve.push(p);
    if (p.ppl < this.best) {
      this.best = p.ppl;
      this.bestEpoch = p.epoch;
      this.ctx.task.saveBest();
    }
    await this.ctx.onValidation?.(p, this.method);
  }
}

/** Test perplexity and BLEU (greedy and beam) of the best parameters on the MT test split. */
export async function evaluateTest(
  task: NmtTask,
  decode: MethodContext["decode"],
): Promise<MethodResult["test"]> {
  task.restoreBest();
  const model = task.model;
  const loss = task.testLoss(decode.batch);
  const [[l]] = await readMany([loss]);
  loss.dispose();
  const data = task.opts.data;
  const test = data.data.mt.test;
  const refs = test.map((e) => e.words ?? data.tgtBpe.decode(data.tgtVocab.mt.decode(e.tgt)));
  const hypsGreedy: string[][] = new Array(test.length);
  const hypsBeam: string[][] = new Array(test.length);
  const toWords = (ids: number[]) => data.tgtBpe.decode(data.tgtVocab.mt.decode(ids));
  model.eval();
  try {
    // Sorted by length so each decoding batch has similar sources.
    const order = test.map((_, i) => i).sort((a, b) =>
      test[a].src.length - test[b].src.length || a - b
    );
    for (let i = 0; i < order.length; i += decode.batch) {
      const idx = order.slice(i, i + decode.batch);
      const srcs = idx.map((j) => test[j].src);
      const batch = makeBatch(srcs, srcs.map(() => []), { bucket: task.opts.bucket });
      const maxLen = Math.ceil(Math.max(...srcs.map((s) => s.length)) * decode.maxLenRatio) +
        decode.maxLenExtra;
      try {
        const g = await greedyDecode(model, "mt", batch, maxLen);
        const b = await beamDecode(model, "mt", batch, { beam: decode.beam, maxLen });
        idx.forEach((j, r) => {
          hypsGreedy[j] = toWords(g[r]);
          hypsBeam[j] = toWords(b[r]);
        });
      } finally {
        disposeBatch(batch);
      }
    }
  } finally {
    model.train();
  }
  return {
    ppl: Math.exp(l),
    bleuGreedy: 100 * corpusBleu(hypsGreedy, refs).bleu,
    bleuBeam: 100 * corpusBleu(hypsBeam, refs).bleu,
    sentences: test.length,
  };
}

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

async function finish(
  ctx: MethodContext,
  method: NmtMethod,
  tracker: Tracker,
  updates: number[],
  t0: number,
  extra: Partial<MethodResult> = {},
): Promise<MethodResult> {
  const trainSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const test = await evaluateTest(ctx.task, ctx.decode);
  const last = tracker.curve[tracker.curve.length - 1];
  return {
    method,
    label: METHOD_LABELS[method],
    curve: tracker.curve,
    finalPpl: last.ppl,
    bestPpl: tracker.best,
    bestEpoch: tracker.bestEpoch,
    test,
    updates,
    trainSeconds,
    testSeconds: (performance.now() - t1) / 1000,
    ...extra,
  };
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
