/**
 * Layers: Linear, Sequential, activations (ReLU, LeakyReLU, Tanh, Sigmoid), Dropout, LayerNorm,
 * BatchNorm1d/2d and Embedding, each a {@link Module} with `forward(x)`. Each layer's math is an
 * exported function (`linear`, `dropout`, `layerNorm`, `batchNorm`, `embedding`) composed from
 * tensor ops, so gradients come from the primitive rules and the modules only hold parameters.
 * @module
 */

import type { Generator } from "../gpu/random.ts";
import { bernoulli, ones, rand, randn, tensor, zeros } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import { glorotUniform, kaimingUniform } from "./init.ts";
import { dropIndex } from "./losses.ts";
import { Module } from "./module.ts";

/** A module with a one-input `forward` (what {@link Sequential} chains). */
export type Layer = Module & { forward(x: Tensor): Tensor };

// ---------------------------------------------------------------- linear

/** `x @ weight^T + bias` for x [..., in], weight [out, in], bias [out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const y = ops.matmul(x, weight, false, true);
  return bias ? y.add(bias) : y;
}

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Whether to add a bias (default true). */
  bias?: boolean;
  /**
   * Initialization: "kaiming" (default, PyTorch's: weight and bias U(-1/sqrt(in), 1/sqrt(in))) or
   * "glorot" (Glorot/Xavier-uniform weight, zero bias, as the authors' TF code).
   */
  init?: "kaiming" | "glorot";
  /** Random generator for the initialization (default generator when omitted). */
  gen?: Generator;
}

/** A fully connected layer: `y = x @ weight^T + bias`, weight [out, in]. */
export class Linear extends Module {
  /** Input features. */
  readonly inFeatures: number;
  /** Output features. */
  readonly outFeatures: number;
  /** Weight [out, in]. */
  readonly weight: Tensor;
  /** Bias [out], or null. */
  readonly bias: Tensor | null;

  /** Creates the layer with freshly initialized parameters. */
  constructor(inFeatures: number, outFeatures: number, opts: LinearOptions = {}) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const glorot = opts.init === "glorot";
    const shape = [outFeatures, inFeatures];
    this.weight = this.param(
      "weight",
      glorot ? glorotUniform(shape, 1, opts.gen) : kaimingUniform(shape, opts.gen),
    );
    const bound = 1 / Math.sqrt(inFeatures);
    this.bias = opts.bias === false ? null : this.param(
      "bias",
      glorot ? zeros([outFeatures]) : rand([outFeatures], -bound, bound, opts.gen),
    );
  }

  /** Applies the layer to x [..., in]. */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

// ---------------------------------------------------------------- containers and activations

/** Chains layers; children are registered as "0", "1", ... (names like `0.weight`). */
export class Sequential extends Module {
  /** The layers, in order. */
  readonly layers: readonly Layer[];

  /** Creates the chain. */
  constructor(...layers: Layer[]) {
    super();
    layers.forEach((l, i) => this.child(String(i), l));
    this.layers = layers;
  }

  /** Applies each layer in turn. */
  forward(x: Tensor): Tensor {
    return this.layers.reduce((h, l) => l.forward(h), x);
  }
}

/** max(x, 0). */
export class ReLU extends Module {
  /** Applies the activation. */
  forward(x: Tensor): Tensor {
    return x.relu();
  }
}

/** Leaky ReLU with negative slope (default 0.01; DCGAN uses 0.2). */
export class LeakyReLU extends Module {
  /** Slope for x < 0. */
  readonly negativeSlope: number;

  /** Creates the activation. */
  constructor(negativeSlope = 0.01) {
    super();
    this.negativeSlope = negativeSlope;
  }

  /** Applies the activation. */
  forward(x: Tensor): Tensor {
    return x.leakyRelu(this.negativeSlope);
  }
}

/** Hyperbolic tangent. */
export class Tanh extends Module {
  /** Applies the activation. */
  forward(x: Tensor): Tensor {
    return x.tanh();
  }
}

