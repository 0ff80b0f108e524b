/**
 * The methods of Table 1, each a population run through the core runner (rl/runner.ts):
 *
 * - {@link withoutL1}: the task loss only, trained on task-train and task-validation joined;
 * - {@link thresholdMethod}: S1-S3, the threshold grid-searched on the controller partitions as
 *   ONE population (one member per threshold), then trials on the task partitions with the
 *   core's `thresholdRule` at the chosen threshold;
 * - {@link denseGridSearch}: the joint loss `task + lambda L1` for a log-spaced lambda grid as ONE
 *   population on the task partitions, lambda picked by the best validation score, then trials;
 * - {@link trainController} / {@link autoLossMethod}: REINFORCE on the controller partitions
 *   (core `trainReinforce`, P episodes per update), then the trained controller guides fresh
 *   models on the task partitions.
 *
 * Every run has a fixed length (the authors' test mode); each member reports the test metric at
 * its best validation point. Trials are the P members of one run, seeded `memberSeed(seed, p)`, so
 * all methods see the same initializations.
 * @module
 */

import {
  type ControllerFile,
  controllerFromJson,
  controllerToJson,
} from "../../rl/controller_file.ts";
import { MlpController, type PolicyController } from "../../rl/controller.ts";
import {
  clipAdvantage,
  DenseStepReward,
  Reinforce,
  REINFORCE_PRESETS,
  type ReinforceArgs,
} from "../../rl/reinforce.ts";
import { deriveSeed, type EpisodeRun, runEpisode, trainReinforce } from "../../rl/runner.ts";
import { TrajectoryBuffer } from "../../rl/trajectory.ts";
import { type Checkpoint, loadCheckpoint, loadInto, saveCheckpoint } from "../../nn/checkpoint.ts";
import { backend } from "../../gpu/backend.ts";
import { tensor } from "../../tensor/functional.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { thresholdRule } from "../../rl/schedules.ts";
import { clippedSurrogate } from "../../rl/ppo.ts";
import { runningNormalization } from "../../rl/features.ts";
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

/** Controller-training settings. */
export interface ControllerTrainOptions {
  /** P: episodes run in lockstep per REINFORCE update. */
  population: number;
  /** Updates (rounds of P episodes). */
  rounds: number;
  /** Steps per episode. */
  steps: number;
  /** Seed. */
  seed: number;
  /** Controller hidden units (authors 16). */
  hidden: number;
  /** Softmax temperature (authors 2). */
  temperature: number;
  /** REINFORCE settings over the task preset (learning rate, baseline, clip, step reward). */
  args: Partial<ReinforceArgs>;
  /** Keep the controller of the best round ("best", the authors) or the last one. */
  keep: "best" | "last";
  /**
   * "episode": one REINFORCE update per episode (the authors' S = 1), taken for each of the P
   * episodes of a round in turn; "round": one update from all P episodes (core `trainReinforce`).
   */
  updates?: "episode" | "round" | "ppo";
  /**
   * The baseline of the advantages: "moving" (the authors' moving average of rewards), "round"
   * (the mean reward of the round's P episodes) or "zscore" (the round's rewards standardized:
   * `(R - mean) / std` over its P episodes, so the advantage scale does not depend on the
   * reward's units or on how much episodes differ); "round" and "zscore": per-episode and PPO
   * updates only.
   */
  baseline?: "moving" | "round" | "zscore";
  /** PPO over episodes (`updates: "ppo"`): epochs over a round's episodes (default 4). */
  ppoEpochs?: number;
  /** PPO ratio clip (default 0.2). */
  ppoClip?: number;
  /**
   * Standardize the controller's inputs with running statistics (updated from every round's
   * features, saved in the controller file) instead of feeding the raw features.
   */
  normalizeFeatures?: boolean;
  /** The episodes of a round share one initialization (common random numbers). */
  sharedInit?: boolean;
  /** Feature set (default: the problem's). */
  features?: FeatureSetKind;
  /** Feature groups to drop (Table 3). */
  dropFeatures?: readonly FeatureGroup[];
  /** Called after each round with the controller as updated by it (after its checkpoint). */
  onRound?: (r: RoundLog, current: ControllerFile) => void | Promise<void>;
  /**
   * A checkpoint rewritten atomically at `path` after every round (see
   * {@link ControllerTrainCheckpoint}), with `metadata` added to its string metadata: training
   * interrupted at any point can continue from the last completed round with `resume`.
   */
  checkpoint?: { path: string; metadata?: Record<string, string> };
  /**
   * Continue from this checkpoint (read with {@link loadControllerCheckpoint}) with round
   * `resume.round`; the result equals that of an uninterrupted run with the same options.
   * `rounds` may differ from the interrupted run's (to extend it); other settings must match.
   */
  resume?: ControllerTrainCheckpoint;
  /**
   * Run each round's P episodes elsewhere (dist/: jobs of slices of the members on NATS workers)
   * instead of in lockstep here; the updates that follow are the same. Per-episode and PPO
   * updates only.
   */
  remote?: RemoteRounds;
}

