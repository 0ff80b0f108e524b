/**
 * Evolution strategies over a policy's parameters (antithetic pairs, PGPE / OpenAI-ES style), for
 * schedules whose reward arrives once per long episode.
 *
 * REINFORCE explores in action space: each of an episode's T decisions is a coin flip, and the one
 * final reward is credited to all of them, so the gradient's noise grows with T. Here exploration
 * is in parameter space: a round's P members run in pairs, member 2i with `theta + sigma eps_i`
 * and member 2i + 1 with `theta - sigma eps_i`; a caller that also gives a pair one task
 * initialization makes the pair's two episodes differ only where the two policies disagree (the
 * pair samples with one seed, so with the same uniforms). The update ascends
 *
 *     g = 1 / (n sigma) sum_i (f(2i) - f(2i + 1)) / 2 * eps_i        (n = P / 2 pairs)
 *
 * with f the centered ranks of the round's P rewards in [-0.5, 0.5] (fitness shaping: the step
 * does not depend on the reward's units or on outliers); {@link PerturbedPolicy.writeGradient}
 * stores `-g` as the flat gradient, so the policy's own Adam takes the step.
 *
 * Everything stays on the device: the noise is drawn there, the member parameters are built
 * there, `act` reads no value back, and the gradient is one small matmul of the host's P fitness
 * values with the noise. {@link esRound} is one round (every task's ES training calls it).
 * @module
 */

import { Generator } from "../gpu/random.ts";
import type { FlatParams } from "../nn/module.ts";
import type { RewardFn } from "./rewards.ts";
import { type EpisodeRun, runEpisode } from "./runner.ts";
import type { TrajectoryBuffer } from "./trajectory.ts";
import * as ops from "../tensor/ops.ts";
import { randn, tensor } from "../tensor/functional.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import type { PolicyController } from "./controller.ts";
import { type ActContext, type Controller, memberSeed, type ScheduleTask } from "./task.ts";

/** Centered ranks of `values` in [-0.5, 0.5] (ties by input order); fewer than two give 0. */
export function centeredRanks(values: readonly number[]): number[] {
  const n = values.length;
  if (n < 2) return values.map(() => 0);
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const ranks = new Array<number>(n);
  order.forEach(([, i], r) => (ranks[i] = r / (n - 1) - 0.5));
  return ranks;
}

/** The pair weights `(f[2i] - f[2i+1]) / 2 / (pairs sigma)` of {@link esGradient}'s sum. */
export function pairWeights(fitness: readonly number[], sigma: number): number[] {
  const pairs = fitness.length / 2;
  if (!Number.isInteger(pairs) || pairs < 1) {
    throw new Error(`ES: ${fitness.length} fitness values do not make antithetic pairs`);
  }
  if (!(sigma > 0)) throw new Error(`ES: sigma must be > 0, not ${sigma}`);
  return Array.from(
    { length: pairs },
    (_, i) => (fitness[2 * i] - fitness[2 * i + 1]) / 2 / (pairs * sigma),
  );
}

/**
 * The ES ascent direction on the host, for tests: `sum_i w_i eps_i` with {@link pairWeights} w
 * and noise [pairs * size] (row i: eps_i).
 */
export function esGradient(
  fitness: readonly number[],
  noise: Float32Array,
  size: number,
  sigma: number,
): Float32Array {
  const w = pairWeights(fitness, sigma);
  if (noise.length !== w.length * size) {
    throw new Error(`esGradient: ${noise.length} noise values for ${w.length} pairs x ${size}`);
  }
  const g = new Float32Array(size);
  w.forEach((wi, i) => {
    for (let j = 0; j < size; j++) g[j] += wi * noise[i * size + j];
  });
  return g;
}

/** One layer's per-member parameters: weights [P, out, in], biases [P, out]. */
interface MemberLayer {
  weight: Tensor;
  bias: Tensor;
}

