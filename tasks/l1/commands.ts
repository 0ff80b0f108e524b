/**
 * The regression and MLP tasks on the command line ({@link REGRESSION_TASK}, {@link MLP_TASK},
 * registered in tasks/mod.ts), written once over `L1Problem`:
 *
 * - `train <task>`: REINFORCE on the controller partitions; writes controller.json, per-round
 *   metrics, a reward curve and a summary into the run directory, and a checkpoint after every
 *   round: `train <task> --resume RUNDIR` continues an interrupted run (Ctrl-C, crash) from its
 *   last completed round and ends exactly as the uninterrupted run would have.
 * - `compare`: tasks/l1/compare.ts; `eval` and `transfer mlp`: tasks/l1/evaluate.ts; shared pieces
 *   (paper tables, specs, controller training from a config): tasks/l1/run.ts.
 * @module
 */

import { GracefulStop } from "../../run/signals.ts";
import { formatDuration } from "../../run/progress.ts";
import type { SharedConfig } from "./config.ts";
import { type TrainedController, TrainingStopped } from "./training.ts";
import type { ControllerTrainCheckpoint } from "./training_checkpoint.ts";
import {
  loadTrainCheckpoint,
  openCommandRun,
  syncRoundMetrics,
  TRAIN_CHECKPOINT,
} from "./resume.ts";
import type { CommonOptions, Task, TaskHandler } from "../registry.ts";
import { l1Workload } from "./profile.ts";
import {
  fmt,
  machine,
  MLP_SPEC,
  REGRESSION_SPEC,
  type TaskSpec,
  trainFromConfig,
  trainingShape,
  writeController,
  writeLearningReport,
} from "./run.ts";
import { compareCommand, connectWorkers } from "./compare.ts";
import { evalCommand, transferCommand } from "./evaluate.ts";
import { sweepCommand } from "./sweep.ts";

/**
 * `train <task>`: a new run, or with `--resume DIR` the continuation of an interrupted one from
 * the checkpoint of its last completed round (a resumed run that had finished only rewrites its
 * final files).
 */
async function trainCommand<C extends SharedConfig>(spec: TaskSpec<C>, opts: CommonOptions) {
  const { cfg, run, resumed } = await openCommandRun<C>(opts, spec.schema);
  let resume: ControllerTrainCheckpoint | undefined;
  let preset: string = opts.preset;
  if (resumed) {
    resume = await loadTrainCheckpoint(run);
    if (resume) {
      preset = resume.tensors.metadata.preset ?? preset;
      console.log(`resuming ${run.path} after round ${resume.round} of ${cfg.controller.rounds}`);
    } else {
      console.log(`resuming ${run.path}: no round was completed, starting over`);
    }
    await syncRoundMetrics(run, resume?.history ?? []);
  }
  const problem = spec.problem(cfg);
  // Ctrl-C: the round in progress finishes, its checkpoint is written, then the run stops.
  const stop = new GracefulStop("round");
  let trained: TrainedController;
  const learner = await connectWorkers(opts, spec.name, cfg, run.path);
  try {
    trained = await trainFromConfig(problem, cfg, console.log, {
      run,
      checkpoint: { path: run.file(TRAIN_CHECKPOINT), metadata: { preset } },
      resume,
      remote: learner?.rounds,
      shouldStop: () => stop.requested,
    });
  } catch (err) {
    if (!(err instanceof TrainingStopped)) throw err;
    console.error(
      `stopped: ${run.file(TRAIN_CHECKPOINT)} holds ${err.rounds} of ${cfg.controller.rounds} ` +
        `rounds; continue with: train ${spec.name} --resume ${run.path}`,
    );
    return 130;
  } finally {
    stop.done();
    await learner?.close();
  }
  if (learner) console.log(`workers: ${JSON.stringify(learner.stats)}`);
  await writeController(run, trained.file);
  const learning = await writeLearningReport(
    run,
    trained.history,
    `${spec.name}: controller training`,
  );
  const summary = {
    task: spec.name,
    preset,
    rounds: trained.history.length,
    episodes: trained.history.length * cfg.controller.population,
    keptReward: trained.file.provenance.reward,
    seconds: trained.seconds,
    history: trained.history,
    machine: await machine(),
  };
  const md = [
    `# train ${spec.name} (${preset})`,
    "",
    `${summary.episodes} episodes of ${cfg.controller.steps} steps (${
      trainingShape(cfg, summary.rounds)
    }) in ` +
    `${formatDuration(trained.seconds)}; kept controller reward ${
      fmt(summary.keptReward ?? NaN, 2)
    }.`,
    "",
    `Controller: ${run.file("controller.json")}`,
    "",
    "Learning (reward.svg, learning_*.svg):",
    "",
    learning,
  ].join("\n");
  await run.writeSummary(summary, md);
  console.log(md);
  console.log(`run directory: ${run.path}`);
}

/** The `train`, `compare` and `eval` handlers of a task. */
function handlers<C extends SharedConfig>(
  spec: TaskSpec<C>,
): { train: TaskHandler; compare: TaskHandler; eval: TaskHandler } {
  return {
    train: (o) => trainCommand(spec, o),
    compare: (o) => o.args[0] === "sweep" ? sweepCommand(spec, o) : compareCommand(spec, o),
    eval: (o) => evalCommand(spec, o),
  };
}

/** `transfer mlp [RUNDIR]` (Table 2). */
function transferMlp(o: CommonOptions): Promise<number | void> {
  return transferCommand(o);
}

/** The `regression` task (registered in tasks/mod.ts). */
export const REGRESSION_TASK: Task = {
  name: "regression",
  description: "quadratic regression with an L1 term (paper section 5.1.1)",
  ...handlers(REGRESSION_SPEC),
  profile: (o) => l1Workload(REGRESSION_SPEC, o),
};

/** The `mlp` task (registered in tasks/mod.ts). */
export const MLP_TASK: Task = {
  name: "mlp",
  description: "MLP classification with an L1 term (paper sections 5.1.1 and 5.3.2)",
  ...handlers(MLP_SPEC),
  transfer: transferMlp,
  profile: (o) => l1Workload(MLP_SPEC, o),
};
