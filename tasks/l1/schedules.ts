/**
 * Hand-made schedules for the L1 tasks that the core's rl/schedules.ts does not cover:
 *
 * - {@link thresholdGrid}: the S1-S3 rules with one threshold PER MEMBER, so a whole threshold
 *   grid search runs as one population. The rule is the core's `thresholdRule` (optimize L1 when
 *   `(A - B) / B > th`; S1: A, B = validation and training task loss; S2: L1 value and validation
 *   task loss; S3: L1 and task gradient norms) with the scalar threshold replaced by a [P] tensor;
 *   tests check that both pick the same actions.
 * - {@link taskOnly}: always the task loss (the W/O L1 and DGS runs, whose joint mode ignores
 *   actions anyway).
 * @module
 */

import { ratioSchedule, type Schedule } from "../../rl/schedules.ts";
import type { ActContext } from "../../rl/task.ts";
import { compare, tensor } from "../../tensor/functional.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, noGrad, type Tensor, tidy } from "../../tensor/tensor.ts";

/** The threshold rules of paper section 5.1.1. */
export type RuleKind = "S1" | "S2" | "S3";

/** The rule names. */
export const RULES: readonly RuleKind[] = ["S1", "S2", "S3"];

/** The (A, B) feature names of each rule (the task's `rules` feature set). */
export const RULE_COLUMNS: Record<RuleKind, readonly [string, string]> = {
  S1: ["val", "loss.task"],
  S2: ["loss.l1", "val"],
  S3: ["grad.l1", "grad.task"],
};

/** Always the task loss (action 0). */
export function taskOnly(): Schedule {
  return ratioSchedule([1, 0], "task only");
}

/**
 * Rule `kind` with member p using `thresholds[p]`: action 1 (L1) where `(A - B) / B > th_p`,
 * else 0. `featureNames` are the task's (they must include the rule's two columns).
 */
export function thresholdGrid(
  kind: RuleKind,
  featureNames: readonly string[],
  thresholds: readonly number[],
): Schedule {
  const [an, bn] = RULE_COLUMNS[kind];
  const ia = featureNames.indexOf(an);
  const ib = featureNames.indexOf(bn);
  if (ia < 0 || ib < 0) {
    throw new Error(
      `${kind}: needs features '${an}' and '${bn}'; features: [${featureNames.join(", ")}]`,
    );
  }
  const th = keep(tensor(Float32Array.from(thresholds), [thresholds.length]));
  return {
    name: `${kind} grid`,
    act(features: Tensor, _ctx: ActContext): { actions: Tensor } {
      const p = features.shape[0];
      if (p !== thresholds.length) {
        throw new Error(`${kind} grid: ${thresholds.length} thresholds for ${p} members`);
      }
      return noGrad(() =>
        tidy(() => {
          const column = (j: number) => ops.slice(features, [0, j], [p, j + 1]).reshape([p]);
          const a = column(ia);
          const b = column(ib);
          return { actions: compare("gt", a.sub(b).div(b), th).cast("i32") };
        })
      );
    },
    dispose(): void {
      th.dispose();
    },
  };
}