/**
 * What a round's episodes need when they run elsewhere: a slice of members `lo..` runs as a
 * population with `memberOffset: lo` (tasks/l1/task.ts, rl/runner.ts), reset with `seed` and
 * sampling with `sampleSeed`, so that member m draws as member lo + m of the lockstep round.
 */
export interface RemoteRoundRequest {
  /** Round index. */
  round: number;
  /** The controller that acts in this round. */
  controller: ControllerFile;
  /** The round's task seed. */
  seed: number;
  /** The round's sampling seed. */
  sampleSeed: number;
  /** P: episodes (members) of the round. */
  population: number;
  /** How each member's task is built (population aside). */
  create: Omit<CreateOptions, "population">;
  /** The REINFORCE settings (the dense step reward, when set, is recorded per step). */
  args: ReinforceArgs;
  /** Record the log-probabilities of the actions (PPO). */
  logProbs: boolean;
}

/** A round's episodes as run elsewhere, assembled in member order. */
export interface RemoteRoundResult {
  /** Final metrics, [P] each. */
  metrics: Record<string, number[]>;
  /** Features [T, P, K]. */
  features: Float32Array;
  /** Actions [T, P]. */
  actions: Int32Array;
  /** Dense step rewards [T, P] (when `args.stepReward` is set). */
  stepRewards?: Float32Array;
  /** Log-probabilities [T, P] (when `logProbs`). */
  logProbs?: Float32Array;
}

/** Runs a round's episodes elsewhere (see {@link ControllerTrainOptions.remote}). */
export type RemoteRounds = (req: RemoteRoundRequest) => Promise<RemoteRoundResult>;

/** One round of controller training. */
export interface RoundLog {
  /** Round index. */
  round: number;
  /** Mean final reward of the round's episodes. */
  meanReward: number;
  /** Mean validation score of the round's episodes. */
  meanBest: number;
  /** Mean share of L1 steps. */
  l1Fraction: number;
  /** Standard deviation of the round's episode rewards. */
  rewardStd?: number;
  /** Smallest and largest episode reward of the round. */
  rewardRange?: [number, number];
  /** Mean, standard deviation and mean magnitude of the advantages (after clipping). */
  advantage?: { mean: number; std: number; absMean: number; clipped: number };
  /** Mean policy entropy (nats) over the states of the round, under the policy that acted. */
  entropy?: number;
  /** Share of L1 actions in each tenth of the episode (time bins, first to last). */
  l1ByTime?: number[];
  /** Mean L2 norm of the controller gradient over the round's updates. */
  gradNorm?: number;
  /** Training steps consumed so far (rounds x P x steps): the data budget of Fig. 3R. */
  stepsSoFar: number;
  /** Seconds of the round. */
  seconds: number;
}

