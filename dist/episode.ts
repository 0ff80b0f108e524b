/**
 * Runs one episode job: the slice's members as one population (member m seeded as member
 * `job.member + m` of the round), the controller from its file, the trajectory recorded as the
 * learner's lockstep round records it. Pure in the sense that matters: the result depends on the
 * job and the controller file only, so any worker reproduces the learner's own episodes bit for
 * bit (rl/task.ts: a member's run does not depend on the others; checked by tests/dist.test.ts).
 * @module
 */

import { type ControllerFile, controllerFromJson } from "../rl/controller_file.ts";
import { DenseStepReward, type ReinforceArgs, type StepRewardArgs } from "../rl/reinforce.ts";
import { runEpisode } from "../rl/runner.ts";
import { TrajectoryBuffer } from "../rl/trajectory.ts";
import { readMany } from "../tensor/tensor.ts";
import { MLP_SPEC, REGRESSION_SPEC } from "../tasks/l1/run.ts";
import type { FeatureGroup, FeatureSetKind } from "../tasks/l1/task.ts";
import type { L1Problem } from "../tasks/l1/problems.ts";
import type { MlpConfig, RegressionConfig } from "../tasks/l1/config.ts";
import { canonicalJson, encodeArray, type EpisodeJob, sha256 } from "./job.ts";

/** A slice's episodes: final metrics and trajectory (plain arrays). */
export interface MemberEpisode {
  /** Final metrics, [M] each. */
  metrics: Record<string, number[]>;
  /** Features [T, M, K]. */
  features: Float32Array;
  /** Actions [T, M]. */
  actions: Int32Array;
  /** Dense step rewards [T, M]. */
  rewards?: Float32Array;
  /** Log-probabilities [T, M]. */
  logProbs?: Float32Array;
}

const problems = new Map<string, L1Problem>();

/** The job's problem (data generated once per config and kept). */
export function problemOf(job: Pick<EpisodeJob, "task" | "config">): L1Problem {
  const key = sha256(canonicalJson([job.task, job.config]));
  let p = problems.get(key);
  if (!p) {
    p = job.task === "regression"
      ? REGRESSION_SPEC.problem(job.config as unknown as RegressionConfig)
      : MLP_SPEC.problem(job.config as unknown as MlpConfig);
    if (problems.size > 8) problems.clear();
    problems.set(key, p);
  }
  return p;
}

/** Runs `job` with `controller` (already checked against the job's hash). */
export async function runMemberEpisode(
  job: EpisodeJob,
  controller: ControllerFile,
): Promise<MemberEpisode> {
  const problem = problemOf(job);
  const c = job.create;
  const task = problem.create({
    population: job.members,
    memberOffset: job.member,
    lambda: c.lambda,
    mode: c.mode,
    data: c.data,
    steps: c.steps,
    features: c.features as FeatureSetKind | undefined,
    dropFeatures: c.dropFeatures as FeatureGroup[] | undefined,
    sharedInit: c.sharedInit,
  });
  const args = job.args as unknown as ReinforceArgs;
  const stepReward = args.stepReward as StepRewardArgs | null;
  let ctrl: ReturnType<typeof controllerFromJson> | null = null;
  let buffer: TrajectoryBuffer | null = null;
  let dense: DenseStepReward | null = null;
  try {
    if (JSON.stringify(task.featureNames) !== JSON.stringify(job.featureSpec.names)) {
      throw new Error(
        `the job's features [${job.featureSpec.names}] are not the task's [${task.featureNames}]`,
      );
    }
    ctrl = controllerFromJson(controller, {
      featureNames: task.featureNames,
      actions: task.actions.map((a) => a.name),
    });
    const t = job.steps;
    buffer = new TrajectoryBuffer(t, job.members, task.featureNames.length, {
      rewards: stepReward !== null,
      logProbs: job.logProbs,
    });
    dense = stepReward ? new DenseStepReward(job.members, stepReward, args) : null;
    const b = buffer;
    const d = dense;
    const run = await runEpisode(task, ctrl, {
      steps: t,
      seed: job.seed,
      sampleSeed: job.sampleSeed,
      memberOffset: job.member,
      buffer: b,
      onStep: d
        ? (info) => b.record("rewards", info.i, d.step(task.metrics()[stepReward!.metric]))
        : undefined,
      reward: problem.reward,
    });
    const fields = [b.features, b.actions, b.scalars.rewards, b.scalars.logProbs];
    const values = await readMany(fields.filter((x) => x !== undefined));
    const [features, actions] = values;
    let i = 2;
    return {
      metrics: run.metrics,
      features: Float32Array.from(features as Float32Array),
      actions: Int32Array.from(actions as Int32Array),
      ...(b.scalars.rewards ? { rewards: Float32Array.from(values[i++] as Float32Array) } : {}),
      ...(b.scalars.logProbs ? { logProbs: Float32Array.from(values[i++] as Float32Array) } : {}),
    };
  } finally {
    dense?.dispose();
    buffer?.dispose();
    ctrl?.dispose();
    task.dispose();
  }
}

/** The trajectory fields of a result (base64). */
export function encodeEpisode(e: MemberEpisode): {
  features: string;
  actions: string;
  rewards?: string;
  logProbs?: string;
} {
  return {
    features: encodeArray(e.features),
    actions: encodeArray(e.actions),
    ...(e.rewards ? { rewards: encodeArray(e.rewards) } : {}),
    ...(e.logProbs ? { logProbs: encodeArray(e.logProbs) } : {}),
  };
}
