/**
 * The scoring classifier: a small CNN ({@link ScoringCnn}) trained on MNIST or Fashion-MNIST
 * with this library, the "inception network" of the GAN's inception score
 * (tasks/classifier/inception_score.ts), and its weights files (`weights/*_classifier.safetensors`).
 * @module
 */

import type { Generator } from "../../gpu/random.ts";
import { type Checkpoint, loadInto, saveCheckpoint, stateDict } from "../../nn/checkpoint.ts";
import { Conv2d } from "../../nn/conv.ts";
import { Dropout, Linear } from "../../nn/layers.ts";
import { Module } from "../../nn/module.ts";
import { maxPool2d } from "../../tensor/conv_ops.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import type { ClassifierDataset } from "./data.ts";

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
