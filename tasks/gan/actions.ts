/**
 * The GAN task's actions (`[G, D]`, as the authors' code) and the names of its feature sets (how
 * and the state behind them: tasks/gan/task.ts).
 *
 * Feature sets (`features`):
 *
 * - `authors` (4): rl/features.ts `featureSet("authors-gan")`: `ln(g_D / g_G)`,
 *   `EMA(gen_cost) - 1`, `(EMA(d_real) + EMA(d_fake)) / 2`, `IS - 8`; all zeros before the first
 *   step, as the authors' `get_state`.
 * - `paper` (12): the generic vector of section 4.1 with the GAN variations of section 4.2, named
 *   as rl/features.ts `paperFeatureNames`: `progress` (t/T), `grad.G`, `grad.D`, `loss.G`,
 *   `loss.D`, `val` (the IS), `val.ema`, `val.d1.ema`, `val.d2.ema`, then the extras
 *   `grad.log_ratio` (`ln(g_G / g_D)`, 0 until both are known), `loss.ratio` (`l_G / l_D`) and
 *   `d_accuracy` (mean of D's accuracy on real and fake).
 * @module
 */

import { featureSet } from "../../rl/feature_sets.ts";
import { paperFeatureNames } from "../../rl/features.ts";
import type { Action } from "../../rl/task.ts";

/** Index of the G action. */
export const G_ACTION = 0;

/** Index of the D action. */
export const D_ACTION = 1;

/** The two actions, in index order: update G on l_G, update D on l_D. */
export const GAN_ACTIONS: readonly Action[] = [
  { name: "G", loss: "gen", group: "G" },
  { name: "D", loss: "disc", group: "D" },
];

/** Selectable feature sets (see the module doc). */
export type GanFeatureSet = "authors" | "paper";

/** The extra features of the paper's GAN set, appended after the generic ones. */
export const PAPER_GAN_EXTRAS: readonly string[] = [
  "grad.log_ratio",
  "loss.ratio",
  "d_accuracy",
];

/** Feature names of a feature set. */
export function ganFeatureNames(set: GanFeatureSet): string[] {
  if (set === "authors") return [...featureSet("authors-gan").names];
  return paperFeatureNames({ losses: ["G", "D"], valDiffOrders: 2, extras: PAPER_GAN_EXTRAS });
}
