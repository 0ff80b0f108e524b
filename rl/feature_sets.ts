/**
 * The authors' named feature sets ({@link featureSet}): regression (5 features), classification
 * (6), GAN (4). The task computes the raw quantities; the formulas live here. The paper's generic
 * feature vector is rl/features.ts `FeatureHistory`.
 * @module
 */

import * as ops from "../tensor/ops.ts";
import { full } from "../tensor/functional.ts";
import { noGrad, type Tensor, tidy } from "../tensor/tensor.ts";

/** Columns [P, 1] of [P] tensors joined into [P, K]. */
export function columns(cols: Tensor[]): Tensor {
  const p = cols[0].shape[0];
  return ops.concat(cols.map((c) => c.reshape([p, 1])), 1);
}

// ---------------------------------------------------------------- the authors' feature sets

/**
 * A named feature set: feature names, the raw per-member quantities ([P] tensors) the task must
 * supply, and the formulas that turn them into the feature vector [P, K].
 */
export interface NamedFeatureSet {
  /** Set name, e.g. "authors-regression". */
  readonly name: string;
  /** What it is and where it comes from. */
  readonly description: string;
  /** Feature names in order. */
  readonly names: readonly string[];
  /** Raw quantities `compute` needs, each an f32 [P] tensor. */
  readonly inputs: readonly string[];
  /** The features [P, K] from the raw quantities (throws naming missing inputs). */
  compute(raw: Record<string, Tensor>): Tensor;
}

/** Names of the selectable feature sets. */
export type FeatureSetName = "authors-regression" | "authors-classification" | "authors-gan";

/** Options of {@link featureSet}. */
export interface FeatureSetOptions {
  /** GAN: subtracted from the inception score (8 for MNIST, 6 for CIFAR-10; default 8). */
  isOffset?: number;
}

function need(set: string, inputs: readonly string[], raw: Record<string, Tensor>): Tensor[] {
  const missing = inputs.filter((k) => !raw[k]);
  if (missing.length) {
    throw new Error(
      `feature set '${set}' needs raw inputs [${inputs.join(", ")}]; missing [${
        missing.join(", ")
      }]`,
    );
  }
  const p = raw[inputs[0]].size;
  return inputs.map((k) => raw[k].reshape([p]));
}

/** `num / den` where `den` is non-zero and `cond` holds, 0 elsewhere. */
function guardedRatio(num: Tensor, den: Tensor, cond: Tensor): Tensor {
  const safe = ops.where(cond, den, full([1], 1));
  return ops.where(cond, num.div(safe), full([1], 0));
}

/** 1 where x != 0, else 0. */
function nonZero(x: Tensor): Tensor {
  return ops.scalarOp("step", x.abs(), 0);
}

/** `(v - t) / t` where t > 1e-6, else 0 (the authors' relative validation/train gap). */
function relativeGap(v: Tensor, t: Tensor): Tensor {
  return guardedRatio(v.sub(t), t, ops.scalarOp("step", t, 1e-6));
}

const REGRESSION_INPUTS = [
  "valLoss",
  "trainLoss",
  "improvementEma",
  "mseLoss",
  "l1Loss",
  "gradMse",
  "gradL1",
] as const;

const CLASSIFICATION_INPUTS = [
  "valLoss",
  "trainLoss",
  "improvementEma",
  "ceLoss",
  "l1Loss",
  "trainAcc",
  "valAcc",
  "gradCe",
  "gradL1",
] as const;

const GAN_INPUTS = [
  "gradG",
  "gradD",
  "genCostEma",
  "dRealEma",
  "dFakeEma",
  "inceptionScore",
] as const;

