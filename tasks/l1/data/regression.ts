/**
 * Synthetic data for the d-ary quadratic regression task (paper section 5.1.1 and appendix A.2;
 * the authors' `dataio/gen_reg_data.py`): a linear ground truth `v = w . u + xi` with
 * `w ~ U[-0.5, 0.5]^d`, `u ~ U[-5, 5]^d`, `xi ~ N(0, sigma^2)` (sigma = 2: the authors pass 2 as
 * numpy's `scale`, a standard deviation, so the noise variance, and the MSE floor, is about 4).
 * Five partitions are drawn in the authors' order: controller-train, controller-validation,
 * task-train, task-validation, test. Everything is drawn on the host from one seeded stream.
 * @module
 */

import { Rng } from "./rng.ts";

/** A set of examples: row-major inputs x [n, d] and targets y [n]. */
export interface RegressionSplit {
  /** Inputs, row-major [n, d]. */
  x: Float32Array;
  /** Targets [n]. */
  y: Float32Array;
  /** Number of examples. */
  n: number;
  /** Input dimension. */
  d: number;
}

/** The five partitions, in generation order. */
export const PARTITIONS = ["trainCtrl", "validCtrl", "trainTask", "validTask", "test"] as const;

/** Name of one of the five partitions. */
export type PartitionName = typeof PARTITIONS[number];

/** Options of {@link makeRegressionData}. */
export interface RegressionDataOptions {
  /** Input dimension d (default 16). */
  dim?: number;
  /** Examples per partition, in {@link PARTITIONS} order (default 200 each). */
  sizes?: readonly number[];
  /** Seed (default 1, as the authors' numpy seed). */
  seed?: number;
  /** Standard deviation of the label noise (default 2). */
  noiseStd?: number;
  /** Half-width of the uniform ground-truth weights (default 0.5). */
  weightRange?: number;
  /** Half-width of the uniform inputs (default 5). */
  inputRange?: number;
}

/** A generated regression data set. */
export interface RegressionData {
  /** The ground-truth weights [d]. */
  w: Float32Array;
  /** Label noise standard deviation. */
  noiseStd: number;
  /** The partitions by name. */
  partitions: Record<PartitionName, RegressionSplit>;
}

/** Generates the regression data set (see the module doc). */
export function makeRegressionData(opts: RegressionDataOptions = {}): RegressionData {
  const d = opts.dim ?? 16;
  const sizes = opts.sizes ?? [200, 200, 200, 200, 200];
  if (sizes.length !== PARTITIONS.length) {
    throw new Error(`makeRegressionData: need ${PARTITIONS.length} partition sizes`);
  }
  const noiseStd = opts.noiseStd ?? 2;
  const wr = opts.weightRange ?? 0.5;
  const xr = opts.inputRange ?? 5;
  const rng = new Rng(opts.seed ?? 1);
  const w = Float32Array.from({ length: d }, () => rng.uniformIn(-wr, wr));
  const parts = {} as Record<PartitionName, RegressionSplit>;
  PARTITIONS.forEach((name, i) => {
    const n = sizes[i];
    const x = new Float32Array(n * d);
    const y = new Float32Array(n);
    for (let r = 0; r < n; r++) {
      let dot = 0;
      for (let j = 0; j < d; j++) {
        const v = rng.uniformIn(-xr, xr);
        x[r * d + j] = v;
        dot += w[j] * v;
      }
      y[r] = dot + noiseStd * rng.normal();
    }
    parts[name] = { x, y, n, d };
  });
  return { w, noiseStd, partitions: parts };
}

/** Joins splits row-wise (e.g. task-train with task-validation for the W/O L1 baseline). */
export function concatRegression(...splits: RegressionSplit[]): RegressionSplit {
  const d = splits[0].d;
  if (splits.some((s) => s.d !== d)) throw new Error("concatRegression: dimensions differ");
  const n = splits.reduce((a, s) => a + s.n, 0);
  const x = new Float32Array(n * d);
  const y = new Float32Array(n);
  let at = 0;
  for (const s of splits) {
    x.set(s.x, at * d);
    y.set(s.y, at);
    at += s.n;
  }
  return { x, y, n, d };
}

/**
 * The MSE of the ground-truth linear model on a split: the noise floor the paper subtracts
 * ("3.94"); its expectation is `noiseStd^2`.
 */
export function noiseFloor(data: RegressionData, split: RegressionSplit): number {
  const { x, y, n, d } = split;
  let se = 0;
  for (let r = 0; r < n; r++) {
    let dot = 0;
    for (let j = 0; j < d; j++) dot += data.w[j] * x[r * d + j];
    se += (y[r] - dot) ** 2;
  }
  return se / n;
}
