/**
 * Driving a {@link GanTask}: fixed schedules, and the loop through which learned controllers
 * choose every step's action ON THE GPU; checkpoints and the collapse/NaN rule. The learners built
 * on this loop: online PPO in segments of T steps (paper section 4.4, tasks/gan/online_ppo.ts) and
 * episodic REINFORCE (the authors' code, tasks/gan/episodic.ts).
 *
 * ## The learned loop: zero host syncs in a step
 *
 * Each step, the controller's forward pass over the current features, its sample and the branch
 * choice are recorded into the step: the sampled action (an i32 GPU tensor) goes to
 * `GanTask.step(Tensor)`, which records the G and the D update each in a gated region on the
 * action (tensor/gated.ts), so only the chosen branch computes. Transitions (F_t, a_t) are copied
 * into the trajectory buffer on the GPU; the actions taken and the longest run of one action are
 * kept on the GPU as well. The host reads once per loop, at its end (a segment or an episode
 * chunk), plus once every `readEvery` steps when asked (logging), each time one packed read of
 * [actions, status, longest run]: `LoopStats.hostSyncs` counts them, and tests check it.
 *
 * Fixed schedules know their actions in advance: only the chosen branch is recorded, and the
 * status is read every `readEvery` steps.
 *
 * ## Collapse and NaN: the documented rule
 *
 * The task flags, on the GPU, (a) a non-finite loss or gradient norm and (b) a collapse (the same
 * action more than `maxRun` times in a row, the authors' criterion). The loop sees the flags in
 * its per-step read (fixed schedules: every `readEvery` steps) and stops the segment. The trainer
 * then ROLLS BACK the GAN, its optimizer, data iterator and the reward history to the last
 * checkpoint (or re-initializes the GAN from its seed when there is none yet), RESETS the
 * controller (fresh weights, optimizer and normalization, with a new seed, as the authors
 * re-initialize the controller on collapse) and continues. After `maxRollbacks` rollbacks the run
 * stops cleanly, keeping its directory, checkpoint and samples. A run is never lost to a crash.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { backend } from "../../gpu/backend.ts";
import type { Generator } from "../../gpu/random.ts";
import { saveCheckpoint } from "../../nn/checkpoint.ts";
import type { Checkpoint } from "../../nn/checkpoint.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { runSteps } from "../../rl/runner.ts";
import { StepPatternSchedule } from "../../rl/schedules.ts";
import type { TrajectoryBuffer } from "../../rl/trajectory.ts";
import * as ops from "../../tensor/ops.ts";
import { keep, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import type { GanTask } from "./task.ts";
import { D_ACTION, G_ACTION } from "./actions.ts";
import { decodeStatus, type GanStatus } from "./status.ts";

// ---------------------------------------------------------------- fixed schedules

/**
 * The paper's fixed schedule "GAN d:g" (D:G, e.g. "1:5" = one D update then five G updates, the
 * "GAN 1:K" of section 5.1.2) as a schedule over the actions [G, D]: D first in each cycle, as the
 * authors' `train()` loop.
 */
export function ganSchedule(ratio: string): StepPatternSchedule {
  const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(ratio);
  const d = m ? Number(m[1]) : NaN;
  const g = m ? Number(m[2]) : NaN;
  if (!(d >= 0 && g >= 0 && d + g > 0)) {
    throw new UserError(`invalid GAN schedule '${ratio}': expected D:G counts such as "1:5"`);
  }
  return new StepPatternSchedule(`GAN ${d}:${g}`, (t) => (t % (d + g) < d ? D_ACTION : G_ACTION));
}

/** The fixed schedules of section 5.1.2: 1:1, then 1:K and K:1 for K in {3, 5, 7, 9, 11}. */
export const PAPER_SCHEDULES: readonly string[] = [
  "1:1",
  ...[3, 5, 7, 9, 11].map((k) => `1:${k}`),
  ...[3, 5, 7, 9, 11].map((k) => `${k}:1`),
];

// ---------------------------------------------------------------- step loops

/** Counters of a step loop (see the module doc). */
export interface LoopStats {
  /** Steps recorded. */
  steps: number;
  /** Backend host syncs during the loop (each packed read counts one). */
  hostSyncs: number;
  /** Status reads (each one packed read). */
  reads: number;
  /** JS milliseconds spent awaiting reads. */
  waitMs: number;
  /** JS milliseconds spent recording steps and sampling. */
  recordMs: number;
  /** Wall-clock seconds. */
  seconds: number;
}

/** Why a loop stopped before its last step. */
export type AbortReason = "nonfinite" | "collapse" | "stop";

/** What a loop returns. */
export interface LoopResult {
  /** Steps completed. */
  completed: number;
  /** Why it stopped early, or null. */
  aborted: AbortReason | null;
  /** The actions taken (0 = G, 1 = D), in order. */
  actions: number[];
  /** The last status read (after step `lastStatusStep`). */
  status: GanStatus | null;
  /** Counters. */
  stats: LoopStats;
}

