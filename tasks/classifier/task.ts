/**
 * The scoring classifiers: a small CNN trained on MNIST or Fashion-MNIST with this library, the
 * "inception network" of the GAN's inception score (tasks/classifier/inception_score.ts).
 *
 * This file holds the model, its config schema, the host-side augmentation (random shifts;
 * horizontal flips for Fashion-MNIST), evaluation, the trainer (Adam with a decaying learning
 * rate; checkpoints of model, optimizer, batch iterator, random generators and step) and the
 * weights files. The `train`/`eval classifier` commands are in tasks/classifier/commands.ts.
 *
 * Images are NCHW `[N, 1, 28, 28]` in [-1, 1] (the GAN's tanh range).
 * @module
 */

import { hash32, mulberry32 } from "../../nn/host_random.ts";
import { Generator } from "../../gpu/random.ts";
import {
  type Checkpoint,
  loadCheckpoint,
  loadInto,
  saveCheckpoint,
  stateDict,
} from "../../nn/checkpoint.ts";
import { Conv2d } from "../../nn/conv.ts";
import { BatchIterator } from "../../nn/data/batches.ts";
import { type ImageDataset, loadFashionMnist, loadMnist, type Split } from "../../nn/data/mnist.ts";
import { Dropout, Linear } from "../../nn/layers.ts";
import { crossEntropy } from "../../nn/losses.ts";
import { FlatParams, Module } from "../../nn/module.ts";
import { Adam, constantLr, cosineLr, linearLr, type LrSchedule } from "../../nn/optim.ts";
import { ConfigError, type ConfigOf, defineSchema } from "../../run/config.ts";
import { maxPool2d } from "../../tensor/conv_ops.ts";
import { compare, tensor } from "../../tensor/functional.ts";
import { accumulate_, fill_ } from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { backend } from "../../gpu/backend.ts";
import { InceptionScoreAccumulator } from "./inception_score.ts";

// ---------------------------------------------------------------- datasets

/** The datasets a scoring classifier is trained on. */
export type ClassifierDataset = "mnist" | "fashion";

/** The dataset names, as the command line takes them. */
export const CLASSIFIER_DATASETS: readonly ClassifierDataset[] = ["mnist", "fashion"];

/** Checks a dataset name (e.g. the positional argument); throws listing the valid names. */
export function parseDataset(name: string | undefined): ClassifierDataset {
  if (name === undefined) {
    throw new ConfigError(
      `missing dataset: use 'classifier mnist' or 'classifier fashion' (datasets: ${
        CLASSIFIER_DATASETS.join(", ")
      })`,
    );
  }
  if (!(CLASSIFIER_DATASETS as readonly string[]).includes(name)) {
    throw new ConfigError(
      `unknown dataset '${name}' for the classifier; datasets: ${CLASSIFIER_DATASETS.join(", ")}`,
    );
  }
  return name as ClassifierDataset;
}

/**
 * Loads a split of `dataset` with pixels in [-1, 1]; `limit` keeps the first images (0: all).
 */
export function loadClassifierData(
  dataset: ClassifierDataset,
  split: Split,
  limit = 0,
): Promise<ImageDataset> {
  const opts = { range: [-1, 1] as const, limit: limit > 0 ? limit : undefined };
  return dataset === "mnist" ? loadMnist(split, opts) : loadFashionMnist(split, opts);
}

// ---------------------------------------------------------------- model

/** The CNN's shape, stored in every weights file's metadata (`architecture`). */
export interface CnnArchitecture {
  /** Channels of the first convolution. */
  conv1: number;
  /** Channels of the second convolution. */
  conv2: number;
  /** Square kernel size of both convolutions. */
  kernel: number;
  /** `"valid"` (no padding) or `"same"` (output size = input size) convolutions. */
  padding: "valid" | "same";
  /** Units of the hidden fully connected layer. */
  hidden: number;
  /** Dropout probability after the hidden layer (training only). */
  dropout: number;
  /** Input image side (28). */
  imageSize: number;
  /** Number of classes (10). */
  classes: number;
}

