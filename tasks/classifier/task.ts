/**
 * The classifier task: training the scoring CNN (tasks/classifier/model.ts), the "inception
 * network" of the GAN's inception score (tasks/classifier/inception_score.ts). Nothing schedules
 * it (it is not a `ScheduleTask`): this file holds the evaluation and the trainer (Adam with a
 * decaying learning rate; checkpoints of model, optimizer, batch iterator, random generators and
 * step). Datasets and augmentation: tasks/classifier/data.ts; config schema:
 * tasks/classifier/config.ts; the `train`/`eval classifier` commands: tasks/classifier/commands.ts.
 *
 * Images are NCHW `[N, 1, 28, 28]` in [-1, 1] (the GAN's tanh range).
 * @module
 */

import { hash32 } from "../../nn/host_random.ts";
import { Generator } from "../../gpu/random.ts";
import { loadCheckpoint, loadInto, saveCheckpoint, stateDict } from "../../nn/checkpoint.ts";
import { BatchIterator } from "../../nn/data/batches.ts";
import type { ImageDataset } from "../../nn/data/mnist.ts";
import { crossEntropy } from "../../nn/losses.ts";
import { FlatParams } from "../../nn/module.ts";
import { Adam, type LrSchedule } from "../../nn/optim.ts";
import { compare, tensor } from "../../tensor/functional.ts";
import { accumulate_, fill_ } from "../../tensor/ops.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { backend } from "../../gpu/backend.ts";
import { InceptionScoreAccumulator } from "./inception_score.ts";
import { ScoringCnn } from "./model.ts";
import { architectureOf, type ClassifierConfig, lrScheduleOf } from "./config.ts";
import { augmentImages } from "./data.ts";

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