/** Options common to both loops. */
export interface LoopOptions {
  /** Steps to run. */
  steps: number;
  /** Called with every status read (the step it describes is `t`, counted from 1). */
  onStatus?: (t: number, status: GanStatus) => void;
  /** Polled after every step: return true to stop (Ctrl-C, time budget). */
  shouldStop?: () => boolean;
  /** Non-finite steps already counted before this loop (the task's counter is cumulative). */
  nonfiniteBefore?: number;
}

/** Counters at zero. */
function zeroStats(): LoopStats {
  return {
    steps: 0,
    hostSyncs: 0,
    reads: 0,
    waitMs: 0,
    recordMs: 0,
    seconds: 0,
  };
}

function newStats(): LoopStats & { start: number; syncs0: number } {
  return { ...zeroStats(), start: performance.now(), syncs0: backend().stats.hostSyncs };
}

function finish(s: LoopStats & { start: number; syncs0: number }): LoopStats {
  const { start, syncs0, ...rest } = s;
  return {
    ...rest,
    hostSyncs: backend().stats.hostSyncs - syncs0,
    seconds: (performance.now() - start) / 1000,
  };
}

/** The flag in a status that stops a loop, if any. */
export function alarm(st: GanStatus, maxRun: number, nonfiniteBefore: number): AbortReason | null {
  if (st.nonfinite > nonfiniteBefore) return "nonfinite";
  if (st.run > maxRun) return "collapse";
  return null;
}

/**
 * Runs a fixed schedule for `opts.steps` steps (actions known on the host: no per-step read),
 * reading the status every `readEvery` steps and after the last step.
 */
export async function runFixed(
  task: GanTask,
  schedule: StepPatternSchedule,
  opts: LoopOptions & { readEvery: number },
): Promise<LoopResult> {
  const s = newStats();
  const actions: number[] = [];
  let status: GanStatus | null = null;
  let aborted: AbortReason | null = null;
  const before = opts.nonfiniteBefore ?? 0;
  for (let i = 0; i < opts.steps; i++) {
    const t0 = performance.now();
    const a = schedule.actionAt(task.t);
    task.step(Int32Array.of(a));
    actions.push(a);
    s.steps++;
    s.recordMs += performance.now() - t0;
    if ((i + 1) % opts.readEvery === 0 || i + 1 === opts.steps) {
      const w0 = performance.now();
      const st = tidy(() => task.status());
      const [v] = await readMany([st]);
      st.dispose();
      s.waitMs += performance.now() - w0;
      s.reads++;
      status = decodeStatus(v);
      opts.onStatus?.(task.t, status);
      aborted = alarm(status, task.opts.maxRun, before);
      if (aborted) break;
    } else {
      // Let signal handlers (Ctrl-C) run between steps; no GPU wait is involved.
      await new Promise((resolve) => setTimeout(resolve, 0));
    }
    if (opts.shouldStop?.()) {
      aborted = "stop";
      break;
    }
  }
  return { completed: s.steps, aborted, actions, status, stats: finish(s) };
}

/** What a learned loop records for learning (row i = the transition of the i-th step). */
export interface Recording {
  /** Features, actions, log-probabilities (and values when `critic` is given). */
  buffer: TrajectoryBuffer;
  /** V(F) for the value field (PPO's critic), or none. */
  critic?: (features: Tensor) => Tensor;
  /** Buffer row of the loop's first step (default 0). */
  offset?: number;
}

/** Options of {@link runLearned}. */
export interface LearnedLoopOptions extends LoopOptions {
  /** The sampling stream (its counter advances once per sample). */
  gen: Generator;
  /** Argmax instead of sampling. */
  greedy?: boolean;
  /** Record transitions (rows 0 .. steps-1). */
  record?: Recording;
  /** Also read the status every this many steps (logging; default: only at the end). */
  readEvery?: number;
}

/** The GAN's part of a learned loop: hooks on rl/runner.ts `runSteps` and the loop's result. */
export interface LearnedLoop {
  /** Copy each action aside on the GPU (after the act). */
  onAct: (info: { i: number; actions: Tensor }) => void;
  /** Track the longest run of one action on the GPU (after the step). */
  onStep: () => void;
  /** Read the status when due, stop on collapse, NaN or `shouldStop`, let Ctrl-C in. */
  afterStep: (info: { i: number }) => Promise<boolean | undefined>;
  /** Why the loop stopped early so far, or null. */
  readonly aborted: AbortReason | null;
  /** The loop's result (after `runSteps`; frees the loop's GPU tensors). */
  finish(recordMs: number): LoopResult;
}

/**
 * The GAN hooks of a learned loop of `opts.steps` steps (see the module doc): the actions taken
 * and the longest run are kept on the GPU; the host reads [actions, status, longest run] in one
 * packed read every `readEvery` steps, after the last step and when `shouldStop` says so, and the
 * loop stops at a read that shows a collapse or a non-finite flag. {@link runLearned} and the
 * online PPO segment (tasks/gan/online_ppo.ts, through rl/training.ts `ppoRollout`) run it.
 */
