/**
 * Learned controllers: a small network from features [N, K] to action logits [N, |A|] with a
 * softmax temperature c, `pi(a | x) = softmax(net(normalize(x)) / c)`.
 *
 * - {@link MlpController}: the authors' `K -> 16 (leaky-ReLU) -> |A|`, Xavier-uniform weights,
 *   zero biases, c = 2 (regression, classification) or 1 (GAN).
 * - {@link LinearController}: `K -> |A|` (the paper's GAN controller).
 * - {@link PolicyController}: the general form (any hidden sizes, tanh/ReLU/leaky-ReLU, Xavier or
 *   orthogonal init), also used as the PPO actor.
 *
 * `act()` samples on the GPU with `categorical` from the episode's seeded generator (each member
 * from its own seed when `ctx.memberSeeds` is given), or takes the argmax in greedy mode; it
 * never reads anything back. `logProb()` and `entropy()` serve the learners, over any batch.
 *
 * Controllers do not own an optimizer: a trainer packs their parameters into its own
 * `FlatParams` (which rebinds them), so a controller is trained by one trainer at a time.
 * @module
 */

import { Generator } from "../gpu/random.ts";
import { orthogonal } from "../nn/init.ts";
import { Linear } from "../nn/layers.ts";
import { Module } from "../nn/module.ts";
import * as ops from "../tensor/ops.ts";
import { noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import { FeatureNormalizer, type FeatureSpec, type NormalizationSpec } from "./normalization.ts";
import type { ActContext, Controller } from "./task.ts";

/** Hidden-layer nonlinearity. */
export type Activation = "leaky_relu" | "tanh" | "relu";

/** Weight initialization of a {@link MlpNet}. */
export type InitScheme = "glorot" | "orthogonal";

/** A controller network's shape: what a controller file stores to rebuild it. */
export interface ControllerArchitecture {
  /** "linear" (no hidden layer) or "mlp". */
  kind: "linear" | "mlp";
  /** K: features in. */
  inputs: number;
  /** |A|: actions out. */
  actions: number;
  /** Hidden layer sizes (empty for linear). */
  hidden: number[];
  /** Hidden nonlinearity. */
  activation: Activation;
  /** Negative slope of leaky ReLU (TF's `tf.nn.leaky_relu` default 0.2, as the authors). */
  negativeSlope?: number;
}

/** Options of {@link MlpNet}. */
export interface MlpNetOptions {
  /** Inputs. */
  inputs: number;
  /** Outputs. */
  outputs: number;
  /** Hidden layer sizes (default none). */
  hidden?: readonly number[];
  /** Hidden nonlinearity (default leaky_relu). */
  activation?: Activation;
  /** Leaky-ReLU slope (default 0.2). */
  negativeSlope?: number;
  /** "glorot" (Xavier-uniform, zero bias; the authors) or "orthogonal" (zero bias; CleanRL). */
  init?: InitScheme;
  /** Orthogonal gain of hidden layers (default sqrt 2). */
  hiddenGain?: number;
  /** Orthogonal gain of the output layer (CleanRL: 0.01 policy head, 1.0 value head). */
  headGain?: number;
  /** Seed of the initialization (default 0). */
  seed?: number;
}

/** A multilayer perceptron: Linear layers with a nonlinearity between them (none after the last). */
export class MlpNet extends Module {
  /** The layers, input first. */
  readonly layers: readonly Linear[];
  /** Hidden nonlinearity. */
  readonly activation: Activation;
  /** Leaky-ReLU slope. */
  readonly negativeSlope: number;

  /** Builds and initializes the network (biases zero). */
  constructor(opts: MlpNetOptions) {
    super();
    const sizes = [opts.inputs, ...(opts.hidden ?? []), opts.outputs];
    this.activation = opts.activation ?? "leaky_relu";
    this.negativeSlope = opts.negativeSlope ?? 0.2;
    const seed = opts.seed ?? 0;
    const gen = new Generator(seed);
    const layers: Linear[] = [];
    for (let i = 0; i + 1 < sizes.length; i++) {
      const shape = [sizes[i + 1], sizes[i]];
      const last = i + 2 === sizes.length;
      const layer = new Linear(sizes[i], sizes[i + 1], { init: "glorot", gen });
      if (opts.init === "orthogonal") {
        const gain = last ? opts.headGain ?? 1 : opts.hiddenGain ?? Math.SQRT2;
        const w = orthogonal(shape, gain, seed * 7919 + i);
        ops.assign_(layer.weight, w);
        w.dispose();
      }
      layers.push(this.child(String(i), layer));
    }
    this.layers = layers;
  }

  /** Applies the network to x [..., inputs]. */
  forward(x: Tensor): Tensor {
    let h = x;
    this.layers.forEach((layer, i) => {
      h = layer.forward(h);
      if (i + 1 < this.layers.length) {
        h = this.activation === "tanh"
          ? h.tanh()
          : this.activation === "relu"
          ? h.relu()
          : h.leakyRelu(this.negativeSlope);
      }
    });
    return h;
  }
}

/** Options of {@link PolicyController}. */
export interface PolicyControllerOptions {
  /** The network shape. */
  architecture: ControllerArchitecture;
  /** Softmax temperature c (default 2, the authors' regression/classification value). */
  temperature?: number;
  /** Initialization (default glorot). */
  init?: InitScheme;
  /** Orthogonal gain of the output layer (default 0.01, CleanRL's policy head). */
  headGain?: number;
  /** Seed of the initialization (default 0). */
  seed?: number;
  /** Feature normalization applied to the inputs (default none). */
  normalization?: NormalizationSpec;
  /** Names of the K features it reads (saved in controller files; optional). */
  featureNames?: readonly string[];
  /** Display name (default the architecture kind). */
  name?: string;
}

/** A learned stochastic policy over the action set, usable as a {@link Controller}. */
export class PolicyController extends Module implements Controller {
  /** Display name. */
  readonly name: string;
  /** The network shape. */
  readonly architecture: ControllerArchitecture;
  /** Softmax temperature c. */
  readonly temperature: number;
  /** Input normalization (owned; saved with the controller). */
  readonly normalizer: FeatureNormalizer;
  /** The network. */
  readonly net: MlpNet;
  /** Feature names, when known. */
  featureNames?: readonly string[];

  /** Builds the network and its normalizer. */
  constructor(opts: PolicyControllerOptions) {
    super();
    const a = opts.architecture;
    if (!(a.inputs > 0) || !(a.actions > 0) || a.hidden.some((h) => !(h > 0))) {
      throw new Error(
        `PolicyController: invalid architecture ${JSON.stringify(a)} (sizes must be positive)`,
      );
    }
    if (opts.featureNames && opts.featureNames.length !== a.inputs) {
      throw new Error(
        `PolicyController: ${opts.featureNames.length} feature names for ${a.inputs} inputs`,
      );
    }
    this.architecture = { ...a, hidden: [...a.hidden] };
    this.name = opts.name ?? a.kind;
    this.temperature = opts.temperature ?? 2;
    if (!(this.temperature > 0)) throw new Error("PolicyController: temperature must be > 0");
    this.featureNames = opts.featureNames;
    this.normalizer = new FeatureNormalizer(opts.normalization ?? { kind: "none" }, a.inputs);
    this.net = this.child(
      "net",
      new MlpNet({
        inputs: a.inputs,
        outputs: a.actions,
        hidden: a.hidden,
        activation: a.activation,
        negativeSlope: a.negativeSlope,
        init: opts.init,
        headGain: opts.headGain ?? 0.01,
        seed: opts.seed,
      }),
    );
  }

  /** Tempered logits `net(normalize(x)) / c` for features [N, K]: [N, |A|]. */
  logits(features: Tensor): Tensor {
    const z = this.net.forward(this.normalizer.apply(features));
    return this.temperature === 1 ? z : z.mul(1 / this.temperature);
  }

  /** `log pi(. | x)` for features [N, K]: [N, |A|]. */
  logPolicy(features: Tensor): Tensor {
    return this.logits(features).logSoftmax(-1);
  }

  /** `pi(. | x)` for features [N, K]: [N, |A|]. */
  probabilities(features: Tensor): Tensor {
    return this.logits(features).softmax(-1);
  }

  /** `log pi(a_n | x_n)` for features [N, K] and i32 actions [N]: [N] (differentiable). */
  logProb(features: Tensor, actions: Tensor): Tensor {
    return ops.pick(this.logPolicy(features), actions.reshape([actions.size]));
  }

  /** Entropy of `pi(. | x_n)` for features [N, K]: [N] (differentiable). */
  entropy(features: Tensor): Tensor {
    return entropyOf(this.logPolicy(features));
  }

  /**
   * Picks an action per row of features [P, K] on the GPU: a sample from `pi` (drawn from
   * `ctx.gen`, per member from `ctx.memberSeeds` when given), or the argmax in greedy mode; with
   * its log-probability. No autograd, no host sync.
   */
  act(features: Tensor, ctx: ActContext): { actions: Tensor; logProbs?: Tensor } {
    return noGrad(() =>
      tidy(() => {
        const logp = this.logPolicy(features);
        const actions = ctx.greedy
          ? logp.argmax(-1)
          : ops.categorical(logp.exp(), ctx.gen, ctx.memberSeeds);
        return { actions, logProbs: ops.pick(logp, actions) };
      })
    );
  }

  /** The feature spec saved with this controller (reads normalization statistics back). */
  async featureSpec(names?: readonly string[]): Promise<FeatureSpec> {
    const n = names ?? this.featureNames;
    if (!n) throw new Error(`${this.name}: feature names are unknown; pass the task's names`);
    return { names: [...n], normalization: await this.normalizer.toSpec() };
  }

  /** Frees parameters and normalization statistics. */
  override dispose(): void {
    super.dispose();
    this.normalizer.dispose();
  }
}

/** Entropy `-sum(p log p)` per row of log-probabilities [N, A]: [N]. */
export function entropyOf(logp: Tensor): Tensor {
  return logp.exp().mul(logp).sum(-1).neg();
}

/** Options of {@link MlpController} and {@link LinearController}. */
export interface ControllerOptions {
  /** K: features (or give `featureNames`). */
  inputs?: number;
  /** |A|: actions. */
  actions: number;
  /** Softmax temperature c (default 2; the authors use 1 for GANs). */
  temperature?: number;
  /** Seed of the initialization (default 0). */
  seed?: number;
  /** Feature normalization (default none). */
  normalization?: NormalizationSpec;
  /** Feature names (sets K). */
  featureNames?: readonly string[];
}

function inputsOf(opts: ControllerOptions): number {
  const k = opts.inputs ?? opts.featureNames?.length;
  if (k === undefined) throw new Error("controller: give `inputs` or `featureNames`");
  return k;
}

/**
 * The authors' controller: `K -> hidden (leaky-ReLU, slope 0.2) -> |A|`, Xavier-uniform weights,
 * zero biases (hidden default 16).
 */
export class MlpController extends PolicyController {
  /** Builds it. */
  constructor(opts: ControllerOptions & { hidden?: number }) {
    super({
      architecture: {
        kind: "mlp",
        inputs: inputsOf(opts),
        actions: opts.actions,
        hidden: [opts.hidden ?? 16],
        activation: "leaky_relu",
        negativeSlope: 0.2,
      },
      temperature: opts.temperature,
      seed: opts.seed,
      normalization: opts.normalization,
      featureNames: opts.featureNames,
      init: "glorot",
    });
  }
}

/** A linear controller `K -> |A|` (Xavier-uniform weights, zero bias). */
export class LinearController extends PolicyController {
  /** Builds it. */
  constructor(opts: ControllerOptions) {
    super({
      architecture: {
        kind: "linear",
        inputs: inputsOf(opts),
        actions: opts.actions,
        hidden: [],
        activation: "leaky_relu",
      },
      temperature: opts.temperature,
      seed: opts.seed,
      normalization: opts.normalization,
      featureNames: opts.featureNames,
      init: "glorot",
    });
  }
}
