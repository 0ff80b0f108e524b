/**
 * Hand-designed schedules behind the same {@link Controller} interface as learned controllers, so
 * every baseline and AutoLoss run goes through one runner:
 *
 * - fixed ratios: {@link ratioSchedule} (`1:K`, `K:1`, any counts per action, in a fixed cycle),
 *   {@link roundRobin} (1:1:...:1), {@link proportionalSchedule} (proportional to data sizes,
 *   interleaved deterministically or sampled);
 * - the threshold rules S1-S3 of paper section 5.1.1 ({@link thresholdRule}): optimize the
 *   regularizer when `(A - B) / B > th`, with A, B = (S1) validation and training task loss,
 *   (S2) regularizer loss and validation task loss, (S3) gradient norms of the regularizer and of
 *   the task loss; otherwise optimize the task loss. Computed on the GPU from the feature tensor
 *   with compare/where-style ops; thresholds are parameters (the paper grid-searches them).
 *
 * Deterministic schedules give every member the same action, from constant tensors made once.
 * @module
 */

import * as ops from "../tensor/ops.ts";
import { full, tensor } from "../tensor/functional.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";
import type { ActContext, Action, Controller } from "./task.ts";

/** A schedule that frees the constant tensors it caches. */
export interface Schedule extends Controller {
  /** Frees cached GPU constants. */
  dispose(): void;
}

/** Cached i32 [P] constant action tensors. */
class ConstantActions {
  #cache = new Map<string, Tensor>();

  get(population: number, action: number): Tensor {
    const key = `${population}:${action}`;
    let t = this.#cache.get(key);
    if (!t) {
      t = keep(full([population], action, "i32"));
      this.#cache.set(key, t);
    }
    return t;
  }

  dispose(): void {
    for (const t of this.#cache.values()) t.dispose();
    this.#cache.clear();
  }
}

/** A schedule whose action depends only on the step index: `pattern(t)` for every member. */
export class StepPatternSchedule implements Schedule {
  /** Display name. */
  readonly name: string;
  readonly #pattern: (t: number) => number;
  readonly #constants = new ConstantActions();

  /** Creates it from the step-to-action function. */
  constructor(name: string, pattern: (t: number) => number) {
    this.name = name;
    this.#pattern = pattern;
  }

  /** The action at step `t`. */
  actionAt(t: number): number {
    return this.#pattern(t);
  }