/** The default architecture: conv5x5-16 / pool / conv5x5-32 / pool / fc-128 / fc-10. */
export const DEFAULT_ARCHITECTURE: CnnArchitecture = {
  conv1: 16,
  conv2: 32,
  kernel: 5,
  padding: "valid",
  hidden: 128,
  dropout: 0.3,
  imageSize: 28,
  classes: 10,
};

/** Side of the feature maps after the second pooling. */
function featureSide(a: CnnArchitecture): number {
  const conv = (s: number) => (a.padding === "same" ? s : s - a.kernel + 1);
  const side = Math.floor(conv(Math.floor(conv(a.imageSize) / 2)) / 2);
  if (side < 1) {
    throw new Error(`CNN: a ${a.kernel}x${a.kernel} kernel leaves no features of ${a.imageSize}px`);
  }
  return side;
}

/** One line such as `conv5x5-16 / maxpool2 / conv5x5-32 / maxpool2 / fc-128 / dropout 0.3 / fc-10`. */
export function describeArchitecture(a: CnnArchitecture): string {
  const k = `${a.kernel}x${a.kernel}`;
  const pad = a.padding === "same" ? " same" : "";
  return `conv${k}${pad}-${a.conv1} relu / maxpool2 / conv${k}${pad}-${a.conv2} relu / maxpool2 / ` +
    `fc-${a.hidden} relu / dropout ${a.dropout} / fc-${a.classes}`;
}

/**
 * The scoring CNN: two (convolution, 2x2 max-pool, ReLU) stages, a hidden ReLU layer with dropout,
 * and a linear layer giving class logits. Pooling runs before the ReLU (the two commute), so the
 * ReLU touches a quarter of the values.
 */
export class ScoringCnn extends Module {
  /** The architecture. */
  readonly arch: CnnArchitecture;
  /** First convolution, [conv1, 1, k, k]. */
  readonly conv1: Conv2d;
  /** Second convolution, [conv2, conv1, k, k]. */
  readonly conv2: Conv2d;
  /** Hidden layer. */
  readonly fc1: Linear;
  /** Output layer (logits). */
  readonly fc2: Linear;
  /** Dropout after the hidden layer. */
  readonly drop: Dropout;

  /**
   * Builds the network; `init` draws the initial weights and `dropoutGen` the dropout masks (both
   * default to the library's default generator).
   */
  constructor(
    arch: CnnArchitecture = DEFAULT_ARCHITECTURE,
    init?: Generator,
    dropoutGen?: Generator,
  ) {
    super();
    this.arch = { ...arch };
    const side = featureSide(arch);
    const conv = { padding: arch.padding, gen: init } as const;
    this.conv1 = this.child("conv1", new Conv2d(1, arch.conv1, arch.kernel, conv));
    this.conv2 = this.child("conv2", new Conv2d(arch.conv1, arch.conv2, arch.kernel, conv));
    this.fc1 = this.child("fc1", new Linear(arch.conv2 * side * side, arch.hidden, { gen: init }));
    this.fc2 = this.child("fc2", new Linear(arch.hidden, arch.classes, { gen: init }));
    this.drop = this.child("drop", new Dropout(arch.dropout, dropoutGen));
  }

  /** Class logits `[N, classes]` of images `x` `[N, 1, 28, 28]` in [-1, 1]. */
  forward(x: Tensor): Tensor {
    const s = this.arch.imageSize;
    if (x.ndim !== 4 || x.shape[1] !== 1 || x.shape[2] !== s || x.shape[3] !== s) {
      throw new Error(`ScoringCnn: expects images [N, 1, ${s}, ${s}], got ${x.describe()}`);
    }
    let h = maxPool2d(this.conv1.forward(x), 2).relu();
    h = maxPool2d(this.conv2.forward(h), 2).relu();
    h = h.reshape([x.shape[0], -1]);
    h = this.drop.forward(this.fc1.forward(h).relu());
    return this.fc2.forward(h);
  }
}

// ---------------------------------------------------------------- config

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

