/**
 * The d-ary quadratic regression task with an L1 term (paper sections 4.1 and 5.1.1), as a
 * population {@link ScheduleTask}.
 *
 * Models, selectable by `form`:
 * - `authors` (safpla/AutoLossRelease `models/reg.py`): `y = x . w1 + vec(x x^T) . w2 / 10`, no
 *   constant term; `w1 ~ N(0, 0.1^2)`, `w2 ~ N(0, 0.01^2)`. 272 parameters for d = 16.
 * - `paper`: `f(u) = u^T A u + b^T u + c` (section 4.1), the same features plus a constant,
 *   with a configurable scale of the quadratic block (default 1); `c` starts at 0.
 *
 * Both are linear in the fixed feature map `phi(x) = [x, s vec(x x^T) (, 1)]`, so the whole
 * population is one product `W [P, F] @ phi^T [F, N]` per data set, sharing the data across
 * members. The task loss is the MSE; `l1 = lambda * sum |theta|` over all parameters (authors:
 * lambda 0.2). The test metric is the test MSE at the best validation point (the paper reports it
 * minus the noise floor, see data/regression.ts `noiseFloor`).
 * @module
 */

import { tensor } from "../../tensor/functional.ts";
import { keep, noGrad, type Tensor } from "../../tensor/tensor.ts";
import { concatRegression, type RegressionSplit } from "./data/regression.ts";
import { type Forward, L1ScheduleTask, type L1TaskOptions, type ParamSpec } from "./task.ts";

/** Which regression model (see the module doc). */
export type RegressionForm = "authors" | "paper";

/** Options of {@link RegressionTask}. */
export interface RegressionTaskOptions extends L1TaskOptions {
  /** Training data. */
  train: RegressionSplit;
  /** Validation data (features and model selection). */
  val: RegressionSplit;
  /** Test data (scored at the best validation point). */
  test: RegressionSplit;
  /** Model form (default "authors"). */
  form?: RegressionForm;
  /** Scale of the quadratic features (default 0.1 for "authors", 1 for "paper"). */
  quadScale?: number;
  /** Init standard deviations of the linear and quadratic weights (default [0.1, 0.01]). */
  initStd?: readonly [number, number];
}

/** The feature map `phi(x)`, transposed: [F, n] row-major. */
export function quadraticFeatures(
  s: RegressionSplit,
  quadScale: number,
  bias: boolean,
): Float32Array {
  const { n, d } = s;
  const f = d + d * d + (bias ? 1 : 0);
  const out = new Float32Array(f * n);
  for (let r = 0; r < n; r++) {
    const x = s.x.subarray(r * d, r * d + d);
    for (let j = 0; j < d; j++) out[j * n + r] = x[j];
    for (let j = 0; j < d; j++) {
      for (let k = 0; k < d; k++) out[(d + j * d + k) * n + r] = x[j] * x[k] * quadScale;
    }
    if (bias) out[(f - 1) * n + r] = 1;
  }
  return out;
}

/** Quadratic regression with an L1 term, P members in lockstep. */
export class RegressionTask extends L1ScheduleTask {
  /** Registry name. */
  readonly name = "regression";
  /** Model form. */
  readonly form: RegressionForm;
  /** F: parameters per member. */
  readonly featureDim: number;
  /** MSE is minimized. */
  protected readonly higherIsBetter = false;
  /** The authors' 5-feature state. */
  protected readonly authorsFeatureSet = "authors-regression" as const;
  #phiTrain: Tensor;
  #yTrain: Tensor;
  #phiVal: Tensor;
  #yVal: Tensor;
  #phiEval: Tensor;
  #yEval: Tensor;
  #nVal: number;
  #d: number;
  #initStd: readonly [number, number];

  /** Uploads the data and builds the population. */
  constructor(opts: RegressionTaskOptions) {
    super(opts);
    this.form = opts.form ?? "authors";
    const bias = this.form === "paper";
    const scale = opts.quadScale ?? (bias ? 1 : 0.1);
    const d = opts.train.d;
    this.#d = d;
    this.#initStd = opts.initStd ?? [0.1, 0.01];
    this.featureDim = d + d * d + (bias ? 1 : 0);
    const f = this.featureDim;
    const up = (x: RegressionSplit) => keep(tensor(quadraticFeatures(x, scale, bias), [f, x.n]));
    const evalSet = concatRegression(opts.val, opts.test);
    this.#phiTrain = up(opts.train);
    this.#yTrain = keep(tensor(opts.train.y, [opts.train.n]));
    this.#phiVal = up(opts.val);
    this.#yVal = keep(tensor(opts.val.y, [opts.val.n]));
    this.#phiEval = up(evalSet);
    this.#yEval = keep(tensor(evalSet.y, [evalSet.n]));
    this.#nVal = opts.val.n;
    this.build();
  }

  /** One stacked weight matrix W [P, F]. */
  protected paramSpecs(): ParamSpec[] {
    const d = this.#d;
    const [s1, s2] = this.#initStd;
    return [{
      name: "w",
      shape: [this.population, this.featureDim],
      perMember: this.featureDim,
      init: (rng, out) => {
        for (let j = 0; j < d; j++) out[j] = rng.normal() * s1;
        for (let j = d; j < d + d * d; j++) out[j] = rng.normal() * s2;
        // The paper form's constant term starts at 0.
      },
    }];
  }

  /**
   * Predictions are products `W [P, F] @ phi^T [F, n]` with the data shared by all members: the
   * training set with autograd, validation (and test) under `noGrad` in one product.
   */
  protected forward(withVal: boolean, withTest: boolean): Forward {
    const p = this.population;
    const w = this.params[0];
    const out: Forward = {
      trainLoss: w.matmul(this.#phiTrain).sub(this.#yTrain).square().mean(1),
    };
    if (withVal || withTest) {
      noGrad(() => {
        const phi = withTest ? this.#phiEval : this.#phiVal;
        const sq = w.matmul(phi).sub(withTest ? this.#yEval : this.#yVal).square();
        if (!withTest) out.valLoss = sq.mean(1);
        else {
          out.valLoss = sq.slice([0, 0], [p, this.#nVal]).mean(1);
          out.test = sq.slice([0, this.#nVal], [p, sq.shape[1]]).mean(1);
        }
      });
    }
    return out;
  }

  /** Frees the data tensors. */
  protected disposeData(): void {
    const data = [this.#phiTrain, this.#yTrain, this.#phiVal, this.#yVal, this.#phiEval];
    for (const t of [...data, this.#yEval]) t.dispose();
  }
}
