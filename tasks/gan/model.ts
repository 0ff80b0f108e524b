/**
 * The DCGAN of the AutoLoss GAN experiments (paper section 5.1.2; the authors' `models/gan.py`),
 * parameterized so that the same code builds the authors' network, a batch-norm variant, the
 * narrower network of the `quick` preset, and the random architectures of appendix A.5.
 *
 * With base widths `g = gFilters` and `d = dFilters` (the authors' `dim_c`, 64):
 *
 * - G: z [N, zDim] -> linear to 7x7x(2g), act -> deconv 5x5 stride 2 to 14x14xg, act ->
 *   deconv 5x5 stride 2 to 28x28x1, tanh. Output [N, 1, 28, 28] in [-1, 1].
 * - D: x [N, 1, 28, 28] -> conv 5x5 stride 2 to 14x14xd, act -> conv 5x5 stride 2 to 7x7x(2d),
 *   act -> linear to 1 logit. Output [N, 1].
 *
 * All convolutions use TensorFlow's "same" padding, as the authors' TF code. Weights are drawn
 * from N(0, 0.02) and biases are zero. The authors' network is {@link AUTHORS_DCGAN}: ReLU in G,
 * leaky ReLU (slope 0.2) in D, no batch norm; it has 1,015,553 (G) and 212,865 (D) parameters.
 *
 * Batch norm (when enabled) follows the authors' placement: in G after the linear layer and after
 * the first deconvolution, in D after the second convolution. One deliberate difference: the
 * authors normalize the linear output per feature (7*7*2g statistics); here it is normalized per
 * channel after the reshape to [N, 2g, 7, 7], the usual DCGAN form.
 * @module
 */

import { mulberry32 } from "../../nn/host_random.ts";
import { Generator } from "../../gpu/random.ts";
import { Conv2d, ConvTranspose2d } from "../../nn/conv.ts";
import { normal, zerosInit } from "../../nn/init.ts";
import { BatchNorm2d, linear } from "../../nn/layers.ts";
import { FlatParams, Module } from "../../nn/module.ts";
import type { Tensor } from "../../tensor/tensor.ts";

/** A hidden-layer nonlinearity of the DCGAN. */
export type GanActivation = "relu" | "leaky_relu";

/** A DCGAN architecture (plain JSON, saved in run configs and transfer reports). */
export interface DcganArch {
  /** Noise dimension (authors: 128). */
  zDim: number;
  /** G's base width g: the linear layer outputs 2g channels, the first deconvolution g. */
  gFilters: number;
  /** D's base width d: the first convolution outputs d channels, the second 2d. */
  dFilters: number;
  /** Batch norm in G (after the linear layer and the first deconvolution). */
  gBatchNorm: boolean;
  /** Batch norm in D (after the second convolution). */
  dBatchNorm: boolean;
  /** G's hidden nonlinearity (authors: ReLU). */
  gActivation: GanActivation;
  /** D's hidden nonlinearity (authors: leaky ReLU, slope 0.2). */
  dActivation: GanActivation;
}

/** The authors' MNIST DCGAN (safpla/AutoLossRelease `config/gan`): no batch norm, z = 128. */
export const AUTHORS_DCGAN: DcganArch = {
  zDim: 128,
  gFilters: 64,
  dFilters: 64,
  gBatchNorm: false,
  dBatchNorm: false,
  gActivation: "relu",
  dActivation: "leaky_relu",
};

/** Slope of the leaky ReLU (TF's `tf.nn.leaky_relu` default, as the authors). */
export const LEAKY_SLOPE = 0.2;

/** Problems with `arch` (empty when valid). */
export function archProblems(arch: DcganArch): string[] {
  const out: string[] = [];
  const posInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;
  for (const k of ["zDim", "gFilters", "dFilters"] as const) {
    if (!posInt(arch[k])) out.push(`${k} must be a positive integer, got ${arch[k]}`);
  }
  for (const k of ["gActivation", "dActivation"] as const) {
    if (arch[k] !== "relu" && arch[k] !== "leaky_relu") {
      out.push(`${k} must be relu or leaky_relu, got '${arch[k]}'`);
    }
  }
  for (const k of ["gBatchNorm", "dBatchNorm"] as const) {
    if (typeof arch[k] !== "boolean") out.push(`${k} must be true or false`);
  }
  return out;
}