/** A trained controller and its training history. */
export interface TrainedController {
  /** The controller file (the kept controller). */
  file: ControllerFile;
  /** The controller before any update (the untrained null baseline). */
  initial: ControllerFile;
  /** Per-round logs. */
  history: RoundLog[];
  /** Wall-clock seconds of training. */
  seconds: number;
}

/** `format` metadata of a controller-training checkpoint. */
export const CONTROLLER_CHECKPOINT_FORMAT = "autoloss-controller-training";

/**
 * Controller training at a round boundary, as saved by {@link trainController}'s `checkpoint`:
 * the controller's parameters (`controller.*`) and the REINFORCE Adam state (`optim.*`) as
 * tensors, the rest as JSON metadata. Everything else a round depends on is derived from the seed
 * and the round index, so a resumed run repeats the uninterrupted one exactly.
 */
export interface ControllerTrainCheckpoint {
  /** Rounds completed: the next round to run. */
  round: number;
  /** The logs of the completed rounds. */
  history: RoundLog[];
  /** The best round's controller so far and its mean reward (null before any round). */
  best: { file: ControllerFile; reward: number } | null;
  /** The controller after the last completed round (the one that runs round `round`). */
  current: ControllerFile;
  /** REINFORCE moving-average baseline (null before the first episode). */
  baseline: number | null;
  /** REINFORCE updates taken. */
  updates: number;
  /** Training seconds so far (over all sessions). */
  seconds: number;
  /** The settings trained with (a resume must use the same, `rounds` aside). */
  settings: Record<string, unknown>;
  /** The file read: parameters and optimizer state. */
  tensors: Checkpoint;
}

/** What a resumed run must share with the run it continues (every option but `rounds`). */
function trainingSettings(
  problem: L1Problem,
  o: ControllerTrainOptions,
  args: Partial<ReinforceArgs>,
): Record<string, unknown> {
  return JSON.parse(JSON.stringify({
    task: problem.name,
    problem: problem.settings,
    population: o.population,
    steps: o.steps,
    seed: o.seed,
    hidden: o.hidden,
    temperature: o.temperature,
    keep: o.keep,
    updates: o.updates ?? "episode",
    baseline: o.baseline ?? "moving",
    sharedInit: o.sharedInit ?? false,
    ...(o.updates === "ppo" ? { ppoEpochs: o.ppoEpochs ?? 4, ppoClip: o.ppoClip ?? 0.2 } : {}),
    ...(o.normalizeFeatures ? { normalizeFeatures: true } : {}),
    features: o.features ?? problem.settings.features,
    dropFeatures: [...(o.dropFeatures ?? [])],
    args,
  }));
}

/** Writes a controller-training checkpoint (atomically; see {@link ControllerTrainCheckpoint}). */
async function saveControllerCheckpoint(
  to: { path: string; metadata?: Record<string, string> },
  controller: PolicyController,
  reinforce: Reinforce,
  state: Omit<ControllerTrainCheckpoint, "tensors" | "baseline" | "updates">,
): Promise<void> {
  const optim = reinforce.optimizer.state("optim.");
  const tensors: Record<string, Tensor> = { ...optim.tensors };
  for (const [name, t] of controller.namedParameters()) tensors[`controller.${name}`] = t;
  try {
    await saveCheckpoint(to.path, tensors, {
      ...to.metadata,
      format: CONTROLLER_CHECKPOINT_FORMAT,
      version: "1",
      ...optim.metadata,
      "train.state": JSON.stringify({
        ...state,
        baseline: reinforce.baseline,
        updates: reinforce.updates,
      }),
    });
  } finally {
    for (const t of Object.values(optim.tensors)) t.dispose();
  }
}

/**
 * Reads a checkpoint written by {@link trainController} (`checkpoint` option), checking its
 * format and bookkeeping; pass it as `resume` to continue the training.
 */