/**
 * The authors' code's feature sets (reference doc sections 4.1-4.3), selectable by name:
 *
 * - `authors-regression` (5): `(v-t)/t` of validation vs batch MSE; `1 + ln(|I|+1e-5)/12` with
 *   I the {@link ImprovementEma}; `min(1, mse/20) - 0.5`; `l1 - 1`; `g_mse - g_l1` (normalized
 *   gradient norms).
 * - `authors-classification` (6): `(v-t)/t` on cross-entropy; `1 + ln(|I|+1e-4)/10`; CE; L1;
 *   `(acc_train - acc_val)/acc_val` (0 when acc_val = 0); `(g_ce - g_l1)/g_l1` (0 when g_l1 = 0).
 * - `authors-gan` (4): `ln(g_D / g_G)` (normalized norms; 0 unless both > 0); `EMA(gen cost) - 1`;
 *   `(EMA(D real) + EMA(D fake)) / 2`; `IS - isOffset`. The authors' state is all zeros before
 *   the first step: the task returns zeros then.
 *
 * No t/T feature, and every loss and gradient is computed at every step (no lazy history).
 */
export function featureSet(name: FeatureSetName, opts: FeatureSetOptions = {}): NamedFeatureSet {
  switch (name) {
    case "authors-regression":
      return {
        name,
        description: "authors' regression state (5 features; safpla/AutoLossRelease models/reg.py)",
        names: [
          "rel_val_train_gap",
          "log_improvement_ema",
          "mse_loss_scaled",
          "l1_loss_shifted",
          "grad_mse_minus_l1",
        ],
        inputs: REGRESSION_INPUTS,
        compute(raw) {
          const [v, t, ib, mse, l1, gm, gl] = need(name, REGRESSION_INPUTS, raw);
          return noGrad(() =>
            tidy(() =>
              columns([
                relativeGap(v, t),
                ib.abs().add(1e-5).log().mul(1 / 12).add(1),
                mse.mul(1 / 20).minimum(1).sub(0.5),
                l1.sub(1),
                gm.sub(gl),
              ])
            )
          );
        },
      };
    case "authors-classification":
      return {
        name,
        description:
          "authors' classification state (6 features; safpla/AutoLossRelease models/cls.py)",
        names: [
          "rel_val_train_gap",
          "log_improvement_ema",
          "ce_loss",
          "l1_loss",
          "rel_train_val_acc_gap",
          "rel_grad_ce_l1_gap",
        ],
        inputs: CLASSIFICATION_INPUTS,
        compute(raw) {
          const [v, t, ib, ce, l1, ta, va, gc, gl] = need(name, CLASSIFICATION_INPUTS, raw);
          return noGrad(() =>
            tidy(() =>
              columns([
                relativeGap(v, t),
                ib.abs().add(1e-4).log().mul(1 / 10).add(1),
                ce,
                l1,
                guardedRatio(ta.sub(va), va, nonZero(va)),
                guardedRatio(gc.sub(gl), gl, nonZero(gl)),
              ])
            )
          );
        },
      };
    case "authors-gan": {
      const isOffset = opts.isOffset ?? 8;
      return {
        name,
        description: `authors' GAN state (4 features; IS - ${isOffset})`,
        names: ["log_grad_d_over_g", "gen_cost_ema_minus_1", "d_output_ema", "is_offset"],
        inputs: GAN_INPUTS,
        compute(raw) {
          const [gg, gd, gen, dr, df, is] = need(name, GAN_INPUTS, raw);
          return noGrad(() =>
            tidy(() => {
              const both = ops.scalarOp("step", gg, 0).mul(ops.scalarOp("step", gd, 0));
              const ratio = ops.where(
                both,
                gd.div(ops.where(both, gg, full([1], 1))),
                full([1], 1),
              );
              const logRatio = ops.where(both, ratio.log(), full([1], 0));
              return columns([logRatio, gen.sub(1), dr.add(df).mul(0.5), is.sub(isOffset)]);
            })
          );
        },
      };
    }
    default:
      throw new Error(
        `unknown feature set '${name}'; sets: authors-regression, authors-classification, ` +
          "authors-gan (or the paper's set: FeatureHistory)",
      );
  }
}