/** Logistic sigmoid. */
export class Sigmoid extends Module {
  /** Applies the activation. */
  forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

// ---------------------------------------------------------------- dropout

/**
 * Inverted dropout: in training, zeroes each element with probability `p` (a Bernoulli mask drawn
 * from `gen`) and scales the rest by 1/(1-p); otherwise returns `x` itself.
 */
export function dropout(x: Tensor, p: number, training = true, gen?: Generator): Tensor {
  if (!(p >= 0 && p <= 1)) throw new Error(`dropout: p must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return x.mul(0);
  const mask = bernoulli(x.shape, 1 - p, gen);
  return x.mul(mask.mul(1 / (1 - p)));
}

/** Dropout layer: active in training mode, the identity in eval mode. */
export class Dropout extends Module {
  /** Probability of zeroing an element. */
  readonly p: number;
  /** Generator of the masks (the default generator when undefined). */
  readonly gen?: Generator;

  /** Creates the layer (p default 0.5). */
  constructor(p = 0.5, gen?: Generator) {
    super();
    if (!(p >= 0 && p <= 1)) throw new Error(`Dropout: p must be in [0, 1], got ${p}`);
    this.p = p;
    this.gen = gen;
  }

  /** Applies dropout in training mode; returns `x` in eval mode. */
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training, this.gen);
  }
}

// ---------------------------------------------------------------- normalization

/** `(x - mean) / sqrt(var + eps)` over `axes` (biased variance); also returns the statistics. */
function standardize(
  x: Tensor,
  axes: number[],
  eps: number,
): { y: Tensor; mean: Tensor; var: Tensor } {
  const mean = x.mean(axes, true);
  const centered = x.sub(mean);
  const v = centered.square().mean(axes, true);
  return { y: centered.mul(v.add(eps).pow(-0.5)), mean, var: v };
}

/**
 * Layer normalization over the trailing dims `normalizedShape` of x, then `* weight + bias` (each
 * of `normalizedShape`) when given.
 */
export function layerNorm(
  x: Tensor,
  normalizedShape: readonly number[],
  weight?: Tensor | null,
  bias?: Tensor | null,
  eps = 1e-5,
): Tensor {
  const k = normalizedShape.length;
  const tail = x.shape.slice(x.ndim - k);
  if (k === 0 || k > x.ndim || tail.some((d, i) => d !== normalizedShape[i])) {
    throw new Error(`layerNorm: ${x.describe()} does not end with [${normalizedShape}]`);
  }
  let y = standardize(x, normalizedShape.map((_, i) => x.ndim - k + i), eps).y;
  if (weight) y = y.mul(weight);
  if (bias) y = y.add(bias);
  return y;
}

/** Layer normalization with learnable elementwise affine parameters (ones and zeros). */
export class LayerNorm extends Module {
  /** The normalized trailing shape. */
  readonly normalizedShape: readonly number[];
  /** Added to the variance. */
  readonly eps: number;
  /** Scale (or null without affine). */
  readonly weight: Tensor | null;
  /** Shift (or null without affine). */
  readonly bias: Tensor | null;

  /** Creates the layer over trailing dims `normalizedShape`. */
  constructor(normalizedShape: number | readonly number[], eps = 1e-5, elementwiseAffine = true) {
    super();
    this.normalizedShape = typeof normalizedShape === "number"
      ? [normalizedShape]
      : [...normalizedShape];
    this.eps = eps;
    this.weight = elementwiseAffine ? this.param("weight", ones(this.normalizedShape)) : null;
    this.bias = elementwiseAffine ? this.param("bias", zeros(this.normalizedShape)) : null;
  }

  /** Normalizes x over its trailing dims. */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }
}

/** Inputs of {@link batchNorm} besides x. */
export interface BatchNormArgs {
  /** Use batch statistics (training) instead of the running ones. */
  training: boolean;
  /** Running mean [C], updated in place in training (or null: batch statistics always). */
  runningMean?: Tensor | null;
  /** Running (unbiased) variance [C], updated in place in training. */
  runningVar?: Tensor | null;
  /** Scale [C]. */
  weight?: Tensor | null;
  /** Shift [C]. */
  bias?: Tensor | null;
  /** Weight of the new batch statistic in the running average (default 0.1). */
  momentum?: number;
  /** Added to the variance (default 1e-5). */
  eps?: number;
}

/**
 * Batch normalization of x [N, C, ...] over every dim but the channel dim 1, as PyTorch: in
 * training (or without running statistics) with the batch mean and biased variance, updating the
 * running statistics in place (`r = (1 - momentum) r + momentum * s`, the variance unbiased by
 * n/(n-1)); otherwise with the running statistics.
 */
export function batchNorm(x: Tensor, a: BatchNormArgs): Tensor {
  if (x.ndim < 2) throw new Error(`batchNorm: expects [N, C, ...], got ${x.describe()}`);
  const c = x.shape[1];
  const statShape = x.shape.map((d, i) => (i === 1 ? d : 1));
  const axes = x.shape.map((_, i) => i).filter((i) => i !== 1);
  const { eps = 1e-5, momentum = 0.1, runningMean: rm, runningVar: rv } = a;
  let y: Tensor;
  if (a.training || !rm || !rv) {
    const n = x.size / c;
    if (a.training && n <= 1) {
      throw new Error(
        `batchNorm: expected more than 1 value per channel when training, got ${x.describe()}`,
      );
    }
    const s = standardize(x, axes, eps);
    y = s.y;
    if (a.training && rm && rv) {
      noGrad(() =>
        tidy(() => {
          ops.assign_(rm, rm.mul(1 - momentum).add(s.mean.reshape([c]).mul(momentum)));
          ops.assign_(
            rv,
            rv.mul(1 - momentum).add(s.var.reshape([c]).mul((momentum * n) / (n - 1))),
          );
        })
      );
    }
  } else {
    y = x.sub(rm.reshape(statShape)).mul(rv.reshape(statShape).add(eps).pow(-0.5));
  }
  if (a.weight) y = y.mul(a.weight.reshape(statShape));
  if (a.bias) y = y.add(a.bias.reshape(statShape));
  return y;
}

/** Options of the batch-norm layers. */
export interface BatchNormOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Running-average momentum (default 0.1). */
  momentum?: number;
  /** Learnable scale and shift (default true). */
  affine?: boolean;
  /** Keep running statistics for eval mode (default true). */
  trackRunningStats?: boolean;
}

/**
 * Batch normalization over channels (dim 1). Running mean and variance are buffers (saved in
 * checkpoints, not trained). Use {@link BatchNorm1d} or {@link BatchNorm2d}.
 */
export class BatchNorm extends Module {
  /** Channels. */
  readonly numFeatures: number;
  /** Added to the variance. */
  readonly eps: number;
  /** Running-average momentum. */
  readonly momentum: number;
  /** Scale [C] (or null). */
  readonly weight: Tensor | null;
  /** Shift [C] (or null). */
  readonly bias: Tensor | null;
  /** Running mean [C] (buffer; or null). */
  readonly runningMean: Tensor | null;
  /** Running unbiased variance [C] (buffer; or null). */
  readonly runningVar: Tensor | null;
  readonly #layer: string;
  readonly #ranks: number[];

  /** Creates the layer for inputs of rank in `ranks` (the subclasses pass their own). */
  constructor(layer: string, ranks: number[], numFeatures: number, opts: BatchNormOptions = {}) {
    super();
    this.#layer = layer;
    this.#ranks = ranks;
    this.numFeatures = numFeatures;
    this.eps = opts.eps ?? 1e-5;
    this.momentum = opts.momentum ?? 0.1;
    const affine = opts.affine ?? true;
    const track = opts.trackRunningStats ?? true;
    this.weight = affine ? this.param("weight", ones([numFeatures])) : null;
    this.bias = affine ? this.param("bias", zeros([numFeatures])) : null;
    this.runningMean = track ? this.buffer("runningMean", zeros([numFeatures])) : null;
    this.runningVar = track ? this.buffer("runningVar", ones([numFeatures])) : null;
  }

  /** Normalizes x [N, C, ...] (batch statistics in training mode, running ones in eval). */
  forward(x: Tensor): Tensor {
    if (!this.#ranks.includes(x.ndim) || x.shape[1] !== this.numFeatures) {
      const ranks = this.#ranks.map((r) => `${r}-D`).join(" or ");
      throw new Error(
        `${this.#layer}(${this.numFeatures}): expects ${ranks} input with ${this.numFeatures} ` +
          `channels in dim 1, got ${x.describe()}`,
      );
    }
    return batchNorm(x, {
      training: this.training,
      runningMean: this.runningMean,
      runningVar: this.runningVar,
      weight: this.weight,
      bias: this.bias,
      momentum: this.momentum,
      eps: this.eps,
    });
  }
}

