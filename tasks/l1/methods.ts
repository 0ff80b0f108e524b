/**
 * The methods of Table 1, each a population run through the core runner (rl/runner.ts):
 *
 * - {@link withoutL1}: the task loss only, trained on task-train and task-validation joined;
 * - {@link thresholdMethod}: S1-S3, the threshold grid-searched on the controller partitions as
 *   ONE population (one member per threshold), then trials on the task partitions with the
 *   core's `thresholdRule` at the chosen threshold;
 * - {@link denseGridSearch}: the joint loss `task + lambda L1` for a log-spaced lambda grid as ONE
 *   population on the task partitions, lambda picked by the best validation score, then trials;
 * - `trainController` (tasks/l1/training.ts) / {@link autoLossMethod}: REINFORCE on the controller partitions
 *   (core `trainReinforce`, P episodes per update), then the trained controller guides fresh
 *   models on the task partitions.
 *
 * Every run has a fixed length (the authors' test mode); each member reports the test metric at
 * its best validation point. Trials are the P members of one run, seeded `memberSeed(seed, p)`, so
 * all methods see the same initializations.
 * @module
 */

import * as ops from "../../tensor/ops.ts";
import {
  type ControllerFile,
  controllerFromJson,
  controllerToJson,
} from "../../rl/controller_file.ts";
import { MlpController, type PolicyController } from "../../rl/controller.ts";
import { type EpisodeRun, runEpisode } from "../../rl/runner.ts";
import { tensor } from "../../tensor/functional.ts";
import { keep, type Tensor } from "../../tensor/tensor.ts";
import { thresholdRule } from "../../rl/schedules.ts";
import { runningNormalization } from "../../rl/normalization.ts";
import type { ActContext, Controller } from "../../rl/task.ts";
import type { FeatureGroup, FeatureSetKind, L1ScheduleTask } from "./task.ts";
import type { CreateOptions, L1Problem } from "./problems.ts";
import { type RuleKind, taskOnly, thresholdGrid } from "./schedules.ts";

/** A curve: mean over members of a metric at reporting points. */
export interface Curve {
  /** Steps. */
  x: number[];
  /** Mean value. */
  y: number[];
}

/** One method's outcome. */
export interface MethodResult {
  /** Display name (Table 1's column). */
  name: string;
  /** The reported number per trial (test MSE minus floor, or test error). */
  values: number[];
  /** Mean validation loss over trials at each reporting point. */
  curve: Curve;
  /** Anything the method chose (threshold, lambda) and its search. */
  detail: Record<string, unknown>;
  /** Wall-clock seconds. */
  seconds: number;
}

/** Options shared by the methods. */
export interface MethodOptions {
  /** Trials (members of the evaluation population). */
  trials: number;
  /** Steps of every run. */
  steps: number;
  /** Seed of the trials (the same for every method). */
  seed: number;
  /** Reporting points per run for the curves (default 20). */
  curvePoints?: number;
  /** Progress callback: a line of text. */
  log?: (line: string) => void;
}

/** Mean of an array. */
export function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
}

/** Sample standard deviation (n - 1), 0 for a single value. */
export function std(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1));
}

/** `count` log-spaced values from `lo` to `hi` inclusive. */
export function logSpace(lo: number, hi: number, count: number): number[] {
  if (count === 1) return [lo];
  const [a, b] = [Math.log(lo), Math.log(hi)];
  return Array.from({ length: count }, (_, i) => Math.exp(a + ((b - a) * i) / (count - 1)));
}

/** Index of the best member by the validation score (`best` metric). */
export function selectBest(best: readonly number[], higherIsBetter: boolean): number {
  let at = 0;
  best.forEach((v, i) => {
    if (higherIsBetter ? v > best[at] : v < best[at]) at = i;
  });
  return at;
}

/** A controller to use on a task (built for it: e.g. checked against its features). */
export type ControllerFor = (task: L1ScheduleTask) => Controller & { dispose?(): void };

/**
 * Runs the controller made by `controllerFor` on a fresh population built by `create` for
 * `steps` steps (reset with `seed`), recording the mean validation loss at `curvePoints` points.
 * Frees the task and the controller.
 */
