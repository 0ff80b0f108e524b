/**
 * The `gan` task's commands (registered with tasks/registry.ts when this module is imported):
 *
 * - `train gan`: trains a DCGAN on MNIST under an AutoLoss controller: online PPO in segments
 *   (`controller.algorithm: ppo`, the `quick` preset), episodic REINFORCE as the authors' code
 *   (`reinforce`), or a fixed schedule (`fixed`). Shows progress (step, D and G loss, IS, share of
 *   G actions, ETA) and writes `runs/<id>/`: config.yaml, metrics.jsonl, samples.png (8x8 grid,
 *   also kept per checkpoint in samples/), is.svg, controller.json, checkpoint.safetensors (GAN,
 *   optimizer, controller, RNG and data-iterator state), summary.json/.md. `--resume runs/<id>`
 *   continues from the last checkpoint; Ctrl-C stops at the next step, keeping that checkpoint.
 * - `baseline gan`: the same with the fixed schedule `controller.schedule`.
 * - `compare gan`: fixed schedules and AutoLoss over seeds: the converged-IS table with the
 *   paper's numbers beside, and the steps to reach an IS threshold.
 * - `transfer gan RUNDIR`: the controller of RUNDIR guides (a) random DCGAN architectures of
 *   appendix A.5 and (b) a GAN on Fashion-MNIST, each against fixed schedules.
 * - `eval gan RUNDIR`: the controller of RUNDIR guides a fresh GAN of the given config.
 * @module
 */

import { UserError } from "../run/errors.ts";
import { join } from "node:path";
import { init } from "../gpu/backend.ts";
import { Generator } from "../gpu/kernels/random.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import { type ImageDataset, loadFashionMnist, loadMnist } from "../nn/data/mnist.ts";
import { loadController, saveController } from "../rl/controller_file.ts";
import type { PolicyController } from "../rl/controller.ts";
import { type Layer, loadYamlFile, parseSet, resolveConfig } from "../run/config.ts";
import { imageGrid } from "../run/png.ts";
import { formatDuration, Progress } from "../run/progress.ts";
import { RunDir, timestamp } from "../run/run_dir.ts";
import { loadPreset, openSession } from "../run/session.ts";
import { onInterrupt } from "../run/signals.ts";
import { linePlot, type Series } from "../run/svg.ts";
import { randn, tensor } from "../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import type { ClassifierDataset } from "./classifier.ts";
import {
  type InceptionScore,
  inceptionScore as hostInceptionScore,
  loadScoringClassifier,
} from "./inception_score.ts";
import { type CommonOptions, registerTask } from "./registry.ts";
import { decodeStatus, formatIs, ganFeatureNames, type GanStatus, GanTask } from "./gan.ts";
import { GAN_SCHEMA, type GanConfig, scheduleList } from "./gan_config.ts";
import {
  EpisodicReinforce,
  ganSchedule,
  type LoopStats,
  mergeStats,
  OnlinePpo,
  type OnlinePpoOptions,
  runFixed,
  runLearned,
  saveGanCheckpoint,
} from "./gan_driver.ts";
import { type DcganArch, describeArch, sampleArchs } from "./gan_model.ts";
import type { ImageClassifier } from "./gan_scoring.ts";

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
interface GanContext {
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

async function loadImages(dataset: ClassifierDataset, split: "train" | "test", limit: number) {
  const opts = { range: [-1, 1] as const, ...(limit > 0 ? { limit } : {}) };
  return dataset === "fashion" ? await loadFashionMnist(split, opts) : await loadMnist(split, opts);
}

/** Loads data and the scoring classifier of `dataset`, and scores real test images once. */
async function loadContext(
  cfg: GanConfig,
  log: (s: string) => void,
  dataset: ClassifierDataset = cfg.data.dataset,
): Promise<GanContext> {
  const data = await loadImages(dataset, "train", cfg.data.limit);
  let classifier: ImageClassifier | null = null;
  let scorer: GanContext["scorer"] = null;
  let note: string;
  try {
    const path = (dataset === cfg.data.dataset ? cfg.is.classifier : "") ||
      (dataset === "fashion" ? cfg.transfer.fashionClassifier : "") || undefined;
    const c = await loadScoringClassifier(dataset, { path });
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
function makeTask(
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
async function finalIs(task: GanTask, ctx: GanContext, cfg: GanConfig, samples: number) {
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

function fmt(v: number | null | undefined, digits = 3): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(digits);
}

/** Mean and sample std. */
function meanStd(xs: number[]): { mean: number; std: number } {
  const n = xs.length;
  if (!n) return { mean: NaN, std: NaN };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std };
}

/** Reads the task's status (one readback). */
async function readStatus(task: GanTask): Promise<GanStatus> {
  const st = tidy(() => task.status());
  const [v] = await readMany([st]);
  st.dispose();
  return decodeStatus(v);
}

// ---------------------------------------------------------------- the run book

/** A training run's bookkeeping: directory, progress line, budget, Ctrl-C, pictures, metrics. */
class RunBook {
  readonly dir: RunDir;
  readonly cfg: GanConfig;
  readonly progress: Progress;
  readonly curve: IsPoint[] = [];
  readonly fixedNoise: Tensor;
  readonly started = performance.now();
  stopRequested = false;
  #removeSignal: () => void;
  #stopped: (() => void) | null = null;
  #stoppedPromise: Promise<void>;
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
    this.#stoppedPromise = new Promise((resolve) => (this.#stopped = resolve));
    this.#removeSignal = onInterrupt(async () => {
      this.stopRequested = true;
      console.error("\ninterrupt: stopping after the current step (Ctrl-C again to quit now)");
      await this.#stoppedPromise;
    });
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
    this.#removeSignal();
    this.#stopped?.();
    this.fixedNoise.dispose();
  }
}

