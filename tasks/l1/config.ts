/**
 * Typed config schemas of the regression and MLP tasks (run/config.ts), shared where the two
 * agree. Presets live in configs/regression/ and configs/mlp/ (`quick`, `paper`); every key can
 * be overridden with `--config FILE.yaml` or `--set key=value`. Defaults are the authors' values
 * (reference doc sections 3, 4.1, 4.2, 6) unless a comment says otherwise.
 * @module
 */

import { type ConfigOf, defineSchema, type Range } from "../../run/config.ts";

/** The methods compared in Table 1 (each can be switched off). */
const METHODS: SharedSchema["compare"]["fields"]["methods"] = {
  type: "object",
  doc: "methods to run",
  fields: {
    wol1: { type: "boolean", default: true, doc: "W/O L1: task loss only on train+val" },
    s1: { type: "boolean", default: true, doc: "S1: L1 when (val - train)/train > th" },
    s2: { type: "boolean", default: true, doc: "S2: L1 when (l1 - val)/val > th" },
    s3: { type: "boolean", default: true, doc: "S3: L1 when (|g_l1| - |g_task|)/|g_task| > th" },
    dgs: { type: "boolean", default: true, doc: "DGS: task + lambda*L1, lambda grid-searched" },
    autoloss: { type: "boolean", default: true, doc: "AutoLoss: the trained controller" },
    nulls: {
      type: "boolean",
      default: true,
      doc: "null baselines: the untrained controller and matched-share random",
    },
  },
};

/** A number field. */
export type Num =
  & { readonly type: "number"; readonly default: number; readonly doc: string }
  & Range;
/** An integer field. */
export type Int =
  & { readonly type: "integer"; readonly default: number; readonly doc: string }
  & Range;
/** A boolean field. */
export type Bool = { readonly type: "boolean"; readonly default: boolean; readonly doc: string };
/** A string field. */
export type Str = { readonly type: "string"; readonly default: string; readonly doc: string };
/** A number-array field. */
export type Arr = {
  readonly type: "array";
  readonly default: readonly number[];
  readonly doc: string;
};
/** An enum field. */
export type Enum<V extends string> = {
  readonly type: "enum";
  readonly values: readonly V[];
  readonly default: V;
  readonly doc: string;
};
/** A section. */
export type Section<F> = { readonly type: "object"; readonly doc: string; readonly fields: F };

/** The sections both tasks share (see {@link sharedSections}). */
export type SharedSchema = {
  readonly seed: Int;
  readonly train: Section<{
    readonly lr: Num;
    readonly lambda: Num;
    readonly steps: Int;
    readonly valEvery: Int;
    readonly featureValEvery: Int;
    readonly features: Enum<"authors" | "paper">;
    readonly improvementDecay: Num;
  }>;
  readonly controller: Section<{
    readonly population: Int;
    readonly rounds: Int;
    readonly steps: Int;
    readonly lr: Num;
    readonly hidden: Int;
    readonly temperature: Num;
    readonly rewardC: Num;
    readonly baselineDecay: Num;
    readonly advantageClip: Num;
    readonly stepReward: Bool;
    readonly stepRewardScale: Num;
    readonly updates: Enum<"episode" | "round" | "ppo" | "es">;
    readonly baseline: Enum<"moving" | "round" | "zscore">;
    readonly ppoEpochs: Int;
    readonly ppoClip: Num;
    readonly esSigma: Num;
    readonly entropy: Num;
    readonly normalize: Bool;
    readonly retrain: Bool;
    readonly sharedInit: Bool;
    readonly actEvery: Int;
    readonly keep: Enum<"best" | "last">;
    readonly greedy: Bool;
    readonly file: Str;
  }>;
  readonly compare: Section<{
    readonly trials: Int;
    readonly gridSteps: Int;
    readonly methods: Section<{
      readonly wol1: Bool;
      readonly s1: Bool;
      readonly s2: Bool;
      readonly s3: Bool;
      readonly dgs: Bool;
      readonly autoloss: Bool;
      readonly nulls: Bool;
    }>;
    readonly dgsCount: Int;
    readonly dgsMin: Num;
    readonly dgsMax: Num;
    readonly s1: Arr;
    readonly s2: Arr;
    readonly s3: Arr;
    readonly curvePoints: Int;
  }>;
  readonly sweep: Section<{ readonly enabled: Bool; readonly lambdas: Arr; readonly trials: Int }>;
  readonly budget: Section<{ readonly enabled: Bool; readonly every: Int; readonly trials: Int }>;
  readonly ablation: Section<{ readonly enabled: Bool }>;
  readonly robust: Section<{ readonly trials: Int; readonly settings: Str }>;
};

