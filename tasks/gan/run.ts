/**
 * The plumbing shared by the `gan` task's commands (tasks/gan/commands.ts, tasks/gan/experiments.ts):
 * the data, scoring classifier and real-image IS of a run ({@link loadContext}), task
 * construction from the config, the run book that logs, plots and checkpoints a training run, and
 * small formatting helpers.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import type { OnlinePpoOptions } from "./online_ppo.ts";
import { Generator } from "../../gpu/random.ts";
import { type ImageDataset, loadFashionMnist, loadMnist } from "../../nn/data/mnist.ts";
import { imageGrid } from "../../run/png.ts";
import { Progress } from "../../run/progress.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { GracefulStop } from "../../run/signals.ts";
import { linePlot, type Series } from "../../run/svg.ts";
import { randn, tensor } from "../../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import type { ClassifierDataset } from "../classifier/data.ts";
import { weightsUrl } from "../classifier/model.ts";
import {
  type InceptionScore,
  inceptionScore as hostInceptionScore,
  loadScoringClassifier,
} from "../classifier/inception_score.ts";
import { GanTask } from "./task.ts";
import { decodeStatus, formatIs, type GanStatus } from "./status.ts";
import type { GanConfig } from "./config.ts";
import type { LoopStats } from "./driver.ts";
import { type DcganArch, describeArch } from "./model.ts";
import type { ImageClassifier } from "./scoring.ts";

/** The paper's converged IS on MNIST (section 5.1.2). */
export const PAPER_IS: Record<string, number> = {
  "GAN 1:1": 8.6307,
  "GAN 1:5": 9.0026,
  "GAN 1:7": 9.0232,
  "GAN 1:9": 9.0145,
  AutoLoss: 9.0549,
};

// ---------------------------------------------------------------- shared plumbing

/** What every GAN command loads once: the data, the IS classifier and the real-image IS. */
export interface GanContext {
  /** Training images in [-1, 1]. */
  data: ImageDataset;
  /** The IS classifier (null: not available; IS features stay 0). */
  classifier: ImageClassifier | null;
  /** The classifier as the host IS wants it. */
  scorer: { logits(x: Tensor): Tensor } | null;
  /** IS of real test images (null without a classifier). */
  realIs: InceptionScore | null;
  /** Where the classifier came from (or why there is none). */
  classifierNote: string;
}

/** The architecture a config describes. */
export function archOf(cfg: GanConfig): DcganArch {
  const m = cfg.model;
  return {
    zDim: m.zDim,
    gFilters: m.gFilters,
    dFilters: m.dFilters,
    gBatchNorm: m.gBatchNorm,
    dBatchNorm: m.dBatchNorm,
    gActivation: m.gActivation,
    dActivation: m.dActivation,
  };
}

async function loadImages(
  dataset: ClassifierDataset,
  split: "train" | "test",
  limit: number,
) {
  const opts = { range: [-1, 1] as const, ...(limit > 0 ? { limit } : {}) };
  return dataset === "fashion" ? await loadFashionMnist(split, opts) : await loadMnist(split, opts);
}

/** The scoring classifier's weights file of `dataset` under `cfg` (its default when unset). */
export function classifierPath(
  cfg: GanConfig,
  dataset: ClassifierDataset = cfg.data.dataset,
): string {
  return (dataset === cfg.data.dataset ? cfg.is.classifier : "") ||
    (dataset === "fashion" ? cfg.transfer.fashionClassifier : "") || weightsUrl(dataset).pathname;
}

/** Loads data and the scoring classifier of `dataset`, and scores real test images once. */
export async function loadContext(
  cfg: GanConfig,
  log: (s: string) => void,
  dataset: ClassifierDataset = cfg.data.dataset,
): Promise<GanContext> {
  const data = await loadImages(dataset, "train", cfg.data.limit);
  let classifier: ImageClassifier | null = null;
  let scorer: GanContext["scorer"] = null;
  let note: string;
  try {
    const c = await loadScoringClassifier(dataset, { path: classifierPath(cfg, dataset) });
    const acc = c.metadata.test_accuracy;
    note = `${dataset} classifier (${c.metadata.architecture_summary ?? "?"}; test accuracy ${
      acc ?? "?"
    })`;
    classifier = { name: note, logits: (x) => c.logits(x), dispose: () => c.model.dispose() };
    scorer = c;
  } catch (err) {
    note = `no IS: ${(err as Error).message.split("\n")[0]}`;
    log(`warning: ${note}`);
  }
  let realIs: InceptionScore | null = null;
  if (scorer && cfg.is.realSamples > 0) {
    const test = await loadImages(dataset, "test", cfg.is.realSamples);
    const x = tensor(test.images, [test.n, 1, 28, 28]);
    try {
      realIs = await hostInceptionScore(scorer, x, { splits: cfg.is.splits });
    } finally {
      x.dispose();
    }
    log(
      `IS of ${test.n} real ${dataset} test images under the scoring classifier: ` +
        `${realIs.mean.toFixed(3)} +- ${realIs.std.toFixed(3)}` +
        (dataset === "mnist" ? " (the paper's classifier: 9.5)" : ""),
    );
  }
  return { data, classifier, scorer, realIs, classifierNote: note };
}