export async function evaluatePopulation(
  problem: L1Problem,
  create: CreateOptions,
  controllerFor: ControllerFor,
  opts: { seed: number; greedy?: boolean; curvePoints?: number },
): Promise<{ run: EpisodeRun; curve: Curve }> {
  const task = problem.create(create);
  const curve: Curve = { x: [], y: [] };
  const points = opts.curvePoints ?? 20;
  let controller: ReturnType<ControllerFor> | null = null;
  try {
    controller = controllerFor(task);
    const run = await runEpisode(task, controller, {
      steps: create.steps,
      seed: opts.seed,
      sampleSeed: opts.seed + 7919,
      greedy: opts.greedy ?? false,
      interval: Math.max(1, Math.floor(create.steps / points)),
      onInterval: (r) => {
        curve.x.push(r.steps);
        curve.y.push(mean(r.metrics.val));
      },
    });
    return { run, curve };
  } finally {
    controller?.dispose?.();
    task.dispose();
  }
}

function result(
  problem: L1Problem,
  name: string,
  run: EpisodeRun,
  curve: Curve,
  detail: Record<string, unknown>,
  began: number,
): MethodResult {
  return {
    name,
    values: run.metrics.test.map((t) => problem.report(t)),
    curve,
    detail: {
      ...detail,
      l1Fraction: mean(run.metrics.l1Fraction),
      l1Fractions: run.metrics.l1Fraction,
    },
    seconds: (performance.now() - began) / 1000,
  };
}

/** W/O L1: the task loss only, on task-train joined with task-validation. */
export async function withoutL1(problem: L1Problem, o: MethodOptions): Promise<MethodResult> {
  const began = performance.now();
  const { run, curve } = await evaluatePopulation(
    problem,
    { population: o.trials, lambda: 0, mode: "joint", data: "union", steps: o.steps },
    taskOnly,
    { seed: o.seed, curvePoints: o.curvePoints },
  );
  return result(problem, "W/O L1", run, curve, {}, began);
}

/**
 * S1-S3: the threshold grid on the controller partitions (one member per threshold, all from
 * the same seed), the best by validation, then `trials` runs of the core rule on the task
 * partitions.
 */
export async function thresholdMethod(
  problem: L1Problem,
  kind: RuleKind,
  grid: readonly number[],
  o: MethodOptions & { gridSteps: number },
): Promise<MethodResult> {
  const began = performance.now();
  const lambda = problem.settings.lambda;
  const searchTask = problem.create({
    population: grid.length,
    lambda,
    mode: "schedule",
    data: "controller",
    steps: o.gridSteps,
    features: "rules",
  });
  const searchCtrl = thresholdGrid(kind, searchTask.featureNames, grid);
  let search: EpisodeRun;
  try {
    // Every member starts from the same initialization: only the threshold differs.
    search = await runEpisode(searchTask, searchCtrl, {
      steps: o.gridSteps,
      seed: o.seed + 101,
      sampleSeed: o.seed + 103,
    });
  } finally {
    searchCtrl.dispose();
    searchTask.dispose();
  }
  const at = selectBest(search.metrics.best, problem.higherIsBetter);
  const threshold = grid[at];
  o.log?.(`${kind}: threshold ${threshold} (validation ${search.metrics.best[at].toFixed(4)})`);
  const { run, curve } = await evaluatePopulation(
    problem,
    {
      population: o.trials,
      lambda,
      mode: "schedule",
      data: "task",
      steps: o.steps,
      features: "rules",
    },
    (task) => thresholdRule(kind, task, { threshold }),
    { seed: o.seed, curvePoints: o.curvePoints },
  );
  return result(problem, kind, run, curve, {
    threshold,
    grid: [...grid],
    gridBest: search.metrics.best,
  }, began);
}

/**
 * DGS: the joint loss for every lambda of `lambdas` as one population on the task partitions,
 * the best lambda by validation, then `trials` runs at that lambda.
 */
