/**
 * Two tiny {@link ScheduleTask}s for tests, examples and smoke runs of the RL machinery; no
 * models are trained, everything is a few GPU kernels per step:
 *
 * - {@link ContextualBanditTask}: each step every member sees a random context (one-hot
 *   features) and is paid `payoff[context][action]`; the episode's score is the mean payoff. The
 *   optimal controller maps each context to its best action (REINFORCE's test bed).
 * - {@link ChainTask}: a chain of N states; action 1 moves right, 0 left; reaching the last
 *   state pays 1 and restarts the member at state 0 (`done`). The optimal policy always moves right
 *   (PPO's test bed).
 *
 * Both follow the seeding contract of rl/task.ts: member p draws from `memberSeed(seed, p)` only.
 * @module
 */

import { Generator } from "../gpu/random.ts";
import { full, tensor, zeros } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import { type Action, memberSeed, type ScheduleTask } from "./task.ts";

function identity(n: number): Tensor {
  const eye = new Float32Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  return tensor(eye, [n, n]);
}

function toTensor(actions: Tensor | Int32Array, p: number): Tensor {
  return actions instanceof Int32Array ? tensor(actions, [p], "i32") : actions.reshape([p]);
}

function replace(old: Tensor | null, next: Tensor): Tensor {
  old?.dispose();
  return keep(next);
}

/** Options of {@link ContextualBanditTask}. */
export interface ContextualBanditOptions {
  /** P (default 64). */
  population?: number;
  /** `payoff[context][action]` (default `[[1, 0], [0, 1]]`: match the context). */
  payoff?: number[][];
}

/** A contextual bandit as a schedule task (see the module doc). */
export class ContextualBanditTask implements ScheduleTask {
  /** Task name. */
  readonly name = "contextual-bandit";
  /** One action per payoff column. */
  readonly actions: readonly Action[];
  /** P. */
  readonly population: number;
  /** `context.<c>` one-hot features. */
  readonly featureNames: readonly string[];
  /** The payoff table. */
  readonly payoff: readonly (readonly number[])[];
  #t = 0;
  #gen = new Generator(0);
  #seeds: Tensor | null = null;
  #eye: Tensor;
  #payoff: Tensor;
  #uniform: Tensor;
  #context: Tensor | null = null;
  #features: Tensor | null = null;
  #reward: Tensor | null = null;
  #total: Tensor | null = null;
  #score: Tensor | null = null;

  /** Creates the task (call `reset` before stepping). */
  constructor(opts: ContextualBanditOptions = {}) {
    this.population = opts.population ?? 64;
    this.payoff = opts.payoff ?? [[1, 0], [0, 1]];
    const c = this.payoff.length;
    const a = this.payoff[0].length;
    this.actions = Array.from(
      { length: a },
      (_, i) => ({ name: `a${i}`, loss: `a${i}`, group: "all" }),
    );
    this.featureNames = Array.from({ length: c }, (_, i) => `context.${i}`);
    this.#eye = keep(identity(c));
    this.#payoff = keep(tensor(this.payoff.flat(), [c, a]));
    this.#uniform = keep(full([this.population, c], 1));
    this.reset(0);
  }

  /** Steps since the last reset. */
  get t(): number {
    return this.#t;
  }

  #drawContext(): void {
    const ctx = ops.categorical(this.#uniform, this.#gen, this.#seeds!);
    this.#context = replace(this.#context, ctx);
    this.#features = replace(
      this.#features,
      noGrad(() => ops.gatherRows(this.#eye, ctx)),
    );
  }

  /** Restarts: context stream from `memberSeed(seed, p)`, scores zero. */
  reset(seed: number): void {
    const p = this.population;
    this.#t = 0;
    this.#gen = new Generator(seed);
    this.#seeds = replace(
      this.#seeds,
      tensor(Uint32Array.from({ length: p }, (_, i) => memberSeed(seed, i)), [p], "u32"),
    );
    this.#reward = replace(this.#reward, zeros([p]));
    this.#total = replace(this.#total, zeros([p]));
    this.#score = replace(this.#score, zeros([p]));
    this.#drawContext();
  }

