/**
 * The two L1 problems behind one interface, so every method (tasks/l1/methods.ts) and command
 * (tasks/l1/commands.ts) is written once: an {@link L1Problem} builds population tasks on a chosen
 * data partition, names the reward, and turns a member's test metric into the number the paper
 * reports (test MSE minus the noise floor, or the test error).
 * @module
 */

import { type RewardFn, REWARDS } from "../../rl/rewards.ts";
import {
  AUTHORS_SPEC,
  type ClassificationData,
  type ClassificationSpec,
  concatClassification,
  makeClassificationData,
  PAPER_SPEC,
} from "./data/classification.ts";
import {
  concatRegression,
  makeRegressionData,
  noiseFloor,
  type RegressionData,
} from "./data/regression.ts";
import type { FeatureGroup, FeatureSetKind, L1ScheduleTask, StepMode } from "./task.ts";
import { MlpTask } from "./mlp.ts";
import { type RegressionForm, RegressionTask } from "./regression.ts";

/**
 * Which partitions a task trains and validates on: the controller's (`controller`: train_ctrl /
 * valid_ctrl), the task's (`task`: train_task / valid_task), or the task's training and
 * validation sets joined for training (`union`, the W/O L1 baseline; validation stays valid_task).
 * The test partition is always the fifth.
 */
export type DataChoice = "controller" | "task" | "union";

/** How to build one population task. */
export interface CreateOptions {
  /** P. */
  population: number;
  /** L1 weight, shared or per member. */
  lambda: number | readonly number[];
  /** Per-step actions or the joint loss. */
  mode: StepMode;
  /** Partitions. */
  data: DataChoice;
  /** Episode length T (the t/T feature). */
  steps: number;
  /** Feature set (default: the problem's configured one). */
  features?: FeatureSetKind;
  /** Feature groups to drop. */
  dropFeatures?: readonly FeatureGroup[];
  /** Early-stopping patience in validations (default none). */
  patience?: number | null;
  /** All members start from the same initialization (see `L1TaskOptions.sharedInit`). */
  sharedInit?: boolean;
  /** Members per initialization (`L1TaskOptions.initGroup`). */
  initGroup?: number;
  /** The members are a slice of a larger population from here (`L1TaskOptions.memberOffset`). */
  memberOffset?: number;
}

/** Training settings shared by every run of a problem. */
export interface TrainSettings {
  /** Adam learning rate. */
  lr: number;
  /** The L1 weight of the L1 action (authors: 0.2 regression, 0.02 classification). */
  lambda: number;
  /** Validation (best tracking) every k steps. */
  valEvery: number;
  /** Validation loss for the features every k steps. */
  featureValEvery: number;
  /** The default feature set. */
  features: FeatureSetKind;
  /** Improvement-EMA decay of the features. */
  improvementDecay: number;
}

/** A problem: data, task factory, reward and reported metric. */
export interface L1Problem {
  /** Registry name. */
  readonly name: "regression" | "mlp";
  /** What the reported number is ("test MSE - noise floor" or "test error"). */
  readonly metricLabel: string;
  /** The reward of controller training (from an episode's final metrics). */
  readonly reward: RewardFn;
  /** Training settings. */
  readonly settings: TrainSettings;
  /** Builds a population task. */
  create(opts: CreateOptions): L1ScheduleTask;
  /** The reported number for a member's `test` metric. */
  report(test: number): number;
  /** Whether a larger `best` (validation selection score) is better. */
  readonly higherIsBetter: boolean;
}

/** Regression data and model settings. */
export interface RegressionProblemOptions {
  /** Data generation. */
  data: { seed: number; dim: number; sizes: number[]; noiseStd: number };
  /** Model form and quadratic scale (0: the form's default). */
  model: { form: RegressionForm; quadScale: number };
  /** Training settings. */
  train: TrainSettings;
  /** Reward constant C (authors 20000). */
  rewardC: number;
}

/** The task options both problems take from `create`'s options and the training settings. */
function sharedTaskOptions(c: CreateOptions, s: TrainSettings) {
  return {
    population: c.population,
    lambda: c.lambda,
    mode: c.mode,
    lr: s.lr,
    features: c.features ?? s.features,
    dropFeatures: c.dropFeatures,
    totalSteps: c.steps,
    valEvery: s.valEvery,
    featureValEvery: s.featureValEvery,
    patience: c.patience ?? null,
    improvementDecay: s.improvementDecay,
    sharedInit: c.sharedInit,
    initGroup: c.initGroup,
    memberOffset: c.memberOffset,
  };
}

/** The regression problem (data generated once). */
export function regressionProblem(opts: RegressionProblemOptions): L1Problem & {
  data: RegressionData;
  floor: number;
} {
  const data = makeRegressionData({
    seed: opts.data.seed,
    dim: opts.data.dim,
    sizes: opts.data.sizes,
    noiseStd: opts.data.noiseStd,
  });
  const parts = data.partitions;
  const floor = noiseFloor(data, parts.test);
  const s = opts.train;
  return {
    name: "regression",
    metricLabel: "test MSE - noise floor",
    reward: REWARDS.regression("best", opts.rewardC),
    settings: s,
    higherIsBetter: false,
    data,
    floor,
    create(c) {
      const [train, val] = c.data === "controller"
        ? [parts.trainCtrl, parts.validCtrl]
        : c.data === "task"
        ? [parts.trainTask, parts.validTask]
        : [concatRegression(parts.trainTask, parts.validTask), parts.validTask];
      return new RegressionTask({
        ...sharedTaskOptions(c, s),
        train,
        val,
        test: parts.test,
        form: opts.model.form,
        quadScale: opts.model.quadScale > 0 ? opts.model.quadScale : undefined,
      });
    },
    report: (test) => test - floor,
  };
}

/** MLP data and model settings. */
export interface MlpProblemOptions {
  /** The data distribution, or "authors" / "paper" for the two standard ones. */
  spec: ClassificationSpec | "authors" | "paper";
  /** Partition sizes (authors: 200 / 1000 / 200 / 1000 / 1000). */
  sizes: number[];
  /** Hidden units. */
  hidden: number;
  /** Training settings. */
  train: TrainSettings;
  /** Reward constant C (authors 1000). */
  rewardC: number;
}

/** The MLP classification problem (data generated once). */
export function mlpProblem(opts: MlpProblemOptions): L1Problem & { data: ClassificationData } {
  const spec = opts.spec === "authors"
    ? AUTHORS_SPEC
    : opts.spec === "paper"
    ? PAPER_SPEC
    : opts.spec;
  const data = makeClassificationData(spec, opts.sizes);
  const parts = data.partitions;
  const s = opts.train;
  return {
    name: "mlp",
    metricLabel: "test error",
    reward: REWARDS.classification("best", opts.rewardC),
    settings: s,
    higherIsBetter: true,
    data,
    create(c) {
      const [train, val] = c.data === "controller"
        ? [parts.trainCtrl, parts.validCtrl]
        : c.data === "task"
        ? [parts.trainTask, parts.validTask]
        : [concatClassification(parts.trainTask, parts.validTask), parts.validTask];
      return new MlpTask({
        ...sharedTaskOptions(c, s),
        train,
        val,
        test: parts.test,
        hidden: opts.hidden,
      });
    },
    report: (test) => test,
  };
}
