/**
 * A trajectory buffer on the GPU: per step t, the population's features [P, K], actions [P] and
 * optionally log-probabilities, values, rewards and done flags [P], stored as [T, P, ...] tensors.
 * Recording a step is one buffer-to-buffer copy per field, with no host sync; learners then run
 * ONE batched forward/backward over all T * P samples (views as [T * P, ...]).
 * @module
 */

import { backend } from "../gpu/backend.ts";
import * as ops from "../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../tensor/tensor.ts";

/** Per-step scalar fields a buffer may hold besides features and actions. */
export type ScalarField = "logProbs" | "values" | "rewards" | "dones";

/** Every recordable field. */
export type TrajectoryField = "features" | "actions" | ScalarField;

/** Which optional fields to allocate. */
export type TrajectoryFields = Partial<Record<ScalarField, boolean>>;

/** GPU storage for T steps of a population of P members with K features. */
export class TrajectoryBuffer {
  /** T: capacity in steps. */
  readonly steps: number;
  /** P. */
  readonly population: number;
  /** K. */
  readonly featureSize: number;
  /** Features [T, P, K]. */
  readonly features: Tensor;
  /** Actions, i32 [T, P]. */
  readonly actions: Tensor;
  /** Optional scalar fields, each f32 [T, P] (zero until recorded). */
  readonly scalars: Partial<Record<ScalarField, Tensor>> = {};
  #recorded = 0;

  /** Allocates the buffer (scalar fields zero-filled). */
  constructor(
    steps: number,
    population: number,
    featureSize: number,
    fields: TrajectoryFields = {},
  ) {
    if (!(steps > 0) || !(population > 0) || !(featureSize > 0)) {
      throw new Error(
        `TrajectoryBuffer: steps, population and featureSize must be > 0 ` +
          `(got ${steps}, ${population}, ${featureSize})`,
      );
    }
    this.steps = steps;
    this.population = population;
    this.featureSize = featureSize;
    this.features = keep(ops.empty([steps, population, featureSize], "f32", "trajectory.features"));
    this.actions = keep(ops.fill_(ops.empty([steps, population], "i32", "trajectory.actions"), 0));
    for (const f of Object.keys(fields) as ScalarField[]) {
      if (fields[f]) {
        this.scalars[f] = keep(
          ops.fill_(ops.empty([steps, population], "f32", `trajectory.${f}`), 0),
        );
      }
    }
  }

  /** Steps recorded (the highest step index recorded + 1). */
  get length(): number {
    return this.#recorded;
  }

  /** The tensor of `field` (throws when the field was not allocated). */
  field(field: TrajectoryField): Tensor {
    const t = field === "features"
      ? this.features
      : field === "actions"
      ? this.actions
      : this.scalars[field];
    if (!t) throw new Error(`TrajectoryBuffer: field '${field}' was not allocated`);
    return t;
  }

  /**
   * Copies `src` (features [P, K] or a scalar field [P]) into step `t` of `field`: one GPU copy,
   * recorded in order with the surrounding work.
   */
  record(field: TrajectoryField, t: number, src: Tensor): void {
    const dst = this.field(field);
    const row = dst.size / this.steps;
    if (!Number.isInteger(t) || t < 0 || t >= this.steps) {
      throw new Error(`TrajectoryBuffer.record: step ${t} is outside [0, ${this.steps})`);
    }
    if (src.size !== row || src.dtype !== dst.dtype) {
      throw new Error(
        `TrajectoryBuffer.record: '${field}' expects ${row} ${dst.dtype} values per step, got ` +
          src.describe(),
      );
    }
    backend().copy(
      src.storageFor("record"),
      src.offset,
      dst.storageFor("record"),
      dst.offset + t * row * 4,
      row * 4,
    );
    this.#recorded = Math.max(this.#recorded, t + 1);
  }

  /** Forgets the recorded steps and zeroes the scalar fields. */
  clear(): void {
    this.#recorded = 0;
    for (const t of Object.values(this.scalars)) ops.fill_(t, 0);
  }

  /** A view of `field` with steps and members flattened: [T * P, ...] (no copy). */
  flat(field: TrajectoryField): Tensor {
    const t = this.field(field);
    const n = this.steps * this.population;
    return t.view(field === "features" ? [n, this.featureSize] : [n], `trajectory.${field}`);
  }

  /** Frees the buffer. */
  dispose(): void {
    this.features.dispose();
    this.actions.dispose();
    for (const t of Object.values(this.scalars)) t.dispose();
  }
}

/** A trajectory's rows at its decisions (see {@link decisionRows}). */
export interface DecisionRows {
  /** Features at the decisions, [D, P, K]. */
  features: Tensor;
  /** Actions taken, i32 [D, P]. */
  actions: Tensor;
  /** Their log-probabilities, [D, P] (when recorded). */
  logProbs?: Tensor;
  /** Dense step rewards summed over each decision's steps, [D, P] (when recorded). */
  rewards?: Tensor;
  /** Frees what was made here (nothing for a decision interval of 1). */
  dispose(): void;
}

/**
 * The rows of a trajectory buffer of T steps [T, P, ...] at the decisions of interval `every`
 * (steps 0, every, 2 every, ...; T a multiple of `every`), on the GPU: D = T / every rows of the
 * features, actions and log-probabilities, and the dense step rewards summed over the `every`
 * steps each decision held. `every` 1 returns the buffer's own tensors.
 */
export function decisionRows(buffer: TrajectoryBuffer, every: number): DecisionRows {
  const rewards = buffer.scalars.rewards;
  const logProbs = buffer.scalars.logProbs;
  if (every === 1) {
    return {
      features: buffer.features,
      actions: buffer.actions,
      ...(logProbs ? { logProbs } : {}),
      ...(rewards ? { rewards } : {}),
      dispose: () => {},
    };
  }
  const t = buffer.steps;
  if (t % every !== 0) throw new Error(`decisionRows: ${t} steps are not a multiple of ${every}`);
  const d = t / every;
  const [p, k] = [buffer.population, buffer.featureSize];
  const first = (x: Tensor, width: number) =>
    ops.slice(x.reshape([d, every, width]), [0, 0, 0], [d, 1, width]).reshape([d, width]);
  const made = tidy(() =>
    noGrad(() => ({
      features: keep(first(buffer.features, p * k).reshape([d, p, k])),
      actions: keep(first(buffer.actions, p)),
      ...(logProbs ? { logProbs: keep(first(logProbs, p)) } : {}),
      ...(rewards ? { rewards: keep(rewards.reshape([d, every, p]).sum(1)) } : {}),
    }))
  );
  return {
    ...made,
    dispose() {
      made.features.dispose();
      made.actions.dispose();
      made.logProbs?.dispose();
      made.rewards?.dispose();
    },
  };
}