export async function loadControllerCheckpoint(path: string): Promise<ControllerTrainCheckpoint> {
  const tensors = await loadCheckpoint(path);
  const m = tensors.metadata;
  const fail = (msg: string): never => {
    throw new Error(`${path}: ${msg}`);
  };
  if (m.format !== CONTROLLER_CHECKPOINT_FORMAT || m.version !== "1") {
    fail(`not a controller-training checkpoint (format '${m.format}', version '${m.version}')`);
  }
  let state: Omit<ControllerTrainCheckpoint, "tensors"> | undefined;
  try {
    state = JSON.parse(m["train.state"]);
  } catch (err) {
    fail(`train.state is not valid JSON (${(err as Error).message})`);
  }
  const s = state!;
  const rounds = Array.isArray(s.history) ? s.history.map((h) => h?.round) : null;
  if (!Number.isInteger(s.round) || s.round < 0 || rounds?.length !== s.round) {
    fail(`round ${s.round} does not match a history of ${rounds?.length ?? "no"} rounds`);
  }
  if (rounds!.some((r, i) => r !== i)) fail(`history rounds [${rounds}] are not 0..${s.round - 1}`);
  if (!s.current || typeof s.settings !== "object" || s.settings === null) {
    fail("train.state lacks the current controller or the settings");
  }
  return { ...s, tensors };
}

/** Loads a checkpoint's controller parameters and REINFORCE state, checking the settings. */
function restoreTraining(
  ckpt: ControllerTrainCheckpoint,
  settings: Record<string, unknown>,
  controller: PolicyController,
  reinforce: Reinforce,
): void {
  const differ = Object.keys({ ...settings, ...ckpt.settings }).filter((k) =>
    JSON.stringify(settings[k]) !== JSON.stringify(ckpt.settings[k])
  );
  if (differ.length) {
    throw new Error(
      `cannot resume: the checkpoint was trained with other settings (${
        differ.map((k) =>
          `${k}: ${JSON.stringify(ckpt.settings[k])} there, ${JSON.stringify(settings[k])} here`
        ).join("; ")
      })`,
    );
  }
  loadInto(controller.namedParameters(), ckpt.tensors, { prefix: "controller." });
  reinforce.optimizer.loadState(ckpt.tensors, "optim.");
  reinforce.baseline = ckpt.baseline;
  reinforce.updates = ckpt.updates;
}

/** The REINFORCE preset of a problem (the authors' settings, reference doc section 4). */
export function reinforcePreset(problem: L1Problem): Partial<ReinforceArgs> {
  return problem.name === "regression"
    ? REINFORCE_PRESETS.regression
    : REINFORCE_PRESETS.classification;
}

/**
 * Trains an MLP controller with REINFORCE on the controller partitions: `rounds` updates, each
 * from P episodes run in lockstep; keeps the controller that produced the best round (the
 * authors save on every new best episode) or the last one.
 */