  /** Every member takes `pattern(ctx.t)`. */
  act(features: Tensor, ctx: ActContext): { actions: Tensor } {
    return { actions: this.#constants.get(features.shape[0], this.#pattern(ctx.t)) };
  }

  /** Frees the cached constants. */
  dispose(): void {
    this.#constants.dispose();
  }
}

/** Parses "1:5" into [1, 5] (positive integers). */
export function parseRatio(text: string): number[] {
  const parts = text.split(":").map((s) => Number(s.trim()));
  if (
    parts.length < 2 || parts.some((n) => !Number.isInteger(n) || n < 0) ||
    !parts.some((n) => n > 0)
  ) {
    throw new Error(`invalid ratio '${text}': expected counts like "1:5" (non-negative integers)`);
  }
  return parts;
}

/**
 * A fixed ratio: action a is taken `counts[a]` times in a row, actions in index order, the cycle
 * repeated (`[1, 5]`: one of action 0, then five of action 1). For a GAN with actions
 * [G, D], the paper's "GAN 1:K" (D:G = 1:K) is `ratioSchedule([K, 1])`.
 */
export function ratioSchedule(counts: readonly number[], name?: string): StepPatternSchedule {
  const cycle: number[] = [];
  counts.forEach((c, a) => {
    for (let i = 0; i < c; i++) cycle.push(a);
  });
  if (!cycle.length) throw new Error(`ratioSchedule: counts [${counts}] are all zero`);
  return new StepPatternSchedule(
    name ?? `fixed ${counts.join(":")}`,
    (t) => cycle[t % cycle.length],
  );
}

/** Round-robin over `actions` actions (the authors' `controller_designed` for 2 and 3). */
export function roundRobin(actions: number): StepPatternSchedule {
  return ratioSchedule(new Array(actions).fill(1), "round-robin");
}

/** How {@link proportionalSchedule} realizes its proportions. */
export type ProportionalMode = "interleave" | "sample";

/**
 * Actions in proportion to `sizes` (e.g. the training-set sizes of NMT's MT, NER and POS tasks:
 * the paper's FIXED RATIO). "interleave" (default) is deterministic smooth weighted round-robin
 * (each action's share of any window tracks its weight); "sample" draws each step on the GPU
 * with probabilities proportional to the sizes (per member from its own seed), and falls back to
 * the interleaved order in greedy mode.
 */
export function proportionalSchedule(
  sizes: readonly number[],
  mode: ProportionalMode = "interleave",
): Schedule {
  if (!sizes.length || sizes.some((s) => !(s >= 0)) || !sizes.some((s) => s > 0)) {
    throw new Error(`proportionalSchedule: sizes [${sizes}] must be non-negative, not all zero`);
  }
  const total = sizes.reduce((a, b) => a + b, 0);
  const order: number[] = [];
  const current = sizes.map(() => 0);
  const pattern = (t: number) => {
    while (order.length <= t) {
      let best = 0;
      sizes.forEach((w, a) => {
        current[a] += w;
        if (current[a] > current[best]) best = a;
      });
      current[best] -= total;
      order.push(best);
    }
    return order[t];
  };
  const name = `proportional ${sizes.join(":")}`;
  const interleaved = new StepPatternSchedule(name, pattern);
  if (mode === "interleave") return interleaved;
  let probs: Tensor | null = null;
  return {
    name: `${name} (sampled)`,
    act(features: Tensor, ctx: ActContext): { actions: Tensor } {
      if (ctx.greedy) return interleaved.act(features, ctx);
      const p = features.shape[0];
      if (!probs || probs.shape[0] !== p) {
        probs?.dispose();
        const row = sizes.map((s) => s / total);
        probs = keep(
          tensor(Float32Array.from({ length: p * sizes.length }, (_, i) => row[i % sizes.length]), [
            p,
            sizes.length,
          ]),
        );
      }
      return { actions: ops.categorical(probs, ctx.gen, ctx.memberSeeds) };
    },
    dispose(): void {
      probs?.dispose();
      interleaved.dispose();
    },
  };
}

// ---------------------------------------------------------------- threshold rules S1-S3

/** Options of {@link ThresholdSchedule}. */
export interface ThresholdScheduleOptions {
  /** Display name. */
  name: string;
  /** The task's feature names (to find the columns). */
  featureNames: readonly string[];
  /** Feature holding A. */
  numerator: string;
  /** Feature holding B. */
  denominator: string;
  /** th. */
  threshold: number;
  /** Action when `(A - B) / B > th`. */
  ifAbove: number;
  /** Action otherwise. */
  otherwise: number;
}

/**
 * Per member: `ifAbove` when `(A - B) / B > threshold`, else `otherwise`, with A and B two columns
 * of the feature tensor. All on the GPU (slice, sub, div, compare, affine map to the action index,
 * cast). A zero B gives an infinite or NaN ratio: infinite compares as usual, NaN picks `otherwise`.
 */
export class ThresholdSchedule implements Schedule {
  /** Display name. */
  readonly name: string;
  /** th (may be changed between steps). */
  threshold: number;
  readonly #a: number;
  readonly #b: number;
  readonly #ifAbove: number;
  readonly #otherwise: number;

  /** Resolves the feature columns (throws listing the available names). */
  constructor(opts: ThresholdScheduleOptions) {
    const find = (f: string) => {
      const i = opts.featureNames.indexOf(f);
      if (i < 0) {
        throw new Error(
          `${opts.name}: the task has no feature '${f}'; features: [${
            opts.featureNames.join(", ")
          }]`,
        );
      }
      return i;
    };
    this.name = opts.name;
    this.threshold = opts.threshold;
    this.#a = find(opts.numerator);
    this.#b = find(opts.denominator);
    this.#ifAbove = opts.ifAbove;
    this.#otherwise = opts.otherwise;
  }