/** The regression-only sections. */
export type RegressionSchema = SharedSchema & {
  readonly data: Section<{
    readonly seed: Int;
    readonly dim: Int;
    readonly sizes: Arr;
    readonly noiseStd: Num;
  }>;
  readonly model: Section<{ readonly form: Enum<"authors" | "paper">; readonly quadScale: Num }>;
};

/** The MLP-only sections. */
export type MlpSchema = SharedSchema & {
  readonly data: Section<{
    readonly generator: Enum<"authors" | "paper">;
    readonly sizes: Arr;
    readonly seed: Int;
    readonly features: Int;
    readonly flipY: Num;
  }>;
  readonly model: Section<{ readonly hidden: Int }>;
  readonly transfer: Section<{ readonly datasets: Arr }>;
};

/** Defaults that differ between the two tasks. */
export interface TaskDefaults {
  /** Task-model Adam learning rate. */
  lr: number;
  /** L1 weight. */
  lambda: number;
  /** Steps per run. */
  steps: number;
  /** Improvement-EMA decay of the features. */
  improvementDecay: number;
  /** Reward constant C. */
  rewardC: number;
  /** Reward baseline decay. */
  baselineDecay: number;
  /** Advantage clip. */
  advantageClip: number;
  /** Dense step-reward scale. */
  stepRewardScale: number;
  /** Smallest DGS lambda. */
  dgsMin: number;
  /** Largest DGS lambda. */
  dgsMax: number;
  /** S1 threshold grid. */
  s1: number[];
  /** S2 threshold grid. */
  s2: number[];
  /** S3 threshold grid. */
  s3: number[];
  /** Fig. 1 lambdas. */
  sweep: number[];
}