function isPlot(
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

function loopNote(s: LoopStats): Record<string, number> {
  return {
    host_syncs: s.hostSyncs,
    pipelined_reads: s.pipelinedReads,
    blocking_reads: s.blockingReads,
    min_queued_at_wait: s.minQueuedAtWait,
    wait_ms_per_step: s.steps ? s.waitMs / s.steps : 0,
    record_ms_per_step: s.steps ? s.recordMs / s.steps : 0,
    seconds_per_step: s.steps ? s.seconds / s.steps : 0,
  };
}

// ---------------------------------------------------------------- train

/**
 * The online controller trains in whole segments of `controller.ppo.segment` steps: a run of
 * `steps` shorter than one segment would take no step at all, so it is refused.
 */
function requireSegment(cfg: GanConfig, steps: number, key: string): void {
  const segment = cfg.controller.ppo.segment;
  if (steps < segment) {
    throw new UserError(
      `${key} (${steps}) is shorter than one online-controller segment ` +
        `(controller.ppo.segment = ${segment}): raise ${key} or lower controller.ppo.segment`,
    );
  }
}

async function train(opts: CommonOptions, forceFixed = false): Promise<number> {
  const { cfg, dir, resumed } = await openSession(opts, GAN_SCHEMA, "gan");
  if (forceFixed) cfg.controller.algorithm = "fixed";
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}${resumed ? " (resumed)" : ""}`);
  if (cfg.note) log(`preset note: ${cfg.note}`);
  if (cfg.controller.algorithm === "ppo") requireSegment(cfg, cfg.train.steps, "train.steps");
  const ctx = await loadContext(cfg, log);
  const length = cfg.controller.algorithm === "reinforce"
    ? `${cfg.controller.reinforce.episodes} episodes of up to ${cfg.controller.reinforce.episodeSteps} steps`
    : `${cfg.train.steps} steps`;
  log(
    `DCGAN ${describeArch(archOf(cfg))}, batch ${cfg.optim.batchSize}, ${length}, ` +
      `controller: ${
        cfg.controller.algorithm === "fixed"
          ? `fixed ${cfg.controller.schedule}`
          : cfg.controller.algorithm
      } (${cfg.features.set} features)`,
  );
  try {
    if (cfg.controller.algorithm === "ppo") return await trainOnline(cfg, dir, resumed, ctx, log);
    if (cfg.controller.algorithm === "reinforce") {
      return await trainEpisodic(cfg, dir, resumed, ctx, log);
    }
    return await trainFixed(cfg, dir, resumed, ctx, log);
  } finally {
    ctx.classifier?.dispose();
  }
}

/** Drops episode rows from episode `episodes` on (redone after resuming). */
async function trimEpisodes(dir: RunDir, episodes: number): Promise<Record<string, unknown>[]> {
  const rows = (await dir.readMetrics()).filter((r) =>
    r.kind !== "episode" || (r.episode as number) < episodes
  );
  await dir.writeFile("metrics.jsonl", rows.map((r) => JSON.stringify(r) + "\n").join(""));
  return rows;
}

/** Drops metrics rows past `step` (work redone after resuming from a checkpoint). */
async function trimMetrics(dir: RunDir, step: number): Promise<Record<string, unknown>[]> {
  const rows = (await dir.readMetrics()).filter((r) =>
    typeof r.step !== "number" || r.step <= step
  );
  await dir.writeFile("metrics.jsonl", rows.map((r) => JSON.stringify(r) + "\n").join(""));
  return rows;
}

function curveFrom(rows: Record<string, unknown>[]): IsPoint[] {
  return rows.filter((r) => r.kind === "is" && typeof r.is === "number")
    .map((r) => ({ step: r.step as number, is: r.is as number }));
}

async function finishRun(
  book: RunBook,
  task: GanTask,
  ctx: GanContext,
  cfg: GanConfig,
  extra: Record<string, unknown>,
  log: (s: string) => void,
  progressAt = task.t,
): Promise<void> {
  const fin = await finalIs(task, ctx, cfg, cfg.is.finalSamples);
  if (fin && book.unit === "step") book.curve.push({ step: task.t, is: fin.mean });
  await book.pictures(task);
  const minutes = book.minutes;
  const summary = {
    task: "gan",
    steps: task.t,
    minutes,
    finalIs: fin ? { mean: fin.mean, std: fin.std, samples: fin.samples } : null,
    realIs: ctx.realIs ? { mean: ctx.realIs.mean, std: ctx.realIs.std } : null,
    classifier: ctx.classifierNote,
    arch: archOf(cfg),
    ...extra,
  };
  const md = [
    `# train gan`,
    "",
    `- steps: ${task.t} of ${cfg.train.steps} in ${minutes.toFixed(1)} min`,
    `- final IS (${fin?.samples ?? 0} samples, ${cfg.is.splits} splits): ${fmt(fin?.mean)} +- ${
      fmt(fin?.std)
    }`,
    `- real test images: ${fmt(ctx.realIs?.mean)} (${ctx.classifierNote})`,
    `- DCGAN: ${describeArch(archOf(cfg))}, batch ${cfg.optim.batchSize}`,
    ...Object.entries(extra).map(([k, v]) =>
      `- ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`
    ),
    "",
    "samples.png: 64 samples from fixed noise; is.svg: IS vs step.",
  ].join("\n");
  await book.dir.writeSummary(summary, md);
  book.done(progressAt);
  log(
    `done: ${task.t} steps in ${formatDuration(minutes * 60)}; final IS ${fmt(fin?.mean)} +- ${
      fmt(fin?.std)
    } on ${fin?.samples ?? 0} samples (real images: ${fmt(ctx.realIs?.mean)}); ${book.dir.path}`,
  );
}