  /** The rule's actions for features [P, K]. */
  act(features: Tensor, _ctx: ActContext): { actions: Tensor } {
    const p = features.shape[0];
    return noGrad(() =>
      tidy(() => {
        const column = (j: number) => ops.slice(features, [0, j], [p, j + 1]).reshape([p]);
        const a = column(this.#a);
        const b = column(this.#b);
        const above = ops.scalarOp("step", a.sub(b).div(b), this.threshold);
        const action = above.mul(this.#ifAbove - this.#otherwise).add(this.#otherwise);
        return { actions: action.cast("i32") };
      })
    );
  }

  /** Nothing cached. */
  dispose(): void {}
}

/** Options of {@link thresholdRule}. */
export interface ThresholdRuleOptions {
  /** th. */
  threshold: number;
  /** Name of the task loss (default: the first action's loss). */
  taskLoss?: string;
  /** Name of the regularizer loss (default: the second action's loss). */
  regLoss?: string;
}

/**
 * The paper's rules on a task using the paper's feature set (rl/features.ts `paperFeatureNames`:
 * `val`, `loss.<l>`, `grad.<l>`): optimize the regularizer when `(A - B) / B > th`, where
 *
 * - S1: A = `val` (validation task loss), B = `loss.<task>` (training task loss);
 * - S2: A = `loss.<reg>` (regularizer loss), B = `val`;
 * - S3: A = `grad.<reg>`, B = `grad.<task>` (normalized gradient norms);
 *
 * otherwise optimize the task loss. Actions are found by their `loss` names.
 */
export function thresholdRule(
  kind: "S1" | "S2" | "S3",
  task: { readonly featureNames: readonly string[]; readonly actions: readonly Action[] },
  opts: ThresholdRuleOptions,
): ThresholdSchedule {
  const taskLoss = opts.taskLoss ?? task.actions[0]?.loss;
  const regLoss = opts.regLoss ?? task.actions[1]?.loss;
  const actionOf = (loss: string | undefined) => {
    const i = task.actions.findIndex((a) => a.loss === loss);
    if (i < 0) {
      throw new Error(
        `${kind}: no action optimizes loss '${loss}'; actions: ${
          task.actions.map((a) => `${a.name} (${a.loss})`).join(", ")
        }`,
      );
    }
    return i;
  };
  const [numerator, denominator] = kind === "S1"
    ? ["val", `loss.${taskLoss}`]
    : kind === "S2"
    ? [`loss.${regLoss}`, "val"]
    : [`grad.${regLoss}`, `grad.${taskLoss}`];
  return new ThresholdSchedule({
    name: `${kind} th=${opts.threshold}`,
    featureNames: task.featureNames,
    numerator,
    denominator,
    threshold: opts.threshold,
    ifAbove: actionOf(regLoss),
    otherwise: actionOf(taskLoss),
  });
}

/**
 * A schedule from its name, for plain episode specs: "round-robin", "ratio 1:5" (or just "1:5"),
 * "proportional 3:2:1" (optionally "... sampled"), "S1 0.05" / "S2 0.01" / "S3 -0.19".
 */
export function scheduleFromName(
  name: string,
  task: { readonly featureNames: readonly string[]; readonly actions: readonly Action[] },
): Schedule {
  const text = name.trim();
  const words = text.split(/\s+/);
  if (text === "round-robin") return roundRobin(task.actions.length);
  if (/^(ratio\s+|fixed\s+)?\d+(:\d+)+$/.test(text)) {
    return ratioSchedule(parseRatio(words[words.length - 1]));
  }
  if (words[0] === "proportional" && words[1]) {
    return proportionalSchedule(
      parseRatio(words[1]),
      words[2] === "sampled" ? "sample" : "interleave",
    );
  }
  if (/^S[123]$/.test(words[0]) && words.length === 2 && Number.isFinite(Number(words[1]))) {
    return thresholdRule(words[0] as "S1" | "S2" | "S3", task, { threshold: Number(words[1]) });
  }
  throw new Error(
    `unknown schedule '${name}'; expected "round-robin", "ratio 1:5", "proportional 3:2:1" ` +
      `["sampled"], or "S1 <th>" / "S2 <th>" / "S3 <th>"`,
  );
}