/** A GanTask for `cfg` (architecture and IS cadence overridable). */
export function makeTask(
  cfg: GanConfig,
  ctx: GanContext,
  over: { arch?: DcganArch; isEvery?: number; totalSteps?: number } = {},
): GanTask {
  return new GanTask({
    arch: over.arch ?? archOf(cfg),
    data: ctx.data,
    batchSize: cfg.optim.batchSize,
    lr: cfg.optim.lr,
    betas: [cfg.optim.beta1, cfg.optim.beta2],
    stateSharing: cfg.optim.stateSharing,
    features: cfg.features.set,
    totalSteps: over.totalSteps ?? cfg.train.steps,
    stateDecay: cfg.features.stateDecay,
    isOffset: cfg.features.isOffset,
    classifier: ctx.classifier,
    isSamples: cfg.is.samples,
    isSplits: cfg.is.splits,
    isEvery: over.isEvery ?? cfg.is.every,
    maxRun: cfg.controller.maxRun,
  });
}

/** The final IS of `task`'s G on `samples` fresh images (host precision; null without IS). */
export async function finalIs(task: GanTask, ctx: GanContext, cfg: GanConfig, samples: number) {
  if (!ctx.scorer) return null;
  const gen = new Generator((task.seed ^ 0x510e527f) >>> 0);
  return await hostInceptionScore(
    ctx.scorer,
    (b) => task.sample(b, gen),
    { samples, splits: cfg.is.splits, batchSize: 500 },
  );
}

/** One point of an IS curve. */
export interface IsPoint {
  /** Steps done. */
  step: number;
  /** IS. */
  is: number;
}

/** Steps at which `curve` first reaches `threshold` (null: never). */
export function stepsToReach(curve: readonly IsPoint[], threshold: number): number | null {
  return curve.find((p) => p.is >= threshold)?.step ?? null;
}

/** A number with `digits` decimals, `-` for null/undefined/NaN. */
export function fmt(v: number | null | undefined, digits = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits);
}

/** Mean and sample std. */
export function meanStd(xs: number[]): { mean: number; std: number } {
  const n = xs.length;
  if (!n) return { mean: NaN, std: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std };
}

/** Reads the task's status (one readback). */
export async function readStatus(task: GanTask): Promise<GanStatus> {
  const st = tidy(() => task.status());
  const [v] = await readMany([st]);
  st.dispose();
  return decodeStatus(v);
}

// ---------------------------------------------------------------- the run book

/** A training run's bookkeeping: directory, progress line, budget, Ctrl-C, pictures, metrics. */
export class RunBook {
  readonly dir: RunDir;
  readonly cfg: GanConfig;
  readonly progress: Progress;
  readonly curve: IsPoint[] = [];
  readonly fixedNoise: Tensor;
  readonly started = performance.now();
  readonly #stop: GracefulStop;
  #gShare = 0;
  #done = false;

  /** What the curve's x values count: GAN steps, or REINFORCE episodes. */
  readonly unit: "step" | "episode";

  constructor(
    dir: RunDir,
    cfg: GanConfig,
    total: number,
    start: number,
    unit: "step" | "episode" = "step",
  ) {
    this.dir = dir;
    this.cfg = cfg;
    this.unit = unit;
    this.progress = new Progress({ total, start, label: "train gan" });
    this.fixedNoise = randn(
      [64, cfg.model.zDim],
      0,
      1,
      new Generator((cfg.seed ^ 0x9b05688c) >>> 0),
    );
    this.#stop = new GracefulStop("step");
  }

  /** Whether Ctrl-C asked the run to stop. */
  get stopRequested(): boolean {
    return this.#stop.requested;
  }

  /** Minutes of training so far in this process. */
  get minutes(): number {
    return (performance.now() - this.started) / 60000;
  }