/** The online PPO controller's settings from the config (`controller.ppo`), seeded `seed`. */
function onlinePpoOptions(cfg: GanConfig, seed: number): OnlinePpoOptions {
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

async function trainOnline(
  cfg: GanConfig,
  dir: RunDir,
  resumed: boolean,
  ctx: GanContext,
  log: (s: string) => void,
): Promise<number> {
  const p = cfg.controller.ppo;
  const task = makeTask(cfg, ctx, { isEvery: 0 });
  const trainer = new OnlinePpo(task, onlinePpoOptions(cfg, cfg.controller.seed));
  const ckpt = dir.file("checkpoint.safetensors");
  const segmentsPerCkpt = Math.max(1, Math.ceil(cfg.train.checkpointEvery / p.segment));
  let book: RunBook | null = null;
  let healthyNonfinite = 0;
  let code = 0;
  try {
    if (resumed) {
      trainer.restore(await loadCheckpoint(ckpt));
      healthyNonfinite = (await readStatus(task)).nonfinite;
      const rows = await trimMetrics(dir, task.t);
      book = new RunBook(dir, cfg, cfg.train.steps, task.t);
      book.curve.push(...curveFrom(rows));
      log(`resumed at step ${task.t} (segment ${trainer.segments})`);
    } else {
      task.reset(cfg.seed);
      task.evaluateIs();
      await trainer.start();
      await trainer.save(ckpt);
      book = new RunBook(dir, cfg, cfg.train.steps, 0);
      book.curve.push({ step: 0, is: trainer.isHistory[0] });
      await book.log({ kind: "is", step: 0, is: trainer.isHistory[0] });
    }
    const loops: LoopStats[] = [];
    while (task.t + p.segment <= cfg.train.steps && !book.shouldStop()) {
      const r = await trainer.segment({
        onStatus: book.onStatus,
        shouldStop: book.shouldStop,
        nonfiniteBefore: healthyNonfinite,
      });
      const reason = "aborted" in r
        ? r.aborted
        : r.status.nonfinite > healthyNonfinite
        ? "nonfinite"
        : r.status.run > cfg.controller.maxRun
        ? "collapse"
        : null;
      if (reason === "stop") break;
      if (reason) {
        const at = task.t;
        const ok = await trainer.rollback(ckpt);
        await book.log({ kind: "event", event: "rollback", reason, at_step: at, to_step: task.t });
        log(`\n${reason} detected at step ${at}: rolled back to step ${task.t}, controller reset`);
        if (!ok) {
          log(`stopping: ${cfg.controller.maxRollbacks} rollbacks did not get past the problem`);
          code = 1;
          break;
        }
        healthyNonfinite = (await readStatus(task)).nonfinite;
        const keep = book.curve.filter((c) => c.step <= task.t);
        book.curve.splice(0, book.curve.length, ...keep);
        continue;
      }
      if ("aborted" in r) continue;
      loops.push(r.loop);
      healthyNonfinite = r.status.nonfinite;
      book.curve.push({ step: r.step, is: r.is });
      book.onStatus(task.t, r.status);
      await book.log({
        kind: "is",
        step: r.step,
        segment: r.segment,
        is: r.is,
        is_std: r.status.isStd,
        gen_cost: r.status.genCost,
        disc_cost: r.status.discCost,
        d_accuracy: r.status.dAccuracy,
        g_share_segment: r.gShare,
        g_share_total: r.status.gCount / Math.max(task.t, 1),
        reward: r.reward,
        ppo: r.ppo,
        loop: loopNote(r.loop),
        minutes: book.minutes,
      });
      if (trainer.segments % segmentsPerCkpt === 0 || task.t + p.segment > cfg.train.steps) {
        await trainer.save(ckpt);
        await book.pictures(task);
        await saveController(dir.file("controller.json"), trainer.actor, {
          actions: ["G", "D"],
          provenance: {
            task: "gan",
            seed: cfg.controller.seed,
            episodes: trainer.segments,
            reward: null,
            algorithm: "ppo-online",
            steps: task.t,
          },
        });
      }
    }
    const stopped = book.stopRequested ? "interrupted" : book.overBudget ? "time budget" : null;
    if (stopped) {
      log(
        `\n${stopped}: stopped at step ${task.t}; the last checkpoint is at a segment boundary ` +
          `(resume with --resume ${dir.path})`,
      );
    }
    const all = mergeStats(loops);
    await finishRun(book, task, ctx, cfg, {
      controller: "online PPO",
      segments: trainer.segments,
      rollbacks: trainer.rollbacks,
      stopped: stopped ?? "completed",
      gShare: (await readStatus(task)).gCount / Math.max(task.t, 1),
      pipeline: loopNote(all),
    }, log);
    await saveController(dir.file("controller.json"), trainer.actor, {
      actions: ["G", "D"],
      provenance: {
        task: "gan",
        seed: cfg.controller.seed,
        episodes: trainer.segments,
        reward: null,
        algorithm: "ppo-online",
        steps: task.t,
      },
    });
    return code;
  } finally {
    book?.close(task.t);
    trainer.dispose();
    task.dispose();
  }
}

async function trainFixed(
  cfg: GanConfig,
  dir: RunDir,
  resumed: boolean,
  ctx: GanContext,
  log: (s: string) => void,
): Promise<number> {
  const schedule = ganSchedule(cfg.controller.schedule);
  const task = makeTask(cfg, ctx);
  const ckpt = dir.file("checkpoint.safetensors");
  let book: RunBook | null = null;
  let code = 0;
  try {
    if (resumed) {
      task.loadCheckpoint(await loadCheckpoint(ckpt));
      const rows = await trimMetrics(dir, task.t);
      book = new RunBook(dir, cfg, cfg.train.steps, task.t);
      book.curve.push(...curveFrom(rows));
      log(`resumed at step ${task.t}`);
    } else {
      task.reset(cfg.seed);
      await saveGanCheckpoint(ckpt, task, {}, { kind: "fixed" });
      book = new RunBook(dir, cfg, cfg.train.steps, 0);
    }
    const before = (await readStatus(task)).nonfinite;
    const loops: LoopStats[] = [];
    const every = cfg.train.checkpointEvery;
    while (task.t < cfg.train.steps && !book.shouldStop()) {
      const steps = Math.min(every - (task.t % every), cfg.train.steps - task.t);
      const r = await runFixed(task, schedule, {
        steps,
        readEvery: cfg.train.logEvery,
        onStatus: (t, s) => {
          book!.onStatus(t, s);
          if (cfg.is.every > 0 && t % cfg.is.every === 0) book!.curve.push({ step: t, is: s.is });
        },
        shouldStop: book.shouldStop,
        nonfiniteBefore: before,
      });
      loops.push(r.stats);
      if (r.aborted === "stop") break;
      if (r.aborted) {
        await book.log({ kind: "event", event: r.aborted, at_step: task.t });
        log(
          `\n${r.aborted} at step ${task.t}: a fixed schedule has no controller to reset; stopping`,
        );
        code = 1;
        break;
      }
      const s = r.status!;
      await book.log({
        kind: "is",
        step: task.t,
        is: s.is,
        is_std: s.isStd,
        gen_cost: s.genCost,
        disc_cost: s.discCost,
        d_accuracy: s.dAccuracy,
        g_share_total: s.gCount / Math.max(task.t, 1),
        loop: loopNote(r.stats),
        minutes: book.minutes,
      });
      await saveGanCheckpoint(ckpt, task, {}, { kind: "fixed" });
      await book.pictures(task);
    }
    await finishRun(book, task, ctx, cfg, {
      controller: schedule.name,
      pipeline: loopNote(mergeStats(loops)),
    }, log);
    return code;
  } finally {
    book?.close(task.t);
    task.dispose();
  }
}

async function trainEpisodic(
  cfg: GanConfig,
  dir: RunDir,
  resumed: boolean,
  ctx: GanContext,
  log: (s: string) => void,
): Promise<number> {
  const r = cfg.controller.reinforce;
  const task = makeTask(cfg, ctx, { totalSteps: r.episodeSteps });
  const trainer = new EpisodicReinforce(task, {
    episodeSteps: r.episodeSteps,
    patience: r.patience,
    args: {
      learningRate: r.lr,
      baselineDecay: r.baselineDecay,
      advantageClip: { kind: "magnitude", lo: 1, hi: 20 },
      stepReward: null,
    },
    c: r.rewardC,
    hidden: r.hidden,
    seed: cfg.controller.seed,
  });
  const ckpt = dir.file("checkpoint.safetensors");
  if (resumed) {
    trainer.restore(await loadCheckpoint(ckpt));
    log(`resumed at episode ${trainer.episodes}`);
  }
  const book = new RunBook(dir, cfg, r.episodes, trainer.episodes, "episode");
  const startEpisodes = trainer.episodes;
  if (resumed) {
    const rows = await trimEpisodes(dir, trainer.episodes);
    book.curve.push(
      ...rows.filter((x) => x.kind === "episode").map((x) => ({
        step: x.episode as number,
        is: x.bestIs as number,
      })),
    );
  }
  try {
    while (trainer.episodes < r.episodes && !book.shouldStop()) {
      const e = await trainer.episode(cfg.seed + trainer.episodes, {
        onStatus: (t, s) =>
          book.progress.update(trainer.episodes, {
            step: t,
            D: s.discCost,
            G: s.genCost,
            IS: formatIs(s.is),
          }),
        shouldStop: book.shouldStop,
      });
      if (e.stopped) break;
      await book.log({ kind: "episode", ...e, loop: loopNote(e.loop) });
      book.curve.push({ step: e.episode, is: e.bestIs });
      const provenance = {
        task: "gan",
        seed: cfg.controller.seed,
        episodes: trainer.episodes,
        reward: e.reward,
        algorithm: "reinforce",
      };
      await trainer.save(ckpt);
      if (trainer.best.episode === e.episode) {
        await saveController(dir.file("controller.json"), trainer.controller, {
          actions: ["G", "D"],
          provenance,
        });
      }
      await book.pictures(task);
    }
    if (trainer.episodes === startEpisodes) {
      log(`nothing to do: ${trainer.episodes} of ${r.episodes} episodes are done`);
      return 0;
    }
    await finishRun(
      book,
      task,
      ctx,
      cfg,
      {
        controller: "episodic REINFORCE",
        episodes: trainer.episodes,
        best: trainer.best,
      },
      log,
      trainer.episodes,
    );
    return 0;
  } finally {
    book.close(trainer.episodes);
    trainer.dispose();
    task.dispose();
  }
}

// ---------------------------------------------------------------- guided runs (compare, transfer)

/** How a guided run chooses actions. */
type Method =
  | { kind: "fixed"; name: string; schedule: string }
  | { kind: "online"; name: string }
  | { kind: "frozen"; name: string; controller: PolicyController; greedy: boolean };

/** The outcome of one guided run. */
interface RunOutcome {
  /** Method name. */
  method: string;
  /** Seed. */
  seed: number;
  /** IS at each evaluation. */
  curve: IsPoint[];
  /** Final IS with `finalSamples`. */
  final: number;
  /** Best IS of the curve. */
  best: number;
  /** Share of G actions. */
  gShare: number;
  /** Seconds. */
  seconds: number;
  /** Whether it stopped on collapse or non-finite values. */
  failed: string | null;
}

/**
 * Trains one GAN for `steps` steps under `method`, evaluating the IS every `every` steps (PPO:
 * every segment), and returns its curve and final IS.
 */
async function guidedRun(
  cfg: GanConfig,
  ctx: GanContext,
  method: Method,
  seed: number,
  steps: number,
  arch: DcganArch,
  label: string,
): Promise<RunOutcome> {
  const every = method.kind === "online" ? cfg.controller.ppo.segment : cfg.is.every;
  const task = makeTask(cfg, ctx, {
    arch,
    isEvery: method.kind === "online" ? 0 : every,
    totalSteps: steps,
  });
  const started = performance.now();
  const curve: IsPoint[] = [];
  const progress = new Progress({ total: steps, label });
  let failed: string | null = null;
  const onStatus = (t: number, s: GanStatus) =>
    progress.update(t, { D: s.discCost, G: s.genCost, IS: formatIs(s.is) });
  try {
    task.reset(seed);
    if (method.kind === "online") {
      const p = cfg.controller.ppo;
      const trainer = new OnlinePpo(task, onlinePpoOptions(cfg, cfg.controller.seed + seed));
      try {
        task.evaluateIs();
        await trainer.start();
        curve.push({ step: 0, is: trainer.isHistory[0] });
        let before = 0;
        while (task.t + p.segment <= steps) {
          const r = await trainer.segment({ onStatus, nonfiniteBefore: before });
          if (
            "aborted" in r || r.status.nonfinite > before || r.status.run > cfg.controller.maxRun
          ) {
            const why = "aborted" in r ? r.aborted : "collapse/nonfinite";
            if (!(await trainer.rollback(null))) {
              failed = why;
              break;
            }
            curve.splice(0, curve.length, { step: 0, is: trainer.isHistory[0] });
            before = 0;
            continue;
          }
          before = r.status.nonfinite;
          curve.push({ step: r.step, is: r.is });
        }
      } finally {
        trainer.dispose();
      }
    } else if (method.kind === "fixed") {
      const schedule = ganSchedule(method.schedule);
      while (task.t < steps) {
        const r = await runFixed(task, schedule, {
          steps: Math.min(every, steps - task.t),
          readEvery: every,
          onStatus,
        });
        if (r.aborted) {
          failed = r.aborted;
          break;
        }
        curve.push({ step: task.t, is: r.status!.is });
      }
    } else {
      const gen = new Generator((seed ^ 0x2f1f3c5b) >>> 0);
      while (task.t < steps) {
        const r = await runLearned(task, method.controller, {
          steps: Math.min(every, steps - task.t),
          gen,
          greedy: method.greedy,
          onStatus,
        });
        if (r.aborted) {
          failed = r.aborted;
          break;
        }
        const s = await readStatus(task);
        curve.push({ step: task.t, is: s.is });
      }
    }
    const status = await readStatus(task);
    const fin = failed ? null : await finalIs(task, ctx, cfg, cfg.is.finalSamples);
    return {
      method: method.name,
      seed,
      curve,
      final: fin?.mean ?? NaN,
      best: curve.length ? Math.max(...curve.map((c) => c.is)) : NaN,
      gShare: status.gCount / Math.max(task.t, 1),
      seconds: (performance.now() - started) / 1000,
      failed,
    };
  } finally {
    progress.done(task.t);
    task.dispose();
  }
}

/** Mean curve over runs evaluated at the same steps. */
function meanCurve(runs: RunOutcome[]): IsPoint[] {
  const steps = [...new Set(runs.flatMap((r) => r.curve.map((c) => c.step)))].sort((a, b) => a - b);
  return steps.map((step) => ({
    step,
    is: meanStd(
      runs.map((r) => r.curve.find((c) => c.step === step)?.is ?? NaN).filter(Number.isFinite),
    )
      .mean,
  }));
}

/** Opens `runs/gan-<command>-<stamp>` (or `--out`) with the resolved config. */
async function openCommandRun(opts: CommonOptions, command: string): Promise<{
  cfg: GanConfig;
  dir: RunDir;
  resumed: boolean;
}> {
  const out = opts.out ?? join("runs", `gan-${command}-${timestamp()}`);
  return await openSession({ ...opts, out }, GAN_SCHEMA, "gan");
}

// ---------------------------------------------------------------- compare

async function compare(opts: CommonOptions): Promise<number> {
  const { cfg, dir, resumed } = await openCommandRun(opts, "compare");
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}${resumed ? " (resumed)" : ""}`);
  // `--resume`: runs finished before the interruption are kept (they are whole lines of
  // metrics.jsonl); the interrupted one starts again from its first step.
  const finished = resumed
    ? (await dir.readMetrics()).filter((m) => m.kind === "run") as unknown as RunOutcome[]
    : [];
  if (cfg.note) log(`preset note: ${cfg.note}`);
  const ctx = await loadContext(cfg, log);
  const c = cfg.compare;
  const methods: Method[] = scheduleList(c.schedules).map((s) => ({
    kind: "fixed",
    name: ganSchedule(s).name,
    schedule: s,
  }));
  let frozen: PolicyController | null = null;
  if (c.autoloss) {
    if (c.controller) {
      frozen = await loadController(c.controller, { actions: ["G", "D"] });
      methods.push({ kind: "frozen", name: "AutoLoss", controller: frozen, greedy: false });
    } else {
      requireSegment(cfg, c.steps, "compare.steps");
      methods.push({ kind: "online", name: "AutoLoss" });
    }
  }
  const runs: RunOutcome[] = [];
  try {
    for (let s = 0; s < c.seeds; s++) {
      for (const m of methods) {
        const seed = cfg.seed + s;
        const before = finished.find((r) => r.method === m.name && r.seed === seed);
        if (before) {
          runs.push(before);
          log(`${m.name} seed ${seed}: final IS ${fmt(before.final)} (finished before the resume)`);
          continue;
        }
        const r = await guidedRun(
          cfg,
          ctx,
          m,
          seed,
          c.steps,
          archOf(cfg),
          `${m.name} seed ${seed}`,
        );
        runs.push(r);
        await dir.appendMetrics({ kind: "run", ...r });
        log(
          `${m.name} seed ${seed}: final IS ${fmt(r.final)}, best ${fmt(r.best)}, G share ` +
            `${fmt(r.gShare, 2)}, ${formatDuration(r.seconds)}${r.failed ? ` (${r.failed})` : ""}`,
        );
      }
    }
  } finally {
    frozen?.dispose();
    ctx.classifier?.dispose();
  }
  const rows = methods.map((m) => {
    const rs = runs.filter((r) => r.method === m.name);
    const fin = meanStd(rs.map((r) => r.final).filter(Number.isFinite));
    const reach = rs.map((r) => stepsToReach(r.curve, c.threshold));
    const hit = reach.filter((x): x is number => x !== null);
    return {
      method: m.name,
      final: fin,
      best: meanStd(rs.map((r) => r.best).filter(Number.isFinite)),
      reached: `${hit.length}/${rs.length}`,
      stepsToThreshold: hit.length ? meanStd(hit).mean : null,
      gShare: meanStd(rs.map((r) => r.gShare)).mean,
      paper: PAPER_IS[m.name] ?? null,
    };
  });
  const table = [
    `| method | final IS (mean ± std over ${c.seeds} seeds) | best IS | steps to IS ${c.threshold} (reached) | G share | paper IS |`,
    "|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.method} | ${fmt(r.final.mean)} ± ${fmt(r.final.std)} | ${fmt(r.best.mean)} | ${
        r.stepsToThreshold === null ? "-" : Math.round(r.stepsToThreshold)
      } (${r.reached}) | ${fmt(r.gShare, 2)} | ${r.paper === null ? "-" : r.paper.toFixed(4)} |`
    ),
  ].join("\n");
  const md = [
    `# compare gan (${opts.preset})`,
    "",
    `${c.steps} steps per run, DCGAN ${describeArch(archOf(cfg))}, batch ${cfg.optim.batchSize}; ` +
    `final IS on ${cfg.is.finalSamples} samples, ${cfg.is.splits} splits; ${ctx.classifierNote}. ` +
    `Real test images: IS ${fmt(ctx.realIs?.mean)}.`,
    "",
    table,
    "",
    "Paper (section 5.1.2): converged IS after full training of the authors' DCGAN (batch 128), " +
    "with the paper's own classifier (real MNIST 9.5); AutoLoss there is a REINFORCE-trained " +
    "controller. Our numbers come from much shorter runs and a different classifier: compare the " +
    "ordering, not the values.",
  ].join("\n");
  await dir.writeSummary({ rows, runs, realIs: ctx.realIs?.mean ?? null }, md);
  await dir.writeFile(
    "is.svg",
    isPlot(
      methods.map((m) => ({
        name: m.name,
        points: meanCurve(runs.filter((r) => r.method === m.name)),
      })),
      cfg,
      "compare gan: mean IS vs step",
    ),
  );
  log("\n" + table);
  log(`\n${dir.file("summary.md")}`);
  return 0;
}

