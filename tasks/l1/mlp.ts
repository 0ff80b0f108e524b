/**
 * The MLP classification task with an L1 term (paper sections 4.1, 5.1.1 and 5.3.2; the
 * authors' `models/cls.py`), as a population {@link ScheduleTask}.
 *
 * Model: 32 -> 32 (ReLU) -> 2 logits, softmax cross-entropy (the paper calls it BCE; with two
 * classes the softmax cross-entropy equals the logistic loss of the logit difference, which is
 * how it is computed here). Init as the authors: weights truncated normal with sigma 0.1, biases
 * 0.1. L1 with lambda (authors: 0.02) over every trainable variable, biases included. 1,122
 * parameters per member.
 *
 * Layout for a population, chosen so every product is one matmul over the shared data: the
 * first layer of all members is one matrix `W1 [P*32, 33]` (each member's 32 hidden rows, the
 * bias as a 33rd column against a row of ones appended to the inputs), applied as
 * `W1 @ x^T [33, n] -> [P*32, n]`; the second layer is batched `W2 [P, 2, 32] @ H [P, 32, n]`.
 * The selection metric is validation accuracy; the test metric is the test error at the best
 * validation accuracy (the authors' best checkpoint).
 * @module
 */

import { bceWithLogits } from "../../nn/losses.ts";
import { compare, tensor } from "../../tensor/functional.ts";
import { keep, noGrad, type Tensor } from "../../tensor/tensor.ts";
import { type ClassificationSplit, concatClassification } from "./data/classification.ts";
import { type Forward, L1ScheduleTask, type L1TaskOptions, type ParamSpec } from "./task.ts";

/** Options of {@link MlpTask}. */
export interface MlpTaskOptions extends L1TaskOptions {
  /** Training data. */
  train: ClassificationSplit;
  /** Validation data (features and model selection). */
  val: ClassificationSplit;
  /** Test data (scored at the best validation point). */
  test: ClassificationSplit;
  /** Hidden units (default 32). */
  hidden?: number;
  /** Weight init standard deviation (truncated normal, default 0.1). */
  initStd?: number;
  /** Initial bias value (default 0.1). */
  initBias?: number;
}

/** Data uploaded for one set: inputs with a ones row, transposed [d+1, n]; labels as +-1 and 0/1. */
interface DeviceSet {
  xT: Tensor;
  target: Tensor;
  sign: Tensor;
  n: number;
}

/** Inputs transposed with a trailing row of ones: [d + 1, n] row-major. */
export function augmentedTranspose(s: ClassificationSplit): Float32Array {
  const { n, d } = s;
  const out = new Float32Array((d + 1) * n);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < d; j++) out[j * n + r] = s.x[r * d + j];
    out[d * n + r] = 1;
  }
  return out;
}

/** The 32-32-2 MLP classifier with an L1 term, P members in lockstep. */
export class MlpTask extends L1ScheduleTask {
  /** Registry name. */
  readonly name = "mlp";
  /** Hidden units. */
  readonly hidden: number;
  /** Accuracy is maximized. */
  protected readonly higherIsBetter = true;
  /** The authors' 6-feature state. */
  protected readonly authorsFeatureSet = "authors-classification" as const;
  #d: number;
  #initStd: number;
  #initBias: number;
  #train: DeviceSet;
  #val: DeviceSet;
  #eval: DeviceSet;
  #diff: Tensor;

  /** Uploads the data and builds the population. */
  constructor(opts: MlpTaskOptions) {
    super(opts);
    this.hidden = opts.hidden ?? 32;
    this.#d = opts.train.d;
    this.#initStd = opts.initStd ?? 0.1;
    this.#initBias = opts.initBias ?? 0.1;
    const p = this.population;
    const up = (s: ClassificationSplit): DeviceSet => {
      const y = Float32Array.from(s.y);
      const row = tensor(y, [1, s.n]);
      const target = keep(row.expand([p, s.n]));
      row.dispose();
      return {
        xT: keep(tensor(augmentedTranspose(s), [s.d + 1, s.n])),
        target,
        sign: keep(tensor(y.map((v) => 2 * v - 1), [s.n])),
        n: s.n,
      };
    };
    this.#train = up(opts.train);
    this.#val = up(opts.val);
    this.#eval = up(concatClassification(opts.val, opts.test));
    this.#diff = keep(tensor([[-1, 1]]));
    this.build();
  }

  /** W1 with bias column [P*h, d+1], W2 [P, 2, h], b2 [P, 2, 1]. */
  protected paramSpecs(): ParamSpec[] {
    const [p, h, d] = [this.population, this.hidden, this.#d];
    const std = this.#initStd;
    const bias = this.#initBias;
    return [
      {
        name: "w1",
        shape: [p * h, d + 1],
        perMember: h * (d + 1),
        init: (rng, out) => {
          for (let j = 0; j < h; j++) {
            for (let k = 0; k < d; k++) out[j * (d + 1) + k] = rng.truncatedNormal(std);
            out[j * (d + 1) + d] = bias;
          }
        },
      },
      {
        name: "w2",
        shape: [p, 2, h],
        perMember: 2 * h,
        init: (rng, out) => out.forEach((_, i) => (out[i] = rng.truncatedNormal(std))),
      },
      { name: "b2", shape: [p, 2, 1], perMember: 2, init: (_rng, out) => out.fill(bias) },
    ];
  }

  /** Logit differences `z1 - z0` [P, n] for inputs `xT` [d+1, n]. */
  #margins(xT: Tensor): Tensor {
    const [w1, w2, b2] = this.params;
    const p = this.population;
    const n = xT.shape[1];
    const h = w1.matmul(xT).relu().reshape([p, this.hidden, n]);
    const logits = w2.matmul(h).add(b2);
    return this.#diff.matmul(logits).reshape([p, n]);
  }

  /** Per-member mean cross-entropy [P] and accuracy [P] of margins on a set. */
  #score(z: Tensor, set: DeviceSet, target: Tensor): { loss: Tensor; acc: Tensor } {
    const loss = bceWithLogits(z, target, "none").mean(1);
    const acc = noGrad(() => compare("gt", z.detach().mul(set.sign), 0).mean(1));
    return { loss, acc };
  }

  /** Training cross-entropy (differentiable) and accuracy; validation/test under `noGrad`. */
  protected forward(withVal: boolean, withTest: boolean): Forward {
    const p = this.population;
    const train = this.#score(this.#margins(this.#train.xT), this.#train, this.#train.target);
    const out: Forward = { trainLoss: train.loss, trainAcc: train.acc };
    if (withVal || withTest) {
      noGrad(() => {
        const set = withTest ? this.#eval : this.#val;
        const z = this.#margins(set.xT);
        const nv = this.#val.n;
        const zVal = withTest ? z.slice([0, 0], [p, nv]) : z;
        const val = this.#score(zVal, this.#val, this.#val.target);
        out.valLoss = val.loss;
        out.valAcc = val.acc;
        if (withTest) {
          const zTest = z.slice([0, nv], [p, set.n]);
          const testSign = this.#eval.sign.slice([nv], [set.n]);
          out.test = compare("gt", zTest.mul(testSign), 0).mean(1).neg().add(1);
        }
      });
    }
    return out;
  }

  /** Frees the data tensors. */
  protected disposeData(): void {
    for (const s of [this.#train, this.#val, this.#eval]) {
      s.xT.dispose();
      s.target.dispose();
      s.sign.dispose();
    }
    this.#diff.dispose();
  }
}
