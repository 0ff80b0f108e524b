/**
 * The checkpoint of controller training (tasks/l1/training.ts), written after every round so that
 * `train <task> --resume` continues an interrupted run and ends as the uninterrupted run would.
 * @module
 */

import type { ControllerFile } from "../../rl/controller_file.ts";
import type { PolicyController } from "../../rl/controller.ts";
import type { Reinforce, ReinforceArgs } from "../../rl/reinforce.ts";
import { type Checkpoint, loadCheckpoint, loadInto, saveCheckpoint } from "../../nn/checkpoint.ts";
import type { L1Problem } from "./problems.ts";
import type { ControllerTrainOptions, RoundLog } from "./training.ts";

/** `format` metadata of a controller-training checkpoint. */
export const CONTROLLER_CHECKPOINT_FORMAT = "autoloss-controller-training";

/**
 * Controller training at a round boundary, as saved by {@link trainController}'s `checkpoint`:
 * the controller's parameters (`controller.*`) and the REINFORCE Adam state (`optim.*`) as
 * tensors, the rest as JSON metadata. Everything else a round depends on is derived from the seed
 * and the round index, so a resumed run repeats the uninterrupted one exactly.
 */
export interface ControllerTrainCheckpoint {
  /** Rounds completed: the next round to run. */
  round: number;
  /** The logs of the completed rounds. */
  history: RoundLog[];
  /** The best round's controller so far and its mean reward (null before any round). */
  best: { file: ControllerFile; reward: number } | null;
  /** The controller after the last completed round (the one that runs round `round`). */
  current: ControllerFile;
  /** Version 1 files only: the REINFORCE baseline (version 2 keeps it in `controller.*`). */
  baseline?: number | null;
  /** Version 1 files only: REINFORCE updates taken. */
  updates?: number;
  /** Training seconds so far (over all sessions). */
  seconds: number;
  /** The settings trained with (a resume must use the same, `rounds` aside). */
  settings: Record<string, unknown>;
  /** The file read: parameters and optimizer state. */
  tensors: Checkpoint;
}

/** What a resumed run must share with the run it continues (every option but `rounds`). */
export function trainingSettings(
  problem: L1Problem,
  o: ControllerTrainOptions,
  args: Partial<ReinforceArgs>,
): Record<string, unknown> {
  return JSON.parse(JSON.stringify({
    task: problem.name,
    problem: problem.settings,
    population: o.population,
    steps: o.steps,
    seed: o.seed,
    hidden: o.hidden,
    temperature: o.temperature,
    keep: o.keep,
    updates: o.updates ?? "episode",
    baseline: o.baseline ?? "moving",
    sharedInit: o.sharedInit ?? false,
    ...((o.actEvery ?? 1) !== 1 ? { actEvery: o.actEvery } : {}),
    ...(o.updates === "ppo" ? { ppoEpochs: o.ppoEpochs ?? 4, ppoClip: o.ppoClip ?? 0.2 } : {}),
    ...(o.updates === "es" ? { esSigma: o.esSigma ?? 0.1 } : {}),
    ...(o.normalizeFeatures ? { normalizeFeatures: true } : {}),
    features: o.features ?? problem.settings.features,
    dropFeatures: [...(o.dropFeatures ?? [])],
    args,
  }));
}

/** Writes a controller-training checkpoint (atomically; see {@link ControllerTrainCheckpoint}). */
export async function saveControllerCheckpoint(
  to: { path: string; metadata?: Record<string, string> },
  reinforce: Reinforce,
  state: Omit<ControllerTrainCheckpoint, "tensors" | "baseline" | "updates">,
): Promise<void> {
  const part = reinforce.checkpointState("controller.");
  try {
    await saveCheckpoint(to.path, part.tensors, {
      ...to.metadata,
      format: CONTROLLER_CHECKPOINT_FORMAT,
      version: "2",
      ...part.metadata,
      "train.state": JSON.stringify(state),
    });
  } finally {
    // The optimizer's entries are a counter copy and views of its state.
    for (const [n, t] of Object.entries(part.tensors)) {
      if (n.startsWith("controller.optim.")) t.dispose();
    }
  }
}

/**
 * Reads a checkpoint written by {@link trainController} (`checkpoint` option), checking its
 * format and bookkeeping; pass it as `resume` to continue the training.
 */
export async function loadControllerCheckpoint(path: string): Promise<ControllerTrainCheckpoint> {
  const tensors = await loadCheckpoint(path);
  const m = tensors.metadata;
  const fail = (msg: string): never => {
    throw new Error(`${path}: ${msg}`);
  };
  if (m.format !== CONTROLLER_CHECKPOINT_FORMAT || !["1", "2"].includes(m.version)) {
    fail(`not a controller-training checkpoint (format '${m.format}', version '${m.version}')`);
  }
  let state: Omit<ControllerTrainCheckpoint, "tensors"> | undefined;
  try {
    state = JSON.parse(m["train.state"]);
  } catch (err) {
    fail(`train.state is not valid JSON (${(err as Error).message})`);
  }
  const s = state!;
  const rounds = Array.isArray(s.history) ? s.history.map((h) => h?.round) : null;
  if (!Number.isInteger(s.round) || s.round < 0 || rounds?.length !== s.round) {
    fail(`round ${s.round} does not match a history of ${rounds?.length ?? "no"} rounds`);
  }
  if (rounds!.some((r, i) => r !== i)) fail(`history rounds [${rounds}] are not 0..${s.round - 1}`);
  if (!s.current || typeof s.settings !== "object" || s.settings === null) {
    fail("train.state lacks the current controller or the settings");
  }
  return { ...s, tensors };
}

/** Loads a checkpoint's controller parameters and REINFORCE state, checking the settings. */
export function restoreTraining(
  ckpt: ControllerTrainCheckpoint,
  settings: Record<string, unknown>,
  controller: PolicyController,
  reinforce: Reinforce,
): void {
  const differ = Object.keys({ ...settings, ...ckpt.settings }).filter((k) =>
    JSON.stringify(settings[k]) !== JSON.stringify(ckpt.settings[k])
  );
  if (differ.length) {
    throw new Error(
      `cannot resume: the checkpoint was trained with other settings (${
        differ.map((k) =>
          `${k}: ${JSON.stringify(ckpt.settings[k])} there, ${JSON.stringify(settings[k])} here`
        ).join("; ")
      })`,
    );
  }
  if (ckpt.tensors.metadata.version === "1") {
    // Version 1: the Adam state under "optim.", the counters in train.state.
    loadInto(controller.namedParameters(), ckpt.tensors, { prefix: "controller." });
    reinforce.optimizer.loadState(ckpt.tensors, "optim.");
    reinforce.baseline = ckpt.baseline ?? null;
    reinforce.updates = ckpt.updates ?? 0;
  } else reinforce.loadCheckpoint(ckpt.tensors, "controller.");
}