/** A one-line description, e.g. `G64 D64 z128 relu/leaky_relu`. */
export function describeArch(arch: DcganArch): string {
  const bn = (on: boolean) => (on ? "+bn" : "");
  return `G${arch.gFilters}${bn(arch.gBatchNorm)} D${arch.dFilters}${bn(arch.dBatchNorm)} ` +
    `z${arch.zDim} ${arch.gActivation}/${arch.dActivation}`;
}

function activate(x: Tensor, act: GanActivation): Tensor {
  return act === "relu" ? x.relu() : x.leakyRelu(LEAKY_SLOPE);
}

/** A fully connected layer `x W^T + b` with the DCGAN initialization (W ~ N(0, 0.02), b = 0). */
export class DcganLinear extends Module {
  /** Weight [out, in]. */
  readonly weight: Tensor;
  /** Bias [out]. */
  readonly bias: Tensor;

  /** Creates the layer, drawing the weight from `gen`. */
  constructor(inFeatures: number, outFeatures: number, gen: Generator) {
    super();
    this.weight = this.param("weight", normal([outFeatures, inFeatures], 0.02, 0, gen));
    this.bias = this.param("bias", zerosInit([outFeatures]));
  }

  /** Applies the layer to x [N, in]. */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/** The generator: z [N, zDim] to images [N, 1, 28, 28] in [-1, 1]. */
export class DcganGenerator extends Module {
  /** The architecture. */
  readonly arch: DcganArch;
  /** z -> 7*7*2g. */
  readonly fc: DcganLinear;
  /** Batch norm over the 2g channels at 7x7 (or null). */
  readonly bn1: BatchNorm2d | null;
  /** 7x7x2g -> 14x14xg. */
  readonly up1: ConvTranspose2d;
  /** Batch norm over the g channels at 14x14 (or null). */
  readonly bn2: BatchNorm2d | null;
  /** 14x14xg -> 28x28x1. */
  readonly up2: ConvTranspose2d;

  /** Builds and initializes G, drawing the weights from `gen`. */
  constructor(arch: DcganArch, gen: Generator) {
    super();
    this.arch = arch;
    const g = arch.gFilters;
    const conv = { stride: 2, padding: "same" as const, init: "normal" as const, gen };
    this.fc = this.child("fc", new DcganLinear(arch.zDim, 7 * 7 * 2 * g, gen));
    this.bn1 = arch.gBatchNorm ? this.child("bn1", new BatchNorm2d(2 * g)) : null;
    this.up1 = this.child("up1", new ConvTranspose2d(2 * g, g, 5, conv));
    this.bn2 = arch.gBatchNorm ? this.child("bn2", new BatchNorm2d(g)) : null;
    this.up2 = this.child("up2", new ConvTranspose2d(g, 1, 5, conv));
  }

  /** Maps z [N, zDim] to images [N, 1, 28, 28]. */
  forward(z: Tensor): Tensor {
    const g = this.arch.gFilters;
    let h = this.fc.forward(z).reshape([z.shape[0], 2 * g, 7, 7]);
    if (this.bn1) h = this.bn1.forward(h);
    h = this.up1.forward(activate(h, this.arch.gActivation));
    if (this.bn2) h = this.bn2.forward(h);
    return this.up2.forward(activate(h, this.arch.gActivation)).tanh();
  }
}

/** The discriminator: images [N, 1, 28, 28] to logits [N, 1] (real is positive). */
export class DcganDiscriminator extends Module {
  /** The architecture. */
  readonly arch: DcganArch;
  /** 28x28x1 -> 14x14xd. */
  readonly conv1: Conv2d;
  /** 14x14xd -> 7x7x2d. */
  readonly conv2: Conv2d;
  /** Batch norm over the 2d channels at 7x7 (or null). */
  readonly bn2: BatchNorm2d | null;
  /** 7*7*2d -> 1. */
  readonly fc: DcganLinear;