export async function denseGridSearch(
  problem: L1Problem,
  lambdas: readonly number[],
  o: MethodOptions & { gridSteps: number },
): Promise<MethodResult> {
  const began = performance.now();
  const search = await evaluatePopulation(
    problem,
    {
      population: lambdas.length,
      lambda: lambdas,
      mode: "joint",
      data: "task",
      steps: o.gridSteps,
    },
    taskOnly,
    { seed: o.seed + 211, curvePoints: 1 },
  );
  const at = selectBest(search.run.metrics.best, problem.higherIsBetter);
  const lambda = lambdas[at];
  o.log?.(`DGS: lambda ${lambda.toPrecision(3)} of ${lambdas.length}`);
  const { run, curve } = await evaluatePopulation(
    problem,
    { population: o.trials, lambda, mode: "joint", data: "task", steps: o.steps },
    taskOnly,
    { seed: o.seed, curvePoints: o.curvePoints },
  );
  return result(problem, "DGS", run, curve, {
    lambda,
    lambdas: [...lambdas],
    gridBest: search.run.metrics.best,
    gridTest: search.run.metrics.test.map((t) => problem.report(t)),
  }, began);
}

/** Options of {@link autoLossMethod}. */
export interface AutoLossOptions extends MethodOptions {
  /** The trained controller. */
  controller: ControllerFile;
  /** Argmax actions instead of sampling (the authors sample). */
  greedy: boolean;
  /** L1 weight of the L1 action (default the problem's). */
  lambda?: number | readonly number[];
  /** Feature groups the controller was trained without. */
  dropFeatures?: readonly FeatureGroup[];
  /** Display name (default "AutoLoss"). */
  name?: string;
}

/**
 * The decision interval a controller file acts with: `provenance.actEvery` (its training's
 * `controller.actEvery`), 1 for files without it.
 */
export function actEveryOf(file: ControllerFile): number {
  const k = file.provenance.actEvery;
  if (k === undefined) return 1;
  if (typeof k !== "number" || !Number.isInteger(k) || k < 1) {
    throw new Error(`controller file: provenance.actEvery must be an integer >= 1, not ${k}`);
  }
  return k;
}

/** A controller that decides every `every` steps (see {@link holdActions}). */
export interface HeldController extends Controller {
  /** The decision interval. */
  readonly every: number;
  /** Frees the held actions (not the inner controller). */
  release(): void;
  /** Frees the held actions and the inner controller (when it has `dispose`). */
  dispose(): void;
}

/**
 * Decision interval: `inner` acts at steps t = 0, k, 2k, ... (`ctx.t % every === 0`) and its
 * actions (and their log-probabilities) are held, on the GPU, for the k steps that follow; no
 * host read. The sampling stream advances once per decision. `every` 1 is `inner` itself.
 */
export function holdActions(
  inner: Controller & { dispose?(): void },
  every: number,
): HeldController {
  if (!Number.isInteger(every) || every < 1) {
    throw new Error(`holdActions: the decision interval must be an integer >= 1, not ${every}`);
  }
  let held: { actions: Tensor; logProbs?: Tensor } | null = null;
  const release = () => {
    held?.actions.dispose();
    held?.logProbs?.dispose();
    held = null;
  };
  if (every === 1) {
    return {
      name: inner.name,
      every,
      act: (features, ctx) => inner.act(features, ctx),
      release: () => {},
      dispose: () => inner.dispose?.(),
    };
  }
  return {
    name: `${inner.name} every ${every}`,
    every,
    act(features: Tensor, ctx: ActContext) {
      if (!held || ctx.t % every === 0) {
        const next = inner.act(features, ctx);
        release();
        held = {
          actions: keep(next.actions),
          ...(next.logProbs ? { logProbs: keep(next.logProbs) } : {}),
        };
      }
      return { actions: held.actions, ...(held.logProbs ? { logProbs: held.logProbs } : {}) };
    },
    release,
    dispose() {
      release();
      inner.dispose?.();
    },
  };
}

/** Loads a controller file against a task's features and actions. */
export function loadControllerFor(file: ControllerFile, task: L1ScheduleTask): PolicyController {
  return controllerFromJson(file, {
    featureNames: task.featureNames,
    actions: task.actions.map((a) => a.name),
  });
}