// ---------------------------------------------------------------- transfer and eval

async function controllerOf(opts: CommonOptions, featureNames: readonly string[]) {
  const run = opts.args[0];
  if (!run) {
    throw new Error(
      "missing RUNDIR: give the run directory of a trained controller, e.g. " +
        "`transfer gan runs/gan-20250101-120000` (make one with `train gan`)",
    );
  }
  const path = run.endsWith(".json") ? run : `${run}/controller.json`;
  const controller = await loadController(path, { featureNames, actions: ["G", "D"] });
  return { controller, path };
}

/**
 * The config of `transfer`/`eval`: the preset, then the features, model and optimizer of RUNDIR's
 * config.yaml (the controller was trained on them), then `--config`, `--set` and `--seed`.
 */
async function configFor(opts: CommonOptions): Promise<GanConfig> {
  const layers: Layer[] = [await loadPreset("gan", opts.preset)];
  const run = opts.args[0];
  if (run && !run.endsWith(".json")) {
    const saved = await loadYamlFile(join(run, "config.yaml")).catch(() => null);
    const v = saved?.values as Partial<GanConfig> | null;
    if (v) {
      layers.push({
        source: `${run}/config.yaml (features, model, optim)`,
        values: { features: v.features, model: v.model, optim: v.optim },
      });
    }
  }
  for (const f of opts.config) layers.push(await loadYamlFile(f));
  for (const s of opts.set) layers.push(parseSet(s));
  if (opts.seed !== undefined) layers.push({ source: "--seed", values: { seed: opts.seed } });
  return resolveConfig(GAN_SCHEMA, layers);
}