  /** Pays each member for its action in its context, then draws the next contexts. */
  step(actions: Tensor | Int32Array): void {
    const p = this.population;
    const [reward, total, score] = noGrad(() =>
      tidy(() => {
        const a = toTensor(actions, p);
        const r = ops.pick(ops.gatherRows(this.#payoff, this.#context!), a);
        const tot = this.#total!.add(r);
        // The step count is uploaded: a scalar op would bake it into a new kernel every step.
        return [r, tot, tot.mul(tensor(new Float32Array([1 / (this.#t + 1)])))];
      })
    );
    this.#reward = replace(this.#reward, reward);
    this.#total = replace(this.#total, total);
    this.#score = replace(this.#score, score);
    this.#t++;
    this.#drawContext();
  }

  /** One-hot contexts [P, C]. */
  features(): Tensor {
    return this.#features!;
  }

  /** `reward` (last step's payoff) and `score` (mean payoff so far). */
  metrics(): Record<string, Tensor> {
    return {
      reward: this.#reward!,
      score: this.#score!,
    };
  }

  /** Frees everything. */
  dispose(): void {
    for (
      const t of [
        this.#seeds,
        this.#eye,
        this.#payoff,
        this.#uniform,
        this.#context,
        this.#features,
        this.#reward,
        this.#total,
        this.#score,
      ]
    ) t?.dispose();
  }
}

/** Options of {@link ChainTask}. */
export interface ChainOptions {
  /** P (default 16). */
  population?: number;
  /** N states (default 5). */
  length?: number;
}

/** A chain MDP as a schedule task (see the module doc). */
export class ChainTask implements ScheduleTask {
  /** Task name. */
  readonly name = "chain";
  /** left, right. */
  readonly actions: readonly Action[] = [
    { name: "left", loss: "left", group: "all" },
    { name: "right", loss: "right", group: "all" },
  ];
  /** P. */
  readonly population: number;
  /** N. */
  readonly length: number;
  /** `state.<i>` one-hot features. */
  readonly featureNames: readonly string[];
  #t = 0;
  #eye: Tensor;
  #state: Tensor | null = null;
  #features: Tensor | null = null;
  #reward: Tensor | null = null;
  #done: Tensor | null = null;

  /** Creates the task at state 0. */
  constructor(opts: ChainOptions = {}) {
    this.population = opts.population ?? 16;
    this.length = opts.length ?? 5;
    this.featureNames = Array.from({ length: this.length }, (_, i) => `state.${i}`);
    this.#eye = keep(identity(this.length));
    this.reset(0);
  }

  /** Steps since the last reset. */
  get t(): number {
    return this.#t;
  }

  #refresh(): void {
    this.#features = replace(
      this.#features,
      noGrad(() => tidy(() => ops.gatherRows(this.#eye, this.#state!.cast("i32")))),
    );
  }

  /** Every member back at state 0 (the chain is deterministic: the seed is unused). */
  reset(_seed: number): void {
    const p = this.population;
    this.#t = 0;
    this.#state = replace(this.#state, zeros([p]));
    this.#reward = replace(this.#reward, zeros([p]));
    this.#done = replace(this.#done, zeros([p]));
    this.#refresh();
  }

  /** Moves each member; pays 1 and restarts those reaching the end. */
  step(actions: Tensor | Int32Array): void {
    const p = this.population;
    const last = this.length - 1;
    const [state, reward] = noGrad(() =>
      tidy(() => {
        const a = toTensor(actions, p).cast("f32");
        const moved = this.#state!.add(a.mul(2).sub(1)).clamp(0, last);
        const arrived = ops.scalarOp("step", moved, last - 0.5);
        return [moved.mul(arrived.neg().add(1)), arrived];
      })
    );
    this.#state = replace(this.#state, state);
    this.#reward = replace(this.#reward, reward);
    this.#done = replace(this.#done, noGrad(() => ops.assign_(ops.empty([p]), reward)));
    this.#t++;
    this.#refresh();
  }

  /** One-hot states [P, N]. */
  features(): Tensor {
    return this.#features!;
  }

  /** `reward` and `done` of the last step, `state`. */
  metrics(): Record<string, Tensor> {
    return { reward: this.#reward!, done: this.#done!, state: this.#state! };
  }

  /** Frees everything. */
  dispose(): void {
    for (const t of [this.#eye, this.#state, this.#features, this.#reward, this.#done]) {
      t?.dispose();
    }
  }
}