export async function trainController(
  problem: L1Problem,
  o: ControllerTrainOptions,
): Promise<TrainedController> {
  const began = performance.now();
  const task = problem.create({
    population: o.population,
    lambda: problem.settings.lambda,
    mode: "schedule",
    data: "controller",
    steps: o.steps,
    features: o.features,
    dropFeatures: o.dropFeatures,
    sharedInit: o.sharedInit,
  });
  const controller = new MlpController({
    featureNames: task.featureNames,
    actions: task.actions.length,
    hidden: o.hidden,
    temperature: o.temperature,
    seed: o.seed,
    normalization: o.normalizeFeatures ? runningNormalization(task.featureNames.length) : undefined,
  });
  const args = { ...reinforcePreset(problem), ...o.args };
  const reinforce = new Reinforce(controller, args);
  const settings = trainingSettings(problem, o, args);
  const meta = {
    featureNames: task.featureNames,
    actions: task.actions.map((a) => a.name),
  };
  const snapshot = (episodes: number, reward: number | null) =>
    controllerToJson(controller, {
      ...meta,
      provenance: {
        task: problem.name,
        seed: o.seed,
        episodes,
        trainingSteps: episodes * o.population * o.steps,
        reward,
        keep: o.keep,
        features: o.features ?? problem.settings.features,
        dropFeatures: [...(o.dropFeatures ?? [])],
      },
    });
  const history: RoundLog[] = [];
  const secondsBefore = o.resume?.seconds ?? 0;
  const seconds = () => secondsBefore + (performance.now() - began) / 1000;
  try {
    if (o.resume) restoreTraining(o.resume, settings, controller, reinforce);
    history.push(...(o.resume?.history ?? []));
    const start = o.resume?.round ?? 0;
    // The controller that runs round e is the one saved after round e - 1.
    const initial = await untrainedLike(o.resume?.current ?? await snapshot(0, null));
    let current = o.resume?.current ?? await snapshot(0, null);
    let best: { file: ControllerFile; reward: number } | null = o.resume?.best ?? null;
    let last = performance.now();
    const onRound = async (
      round: number,
      rewards: number[],
      metrics: Record<string, number[]>,
      diagnostics: RoundDiagnostics = {},
    ) => {
      const now = performance.now();
      const r: RoundLog = {
        round,
        meanReward: mean(rewards),
        meanBest: mean(metrics.best),
        l1Fraction: mean(metrics.l1Fraction),
        rewardStd: std(rewards),
        rewardRange: [Math.min(...rewards), Math.max(...rewards)],
        ...diagnostics,
        stepsSoFar: (round + 1) * o.population * o.steps,
        seconds: (now - last) / 1000,
      };
      last = now;
      history.push(r);
      if (!best || r.meanReward > best.reward) {
        best = {
          file: { ...current, provenance: { ...current.provenance, reward: r.meanReward } },
          reward: r.meanReward,
        };
      }
      current = await snapshot(round + 1, null);
      if (o.checkpoint) {
        await saveControllerCheckpoint(o.checkpoint, controller, reinforce, {
          round: round + 1,
          history,
          best,
          current,
          seconds: seconds(),
          settings,
        });
      }
      await o.onRound?.(r, current);
    };
    if ((o.updates ?? "episode") === "round") {
      if (o.remote) throw new Error("remote episodes need controller.updates episode or ppo");
      await trainReinforce(task, controller, {
        episodes: o.rounds,
        startEpisode: start,
        reinforce,
        steps: o.steps,
        seed: o.seed,
        reward: problem.reward,
        onEpisode: (log) => onRound(log.episode, log.rewards, log.metrics),
      });
    } else {
      await reinforcePerEpisode(task, reinforce, problem, o, start, onRound, () => current);
    }
    const kept = o.keep === "best" && best ? (best as { file: ControllerFile }).file : current;
    return { file: kept, initial, history, seconds: seconds() };
  } finally {
    reinforce.dispose();
    controller.dispose();
    task.dispose();
  }
}

/** What a round of per-episode training measured besides rewards (see {@link RoundLog}). */
type RoundDiagnostics = Pick<RoundLog, "advantage" | "entropy" | "l1ByTime" | "gradNorm">;

/** Time bins of {@link RoundLog.l1ByTime}. */
const TIME_BINS = 10;

/**
 * The advantages of one round's P episode rewards: the authors' moving-average baseline (updated
 * once per episode, in member order), the round's mean, or the round's standardized rewards;
 * then clipped.
 */
export function roundAdvantages(
  rewards: readonly number[],
  baseline: "moving" | "round" | "zscore",
  reinforce: Pick<Reinforce, "advantages" | "args">,
): number[] {
  const clip = reinforce.args.advantageClip;
  if (baseline === "moving") return rewards.map((r) => reinforce.advantages([r])[0]);
  const m = mean(rewards);
  const s = baseline === "zscore" ? std(rewards) : 1;
  return rewards.map((r) => clipAdvantage(s > 1e-12 ? (r - m) / s : 0, clip));
}