/** Creates the run directory of `transfer`/`eval` and saves the config. */
async function openGuidedRun(opts: CommonOptions, command: string, cfg: GanConfig) {
  if (opts.resume) {
    throw new UserError(`${command} gan cannot be resumed yet; start a new run`);
  }
  await init();
  const dir = await RunDir.create({ task: `gan-${command}`, out: opts.out });
  await dir.writeConfig(cfg);
  return dir;
}

/**
 * Runs `method` and then each fixed schedule of `baselines` on `arch`, all for
 * `cfg.transfer.steps` steps from seed `cfg.seed`; returns the method's run first.
 */
async function againstBaselines(
  cfg: GanConfig,
  ctx: GanContext,
  method: Method,
  baselines: readonly string[],
  arch: DcganArch,
  label: string,
): Promise<RunOutcome[]> {
  const steps = cfg.transfer.steps;
  const runs = [
    await guidedRun(cfg, ctx, method, cfg.seed, steps, arch, `${label} ${method.name}`),
  ];
  for (const b of baselines) {
    const fixed: Method = { kind: "fixed", name: ganSchedule(b).name, schedule: b };
    runs.push(await guidedRun(cfg, ctx, fixed, cfg.seed, steps, arch, `${label} ${b}`));
  }
  return runs;
}

