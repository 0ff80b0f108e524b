/**
 * The task registry: the `Task` contract of a command-line task and the map of registered tasks.
 * tasks/mod.ts registers every task folder's `Task` (cli.ts imports it) and cli.ts dispatches
 * `train <task>`, `eval <task>`, ... to the registered handlers.
 * @module
 */

import type { ProfileWorkload } from "../run/profile.ts";
import type { SessionOptions } from "../run/session.ts";

/** The subcommands a task can implement. */
export type TaskCommand = "train" | "compare" | "eval" | "transfer" | "baseline";

/** The task subcommands, in help order. */
export const TASK_COMMANDS: readonly TaskCommand[] = [
  "train",
  "compare",
  "eval",
  "transfer",
  "baseline",
];

/** The options common to every task subcommand, as parsed by cli.ts. */
export interface CommonOptions extends SessionOptions {
  /** The subcommand being run. */
  command: TaskCommand | "profile";
  /** Positional arguments after the task name (e.g. a run directory for `eval`). */
  args: string[];
  /** `--workers URL` and the NATS flags: run the episodes on workers (dist/). */
  workers?: {
    url: string;
    insecure?: boolean;
    creds?: string;
    nkey?: string;
    tlsCa?: string;
    /** `--job-members M`: members of a round per job. */
    membersPerJob?: number;
  };
}

/** A subcommand implementation; returns the exit code (undefined means 0). */
export type TaskHandler = (opts: CommonOptions) => Promise<number | void> | number | void;

/** A task and the subcommands it implements. */
export interface Task {
  /** Name used on the command line: lowercase letters, digits, `-` and `_`. */
  name: string;
  /** One line for the task list. */
  description: string;
  /** `train <task>`. */
  train?: TaskHandler;
  /** `compare <task>`. */
  compare?: TaskHandler;
  /** `eval <task>`. */
  eval?: TaskHandler;
  /** `transfer <task>`. */
  transfer?: TaskHandler;
  /** `baseline <task>`. */
  baseline?: TaskHandler;
  /** `profile <task>`: the training step the kernel profiler runs (run/profile.ts). */
  profile?: (opts: CommonOptions) => Promise<ProfileWorkload>;
}

const tasks = new Map<string, Task>();

/** Registers a task; throws if the name is malformed or already taken. */
export function registerTask(task: Task): void {
  if (!/^[a-z][a-z0-9_-]*$/.test(task.name)) throw new Error(`bad task name '${task.name}'`);
  if (tasks.has(task.name)) throw new Error(`task '${task.name}' is already registered`);
  tasks.set(task.name, task);
}

/** The task named `name`, if registered. */
export function getTask(name: string): Task | undefined {
  return tasks.get(name);
}

/** All registered tasks, sorted by name. */
export function listTasks(): Task[] {
  return [...tasks.values()].sort((a, b) => a.name.localeCompare(b.name));
}