/**
 * Per-episode controller updates over a population: each round runs P episodes in lockstep
 * through the core runner, recording features, actions, their log-probabilities and the dense
 * step rewards on the GPU; then the advantages of the P final rewards ({@link roundAdvantages});
 * then either ("episode") one REINFORCE Adam step per member in turn on its own T recorded steps
 * (the authors' S = 1), or ("ppo") `ppoEpochs` passes over the members, each member's step the
 * clipped surrogate of its episode against the log-probabilities that acted (so the later updates
 * of a round are corrected for being off-policy). With running feature normalization the
 * statistics absorb the round's features after its updates. One readback per round for the
 * diagnostics (entropy, L1 share over time, gradient norms).
 */
async function reinforcePerEpisode(
  task: L1ScheduleTask,
  reinforce: Reinforce,
  problem: L1Problem,
  o: ControllerTrainOptions,
  start: number,
  onRound: (
    round: number,
    rewards: number[],
    metrics: Record<string, number[]>,
    diagnostics: RoundDiagnostics,
  ) => Promise<void>,
  current: () => ControllerFile,
): Promise<void> {
  const controller = reinforce.controller;
  const a = reinforce.args;
  const p = task.population;
  const k = task.featureNames.length;
  const t = o.steps;
  const ppo = o.updates === "ppo";
  const epochs = ppo ? o.ppoEpochs ?? 4 : 1;
  const clipCoef = o.ppoClip ?? 0.2;
  const buffer = new TrajectoryBuffer(t, p, k, {
    rewards: a.stepReward !== null,
    logProbs: ppo,
  });
  const dense = a.stepReward ? new DenseStepReward(p, a.stepReward, a) : null;
  const bins = Math.min(TIME_BINS, t);
  const binEdges = Array.from({ length: bins + 1 }, (_, i) => Math.round((i * t) / bins));
  try {
    for (let round = start; round < o.rounds; round++) {
      dense?.reset();
      buffer.clear();
      const run = o.remote
        ? await remoteRound(o.remote, buffer, problem, {
          round,
          controller: current(),
          seed: deriveSeed(o.seed, round),
          sampleSeed: deriveSeed(o.seed + 1, round),
          population: p,
          create: {
            lambda: problem.settings.lambda,
            mode: "schedule",
            data: "controller",
            steps: t,
            features: o.features,
            dropFeatures: o.dropFeatures,
            sharedInit: o.sharedInit,
          },
          args: a,
          logProbs: ppo,
        })
        : await runEpisode(task, controller, {
          steps: t,
          seed: deriveSeed(o.seed, round),
          sampleSeed: deriveSeed(o.seed + 1, round),
          buffer,
          onStep: dense
            ? (info) =>
              buffer.record("rewards", info.i, dense.step(task.metrics()[a.stepReward!.metric]))
            : undefined,
          reward: problem.reward,
        });
      const adv = roundAdvantages(run.rewards, o.baseline ?? "moving", reinforce);
      // Diagnostics of the policy that acted, before it is updated.
      const [entropy, l1ByTime] = tidy(() =>
        noGrad(() => {
          const all = buffer.features.reshape([t * p, k]);
          const acts = buffer.actions.cast("f32");
          const byBin = binEdges.slice(0, -1).map((lo, i) =>
            ops.slice(acts, [lo, 0], [binEdges[i + 1], p]).mean().reshape([1])
          );
          return [
            keep(controller.entropy(all).mean().reshape([1])),
            keep(ops.concat(byBin, 0)),
          ];
        })
      );
      let gradNorms: Tensor = keep(tensor(new Float32Array(1), [1]));
      const addNorm = () => {
        const next = tidy(() =>
          noGrad(() => gradNorms.add(reinforce.flat.grad.square().sum().sqrt().reshape([1])))
        );
        gradNorms.dispose();
        gradNorms = keep(next);
      };
      let updates = 0;
      for (let epoch = 0; epoch < epochs; epoch++) {
        for (let m = 0; m < p; m++) {
          reinforce.flat.zeroGrad();
          tidy(() => {
            const member = (x: Tensor, width: number) =>
              ops.slice(x, [0, m, 0], [t, m + 1, width]).reshape(width === 1 ? [t] : [t, width]);
            const features = member(buffer.features.reshape([t, p, k]), k);
            const actions = member(buffer.actions.reshape([t, p, 1]), 1);
            // The advantage is uploaded, not baked into a kernel (that would compile one per value).
            const advantage = tensor(Float32Array.of(adv[m]), [1]);
            const stepRewards = buffer.scalars.rewards;
            const weights = stepRewards
              ? member(stepRewards.reshape([t, p, 1]), 1).add(advantage)
              : advantage.expand([t]);
            if (ppo) {
              const old = member(buffer.scalars.logProbs!.reshape([t, p, 1]), 1);
              let loss = clippedSurrogate(
                controller.logProb(features, actions),
                old,
                weights,
                clipCoef,
              );
              if (a.entropyCoef !== 0) {
                loss = loss.sub(controller.entropy(features).mean().mul(a.entropyCoef));
              }
              loss.backward();
            } else {
              reinforce.loss(features, actions, weights).backward();
            }
          });
          addNorm();
          reinforce.optimizer.step();
          reinforce.updates++;
          updates++;
        }
      }
      tidy(() => noGrad(() => controller.normalizer.update(buffer.features.reshape([t * p, k]))));
      const [ent, byTime, norms] = await readMany([entropy, l1ByTime, gradNorms]);
      entropy.dispose();
      l1ByTime.dispose();
      gradNorms.dispose();
      const clip = a.advantageClip;
      const limit = clip.kind === "symmetric" ? clip.c : Infinity;
      await onRound(round, run.rewards, run.metrics, {
        advantage: {
          mean: mean(adv),
          std: std(adv),
          absMean: mean(adv.map(Math.abs)),
          clipped: adv.filter((v) => Math.abs(v) >= limit).length / adv.length,
        },
        entropy: ent[0],
        l1ByTime: Array.from(byTime),
        gradNorm: norms[0] / Math.max(updates, 1),
      });
    }
  } finally {
    buffer.dispose();
    dense?.dispose();
  }
}

