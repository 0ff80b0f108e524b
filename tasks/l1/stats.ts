/**
 * Paired statistics for the regression and MLP comparisons: every method's trial p starts from
 * the same initialization (`memberSeed(seed, p)`), so methods are compared by the per-trial
 * differences, with a Student-t 95% confidence interval of their mean.
 * @module
 */

import { mean, std } from "./methods.ts";

/** Two-sided 97.5% Student-t quantiles for 1..30 degrees of freedom. */
const T975 = [
  12.706,
  4.303,
  3.182,
  2.776,
  2.571,
  2.447,
  2.365,
  2.306,
  2.262,
  2.228,
  2.201,
  2.179,
  2.16,
  2.145,
  2.131,
  2.12,
  2.11,
  2.101,
  2.093,
  2.086,
  2.08,
  2.074,
  2.069,
  2.064,
  2.06,
  2.056,
  2.052,
  2.048,
  2.045,
  2.042,
];

/** The 97.5% quantile of Student's t with `df` degrees of freedom (normal beyond 30). */
export function tQuantile975(df: number): number {
  if (!(df >= 1)) return Infinity;
  return df <= 30 ? T975[Math.floor(df) - 1] : 1.96 + 2.4 / df;
}

/** A paired comparison `a - b` over trials. */
export interface PairedDiff {
  /** Mean difference. */
  mean: number;
  /** 95% confidence interval of the mean difference. */
  lo: number;
  /** Upper end. */
  hi: number;
  /** Trials. */
  n: number;
  /** Trials where a is better (lower when `higherIsBetter` is false), equal, worse. */
  wins: number;
  /** Ties. */
  ties: number;
  /** Losses. */
  losses: number;
  /**
   * "better" when the interval lies entirely on the better side of 0, "worse" when entirely on
   * the worse side, else "tie".
   */
  verdict: "better" | "tie" | "worse";
}

/**
 * The paired difference `a[i] - b[i]` with its mean, 95% t interval, per-trial win/tie/loss and
 * verdict; "better" means smaller unless `higherIsBetter`.
 */
export function pairedDiff(
  a: readonly number[],
  b: readonly number[],
  higherIsBetter = false,
): PairedDiff {
  if (a.length !== b.length || a.length === 0) {
    throw new Error(`pairedDiff: ${a.length} and ${b.length} values (need equal, > 0)`);
  }
  const d = a.map((v, i) => v - b[i]);
  const m = mean(d);
  const half = d.length > 1 ? tQuantile975(d.length - 1) * std(d) / Math.sqrt(d.length) : Infinity;
  const sign = higherIsBetter ? -1 : 1;
  const wins = d.filter((x) => sign * x < 0).length;
  const ties = d.filter((x) => x === 0).length;
  const [lo, hi] = [m - half, m + half];
  const verdict = (higherIsBetter ? lo > 0 : hi < 0)
    ? "better"
    : (higherIsBetter ? hi < 0 : lo > 0)
    ? "worse"
    : "tie";
  return { mean: m, lo, hi, n: d.length, wins, ties, losses: d.length - wins - ties, verdict };
}