async function transfer(opts: CommonOptions): Promise<number> {
  const cfg = await configFor(opts);
  const dir = await openGuidedRun(opts, "transfer", cfg);
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}`);
  const { controller, path } = await controllerOf(opts, ganFeatureNames(cfg.features.set));
  log(`controller: ${path}`);
  const t = cfg.transfer;
  const baselines = scheduleList(t.baselines);
  const results: Record<string, unknown>[] = [];
  const lines: string[] = [];
  try {
    // (a) random architectures (appendix A.5)
    if (t.archs > 0) {
      const ctx = await loadContext(cfg, log);
      try {
        const archs = sampleArchs(t.archs, t.archSeed, t.filters);
        const table = [
          "| # | architecture | AutoLoss IS | best fixed IS (schedule) | AutoLoss better |",
          "|---|---|---|---|---|",
        ];
        let wins = 0;
        for (const [i, arch] of archs.entries()) {
          const [auto, ...fixed] = await againstBaselines(
            cfg,
            ctx,
            { kind: "frozen", name: "AutoLoss", controller, greedy: t.greedy },
            baselines,
            arch,
            `arch ${i + 1}`,
          );
          const best = fixed.reduce((a, b) => (b.final > a.final ? b : a));
          const better = auto.final > best.final;
          if (better) wins++;
          results.push({ kind: "arch", index: i + 1, arch, autoloss: auto, fixed });
          await dir.appendMetrics({ kind: "arch", index: i + 1, arch, autoloss: auto, fixed });
          table.push(
            `| ${i + 1} | ${describeArch(arch)} | ${fmt(auto.final)} | ${
              fmt(best.final)
            } (${best.method}) | ${better ? "yes" : "no"} |`,
          );
          log(table[table.length - 1]);
        }
        lines.push(
          `## (a) ${archs.length} random architectures (appendix A.5; widths from ` +
            `{${t.filters.join(", ")}}), ${t.steps} steps each`,
          "",
          ...table,
          "",
          `AutoLoss better in ${wins} of ${archs.length} (paper: 16 of 20, against DCGAN 1:1, ` +
            "full training).",
          "",
        );
      } finally {
        ctx.classifier?.dispose();
      }
    }
    // (b) Fashion-MNIST
    if (t.fashion) {
      let ctx: GanContext | null = null;
      try {
        // is.classifier names the MNIST weights; Fashion-MNIST has its own (transfer.fashionClassifier).
        const fashion = {
          ...cfg,
          data: { ...cfg.data, dataset: "fashion" as const },
          is: { ...cfg.is, classifier: "" },
        };
        ctx = await loadContext(fashion, log, "fashion");
      } catch (err) {
        lines.push(`## (b) Fashion-MNIST: skipped (${(err as Error).message.split("\n")[0]})`, "");
      }
      if (ctx) {
        try {
          if (!ctx.scorer) {
            lines.push(
              `## (b) Fashion-MNIST: no Fashion-MNIST classifier (${ctx.classifierNote})`,
              "",
            );
          } else {
            const fcfg = { ...cfg, data: { ...cfg.data, dataset: "fashion" as const } };
            const rows = await againstBaselines(
              fcfg,
              ctx,
              { kind: "frozen", name: "AutoLoss", controller, greedy: t.greedy },
              baselines,
              archOf(cfg),
              "fashion",
            );
            results.push({ kind: "fashion", runs: rows });
            await dir.appendMetrics({ kind: "fashion", runs: rows });
            lines.push(
              `## (b) Fashion-MNIST, ${t.steps} steps (real test images: IS ${
                fmt(ctx.realIs?.mean)
              })`,
              "",
              "| method | final IS | best IS | G share |",
              "|---|---|---|---|",
              ...rows.map((r) =>
                `| ${r.method} | ${fmt(r.final)} | ${fmt(r.best)} | ${fmt(r.gShare, 2)} |`
              ),
              "",
            );
          }
        } finally {
          ctx.classifier?.dispose();
        }
      }
    }
  } finally {
    controller.dispose();
  }
  const md = [`# transfer gan (${opts.preset})`, "", `Controller: ${path}`, "", ...lines].join(
    "\n",
  );
  await dir.writeSummary({ controller: path, results }, md);
  log("\n" + md);
  return 0;
}