/** Runs a round remotely and writes its trajectories into `buffer` (as the local run records). */
async function remoteRound(
  remote: RemoteRounds,
  buffer: TrajectoryBuffer,
  problem: L1Problem,
  req: RemoteRoundRequest,
): Promise<{ rewards: number[]; metrics: Record<string, number[]> }> {
  const r = await remote(req);
  const put = (
    dst: Tensor | undefined,
    src: Float32Array | Int32Array | undefined,
    what: string,
  ) => {
    if (!dst) return;
    if (!src || src.length !== dst.size) {
      throw new Error(
        `remote round ${req.round}: ${what} has ${src?.length ?? 0} values, not ${dst.size}`,
      );
    }
    backend().write(dst.storageFor("remote"), src, dst.offset);
  };
  put(buffer.features, r.features, "features");
  put(buffer.actions, r.actions, "actions");
  put(buffer.scalars.rewards, r.stepRewards, "step rewards");
  put(buffer.scalars.logProbs, r.logProbs, "log-probabilities");
  return { rewards: problem.reward(r.metrics), metrics: r.metrics };
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
    (task) => loadControllerFor(o.controller, task),
    { seed: o.seed, greedy: o.greedy, curvePoints: o.curvePoints },
  );
  return result(problem, o.name ?? "AutoLoss", run, curve, { greedy: o.greedy }, began);
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
 * if all it had learned were how often to take L1.
 */
export async function matchedRandom(
  problem: L1Problem,
  reference: MethodResult,
  o: MethodOptions,
): Promise<MethodResult> {
  const began = performance.now();
  const shares = reference.detail.l1Fractions as number[];
  const { run, curve } = await evaluatePopulation(
    problem,
    {
      population: shares.length,
      lambda: problem.settings.lambda,
      mode: "schedule",
      data: "task",
      steps: o.steps,
    },
    () => randomShare(shares),
    { seed: o.seed, curvePoints: o.curvePoints },
  );
  return result(problem, "random (matched share)", run, curve, { shares }, began);
}
