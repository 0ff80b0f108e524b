/**
 * Convolution layers on NCHW tensors: `Conv2d`, `ConvTranspose2d` and `MaxPool2d` (the ops are in
 * tensor/conv_ops.ts). Weights follow PyTorch's layouts and default initialization (Kaiming
 * uniform with bound `1/sqrt(fanIn)` for weights and biases); `init: "normal"` gives the DCGAN
 * initialization N(0, 0.02) with zero biases.
 * @module
 */

import type { Generator } from "../gpu/random.ts";
import {
  conv2d,
  type Conv2dOptions,
  convTranspose2d,
  type ConvTranspose2dOptions,
  maxPool2d,
  type Padding,
  type Size2,
} from "../tensor/conv_ops.ts";
import { rand } from "../tensor/functional.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { fans, kaimingUniform, normal, zerosInit } from "./init.ts";
import { Module } from "./module.ts";

/** How a convolution layer initializes its parameters. */
export type ConvInit = "kaimingUniform" | "normal";

/** Options shared by {@link Conv2d} and {@link ConvTranspose2d}. */
export interface ConvLayerOptions {
  /** Learn a per-channel bias (default true). */
  bias?: boolean;
  /**
   * Initialization: `"kaimingUniform"` (default, PyTorch's: weights and biases
   * U(-1/sqrt(fanIn), 1/sqrt(fanIn))) or `"normal"` (DCGAN: weights N(0, `std`), zero biases).
   */
  init?: ConvInit;
  /** Standard deviation of the `"normal"` initialization (default 0.02). */
  std?: number;
  /** Random generator for the initialization (the default generator when omitted). */
  gen?: Generator;
}

/** Options of {@link Conv2d}. */
export interface Conv2dLayerOptions extends Conv2dOptions, ConvLayerOptions {}

/** Options of {@link ConvTranspose2d}. */
export interface ConvTranspose2dLayerOptions extends ConvTranspose2dOptions, ConvLayerOptions {}

function kernelPair(k: Size2): [number, number] {
  return typeof k === "number" ? [k, k] : [k[0], k[1]];
}

/** Weight and optional bias drawn per {@link ConvLayerOptions}; fans follow the weight shape. */
function initParams(
  shape: number[],
  biasSize: number,
  opts: ConvLayerOptions,
): { weight: Tensor; bias: Tensor | null } {
  const withBias = opts.bias ?? true;
  if ((opts.init ?? "kaimingUniform") === "normal") {
    return {
      weight: normal(shape, opts.std ?? 0.02, 0, opts.gen),
      bias: withBias ? zerosInit([biasSize]) : null,
    };
  }
  // PyTorch computes fanIn from weight dim 1 for both conv and transposed conv.
  const bound = 1 / Math.sqrt(fans(shape).fanIn);
  return {
    weight: kaimingUniform(shape, opts.gen),
    bias: withBias ? rand([biasSize], -bound, bound, opts.gen) : null,
  };
}

/** 2-D convolution layer: weight [Cout, Cin, kh, kw], bias [Cout]. */
export class Conv2d extends Module {
  /** Convolution kernel, [outChannels, inChannels, kh, kw]. */
  readonly weight: Tensor;
  /** Per-output-channel bias, or null. */
  readonly bias: Tensor | null;
  /** Stride, padding and dilation. */
  readonly options: Conv2dOptions;

  /**
   * Creates the layer and initializes its parameters.
   * @param inChannels input channels.
   * @param outChannels output channels.
   * @param kernel kernel size (`k` or `[kh, kw]`).
   * @param opts stride, padding (a number, `[ph, pw]`, `"same"` or `"valid"`), dilation, bias, init.
   */
  constructor(
    inChannels: number,
    outChannels: number,
    kernel: Size2,
    opts: Conv2dLayerOptions = {},
  ) {
    super();
    const [kh, kw] = kernelPair(kernel);
    const { weight, bias } = initParams([outChannels, inChannels, kh, kw], outChannels, opts);
    this.weight = this.param("weight", weight);
    this.bias = bias ? this.param("bias", bias) : null;
    this.options = { stride: opts.stride, padding: opts.padding, dilation: opts.dilation };
  }

  /** Convolves `x` [N, inChannels, H, W] into [N, outChannels, OH, OW]. */
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, this.options);
  }
}

/** 2-D transposed convolution layer: weight [Cin, Cout, kh, kw], bias [Cout]. */
export class ConvTranspose2d extends Module {
  /** Kernel, [inChannels, outChannels, kh, kw] (PyTorch's layout). */
  readonly weight: Tensor;
  /** Per-output-channel bias, or null. */
  readonly bias: Tensor | null;
  /** Stride, padding, output padding and dilation. */
  readonly options: ConvTranspose2dOptions;

  /**
   * Creates the layer and initializes its parameters.
   * @param inChannels input channels.
   * @param outChannels output channels.
   * @param kernel kernel size (`k` or `[kh, kw]`).
   * @param opts stride, padding (a number, `[ph, pw]`, `"same"` or `"valid"`), output padding,
   *   dilation, bias, init.
   */
  constructor(
    inChannels: number,
    outChannels: number,
    kernel: Size2,
    opts: ConvTranspose2dLayerOptions = {},
  ) {
    super();
    const [kh, kw] = kernelPair(kernel);
    const { weight, bias } = initParams([inChannels, outChannels, kh, kw], outChannels, opts);
    this.weight = this.param("weight", weight);
    this.bias = bias ? this.param("bias", bias) : null;
    this.options = {
      stride: opts.stride,
      padding: opts.padding,
      outputPadding: opts.outputPadding,
      dilation: opts.dilation,
    };
  }

  /** Maps `x` [N, inChannels, H, W] to [N, outChannels, OH, OW]. */
  forward(x: Tensor): Tensor {
    return convTranspose2d(x, this.weight, this.bias, this.options);
  }
}

/** 2-D max pooling layer (no parameters). */
export class MaxPool2d extends Module {
  /** Window size. */
  readonly kernel: Size2;
  /** Stride (defaults to the window size). */
  readonly stride: Size2;
  /** Padding (padded positions never win). */
  readonly padding: Padding;

  /**
   * Creates the layer.
   * @param kernel window size (`k` or `[kh, kw]`).
   * @param stride stride (default: the window size).
   * @param padding padding, at most half the window (default 0).
   */
  constructor(kernel: Size2, stride?: Size2, padding: Padding = 0) {
    super();
    this.kernel = kernel;
    this.stride = stride ?? kernel;
    this.padding = padding;
  }

  /** Pools `x` [N, C, H, W]. */
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernel, this.stride, this.padding);
  }
}
