/**
 * What every method of tasks/nmt/train.ts reports: the method keys and labels, the curve points
 * (one per validation), the tracker that keeps the curve and the best parameters, and the test
 * evaluation (perplexity, greedy and beam BLEU at the best validation point).
 * @module
 */

import type { PpoArgs } from "../../rl/ppo.ts";
import { readMany } from "../../tensor/tensor.ts";
import { disposeBatch, makeBatch } from "./model.ts";
import { beamDecode, corpusBleu, greedyDecode } from "./decode.ts";
import type { NmtTask } from "./task.ts";

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
export const POINT_METRICS = {
  val: "val",
  ppl: "ppl",
  "val.pos": "valPos",
  "val.ner": "valNer",
} as const;

/** A curve point from the values of the {@link POINT_METRICS}, read in that order. */
export function pointOf(task: NmtTask, updates: number[], values: ArrayLike<number>[]): CurvePoint {
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

/** Keeps a method's curve and best parameters; calls the validation hook. */
export class Tracker {
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

/** A method's result: the test evaluation at the best parameters and the curve. */
export async function finish(
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
