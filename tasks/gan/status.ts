/**
 * The host view of the GAN task's GPU status vector (`GanTask.status`: losses, IS, action run
 * and counts), as the driver and the progress line read it.
 * @module
 */

/** The host view of {@link GanTask.status}. */
export interface GanStatus {
  /** l_G (latest). */
  genCost: number;
  /** l_D (latest). */
  discCost: number;
  /** D's accuracy on a real and a fake batch (latest). */
  dAccuracy: number;
  /** Latest IS (0 before the first evaluation). */
  is: number;
  /** Its std over splits. */
  isStd: number;
  /** Length of the current run of one action. */
  run: number;
  /** The last action (-1 before the first step). */
  last: number;
  /** G actions so far. */
  gCount: number;
  /** Steps with non-finite losses or gradient norms so far. */
  nonfinite: number;
}

/** Decodes the values of {@link GanTask.status}. */
export function decodeStatus(v: ArrayLike<number>): GanStatus {
  return {
    genCost: v[0],
    discCost: (v[1] + v[2]) / 2,
    dAccuracy: (v[3] + v[4]) / 2,
    is: v[5],
    isStd: v[6],
    run: v[7],
    last: v[8],
    gCount: v[9],
    nonfinite: v[10],
  };
}

/**
 * The IS as the progress line shows it: `-` until the first evaluation (the status holds 0 then;
 * a measured IS is at least 1), otherwise 3 decimals, so an untrained generator's measured 1.00001
 * reads `1.000`, not a bare `1` that looks like a placeholder.
 */
export function formatIs(is: number): string {
  return is > 0 ? is.toFixed(3) : Number.isNaN(is) ? "NaN" : "-";
}