/** AutoLoss: the trained controller guides `trials` fresh models on the task partitions. */
export async function autoLossMethod(
  problem: L1Problem,
  o: AutoLossOptions,
): Promise<MethodResult> {
  const began = performance.now();
  const provenance = o.controller.provenance;
  const actEvery = actEveryOf(o.controller);
  const create: CreateOptions = {
    population: o.trials,
    lambda: o.lambda ?? problem.settings.lambda,
    mode: "schedule",
    data: "task",
    steps: o.steps,
    features: provenance.features as FeatureSetKind | undefined,
    dropFeatures: o.dropFeatures ?? provenance.dropFeatures as FeatureGroup[] | undefined,
  };
  const { run, curve } = await evaluatePopulation(
    problem,
    create,
    (task) => holdActions(loadControllerFor(o.controller, task), actEvery),
    { seed: o.seed, greedy: o.greedy, curvePoints: o.curvePoints },
  );
  return result(problem, o.name ?? "AutoLoss", run, curve, {
    greedy: o.greedy,
    ...(actEvery !== 1 ? { actEvery } : {}),
  }, began);
}

/**
 * The untrained twin of a controller file: the same architecture, features, temperature and
 * initialization seed (its provenance's), no updates, empty normalization statistics. The null
 * baseline "what the controller does before it learns anything".
 */
export async function untrainedLike(file: ControllerFile): Promise<ControllerFile> {
  const a = file.architecture;
  const names = file.featureSpec.names;
  const controller = new MlpController({
    featureNames: names,
    actions: a.actions,
    hidden: a.hidden[0] ?? 16,
    temperature: file.temperature,
    seed: file.provenance.seed,
    normalization: file.featureSpec.normalization.kind === "running"
      ? runningNormalization(names.length)
      : undefined,
  });
  try {
    return await controllerToJson(controller, {
      featureNames: names,
      actions: file.actions,
      provenance: { ...file.provenance, episodes: 0, reward: null, untrained: true },
    });
  } finally {
    controller.dispose();
  }
}

/**
 * A random schedule: member p takes the L1 action with probability `shares[p]` at every step,
 * independently of the state (sampled on the GPU from the members' own seeds).
 */
export function randomShare(shares: readonly number[]): Controller & { dispose(): void } {
  const probs = keep(
    tensor(Float32Array.from(shares.flatMap((s) => [1 - s, s])), [shares.length, 2]),
  );
  return {
    name: "random share",
    act(features: Tensor, ctx: ActContext) {
      if (features.shape[0] !== shares.length) {
        throw new Error(`randomShare: ${shares.length} shares for ${features.shape[0]} members`);
      }
      return { actions: ops.categorical(probs, ctx.gen, ctx.memberSeeds) };
    },
    dispose: () => probs.dispose(),
  };
}

/**
 * Matched-share random: trial p runs the random schedule with the L1 share that trial p of
 * `reference` (AutoLoss) took, on the same initialization: what the controller's outcome would be
 * if all it had learned were how often to take L1. With the reference's decision interval
 * (`detail.actEvery`, default 1) the random draw is held for as many steps as AutoLoss holds its
 * actions, so only the state-dependence differs.
 */
export async function matchedRandom(
  problem: L1Problem,
  reference: MethodResult,
  o: MethodOptions,
): Promise<MethodResult> {
  const began = performance.now();
  const shares = reference.detail.l1Fractions as number[];
  const actEvery = (reference.detail.actEvery as number | undefined) ?? 1;
  const { run, curve } = await evaluatePopulation(
    problem,
    {
      population: shares.length,
      lambda: problem.settings.lambda,
      mode: "schedule",
      data: "task",
      steps: o.steps,
    },
    () => holdActions(randomShare(shares), actEvery),
    { seed: o.seed, curvePoints: o.curvePoints },
  );
  return result(problem, "random (matched share)", run, curve, {
    shares,
    ...(actEvery !== 1 ? { actEvery } : {}),
  }, began);
}