/** The shared sections with a task's defaults. */
export function sharedSections(d: TaskDefaults): SharedSchema {
  return {
    seed: { type: "integer", default: 1, doc: "seed of the trials and of controller training" },
    train: {
      type: "object",
      doc: "task-model training (every run)",
      fields: {
        lr: { type: "number", gt: 0, default: d.lr, doc: "Adam learning rate of the task models" },
        lambda: { type: "number", min: 0, default: d.lambda, doc: "L1 weight of the L1 action" },
        steps: {
          type: "integer",
          min: 1,
          default: d.steps,
          doc: "steps of every evaluation run (fixed length; best validation checkpoint)",
        },
        valEvery: {
          type: "integer",
          min: 1,
          default: 10,
          doc: "validate (best tracking) every k steps",
        },
        featureValEvery: {
          type: "integer",
          min: 1,
          default: 1,
          doc: "refresh the validation loss of the features every k steps (authors: 1)",
        },
        features: {
          type: "enum",
          values: ["authors", "paper"],
          default: "authors",
          doc: "controller features: the authors' code or the paper's generic set",
        },
        improvementDecay: {
          type: "number",
          min: 0,
          max: 1,
          default: d.improvementDecay,
          doc: "decay of the validation-improvement EMA feature",
        },
      },
    },
    controller: {
      type: "object",
      doc: "AutoLoss controller training (REINFORCE on the controller partitions)",
      fields: {
        population: {
          type: "integer",
          min: 1,
          default: 16,
          doc: "episodes run in lockstep per REINFORCE update",
        },
        rounds: {
          type: "integer",
          min: 1,
          default: 25,
          doc: "REINFORCE updates (rounds of episodes)",
        },
        steps: { type: "integer", min: 1, default: d.steps, doc: "steps per training episode" },
        lr: { type: "number", gt: 0, default: 1e-3, doc: "controller Adam learning rate" },
        hidden: { type: "integer", min: 1, default: 16, doc: "controller hidden units" },
        temperature: { type: "number", gt: 0, default: 2, doc: "softmax temperature" },
        rewardC: { type: "number", gt: 0, default: d.rewardC, doc: "reward constant C" },
        baselineDecay: {
          type: "number",
          min: 0,
          max: 1,
          default: d.baselineDecay,
          doc: "reward baseline decay",
        },
        advantageClip: { type: "number", gt: 0, default: d.advantageClip, doc: "advantage clip c" },
        stepReward: { type: "boolean", default: true, doc: "add the authors' dense step reward" },
        stepRewardScale: {
          type: "number",
          default: d.stepRewardScale,
          doc: "scale of the dense step reward",
        },
        updates: {
          type: "enum",
          values: ["episode", "round", "ppo", "es"],
          default: "episode",
          doc: "one REINFORCE update per episode (authors), per round of P episodes, PPO " +
            "epochs over the round's episodes, or evolution strategies (antithetic pairs of " +
            "perturbed controllers, one update per round)",
        },
        esSigma: {
          type: "number",
          gt: 0,
          default: 0.1,
          doc: "ES: the controller-parameter noise scale sigma",
        },
        baseline: {
          type: "enum",
          values: ["moving", "round", "zscore"],
          default: "moving",
          doc: "advantage baseline: moving average (authors), the round's mean reward, or the " +
            "round's rewards standardized",
        },
        ppoEpochs: { type: "integer", default: 4, doc: "PPO: epochs over a round's episodes" },
        ppoClip: { type: "number", gt: 0, default: 0.2, doc: "PPO: ratio clip" },
        entropy: {
          type: "number",
          min: 0,
          default: 0,
          doc: "entropy bonus coefficient (authors 0)",
        },
        normalize: {
          type: "boolean",
          default: false,
          doc: "standardize the controller's inputs with running statistics",
        },
        retrain: {
          type: "boolean",
          default: false,
          doc: "compare/eval/transfer: train a controller instead of loading the shipped one",
        },
        sharedInit: {
          type: "boolean",
          default: false,
          doc: "episodes of a round share one initialization (common random numbers)",
        },
        actEvery: {
          type: "integer",
          min: 1,
          default: 1,
          doc: "decision interval: the controller acts every k task steps and holds its action " +
            "for the k steps (controller.steps must be a multiple)",
        },
        keep: {
          type: "enum",
          values: ["best", "last"],
          default: "best",
          doc: "keep the best round's controller (authors) or the last",
        },
        greedy: {
          type: "boolean",
          default: false,
          doc: "argmax actions when guiding (the authors sample)",
        },
        file: {
          type: "string",
          default: "",
          doc: "compare/transfer: use this controller.json instead of training one",
        },
      },
    },
    compare: {
      type: "object",
      doc: "Table 1",
      fields: {
        trials: { type: "integer", min: 1, default: 10, doc: "trials per method" },
        gridSteps: {
          type: "integer",
          default: 0,
          doc: "steps of the grid-search runs (0: train.steps)",
        },
        methods: METHODS,
        dgsCount: { type: "integer", min: 1, default: 50, doc: "DGS: lambda values" },
        dgsMin: { type: "number", gt: 0, default: d.dgsMin, doc: "DGS: smallest lambda" },
        dgsMax: { type: "number", gt: 0, default: d.dgsMax, doc: "DGS: largest lambda (log grid)" },
        s1: { type: "array", default: d.s1, doc: "S1 threshold grid" },
        s2: { type: "array", default: d.s2, doc: "S2 threshold grid" },
        s3: { type: "array", default: d.s3, doc: "S3 threshold grid" },
        curvePoints: {
          type: "integer",
          min: 1,
          default: 20,
          doc: "points of the validation curves",
        },
      },
    },
    sweep: {
      type: "object",
      doc: "Fig. 1: DGS vs AutoLoss across lambda",
      fields: {
        enabled: { type: "boolean", default: false, doc: "run the lambda sweep in compare" },
        lambdas: { type: "array", default: d.sweep, doc: "lambda values" },
        trials: { type: "integer", min: 1, default: 3, doc: "trials per lambda" },
      },
    },
    budget: {
      type: "object",
      doc: "Fig. 3R: test metric vs training steps consumed, AutoLoss vs DGS",
      fields: {
        enabled: { type: "boolean", default: false, doc: "evaluate during controller training" },
        every: { type: "integer", default: 5, doc: "evaluate the controller every k rounds" },
        trials: { type: "integer", min: 1, default: 5, doc: "trials per evaluation" },
      },
    },
    ablation: {
      type: "object",
      doc: "Table 3: controllers trained without a feature group",
      fields: {
        enabled: { type: "boolean", default: false, doc: "run the feature ablation in compare" },
      },
    },
    robust: {
      type: "object",
      doc: "compare <task> sweep: the robustness sweep over data settings",
      fields: {
        trials: {
          type: "integer",
          min: 1,
          default: 10,
          doc: "paired trials per method and setting",
        },
        settings: {
          type: "string",
          default: "",
          doc: "comma-separated setting names to run (empty: all; see tasks/l1/sweep.ts)",
        },
      },
    },
  };
}