/** Batch normalization of [N, C] or [N, C, L] inputs. */
export class BatchNorm1d extends BatchNorm {
  /** Creates the layer over `numFeatures` channels. */
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super("BatchNorm1d", [2, 3], numFeatures, opts);
  }
}

/** Batch normalization of NCHW inputs [N, C, H, W]. */
export class BatchNorm2d extends BatchNorm {
  /** Creates the layer over `numFeatures` channels. */
  constructor(numFeatures: number, opts: BatchNormOptions = {}) {
    super("BatchNorm2d", [4], numFeatures, opts);
  }
}

// ---------------------------------------------------------------- embedding

/**
 * Rows of `weight` [num, dim] picked by i32 `idx` (any shape): [...idx.shape, dim]. Indices equal
 * to `paddingIdx` read zeros and pass no gradient (so the padding row is never trained; unlike
 * PyTorch, a non-zero padding row is not read either).
 */
export function embedding(idx: Tensor, weight: Tensor, paddingIdx?: number): Tensor {
  const rows = paddingIdx === undefined ? idx : dropIndex(idx, paddingIdx, weight.shape[0]);
  return ops.gatherRows(weight, rows);
}

/** Options of {@link Embedding}. */
export interface EmbeddingOptions {
  /** An index whose embedding is zero and never trained (negative counts from the end). */
  paddingIdx?: number;
  /** Random generator for the N(0, 1) initialization. */
  gen?: Generator;
}