  /** Whether the time budget is spent. */
  get overBudget(): boolean {
    const b = this.cfg.train.budgetMinutes;
    return b > 0 && this.minutes >= b;
  }

  /** Polled after each step. */
  readonly shouldStop = (): boolean => this.stopRequested || this.overBudget;

  /** Progress line from a status. */
  readonly onStatus = (t: number, s: GanStatus): void => {
    this.#gShare = t > 0 ? s.gCount / t : 0;
    this.progress.update(t, {
      D: s.discCost,
      G: s.genCost,
      IS: formatIs(s.is),
      "G-share": this.#gShare,
    });
  };

  /** Appends a metrics row. */
  async log(row: Record<string, unknown>): Promise<void> {
    await this.dir.appendMetrics(row);
  }

  /** Writes samples.png (and samples/step_N.png) from the fixed noise, and is.svg. */
  async pictures(task: GanTask): Promise<void> {
    const images = tidy(() => task.sample(64, undefined, this.fixedNoise));
    const [px] = await readMany([images]);
    images.dispose();
    const png = await imageGrid(px as Float32Array, 64, 28, 28, 8, 8, [-1, 1]);
    await this.dir.writeFile("samples.png", png);
    await this.dir.writeFile(`samples/step_${String(task.t).padStart(7, "0")}.png`, png);
    const episodic = this.unit === "episode";
    await this.dir.writeFile(
      "is.svg",
      isPlot(
        [{ name: episodic ? "best IS of the episode" : "IS", points: this.curve }],
        this.cfg,
        episodic ? "REINFORCE: best IS per episode" : undefined,
        episodic ? "episode" : undefined,
      ),
    );
  }

  /** Draws the final progress line (once). */
  done(step: number): void {
    if (this.#done) return;
    this.#done = true;
    this.progress.done(step);
  }

  /** Ends the progress line and releases Ctrl-C. */
  close(step: number): void {
    this.done(step);
    this.#stop.done();
    this.fixedNoise.dispose();
  }
}

/** An SVG plot of IS against step for each named curve. */
export function isPlot(
  series: { name: string; points: IsPoint[] }[],
  cfg: GanConfig,
  title?: string,
  xLabel = "GAN steps (one G or D update each)",
) {
  const s: Series[] = series.map((x) => ({
    name: x.name,
    x: x.points.map((p) => p.step),
    y: x.points.map((p) => p.is),
  }));
  return linePlot(s, {
    title: title ?? `IS vs step (${cfg.data.dataset}, ${describeArch(archOf(cfg))})`,
    xLabel,
    yLabel: "inception score",
  });
}

/** The loop counters for a summary (host syncs, reads, ms per step). */
export function loopNote(s: LoopStats): Record<string, number> {
  return {
    host_syncs: s.hostSyncs,
    host_syncs_per_step: s.steps ? s.hostSyncs / s.steps : 0,
    reads: s.reads,
    wait_ms_per_step: s.steps ? s.waitMs / s.steps : 0,
    record_ms_per_step: s.steps ? s.recordMs / s.steps : 0,
    seconds_per_step: s.steps ? s.seconds / s.steps : 0,
  };
}

/**
 * The online controller trains in whole segments of `controller.ppo.segment` steps: a run of
 * `steps` shorter than one segment would take no step at all, so it is refused.
 */
export function requireSegment(cfg: GanConfig, steps: number, key: string): void {
  const segment = cfg.controller.ppo.segment;
  if (steps < segment) {
    throw new UserError(
      `${key} (${steps}) is shorter than one online-controller segment ` +
        `(controller.ppo.segment = ${segment}): raise ${key} or lower controller.ppo.segment`,
    );
  }
}

/** The online PPO controller's settings from the config (`controller.ppo`), seeded `seed`. */
export function onlinePpoOptions(cfg: GanConfig, seed: number): OnlinePpoOptions {
  const p = cfg.controller.ppo;
  return {
    segment: p.segment,
    ppo: {
      learningRate: p.lr,
      hidden: [p.hidden],
      activation: "tanh",
      gamma: p.gamma,
      gaeLambda: p.gaeLambda,
      updateEpochs: p.epochs,
      numMinibatches: p.minibatches,
      clipCoef: p.clip,
      entCoef: p.entCoef,
    },
    reward: { c: p.rewardC, k: p.rewardK },
    seed,
    maxRollbacks: cfg.controller.maxRollbacks,
  };
}