  /** Builds and initializes D, drawing the weights from `gen`. */
  constructor(arch: DcganArch, gen: Generator) {
    super();
    this.arch = arch;
    const d = arch.dFilters;
    const conv = { stride: 2, padding: "same" as const, init: "normal" as const, gen };
    this.conv1 = this.child("conv1", new Conv2d(1, d, 5, conv));
    this.conv2 = this.child("conv2", new Conv2d(d, 2 * d, 5, conv));
    this.bn2 = arch.dBatchNorm ? this.child("bn2", new BatchNorm2d(2 * d)) : null;
    this.fc = this.child("fc", new DcganLinear(7 * 7 * 2 * d, 1, gen));
  }

  /** Maps images [N, 1, 28, 28] to logits [N, 1]. */
  forward(x: Tensor): Tensor {
    const act = this.arch.dActivation;
    let h = this.conv2.forward(activate(this.conv1.forward(x), act));
    if (this.bn2) h = this.bn2.forward(h);
    h = activate(h, act);
    return this.fc.forward(h.reshape([x.shape[0], 7 * 7 * 2 * this.arch.dFilters]));
  }
}

/** G and D together, with their parameters packed into one {@link FlatParams} (groups G, D). */
export class Dcgan {
  /** The architecture. */
  readonly arch: DcganArch;
  /** The generator (parameters named `gen.*`). */
  readonly gen: DcganGenerator;
  /** The discriminator (parameters named `disc.*`). */
  readonly disc: DcganDiscriminator;
  /** All parameters: group "G" (`gen.*`) and group "D" (`disc.*`). */
  readonly flat: FlatParams;

  /** Builds both networks, initialized from `seed` (G first, then D, from one stream). */
  constructor(arch: DcganArch, seed: number) {
    const problems = archProblems(arch);
    if (problems.length) throw new Error(`invalid DCGAN architecture: ${problems.join("; ")}`);
    this.arch = { ...arch };
    const gen = new Generator(seed);
    this.gen = new DcganGenerator(this.arch, gen);
    this.disc = new DcganDiscriminator(this.arch, gen);
    this.flat = new FlatParams(
      [...this.gen.namedParameters("gen."), ...this.disc.namedParameters("disc.")],
      { G: ["gen."], D: ["disc."] },
    );
  }

  /** Parameter counts of G and D (without alignment padding). */
  counts(): { G: number; D: number } {
    return { G: this.gen.numParameters(), D: this.disc.numParameters() };
  }

  /** Batch-norm running statistics by dotted name (`gen.bn1.runningMean`, ...). */
  buffers(): [string, Tensor][] {
    return [...this.gen.namedBuffers("gen."), ...this.disc.namedBuffers("disc.")];
  }

  /** Frees the parameters, gradients and buffers. */
  dispose(): void {
    this.flat.dispose();
    for (const [, t] of this.buffers()) t.dispose();
  }
}

// ---------------------------------------------------------------- appendix A.5

/** The choices of appendix A.5 (and the dev repo's `arch_search_trainer.py`). */
export const ARCH_SPACE: {
  readonly filters: readonly number[];
  readonly zDims: readonly number[];
  readonly activations: readonly GanActivation[];
} = {
  filters: [32, 64, 128],
  zDims: [64, 128],
  activations: ["relu", "leaky_relu"],
};

/**
 * A random DCGAN architecture as in appendix A.5, drawn from `seed`: G's and D's base widths each
 * from `filters` (the paper: {32, 64, 128}), dim(z) from {64, 128}, batch norm on or off for G and
 * for D, and ReLU or leaky ReLU for G and for D, all independently (as the dev repo's sampler; the
 * paper's "24 architectures" counts the shared choices once).
 */
export function sampleArch(
  seed: number,
  filters: readonly number[] = ARCH_SPACE.filters,
): DcganArch {
  const next = mulberry32(seed ^ 0x5a17a5c3);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)];
  return {
    gFilters: pick(filters),
    dFilters: pick(filters),
    zDim: pick(ARCH_SPACE.zDims),
    gBatchNorm: next() < 0.5,
    dBatchNorm: next() < 0.5,
    gActivation: pick(ARCH_SPACE.activations),
    dActivation: pick(ARCH_SPACE.activations),
  };
}

/** `count` architectures from {@link sampleArch}, seeds `seed`, `seed + 1`, ... */
export function sampleArchs(
  count: number,
  seed: number,
  filters: readonly number[] = ARCH_SPACE.filters,
): DcganArch[] {
  return Array.from({ length: count }, (_, i) => sampleArch(seed + i, filters));
}