/** Options of {@link augmentImages}. */
export interface AugmentOptions {
  /** Largest translation in pixels along each axis (0: none). */
  shift: number;
  /** Flip each image horizontally with probability 1/2. */
  hflip: boolean;
  /** The value uncovered pixels get (the background: -1 for [-1, 1] images). */
  fill: number;
  /** Seed of the draws (a pure function of it, so a resumed run repeats them). */
  seed: number;
}

/**
 * Augments `n` square images of side `side` (sample-major in `x`) in place: each is translated by
 * integers (dx, dy) drawn uniformly from [-shift, shift] (uncovered pixels get `fill`) and, with
 * `hflip`, mirrored with probability 1/2.
 */
export function augmentImages(x: Float32Array, n: number, side: number, o: AugmentOptions): void {
  if (o.shift <= 0 && !o.hflip) return;
  const rnd = mulberry32(o.seed);
  const src = new Float32Array(side * side);
  const span = 2 * o.shift + 1;
  for (let i = 0; i < n; i++) {
    const img = x.subarray(i * side * side, (i + 1) * side * side);
    const dx = Math.floor(rnd() * span) - o.shift;
    const dy = Math.floor(rnd() * span) - o.shift;
    const flip = o.hflip && rnd() < 0.5;
    if (dx === 0 && dy === 0 && !flip) continue;
    src.set(img);
    for (let r = 0; r < side; r++) {
      const sr = r - dy;
      for (let c = 0; c < side; c++) {
        const sc0 = c - dx;
        const sc = flip ? side - 1 - sc0 : sc0;
        img[r * side + c] = sr >= 0 && sr < side && sc0 >= 0 && sc0 < side
          ? src[sr * side + sc]
          : o.fill;
      }
    }
  }
}

// ---------------------------------------------------------------- evaluation

/** Test-set results of {@link evaluateClassifier}. */
export interface Evaluation {
  /** Fraction of correctly classified images. */
  accuracy: number;
  /** Mean cross-entropy. */
  loss: number;
  /** Images scored. */
  n: number;
  /** Inception score of the images (mean and std over splits), when splits > 0. */
  inceptionScore?: { mean: number; std: number };
}

/**
 * Scores `model` on `data` in eval mode without gradients, `batchSize` images at a time: accuracy,
 * mean cross-entropy and (with `splits` > 0) the inception score of the images under the model.
 * Counts accumulate on the GPU; everything is read back once at the end.
 */
export async function evaluateClassifier(
  model: ScoringCnn,
  data: ImageDataset,
  { batchSize = 500, splits = 0 }: { batchSize?: number; splits?: number } = {},
): Promise<Evaluation> {
  const wasTraining = model.training;
  model.eval();
  const sums = keep(fill_(tensor(new Float32Array(2)), 0)); // [correct, loss sum]
  const is = splits > 0 ? new InceptionScoreAccumulator(data.n, { splits }) : null;
  const size = data.h * data.w;
  try {
    for (let start = 0; start < data.n; start += batchSize) {
      const b = Math.min(batchSize, data.n - start);
      noGrad(() =>
        tidy(() => {
          const x = tensor(data.images.subarray(start * size, (start + b) * size), [
            b,
            1,
            data.h,
            data.w,
          ]);
          const y = tensor(data.labels.subarray(start, start + b), [b], "i32");
          const logits = model.forward(x);
          const correct = compare("eq", logits.argmax(-1).cast("f32"), y.cast("f32")).sum();
          const loss = crossEntropy(logits, y, { reduction: "sum" });
          accumulate_(sums, correct.reshape([1]).concat([loss.reshape([1])]));
          is?.addLogits(logits);
        })
      );
    }
    const [s] = await readMany([sums]);
    const score = is ? await is.result() : undefined;
    return {
      accuracy: s[0] / data.n,
      loss: s[1] / data.n,
      n: data.n,
      ...(score ? { inceptionScore: { mean: score.mean, std: score.std } } : {}),
    };
  } finally {
    sums.dispose();
    is?.dispose();
    model.train(wasTraining);
  }
}

// ---------------------------------------------------------------- trainer

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

/** Training-metric averages over the steps since the last {@link ClassifierTrainer.readTrainMetrics}. */
export interface TrainMetrics {
  /** Mean training loss. */
  loss: number;
  /** Training accuracy (of the augmented batches, with dropout). */
  accuracy: number;
  /** Steps averaged. */
  steps: number;
}

