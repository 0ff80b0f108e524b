/**
 * AutoLoss controllers and their training: features, controllers, REINFORCE, PPO (with GAE), ES,
 * rewards, hand-designed schedules, controller files and the schedule runner. The contract with
 * tasks is rl/task.ts.
 * @module
 */

export * from "./task.ts";
export * from "./features.ts";
export * from "./feature_sets.ts";
export * from "./normalization.ts";
export * from "./controller.ts";
export * from "./trajectory.ts";
export * from "./rewards.ts";
export * from "./reinforce.ts";
export * from "./gae.ts";
export * from "./ppo.ts";
export * from "./es.ts";
export * from "./schedules.ts";
export * from "./controller_file.ts";
export * from "./runner.ts";
export * from "./training.ts";
export * from "./toy_tasks.ts";
export { ModelTask, type ModelTaskOptions } from "./model_task.ts";
