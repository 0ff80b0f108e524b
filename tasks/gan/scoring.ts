/**
 * Scoring GAN samples with the inception score (IS, Salimans et al. 2016) computed on the GPU,
 * with an MNIST (or Fashion-MNIST) classifier as the "inception network" (paper section 5.1.2,
 * following Deng et al. 2017).
 *
 * For class probabilities p(y|x) of N samples cut into S equal splits, split s scores
 * `IS_s = exp(mean_{x in s} KL(p(y|x) || p_s(y)))` with `p_s(y)` the mean of p(y|x) over the split;
 * the result is the mean and the (population) standard deviation over splits, as the authors'
 * `inception_score_mnist.py` (OpenAI improved-gan code). Everything stays on the GPU: the caller
 * reads the two numbers back whenever it reads its other metrics.
 *
 * The classifier is anything implementing {@link ImageClassifier}: the committed scoring CNN
 * (tasks/classifier/inception_score.ts `loadScoringClassifier`) or, in tests, a tiny untrained network
 * ({@link TinyClassifier}). tasks/classifier/inception_score.ts computes the same score with a host-side
 * finish (one readback); this GPU version exists so the IS can feed controller features and
 * rewards without any readback. Tests check that the two agree.
 * @module
 */

import { Generator } from "../../gpu/random.ts";
import { Conv2d } from "../../nn/conv.ts";
import { linear } from "../../nn/layers.ts";
import { normal, zerosInit } from "../../nn/init.ts";
import { Module } from "../../nn/module.ts";
import * as ops from "../../tensor/ops.ts";
import { noGrad, type Tensor, tidy } from "../../tensor/tensor.ts";

/** Turns images into class logits: the network behind an inception score. */
export interface ImageClassifier {
  /** Display name (e.g. the weights file). */
  readonly name: string;
  /** Logits [N, classes] of images [N, 1, 28, 28] in [-1, 1] (evaluation mode, no autograd). */
  logits(images: Tensor): Tensor;
  /** Frees the classifier. */
  dispose(): void;
}

/**
 * The inception score of class logits [N, C] over `splits` equal splits (N must be a multiple):
 * a [2] tensor (mean over splits, std over splits), computed on the GPU.
 */
export function inceptionScoreOfLogits(logits: Tensor, splits: number): Tensor {
  const [n, c] = logits.shape;
  if (logits.ndim !== 2 || !(splits > 0) || n % splits !== 0 || n === 0) {
    throw new Error(
      `inceptionScoreOfLogits: need logits [N, C] with N a positive multiple of splits (${splits}), ` +
        `got ${logits.describe()}`,
    );
  }
  return noGrad(() =>
    tidy(() => {
      const logp = logits.logSoftmax(-1).reshape([splits, n / splits, c]);
      const p = logp.exp();
      const logMarginal = p.mean(1, true).add(1e-12).log();
      // KL(p(y|x) || p_s(y)) = sum_y p (log p - log p_s), averaged over the split's samples.
      const kl = p.mul(logp.sub(logMarginal)).sum(2).mean(1);
      const scores = kl.exp();
      const mean = scores.mean();
      const std = scores.sub(mean).square().mean().sqrt();
      return ops.concat([mean.reshape([1]), std.reshape([1])], 0);
    })
  );
}

/**
 * The inception score of `images` [N, 1, 28, 28] under `classifier`, classifying `chunk` images at
 * a time: a [2] tensor (mean, std over `splits`), on the GPU.
 */
export function inceptionScore(
  classifier: ImageClassifier,
  images: Tensor,
  splits: number,
  chunk = 500,
): Tensor {
  const n = images.shape[0];
  return noGrad(() =>
    tidy(() => {
      const parts: Tensor[] = [];
      for (let at = 0; at < n; at += chunk) {
        const end = Math.min(n, at + chunk);
        const x = at === 0 && end === n
          ? images
          : ops.slice(images, [at, 0, 0, 0], [end, 1, 28, 28]);
        parts.push(classifier.logits(x));
      }
      const logits = parts.length === 1 ? parts[0] : ops.concat(parts, 0);
      return inceptionScoreOfLogits(logits, splits);
    })
  );
}

// ---------------------------------------------------------------- a tiny classifier for tests

/**
 * A tiny CNN (conv 5x5 stride 2 to 4 channels, ReLU, linear to 10), randomly initialized: it
 * exercises the IS plumbing in tests without trained weights. Its scores mean nothing.
 */
export class TinyClassifier extends Module implements ImageClassifier {
  /** Display name. */
  readonly name = "tiny untrained CNN";
  /** The convolution. */
  readonly conv: Conv2d;
  /** Linear weight [10, 4*14*14]. */
  readonly weight: Tensor;
  /** Linear bias [10]. */
  readonly bias: Tensor;

  /** Initializes the network from `seed`. */
  constructor(seed: number) {
    super();
    const gen = new Generator(seed);
    this.conv = this.child(
      "conv",
      new Conv2d(1, 4, 5, { stride: 2, padding: "same", init: "normal", std: 0.3, gen }),
    );
    this.weight = this.param("weight", normal([10, 4 * 14 * 14], 0.3, 0, gen));
    this.bias = this.param("bias", zerosInit([10]));
  }

  /** Logits [N, 10]. */
  logits(images: Tensor): Tensor {
    return noGrad(() => {
      const h = this.conv.forward(images).relu();
      return linear(h.reshape([images.shape[0], 4 * 14 * 14]), this.weight, this.bias);
    });
  }
}