const REGRESSION_DEFAULTS: TaskDefaults = {
  lr: 5e-4,
  lambda: 0.2,
  steps: 20000,
  improvementDecay: 0.8,
  rewardC: 20000,
  baselineDecay: 0.8,
  advantageClip: 20,
  stepRewardScale: 1,
  dgsMin: 0.01,
  dgsMax: 3.2,
  s1: [-0.1, -0.05, 0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.2],
  s2: [-0.98, -0.96, -0.94, -0.92, -0.9, -0.88, -0.86, -0.84, -0.8, -0.75, -0.7, -0.6],
  s3: [-0.8, -0.6, -0.4, -0.2, 0, 0.2, 0.4, 0.7, 1, 1.5, 2, 3],
  sweep: [0.02, 0.05, 0.1, 0.2, 0.5, 1, 2],
};

const MLP_DEFAULTS: TaskDefaults = {
  lr: 1e-3,
  lambda: 0.02,
  steps: 2000,
  improvementDecay: 0.9,
  rewardC: 1000,
  baselineDecay: 0.9,
  advantageClip: 5,
  stepRewardScale: 0.1,
  dgsMin: 0.001,
  dgsMax: 0.2,
  s1: [-0.1, -0.05, 0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.8, 1.2],
  s2: [-0.9, -0.5, 0, 0.5, 1, 2, 3, 5, 8, 12, 20, 40],
  s3: [-0.8, -0.6, -0.4, -0.2, 0, 0.2, 0.4, 0.7, 1, 1.5, 2, 3],
  sweep: [0.003, 0.01, 0.02, 0.05, 0.1],
};

/** The regression config schema. */
export const REGRESSION_SCHEMA: RegressionSchema = defineSchema({
  ...sharedSections(REGRESSION_DEFAULTS),
  data: {
    type: "object",
    doc: "data synthesis (authors: d = 16, 5 x 200, noise std 2, seed 1)",
    fields: {
      seed: { type: "integer", default: 1, doc: "data seed" },
      dim: { type: "integer", min: 1, default: 16, doc: "input dimension d" },
      sizes: {
        type: "array",
        default: [200, 200, 200, 200, 200],
        doc: "train_ctrl, valid_ctrl, train_task, valid_task, test sizes",
      },
      noiseStd: { type: "number", min: 0, default: 2, doc: "label noise standard deviation" },
    },
  },
  model: {
    type: "object",
    doc: "regression model",
    fields: {
      form: {
        type: "enum",
        values: ["authors", "paper"],
        default: "authors",
        doc: "authors: x.w1 + vec(xx^T).w2/10 (no bias); paper: u^T A u + b^T u + c",
      },
      quadScale: {
        type: "number",
        min: 0,
        default: 0,
        doc: "quadratic feature scale (0: form default)",
      },
    },
  },
});

/** The MLP config schema. */
export const MLP_SCHEMA: MlpSchema = defineSchema({
  ...sharedSections(MLP_DEFAULTS),
  data: {
    type: "object",
    doc: "data synthesis (authors: sklearn make_classification, 3400 samples, seed 1)",
    fields: {
      generator: {
        type: "enum",
        values: ["authors", "paper"],
        default: "authors",
        doc: "authors: make_classification; paper: appendix A.2",
      },
      sizes: {
        type: "array",
        default: [200, 1000, 200, 1000, 1000],
        doc: "train_ctrl, valid_ctrl, train_task, valid_task, test sizes",
      },
      seed: { type: "integer", default: 0, doc: "data seed (0: the generator's, 1)" },
      features: {
        type: "integer",
        default: 0,
        doc: "input dimension (0: the generator's, 32)",
      },
      flipY: {
        type: "number",
        default: -1,
        doc: "share of labels redrawn at random (-1: the generator's, 0.01; sklearn only)",
      },
    },
  },
  model: {
    type: "object",
    doc: "MLP model",
    fields: { hidden: { type: "integer", default: 32, doc: "hidden units" } },
  },
  transfer: {
    type: "object",
    doc: "Table 2: the controller trained on dataset #0 guides models on #1-#3",
    fields: {
      datasets: { type: "array", default: [1, 2, 3], doc: "indices into TRANSFER_SPECS" },
    },
  },
});

/** A resolved regression config. */
export type RegressionConfig = ConfigOf<RegressionSchema>;

/** A resolved MLP config. */
export type MlpConfig = ConfigOf<MlpSchema>;

/** The parts both configs share. */
export type SharedConfig = ConfigOf<SharedSchema>;