/**
 * The network of `base` with its own parameters per member. {@link PerturbedPolicy.perturb}
 * draws the round's noise eps [P/2, n] over the base's flat parameters (n values; zero on the
 * flat buffer's padding) and sets member p's parameters to `theta + sigma eps_{p/2}` for even p,
 * `theta - sigma eps_{p/2}` for odd p. The base controller's input normalization and temperature
 * apply. Members 2i and 2i + 1 sample with one seed, `memberSeed(sampleSeed, i)`, so they draw the
 * same uniforms and act alike wherever their probabilities agree. No host sync.
 */
export class PerturbedPolicy implements Controller {
  /** Display name. */
  readonly name: string;
  /** The policy whose network, normalization and temperature are used. */
  readonly base: PolicyController;
  /** The base's parameters, packed (theta and the gradient written by `writeGradient`). */
  readonly flat: FlatParams;
  /** P: members (even). */
  readonly population: number;
  #mask: Tensor;
  #noise: Tensor | null = null;
  #sigma = 0;
  #layers: MemberLayer[] = [];
  #seeds: Tensor | null = null;

  /** A perturbed copy of `base` (parameters packed in `flat`) for an even population. */
  constructor(base: PolicyController, flat: FlatParams, population: number) {
    if (!Number.isInteger(population) || population < 2 || population % 2 !== 0) {
      throw new Error(
        `ES: antithetic pairs need an even population >= 2, not ${population} ` +
          "(set controller.population to an even number)",
      );
    }
    this.base = base;
    this.flat = flat;
    this.population = population;
    this.name = `${base.name} (perturbed)`;
    const mask = new Float32Array(flat.size);
    for (const r of flat.ranges.values()) mask.fill(1, r.start, r.end);
    this.#mask = keep(tensor(mask, [flat.size]));
    base.net.layers.forEach((_, i) => {
      for (const part of ["weight", "bias"]) {
        if (!flat.ranges.has(`net.${i}.${part}`)) {
          throw new Error(`ES: the flat parameters have no 'net.${i}.${part}'`);
        }
      }
    });
  }