async function evaluate(opts: CommonOptions): Promise<number> {
  const cfg = await configFor(opts);
  const dir = await openGuidedRun(opts, "eval", cfg);
  const log = (s: string) => console.log(s);
  const { controller, path } = await controllerOf(opts, ganFeatureNames(cfg.features.set));
  const ctx = await loadContext(cfg, log);
  try {
    const r = await guidedRun(
      cfg,
      ctx,
      {
        kind: "frozen",
        name: "AutoLoss",
        controller,
        greedy: cfg.transfer.greedy,
      },
      cfg.seed,
      cfg.train.steps,
      archOf(cfg),
      "eval",
    );
    await dir.appendMetrics({ kind: "run", ...r });
    const md =
      `# eval gan\n\nController ${path}: final IS ${fmt(r.final)} after ${cfg.train.steps} ` +
      `steps (G share ${fmt(r.gShare, 2)}; real images ${fmt(ctx.realIs?.mean)}).`;
    await dir.writeSummary({ controller: path, run: r }, md);
    log(md);
    return 0;
  } finally {
    controller.dispose();
    ctx.classifier?.dispose();
  }
}

registerTask({
  name: "gan",
  description: "DCGAN on MNIST, G/D steps chosen by AutoLoss (paper 5.1.2, 5.3: IS, transfer)",
  train: (o) => train(o),
  baseline: (o) => train(o, true),
  compare,
  transfer,
  eval: evaluate,
});