/**
 * The training state of one classifier: model, flat parameters, Adam, the shuffling batch
 * iterator and the dropout generator, with one-call checkpointing.
 * {@link ClassifierTrainer.trainStep} runs one step with no GPU readback; metrics accumulate on
 * the GPU.
 */
export class ClassifierTrainer {
  /** The config. */
  readonly cfg: ClassifierConfig;
  /** The network. */
  readonly model: ScoringCnn;
  /** Its parameters and gradients in flat buffers. */
  readonly flat: FlatParams;
  /** The optimizer. */
  readonly optim: Adam;
  /** Training batches. */
  readonly iterator: BatchIterator;
  /** Dropout masks. */
  readonly dropoutGen: Generator;
  /** Steps taken. */
  step = 0;
  /** Total steps of the run (`epochs` passes over the training set). */
  readonly totalSteps: number;
  /** The learning rate per step. */
  readonly schedule: LrSchedule;
  readonly #data: ImageDataset;
  readonly #hflip: boolean;
  /** [loss sum, accuracy sum] since the last readback (on the GPU). */
  readonly #acc: Tensor;
  /** Steps summed in `#acc`. */
  #accSteps = 0;

  /** Builds the model from `cfg` (seeded) over the training set `train`. */
  constructor(cfg: ClassifierConfig, train: ImageDataset) {
    this.cfg = cfg;
    this.#data = train;
    this.dropoutGen = new Generator(hash32(cfg.seed ^ 0x5bd1e995));
    this.model = new ScoringCnn(architectureOf(cfg), new Generator(cfg.seed), this.dropoutGen);
    this.flat = new FlatParams(this.model.namedParameters());
    this.optim = new Adam(this.flat, { lr: cfg.optim.lr, weightDecay: cfg.optim.weightDecay });
    this.iterator = new BatchIterator(train, { batchSize: cfg.train.batchSize, seed: cfg.seed });
    this.totalSteps = Math.max(1, Math.round(cfg.train.epochs * this.iterator.batchesPerEpoch));
    this.schedule = lrScheduleOf(cfg, this.totalSteps);
    this.#hflip = cfg.augment.hflip === "on" ||
      (cfg.augment.hflip === "auto" && cfg.dataset === "fashion");
    this.#acc = keep(fill_(tensor(new Float32Array(2)), 0));
  }

  /** The epoch (fractional) reached. */
  get epoch(): number {
    return this.step / this.iterator.batchesPerEpoch;
  }

