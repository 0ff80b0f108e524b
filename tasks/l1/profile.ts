/**
 * The `profile regression|mlp` workload: a population step of `controller.population` members,
 * each member taking the task or the L1 action in turn, features every step.
 * @module
 */

import { init } from "../../gpu/backend.ts";
import type { ProfileWorkload } from "../../run/profile.ts";
import { resolveTaskConfig } from "../../run/session.ts";
import { taskWorkload } from "../profile.ts";
import type { CommonOptions } from "../registry.ts";
import type { SharedConfig } from "./config.ts";
import type { TaskSpec } from "./run.ts";

/** The population step of an L1 task (regression or mlp). */
export async function l1Workload<C extends SharedConfig>(
  spec: TaskSpec<C>,
  opts: CommonOptions,
): Promise<ProfileWorkload> {
  const cfg = await resolveTaskConfig(opts, spec.schema, spec.name) as unknown as C;
  await init();
  const problem = spec.problem(cfg);
  const p = cfg.controller.population;
  const task = problem.create({
    population: p,
    lambda: 0,
    mode: "schedule",
    data: "task",
    steps: 1000,
  });
  task.reset(cfg.seed);
  const mixed = Int32Array.from({ length: p }, (_, i) => i % 2);
  const flipped = mixed.map((v) => 1 - v);
  return taskWorkload(
    task,
    [mixed, flipped],
    `${spec.name} step (${opts.preset}): a population of ${p} members, task and L1 actions mixed, ` +
      "features every step",
  );
}
