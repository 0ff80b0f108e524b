/**
 * Controller training by evolution strategies on the L1 tasks (`controller.updates: es`; the
 * algorithm is rl/es.ts): every round runs the P members as P/2 antithetic pairs of perturbed
 * controllers, a pair from one task initialization and with one sampling stream, and takes one
 * Adam step along the ranked reward differences. Also {@link actedDiagnostics}, the per-round
 * diagnostics of the policy that acted, shared with the REINFORCE rounds (tasks/l1/training.ts).
 * @module
 */

import * as ops from "../../tensor/ops.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { esRound, PerturbedPolicy } from "../../rl/es.ts";
import type { Reinforce } from "../../rl/reinforce.ts";
import { deriveSeed } from "../../rl/runner.ts";
import { TrajectoryBuffer } from "../../rl/trajectory.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { mean, std } from "./methods.ts";
import type { L1Problem } from "./problems.ts";
import type { L1ScheduleTask } from "./task.ts";

/** Time bins of the L1 share over an episode (`RoundLog.l1ByTime`). */
export const TIME_BINS = 10;

/** What a round measured besides rewards (the optional fields of `RoundLog`). */
export interface ActedDiagnostics {
  /** Advantage (or ES fitness) statistics. */
  advantage?: { mean: number; std: number; absMean: number; clipped: number };
  /** Mean policy entropy (nats) over the round's states. */
  entropy?: number;
  /** L1 share per tenth of the episode. */
  l1ByTime?: number[];
  /** Mean controller gradient norm per update. */
  gradNorm?: number;
}

/**
 * Queues, on the device, the mean entropy of `controller` over features [rows, K] and the share
 * of L1 actions (action 1) in each of {@link TIME_BINS} time bins of actions [T, P]; returns the
 * two kept tensors ([1] and [bins]) for one read with the round's other values.
 */
export function actedDiagnostics(
  controller: PolicyController,
  features: Tensor,
  actions: Tensor,
): [Tensor, Tensor] {
  const [t, p] = actions.shape;
  const bins = Math.min(TIME_BINS, t);
  const edges = Array.from({ length: bins + 1 }, (_, i) => Math.round((i * t) / bins));
  return tidy(() =>
    noGrad(() => {
      const acts = actions.cast("f32");
      const byBin = edges.slice(0, -1).map((lo, i) =>
        ops.slice(acts, [lo, 0], [edges[i + 1], p]).mean().reshape([1])
      );
      return [
        keep(controller.entropy(features).mean().reshape([1])),
        keep(ops.concat(byBin, 0)),
      ];
    })
  );
}

/** The options {@link esRounds} reads. */
export interface EsTrainOptions {
  /** Rounds in all. */
  rounds: number;
  /** Steps per episode. */
  steps: number;
  /** Seed (task, sampling and noise streams derive from it per round). */
  seed: number;
  /** Parameter noise scale sigma. */
  sigma: number;
}

/**
 * ES rounds `start..rounds` (see the module doc): the task (built with `initGroup: 2`, or a
 * shared initialization) is reset per round, the perturbed members act for `steps` steps, and
 * `reinforce`'s Adam steps along the ES direction of the centered reward ranks. The round's
 * features also update the controller's running normalization (when it has one). One read per
 * round.
 */
export async function esRounds(
  task: L1ScheduleTask,
  reinforce: Reinforce,
  problem: L1Problem,
  o: EsTrainOptions,
  start: number,
  onRound: (
    round: number,
    rewards: number[],
    metrics: Record<string, number[]>,
    diagnostics: ActedDiagnostics,
  ) => Promise<void>,
): Promise<void> {
  const controller = reinforce.controller as PolicyController;
  const p = task.population;
  const k = task.featureNames.length;
  const policy = new PerturbedPolicy(controller, reinforce.flat, p);
  const buffer = new TrajectoryBuffer(o.steps, p, k);
  try {
    for (let round = start; round < o.rounds; round++) {
      buffer.clear();
      const all = buffer.features.reshape([o.steps * p, k]);
      let diagnostics: Tensor[] = [];
      const { run, fitness } = await esRound(task, policy, reinforce.optimizer, {
        steps: o.steps,
        seed: deriveSeed(o.seed, round),
        sampleSeed: deriveSeed(o.seed + 1, round),
        noiseSeed: deriveSeed(o.seed + 2, round),
        sigma: o.sigma,
        reward: problem.reward,
        buffer,
        beforeStep: () => {
          const gradNorm = tidy(() =>
            keep(noGrad(() => reinforce.flat.grad.square().sum().sqrt().reshape([1])))
          );
          diagnostics = [...actedDiagnostics(controller, all, buffer.actions), gradNorm];
        },
      });
      reinforce.updates++;
      tidy(() => noGrad(() => controller.normalizer.update(all)));
      const [ent, byTime, norm] = await readMany(diagnostics);
      diagnostics.forEach((d) => d.dispose());
      all.dispose();
      await onRound(round, run.rewards, run.metrics, {
        advantage: {
          mean: mean(fitness),
          std: std(fitness),
          absMean: mean(fitness.map(Math.abs)),
          clipped: 0,
        },
        entropy: ent[0],
        l1ByTime: Array.from(byTime),
        gradNorm: norm[0],
      });
    }
  } finally {
    policy.dispose();
    buffer.dispose();
  }
}
