/**
 * Resuming the regression and MLP commands. `train`, `compare` and `transfer mlp` open their run
 * directory through run/session.ts `openSession` (with `--resume DIR`: the saved config;
 * `--config`, `--set`, `--seed` refused): controller training continues from the checkpoint of its last
 * completed round (tasks/l1/training_checkpoint.ts), and every Table 1/2 method that finished
 * before is kept (one `{kind: "method", key, result}` line of metrics.jsonl each) while the
 * interrupted one runs again. Every method depends only on the config and seed, so a resumed run
 * ends with the files of the uninterrupted one.
 * @module
 */

import type { Schema } from "../../run/config.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { openSession } from "../../run/session.ts";
import type { CommonOptions } from "../registry.ts";
import type { MethodResult } from "./methods.ts";
import type { RoundLog } from "./training.ts";
import { type ControllerTrainCheckpoint, loadControllerCheckpoint } from "./training_checkpoint.ts";

/** The checkpoint of controller training in a run directory (rewritten after every round). */
export const TRAIN_CHECKPOINT = "checkpoint.safetensors";

/**
 * A command's run directory by run/session.ts `openSession` (the one config and resume rule): a
 * new `runs/<task>-<command>-<stamp>` with the config of the preset, `--config`, `--set` and
 * `--seed`, or with `--resume DIR` DIR and its saved config. The backend is initialized.
 */
export async function openCommandRun<C>(
  opts: CommonOptions,
  schema: Schema,
): Promise<{ cfg: C; run: RunDir; resumed: boolean }> {
  const { cfg, dir, resumed } = await openSession(
    opts,
    schema,
    opts.task,
    `${opts.task}-${opts.command}`,
  );
  return { cfg: cfg as C, run: dir, resumed };
}

/** The controller-training checkpoint of a run directory, if a round was completed. */
export async function loadTrainCheckpoint(
  run: RunDir,
): Promise<ControllerTrainCheckpoint | undefined> {
  const path = run.file(TRAIN_CHECKPOINT);
  const found = await Deno.stat(path).then(() => true, () => false);
  return found ? await loadControllerCheckpoint(path) : undefined;
}

/**
 * Makes metrics.jsonl agree with a checkpoint's history before a resumed run appends to it:
 * drops the per-round records (`round`, and `budget` points) of rounds the checkpoint does not
 * hold (they are run again) and adds the round records it holds but the file lacks (a crash
 * between the checkpoint and the append).
 */
export async function syncRoundMetrics(run: RunDir, history: readonly RoundLog[]): Promise<void> {
  const rows = await run.readMetrics();
  const isRound = (r: Record<string, unknown>) => r.kind === "round";
  const perRound = (r: Record<string, unknown>) => isRound(r) || r.kind === "budget";
  const kept = rows.filter((r) => !perRound(r) || (r.round as number) < history.length);
  const logged = new Set(kept.filter(isRound).map((r) => r.round));
  const added = history.filter((h) => !logged.has(h.round)).map((h) => ({ kind: "round", ...h }));
  if (kept.length === rows.length && added.length === 0) return;
  const lines = [...kept, ...added].map((r) => JSON.stringify(r) + "\n");
  await run.writeFile("metrics.jsonl", lines.join(""));
}

/** Thrown after a method's result was recorded when a stop was asked for (Ctrl-C). */
export class RunStopped extends Error {
  /** After method `key`. */
  constructor(key: string) {
    super(`stopped after method ${key}`);
  }
}

/**
 * The Table 1/2 methods of a run, each kept in metrics.jsonl when it finishes, so that a resumed
 * run takes the finished ones from there. With `shouldStop`, recording a result while it holds
 * ends the run ({@link RunStopped}): run/signals.ts `GracefulStop` for the compare commands.
 */
export class MethodCache {
  readonly #run: RunDir;
  readonly #done = new Map<string, MethodResult>();
  /** Polled after each recorded method (also by the controller training of the run). */
  readonly shouldStop: () => boolean;

  private constructor(run: RunDir, shouldStop: () => boolean) {
    this.#run = run;
    this.shouldStop = shouldStop;
  }

  /** The cache of `run` (a resumed run's finished methods are read from its metrics). */
  static async open(
    run: RunDir,
    resumed: boolean,
    shouldStop: () => boolean = () => false,
  ): Promise<MethodCache> {
    const cache = new MethodCache(run, shouldStop);
    if (resumed) {
      for (const r of await run.readMetrics()) {
        if (r.kind === "method") cache.#done.set(r.key as string, r.result as MethodResult);
      }
    }
    return cache;
  }

  /** Methods finished before the resume. */
  get size(): number {
    return this.#done.size;
  }

  /** The finished result of method `key`, if any. */
  get(key: string): MethodResult | undefined {
    return this.#done.get(key);
  }

  /** Records method `key`'s result (a metrics line). */
  async put(key: string, result: MethodResult): Promise<void> {
    this.#done.set(key, result);
    await this.#run.appendMetrics({ kind: "method", key, result });
    if (this.shouldStop()) throw new RunStopped(key);
  }

  /** Method `key`'s result: the finished one, or `compute()`'s, recorded. */
  async result(
    key: string,
    compute: () => Promise<MethodResult>,
    log?: (s: string) => void,
  ): Promise<MethodResult> {
    const before = this.get(key);
    if (before) {
      log?.(`${key}: finished before the resume`);
      return before;
    }
    const r = await compute();
    await this.put(key, r);
    return r;
  }
}