  /** Draws this round's noise from `gen`, builds the member parameters and the pair seeds. */
  perturb(sigma: number, gen: Generator, sampleSeed: number): void {
    if (!(sigma > 0)) throw new Error(`ES: sigma must be > 0, not ${sigma}`);
    this.release();
    const p = this.population;
    const n = this.flat.size;
    this.#sigma = sigma;
    this.#noise = keep(noGrad(() => tidy(() => randn([p / 2, n], 0, 1, gen).mul(this.#mask))));
    noGrad(() =>
      tidy(() => {
        const pair = tensor(Int32Array.from({ length: p }, (_, m) => (m / 2) | 0), [p], "i32");
        const sign = tensor(
          Float32Array.from({ length: p }, (_, m) => (m % 2 === 0 ? sigma : -sigma)),
          [p, 1],
        );
        const members = ops.gatherRows(this.#noise!, pair).mul(sign)
          .add(this.flat.data.reshape([1, n]));
        this.#layers = this.base.net.layers.map((layer, i) => {
          const part = (name: string, shape: number[]) => {
            const r = this.flat.ranges.get(`net.${i}.${name}`)!;
            const t = keep(ops.slice(members, [0, r.start], [p, r.end]).reshape([p, ...shape]));
            t.realize();
            return t;
          };
          return {
            weight: part("weight", [layer.outFeatures, layer.inFeatures]),
            bias: part("bias", [layer.outFeatures]),
          };
        });
      })
    );
    this.#seeds = keep(
      tensor(
        Uint32Array.from({ length: p }, (_, m) => memberSeed(sampleSeed, (m / 2) | 0)),
        [p],
        "u32",
      ),
    );
  }

  /** The round's noise eps [P/2, n] (after `perturb`). */
  get noise(): Tensor {
    if (!this.#noise) throw new Error(`${this.name}: call perturb() first`);
    return this.#noise;
  }

  /** Tempered log-probabilities [P, |A|], each member with its own parameters, for features [P, K]. */
  logPolicy(features: Tensor): Tensor {
    if (!this.#layers.length) throw new Error(`${this.name}: call perturb() before acting`);
    const net = this.base.net;
    const p = this.population;
    let h = this.base.normalizer.apply(features);
    this.#layers.forEach((l, i) => {
      const [, out, inp] = l.weight.shape;
      h = ops.matmul(l.weight, h.reshape([p, inp, 1])).reshape([p, out]).add(l.bias);
      if (i + 1 < this.#layers.length) {
        h = net.activation === "tanh"
          ? h.tanh()
          : net.activation === "relu"
          ? h.relu()
          : h.leakyRelu(net.negativeSlope);
      }
    });
    const t = this.base.temperature;
    return (t === 1 ? h : h.mul(1 / t)).logSoftmax(-1);
  }

  /** Samples each member's action with the pair seeds (greedy: the argmax). */
  act(features: Tensor, ctx: ActContext): { actions: Tensor; logProbs?: Tensor } {
    return noGrad(() =>
      tidy(() => {
        const logp = this.logPolicy(features);
        const actions = ctx.greedy
          ? logp.argmax(-1)
          : ops.categorical(logp.exp(), ctx.gen, this.#seeds!);
        return { actions, logProbs: ops.pick(logp, actions) };
      })
    );
  }

  /**
   * Writes `-g` (the ES ascent direction of `fitness`, P values in member order; see the module
   * doc) into `flat.grad`, so a minimizing optimizer step on `flat` ascends the reward.
   */
  writeGradient(fitness: readonly number[]): void {
    if (fitness.length !== this.population) {
      throw new Error(`ES: ${fitness.length} fitness values for ${this.population} members`);
    }
    const w = pairWeights(fitness, this.#sigma);
    noGrad(() =>
      tidy(() => {
        const g = ops.matmul(tensor(Float32Array.from(w), [1, w.length]), this.noise);
        ops.assign_(this.flat.grad, g.reshape([this.flat.size]).neg());
      })
    );
  }

  /** Frees the round's noise, member parameters and seeds (not the base controller). */
  release(): void {
    for (const l of this.#layers) {
      l.weight.dispose();
      l.bias.dispose();
    }
    this.#layers = [];
    this.#noise?.dispose();
    this.#noise = null;
    this.#seeds?.dispose();
    this.#seeds = null;
  }

  /** Frees everything it owns (not the base controller or `flat`). */
  dispose(): void {
    this.release();
    this.#mask.dispose();
  }
}

/** Options of {@link esRound}. */
export interface EsRoundOptions {
  /** Steps of the episode. */
  steps: number;
  /** Task seed (the task is reset with it; pairs should start alike, e.g. `initGroup: 2`). */
  seed: number;
  /** Sampling seed (pair i samples with `memberSeed(sampleSeed, i)`). */
  sampleSeed: number;
  /** Seed of the round's parameter noise. */
  noiseSeed: number;
  /** Noise scale sigma. */
  sigma: number;
  /** Final rewards from the final metrics. */
  reward: RewardFn;
  /** Record features and actions here. */
  buffer?: TrajectoryBuffer;
  /**
   * Called after the gradient is written and before the optimizer step (queue diagnostics of
   * the policy that acted here).
   */
  beforeStep?: () => void;
}

/**
 * One ES round: perturb `policy` around its base parameters, run the P members for
 * `opts.steps` steps from `opts.seed`, write the gradient of the centered reward ranks into the
 * base's flat gradient and take `optimizer`'s step. Returns the episode and the fitness values.
 * One read (the episode's final metrics).
 */
export async function esRound(
  task: ScheduleTask,
  policy: PerturbedPolicy,
  optimizer: { step(): void },
  opts: EsRoundOptions,
): Promise<{ run: EpisodeRun; fitness: number[] }> {
  policy.perturb(opts.sigma, new Generator(opts.noiseSeed), opts.sampleSeed);
  try {
    const run = await runEpisode(task, policy, {
      steps: opts.steps,
      seed: opts.seed,
      sampleSeed: opts.sampleSeed,
      buffer: opts.buffer,
      reward: opts.reward,
    });
    const fitness = centeredRanks(run.rewards);
    policy.writeGradient(fitness);
    opts.beforeStep?.();
    optimizer.step();
    return { run, fitness };
  } finally {
    policy.release();
  }
}