export function learnedLoop(
  task: GanTask,
  opts: LoopOptions & { readEvery?: number },
): LearnedLoop {
  const s = newStats();
  const n = opts.steps;
  const before = opts.nonfiniteBefore ?? 0;
  const actions: number[] = [];
  let status: GanStatus | null = null;
  let aborted: AbortReason | null = null;
  const be = backend();
  const taken = keep(ops.empty([Math.max(n, 1)], "i32"));
  let peak = keep(tidy(() => task.runLength().add(0)));
  let read = 0; // actions of steps [0, read) are on the host
  let yielded = performance.now();
  const readStatus = async (): Promise<void> => {
    const w0 = performance.now();
    const st = tidy(() => task.status());
    const [a, v, p] = await readMany([taken, st, peak]);
    st.dispose();
    s.waitMs += performance.now() - w0;
    s.reads++;
    for (let i = read; i < s.steps; i++) actions.push(a[i]);
    read = s.steps;
    status = { ...decodeStatus(v), run: Math.max(decodeStatus(v).run, p[0]) };
    opts.onStatus?.(task.t, status);
    aborted = alarm(status, task.opts.maxRun, before);
  };
  return {
    onAct: ({ i, actions: a }) => {
      be.copy(a.storageFor("runLearned"), a.offset, taken.storageFor("runLearned"), 4 * i, 4);
    },
    onStep: () => {
      const next = keep(ops.binary("maximum", peak, task.runLength()));
      peak.dispose();
      peak = next;
    },
    afterStep: async ({ i }) => {
      s.steps++;
      const last = i + 1 === n;
      const stop = opts.shouldStop?.() ?? false;
      if (last || stop || (opts.readEvery && (i + 1) % opts.readEvery === 0)) await readStatus();
      if (!aborted && stop) aborted = "stop";
      if (aborted) return true;
      if (performance.now() - yielded > 50) {
        // Let signal handlers (Ctrl-C) run; no GPU wait is involved.
        await new Promise((resolve) => setTimeout(resolve, 0));
        yielded = performance.now();
      }
    },
    get aborted() {
      return aborted;
    },
    finish: (recordMs) => {
      taken.dispose();
      peak.dispose();
      s.recordMs += recordMs - s.waitMs;
      return { completed: s.steps, aborted, actions, status, stats: finish(s) };
    },
  };
}

/**
 * Runs `opts.steps` steps with `controller` choosing every action on the GPU from the current
 * features, with no host sync inside the loop (rl/runner.ts `runSteps` with the
 * {@link learnedLoop} hooks): one packed read at its end and every `readEvery` steps. Stops at a
 * read that shows a collapse or a non-finite flag, or when `shouldStop` says so.
 */
export async function runLearned(
  task: GanTask,
  controller: PolicyController,
  opts: LearnedLoopOptions,
): Promise<LoopResult> {
  if (opts.steps <= 0) {
    return { completed: 0, aborted: null, actions: [], status: null, stats: finish(newStats()) };
  }
  const loop = learnedLoop(task, opts);
  const rec = opts.record;
  const started = performance.now();
  let ran = false;
  try {
    await runSteps(task, controller, {
      steps: opts.steps,
      gen: opts.gen,
      greedy: opts.greedy,
      t0: task.t,
      buffer: rec?.buffer,
      bufferOffset: rec?.offset,
      onAct: (info) => {
        if (rec?.critic && rec.buffer.scalars.values) {
          rec.buffer.record("values", (rec.offset ?? 0) + info.i, rec.critic(info.features));
        }
        loop.onAct(info);
      },
      onStep: loop.onStep,
      afterStep: loop.afterStep,
    });
    ran = true;
  } finally {
    if (!ran) loop.finish(0); // frees the loop's tensors; the error propagates
  }
  return loop.finish(performance.now() - started);
}

// ---------------------------------------------------------------- checkpoints

/**
 * Saves the task, `extra` tensors and metadata entries, and the run's `meta` (JSON, as
 * `run.meta`) to `path`, atomically.
 */
export async function saveGanCheckpoint(
  path: string,
  task: GanTask,
  extra: Record<string, Tensor> = {},
  meta: object = {},
  extraMetadata: Record<string, string> = {},
): Promise<void> {
  const { tensors, metadata } = task.checkpointState("task.");
  await saveCheckpoint(path, { ...tensors, ...extra }, {
    ...metadata,
    ...extraMetadata,
    "run.meta": JSON.stringify(meta),
  });
}

/** The run-level metadata saved by {@link saveGanCheckpoint}. */
export function checkpointMeta<T>(ckpt: Checkpoint): T {
  const text = ckpt.metadata["run.meta"];
  if (!text) throw new Error("not a GAN run checkpoint (no run.meta)");
  return JSON.parse(text) as T;
}

/** Sums the counters of several loops. */
export function mergeStats(list: LoopStats[]): LoopStats {
  const out = zeroStats();
  for (const s of list) {
    out.steps += s.steps;
    out.hostSyncs += s.hostSyncs;
    out.reads += s.reads;
    out.waitMs += s.waitMs;
    out.recordMs += s.recordMs;
    out.seconds += s.seconds;
  }
  return out;
}
