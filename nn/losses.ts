/**
 * Losses, written as compositions of tensor ops so their gradients come from the primitive rules:
 * mean squared error, the L1 norm of parameters (one reduction over a {@link FlatParams} range),
 * binary cross-entropy on logits, cross-entropy and negative log-likelihood over i32 class indices
 * with an ignore index.
 * @module
 */

import { contiguousStrides, E } from "../gpu/kernel.ts";
import { lazyMap } from "../tensor/lazy.ts";
import * as ops from "../tensor/ops.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { FlatParams, Range } from "./module.ts";

/** How a per-element loss is reduced: mean (default), sum, or none (per element). */
export type Reduction = "mean" | "sum" | "none";

function reduce(x: Tensor, reduction: Reduction): Tensor {
  return reduction === "none" ? x : reduction === "sum" ? x.sum() : x.mean();
}

function sameShape(op: string, a: Tensor, b: Tensor): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new Error(
      `${op}: input ${a.describe()} and target ${b.describe()} must have the same shape`,
    );
  }
}

/** Mean squared error `mean((pred - target)^2)`. */
export function mse(pred: Tensor, target: Tensor, reduction: Reduction = "mean"): Tensor {
  sameShape("mse", pred, target);
  return reduce(pred.sub(target).square(), reduction);
}

/**
 * `sum |w|` over a range (or group, default all) of a model's flat parameters: ONE reduction over
 * the range (not one per parameter). The gradient `sign(w)` lands directly in the flat gradient
 * buffer (alignment padding is zero, so it contributes nothing).
 */
export function l1Norm(flat: FlatParams, range: Range | string = "all"): Tensor {
  return flat.leaf(range).abs().sum();
}

/** `sum |w|` over a list of tensors (one reduction each; use {@link l1Norm} for flat params). */
export function l1NormOf(tensors: readonly Tensor[]): Tensor {
  if (tensors.length === 0) throw new Error("l1NormOf: needs at least one tensor");
  return tensors.map((t) => t.abs().sum()).reduce((a, b) => a.add(b));
}

/**
 * Binary cross-entropy on logits, stable for any |x|: `softplus(x) - x*y` (softplus computed as
 * `max(x, 0) + log(1 + exp(-|x|))`), whose gradient is `sigmoid(x) - y` everywhere (x = 0
 * included); forward and backward each fuse into the kernels around them.
 */
export function bceWithLogits(
  logits: Tensor,
  target: Tensor,
  reduction: Reduction = "mean",
): Tensor {
  sameShape("bceWithLogits", logits, target);
  return reduce(ops.unary("softplus", logits).sub(logits.mul(target)), reduction);
}

/**
 * i32 class indices with every `ignoreIndex` (and every index outside [0, classes)) replaced by
 * -1, which `pick` and `gatherRows` read as 0 and whose gradient goes nowhere. Not differentiable.
 */
export function dropIndex(idx: Tensor, ignoreIndex: number, classes: number): Tensor {
  if (idx.dtype !== "i32") throw new Error(`dropIndex: indices must be i32, got ${idx.describe()}`);
  const c = (v: number) => E.const(Math.trunc(v), "i32");
  return lazyMap(
    ([x]) =>
      E.where(
        E.binary(
          "maximum",
          E.binary("eq", x, c(ignoreIndex)),
          E.binary("maximum", E.binary("lt", x, c(0)), E.binary("ge", x, c(classes))),
        ),
        c(-1),
        x,
      ),
    idx.shape,
    [{ tensor: idx, dtype: "i32", strides: contiguousStrides(idx.shape) }],
    "i32",
    "dropIndex",
  );
}

/** Options of {@link nll} and {@link crossEntropy}. */
export interface ClassLossOptions {
  /** Target value whose rows contribute nothing (default -100, as PyTorch). */
  ignoreIndex?: number;
  /** Mean over non-ignored rows (default), sum, or per-row values. */
  reduction?: Reduction;
}

/**
 * Negative log-likelihood: `-logProbs[r, target[r]]` for `logProbs` [..., K] and i32 `target`
 * [...], averaged over the rows whose target is not `ignoreIndex` (0 when every row is ignored;
 * PyTorch gives NaN). Targets outside [0, K) are treated as ignored: checking them would need a
 * GPU readback.
 */
export function nll(logProbs: Tensor, target: Tensor, opts: ClassLossOptions = {}): Tensor {
  const { ignoreIndex = -100, reduction = "mean" } = opts;
  const k = logProbs.shape[logProbs.ndim - 1];
  const rows = logProbs.size / Math.max(k, 1);
  if (logProbs.ndim < 1 || target.size !== rows || target.dtype !== "i32") {
    throw new Error(
      `nll: expects log-probabilities [..., K] and i32 targets [...] with one target per row, got ` +
        `${logProbs.describe()} and ${target.describe()}`,
    );
  }
  const idx = dropIndex(target.reshape([rows]), ignoreIndex, k);
  const picked = ops.pick(logProbs.reshape([rows, k]), idx).neg();
  if (reduction === "none") return picked.reshape(target.shape);
  if (reduction === "sum") return picked.sum();
  // Kept rows have a remapped index >= 0, so min(index + 1, 1) is 1 for them and 0 otherwise.
  const kept = idx.cast("f32").add(1).minimum(1).sum();
  return picked.sum().div(kept.maximum(1));
}

/**
 * Cross-entropy of `logits` [..., K] against i32 class indices [...]: `nll(logSoftmax(logits))`,
 * averaged over rows whose target is not `ignoreIndex`. Computed per row as
 * `logsumexp(row) - row[target]`, the same values and gradients without the [..., K]
 * log-probabilities ever being stored (a reduction, a pick and one gradient kernel).
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: ClassLossOptions = {}): Tensor {
  const { ignoreIndex = -100, reduction = "mean" } = opts;
  const k = logits.shape[logits.ndim - 1];
  const rows = logits.size / Math.max(k, 1);
  if (logits.ndim < 1 || target.size !== rows || target.dtype !== "i32") {
    throw new Error(
      `crossEntropy: expects logits [..., K] and i32 targets [...] with one target per row, got ` +
        `${logits.describe()} and ${target.describe()}`,
    );
  }
  const x = logits.reshape([rows, k]);
  const idx = dropIndex(target.reshape([rows]), ignoreIndex, k);
  // Kept rows have a remapped index >= 0, so min(index + 1, 1) is 1 for them and 0 otherwise.
  const keptRow = idx.cast("f32").add(1).minimum(1);
  const perRow = ops.where(
    keptRow,
    x.logsumexp(-1).sub(ops.pick(x, idx)),
    ops.scalarOp("mul_scalar", keptRow, 0),
  );
  if (reduction === "none") return perRow.reshape(target.shape);
  if (reduction === "sum") return perRow.sum();
  return perRow.sum().div(keptRow.sum().maximum(1));
}