  /**
   * One training step (augmented batch, forward, backward, Adam at the scheduled lr) inside
   * `tidy`, with no readback. Returns the batch's loss as a 1-element tensor the caller owns.
   */
  trainStep(): Tensor {
    const { indices } = this.iterator.nextIndices();
    const { x, y } = this.iterator.gather(indices);
    const side = this.#data.h;
    augmentImages(x, indices.length, side, {
      shift: this.cfg.augment.shift,
      hflip: this.#hflip,
      fill: -1,
      seed: hash32(hash32(this.cfg.seed + 0x9e3779b9) ^ this.step),
    });
    this.optim.lr = this.schedule(this.step);
    const loss = tidy(() => {
      const xb = tensor(x, [indices.length, 1, side, this.#data.w]);
      const yb = tensor(y, [indices.length], "i32");
      this.flat.zeroGrad();
      const logits = this.model.forward(xb);
      const l = crossEntropy(logits, yb);
      l.backward();
      this.optim.step();
      noGrad(() => {
        const correct = compare("eq", logits.argmax(-1).cast("f32"), yb.cast("f32")).mean();
        accumulate_(this.#acc, l.detach().reshape([1]).concat([correct.reshape([1])]));
      });
      return l.detach();
    });
    this.step++;
    this.#accSteps++;
    return loss;
  }

  /** Reads and resets the training-metric sums (one GPU round trip). */
  async readTrainMetrics(): Promise<TrainMetrics> {
    const [s] = await readMany([this.#acc]);
    fill_(this.#acc, 0);
    const steps = this.#accSteps;
    this.#accSteps = 0;
    return { loss: s[0] / Math.max(steps, 1), accuracy: s[1] / Math.max(steps, 1), steps };
  }

  /** The resumable state's JSON part. */
  #hostState(): Record<string, string> {
    return {
      step: String(this.step),
      sumSteps: String(this.#accSteps),
      iterator: JSON.stringify(this.iterator.state()),
      dropoutGen: JSON.stringify(this.dropoutGen.state()),
      architecture: JSON.stringify(this.model.arch),
      dataset: this.cfg.dataset,
    };
  }

  /**
   * Writes a checkpoint: model (`model.*`), optimizer (`optim.*`), the pending metric sums, the
   * step, the iterator and dropout-generator states, plus `extra` metadata.
   */
  async save(path: string, extra: Record<string, string> = {}): Promise<void> {
    const optState = this.optim.state("optim.");
    try {
      await saveCheckpoint(
        path,
        { ...stateDict(this.model, "model."), ...optState.tensors, "train.sums": this.#acc },
        {
          format: "autoloss-classifier-checkpoint",
          ...extra,
          ...optState.metadata,
          ...this.#hostState(),
        },
      );
    } finally {
      for (const t of Object.values(optState.tensors)) t.dispose();
    }
  }

  /** Restores a checkpoint written by {@link ClassifierTrainer.save}; returns its metadata. */
  async load(path: string): Promise<Record<string, string>> {
    const ckpt = await loadCheckpoint(path);
    const m = ckpt.metadata;
    const want = JSON.stringify(this.model.arch);
    if (m.architecture !== want) {
      throw new Error(
        `${path}: the checkpoint's architecture ${m.architecture} differs from the config's ${want}`,
      );
    }
    loadInto(this.model, ckpt, { prefix: "model." });
    this.optim.loadState({ tensors: ckpt.tensors, metadata: m }, "optim.");
    const sums = ckpt.tensors.get("train.sums");
    if (sums) backend().write(this.#acc.storageFor("load"), sums.data, this.#acc.offset);
    this.#accSteps = Number(m.sumSteps ?? 0);
    this.step = Number(m.step);
    this.iterator.setState(JSON.parse(m.iterator));
    this.dropoutGen.setState(JSON.parse(m.dropoutGen));
    return m;
  }

  /** Frees the GPU memory. */
  dispose(): void {
    this.optim.dispose();
    this.flat.dispose();
    this.model.dispose();
    this.#acc.dispose();
  }
}

// ---------------------------------------------------------------- weights files

/** Metadata `format` of a scoring-classifier weights file. */
export const WEIGHTS_FORMAT = "autoloss-scoring-classifier";

/** Writes the model's parameters (no optimizer state) with `metadata` to `path`. */
export async function saveClassifierWeights(
  path: string,
  model: ScoringCnn,
  metadata: Record<string, string>,
): Promise<void> {
  await saveCheckpoint(path, stateDict(model), {
    format: WEIGHTS_FORMAT,
    architecture: JSON.stringify(model.arch),
    architecture_summary: describeArchitecture(model.arch),
    input: "NCHW [N, 1, 28, 28] f32 in [-1, 1]; output: logits [N, 10]",
    ...metadata,
  });
}

/** Builds a {@link ScoringCnn} from a weights file's parsed contents and loads its parameters. */
export function classifierFromCheckpoint(ckpt: Checkpoint, path: string): ScoringCnn {
  const raw = ckpt.metadata.architecture;
  let arch: CnnArchitecture;
  try {
    arch = { ...DEFAULT_ARCHITECTURE, ...JSON.parse(raw) };
  } catch {
    throw new Error(`${path}: metadata 'architecture' is missing or not JSON (${raw})`);
  }
  const model = new ScoringCnn(arch);
  try {
    loadInto(model, ckpt);
  } catch (e) {
    model.dispose();
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  return model.eval();
}

/** Where committed weights live: `weights/<dataset>_classifier.safetensors` in the repository. */
export function weightsUrl(dataset: ClassifierDataset): URL {
  return new URL(`../../weights/${dataset}_classifier.safetensors`, import.meta.url);
}