/** A lookup table of `num` vectors of size `dim`, initialized N(0, 1) as PyTorch. */
export class Embedding extends Module {
  /** Table size. */
  readonly num: number;
  /** Vector size. */
  readonly dim: number;
  /** The padding index (normalized to [0, num)), or undefined. */
  readonly paddingIdx?: number;
  /** The table [num, dim]. */
  readonly weight: Tensor;

  /** Creates the table (the padding row zeroed). */
  constructor(num: number, dim: number, opts: EmbeddingOptions = {}) {
    super();
    this.num = num;
    this.dim = dim;
    const pad = opts.paddingIdx;
    if (pad !== undefined && (!Number.isInteger(pad) || pad >= num || pad < -num)) {
      throw new Error(`Embedding: paddingIdx ${pad} is outside [-${num}, ${num})`);
    }
    this.paddingIdx = pad === undefined ? undefined : pad < 0 ? pad + num : pad;
    let w = randn([num, dim], 0, 1, opts.gen);
    if (this.paddingIdx !== undefined) {
      const mask = new Float32Array(num).fill(1);
      mask[this.paddingIdx] = 0;
      const m = tensor(mask, [num, 1]);
      const masked = ops.where(m, w, m); // +0 in the padding row (w * 0 could give -0)
      w.dispose();
      m.dispose();
      w = masked;
    }
    this.weight = this.param("weight", w);
  }

  /** Looks up i32 indices of any shape: [...idx.shape, dim]. */
  forward(idx: Tensor): Tensor {
    return embedding(idx, this.weight, this.paddingIdx);
  }
}
