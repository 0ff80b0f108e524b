/**
 * The config schema of the `classifier` task (presets: configs/classifier/{quick,paper}.yaml) and
 * what is derived from a resolved config: the architecture and the learning-rate schedule.
 * @module
 */

import { constantLr, cosineLr, linearLr, type LrSchedule } from "../../nn/optim.ts";
import { type ConfigOf, defineSchema } from "../../run/config.ts";
import { type CnnArchitecture, DEFAULT_ARCHITECTURE } from "./model.ts";

/** The configuration schema of `train classifier` (presets in configs/classifier/). */
export const classifierSchema = defineSchema({
  dataset: {
    type: "enum",
    values: ["mnist", "fashion"],
    default: "mnist",
    doc: "dataset (set from the command line's positional argument)",
  },
  seed: { type: "integer", default: 0, doc: "seed of the initialization, shuffling and dropout" },
  model: {
    type: "object",
    doc: "the CNN",
    fields: {
      conv1: { type: "integer", min: 1, default: 16, doc: "channels of the first convolution" },
      conv2: { type: "integer", min: 1, default: 32, doc: "channels of the second convolution" },
      kernel: { type: "integer", min: 1, default: 5, doc: "convolution kernel size" },
      padding: {
        type: "enum",
        values: ["valid", "same"],
        default: "valid",
        doc: "convolution padding",
      },
      hidden: { type: "integer", min: 1, default: 128, doc: "units of the hidden layer" },
      dropout: {
        type: "number",
        min: 0,
        lt: 1,
        default: 0.3,
        doc: "dropout after the hidden layer",
      },
    },
  },
  train: {
    type: "object",
    doc: "training length and data",
    fields: {
      epochs: {
        type: "number",
        default: 10,
        doc: "passes over the training set (may be fractional)",
      },
      batchSize: { type: "integer", min: 1, default: 64, doc: "images per step" },
      limit: { type: "integer", default: 0, doc: "use the first N training images (0: all)" },
    },
  },
  optim: {
    type: "object",
    doc: "Adam and its learning-rate schedule",
    fields: {
      lr: { type: "number", gt: 0, default: 0.002, doc: "peak learning rate" },
      finalLr: { type: "number", gt: 0, default: 0.00002, doc: "learning rate at the last step" },
      schedule: {
        type: "enum",
        values: ["cosine", "linear", "constant"],
        default: "cosine",
        doc: "decay from lr to finalLr over the run",
      },
      warmupSteps: { type: "integer", default: 100, doc: "linear warmup steps" },
      weightDecay: { type: "number", min: 0, default: 0, doc: "L2 weight decay" },
    },
  },
  augment: {
    type: "object",
    doc: "host-side augmentation of training batches",
    fields: {
      shift: { type: "integer", default: 2, doc: "random translation of up to N pixels (0: off)" },
      hflip: {
        type: "enum",
        values: ["auto", "on", "off"],
        default: "auto",
        doc: "random horizontal flips (auto: on for fashion, off for digits)",
      },
    },
  },
  eval: {
    type: "object",
    doc: "test-set evaluation",
    fields: {
      every: { type: "integer", default: 0, doc: "steps between evaluations (0: once per epoch)" },
      batchSize: { type: "integer", min: 1, default: 500, doc: "images per evaluation batch" },
      limit: { type: "integer", default: 0, doc: "use the first N test images (0: all 10,000)" },
      splits: {
        type: "integer",
        min: 1,
        default: 5,
        doc: "splits of the test-image inception score",
      },
    },
  },
  log: {
    type: "object",
    doc: "reporting",
    fields: {
      every: { type: "integer", default: 50, doc: "steps between metric readbacks and lines" },
    },
  },
  checkpoint: {
    type: "object",
    doc: "checkpoints (also written on Ctrl-C)",
    fields: {
      every: {
        type: "integer",
        default: 500,
        doc: "steps between checkpoints (0: only at the end)",
      },
    },
  },
  export: {
    type: "boolean",
    default: false,
    doc: "copy the best weights to weights/<dataset>_classifier.safetensors at the end",
  },
});

/** A resolved `train classifier` config. */
export type ClassifierConfig = ConfigOf<typeof classifierSchema>;

/** The architecture a config describes. */
export function architectureOf(cfg: ClassifierConfig): CnnArchitecture {
  return { ...DEFAULT_ARCHITECTURE, ...cfg.model };
}

// ---------------------------------------------------------------- augmentation

/** The learning-rate schedule of a config over `totalSteps`. */
export function lrScheduleOf(cfg: ClassifierConfig, totalSteps: number): LrSchedule {
  const o = cfg.optim;
  const opts = {
    lr: o.lr,
    finalLr: o.finalLr,
    totalSteps,
    warmupSteps: Math.min(o.warmupSteps, totalSteps),
  };
  if (o.schedule === "constant") return constantLr(o.lr);
  return o.schedule === "linear" ? linearLr(opts) : cosineLr(opts);
}
