/**
 * What `cli.ts profile <task>` runs: one training step of a task at the sizes of its resolved
 * config (preset, `--config`, `--set`), with every step's features computed as a controller would
 * read them. Each task folder holds its own workload (tasks/gan/profile.ts, tasks/l1/profile.ts,
 * tasks/nmt/profile.ts) and names it in its `Task`'s `profile`; this module holds what they share.
 * @module
 */

import type { ProfileWorkload } from "../run/profile.ts";
import type { ScheduleTask } from "../rl/task.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** A workload stepping a {@link ScheduleTask} through host actions, reading features each step. */
export function taskWorkload(
  task: ScheduleTask,
  actions: Int32Array[],
  description: string,
  extra: () => void = () => {},
): ProfileWorkload {
  let last: Tensor | null = null;
  return {
    description,
    step(i) {
      task.step(actions[i % actions.length]);
      // The runner reads the features after every step; they are part of the step's cost.
      last = task.features();
    },
    dispose() {
      void last;
      task.dispose();
      extra();
    },
  };
}
