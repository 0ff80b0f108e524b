/**
 * The classifier task's datasets (MNIST, Fashion-MNIST; nn/data/mnist.ts) and the host-side
 * augmentation (random shifts; horizontal flips for Fashion-MNIST). Images are NCHW
 * `[N, 1, 28, 28]` in [-1, 1] (the GAN's tanh range).
 * @module
 */

import { mulberry32 } from "../../nn/host_random.ts";
import { type ImageDataset, loadFashionMnist, loadMnist, type Split } from "../../nn/data/mnist.ts";
import { ConfigError } from "../../run/config.ts";

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
