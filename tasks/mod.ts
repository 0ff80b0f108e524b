/**
 * The one registration point of the command-line tasks: importing this module registers every
 * task of {@link TASKS} (cli.ts imports it). Each task folder exports its `Task` (name, one-line
 * description, subcommand handlers, profile workload) from its `commands.ts`; adding a task means
 * adding its folder and one entry here.
 * @module
 */

import { CLASSIFIER_TASK } from "./classifier/commands.ts";
import { GAN_TASK } from "./gan/commands.ts";
import { MLP_TASK, REGRESSION_TASK } from "./l1/commands.ts";
import { NMT_TASK } from "./nmt/commands.ts";
import { registerTask, type Task } from "./registry.ts";

/** The command-line tasks, registered when this module is imported. */
export const TASKS: readonly Task[] = [
  REGRESSION_TASK,
  MLP_TASK,
  CLASSIFIER_TASK,
  GAN_TASK,
  NMT_TASK,
];

for (const task of TASKS) registerTask(task);
