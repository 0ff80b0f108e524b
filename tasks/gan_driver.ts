/**
 * Driving a {@link GanTask}: fixed schedules, and the loop through which learned controllers
 * decide from features ONE STEP OLD without ever leaving the GPU idle; checkpoints and the
 * collapse/NaN rule. The learners built on this loop: online PPO in segments of T steps (paper
 * section 4.4, tasks/gan_online_ppo.ts) and episodic REINFORCE (the authors' code,
 * tasks/gan_episodic.ts).
 *
 * ## The pipelined controller loop
 *
 * A GAN step is a different graph for G and for D, so the host must know the action before it
 * records the step; reading a freshly sampled action back would stall every step (>= 10 ms of
 * readback latency plus the whole step's GPU time). Instead, with F_k the features after k steps,
 * step t uses the action sampled from F_{t-1}:
 *
 * ```
 * iteration t:  record step t with a_t            (a_t ~ pi(F_{t-1}), already on the host)
 *               sample c ~ pi(F_{t+1}) on the GPU; start the read of [c, status]  (submits step t)
 *               a_{t+1} = await the read started at iteration t-1               (c ~ pi(F_t))
 * ```
 *
 * While the JS thread awaits the read covering step t-1, step t is already submitted, so the GPU
 * always has a step queued: {@link LoopStats.minQueuedAtWait} counts the steps recorded beyond
 * the awaited read at every wait (1 by construction; tests check it). Each step costs exactly one
 * readback (counted by the backend's `hostSyncs`), overlapped with the next step; the JS time
 * spent waiting is {@link LoopStats.waitMs}. A segment starts by sampling two actions from its
 * first features and reading them with one blocking read, so segments are self-contained (the
 * PPO update at the segment end is a blocking read anyway). Transitions recorded for learning are
 * exactly what the controller saw: (F_{t-1}, a_t).
 *
 * Fixed schedules know their actions in advance: no per-step read at all, only a status read every
 * `readEvery` steps.
 *
 * On llvmpipe (no GPU) the "GPU" is the same two CPU cores, and `queue.submit` itself blocks while
 * an earlier submission is still executing (measured: about 500 ms per submit during GAN steps on
 * a busy 2-core machine, against 3-36 ms into an idle queue), so there
 * {@link LoopStats.recordMs} absorbs most of the device time and {@link LoopStats.waitMs} stays a
 * few milliseconds per step: the JS thread is never the one holding the device up. The overlap
 * pays off on a real GPU, where submits return at once.
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

import { UserError } from "../run/errors.ts";
import { backend } from "../gpu/backend.ts";
import type { Generator } from "../gpu/random.ts";
import { saveCheckpoint } from "../nn/checkpoint.ts";
import type { Checkpoint } from "../nn/checkpoint.ts";
import type { PolicyController } from "../rl/controller.ts";
import { StepPatternSchedule } from "../rl/schedules.ts";
import type { TrajectoryBuffer } from "../rl/trajectory.ts";
import { type HostArray, noGrad, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { D_ACTION, decodeStatus, G_ACTION, type GanStatus, type GanTask } from "./gan.ts";

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
  /** Backend host syncs during the loop (each readback counts one). */
  hostSyncs: number;
  /** Reads awaited while a later step was already submitted (the pipelined ones). */
  pipelinedReads: number;
  /** Reads awaited with no step queued behind them (segment starts, status reads). */
  blockingReads: number;
  /** Minimum, over the pipelined waits, of steps recorded beyond the awaited read (-1: none). */
  minQueuedAtWait: number;
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
    pipelinedReads: 0,
    blockingReads: 0,
    minQueuedAtWait: -1,
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
      s.blockingReads++;
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
}

/**
 * Runs `opts.steps` steps with `controller` choosing every action from features one step old,
 * with one overlapped readback per step (see the module doc). Stops at the first collapse or
 * non-finite flag, or when `shouldStop` says so.
 */
export async function runLearned(
  task: GanTask,
  controller: PolicyController,
  opts: LearnedLoopOptions,
): Promise<LoopResult> {
  const s = newStats();
  const n = opts.steps;
  const before = opts.nonfiniteBefore ?? 0;
  const actions: number[] = [];
  let status: GanStatus | null = null;
  let aborted: AbortReason | null = null;
  if (n <= 0) return { completed: 0, aborted, actions, status, stats: finish(s) };

  // Samples an action from the current features; records it as row `row`; returns it (i32 [1]).
  const sample = (row: number): Tensor =>
    noGrad(() => {
      const f = task.features();
      const { actions: a, logProbs } = controller.act(f, {
        t: task.t,
        greedy: opts.greedy ?? false,
        gen: opts.gen,
      });
      const rec = opts.record;
      if (rec && row < n) {
        const at = (rec.offset ?? 0) + row;
        rec.buffer.record("features", at, f);
        rec.buffer.record("actions", at, a);
        if (logProbs && rec.buffer.scalars.logProbs) rec.buffer.record("logProbs", at, logProbs);
        if (rec.critic && rec.buffer.scalars.values) {
          tidy(() => rec.buffer.record("values", at, rec.critic!(f)));
        }
      }
      logProbs?.dispose();
      return a;
    });

  // Prime: two actions from the first features, one blocking read.
  let t0 = performance.now();
  const first = [sample(0), sample(1)];
  const primed = readMany(first);
  for (const a of first) a.dispose();
  s.recordMs += performance.now() - t0;
  let w0 = performance.now();
  const [r0, r1] = await primed;
  s.waitMs += performance.now() - w0;
  s.blockingReads++;
  const next: number[] = [r0[0], r1[0]];
  let pending: Promise<HostArray[]> | null = null;
  let pendingCovers = -1; // the step index whose status the pending read carries

  for (let i = 0; i < n; i++) {
    t0 = performance.now();
    const a = next.shift()!;
    task.step(Int32Array.of(a));
    actions.push(a);
    s.steps++;
    let started: Promise<HostArray[]> | null = null;
    if (i + 2 < n) {
      const c = sample(i + 2);
      const st = tidy(() => task.status());
      started = readMany([c, st]);
      c.dispose();
      st.dispose();
    }
    s.recordMs += performance.now() - t0;
    if (pending) {
      s.minQueuedAtWait = s.minQueuedAtWait < 0
        ? i - pendingCovers
        : Math.min(s.minQueuedAtWait, i - pendingCovers);
      w0 = performance.now();
      const [c, v] = await pending;
      s.waitMs += performance.now() - w0;
      s.pipelinedReads++;
      next.push(c[0]);
      status = decodeStatus(v);
      opts.onStatus?.(task.t - 1, status);
      aborted = alarm(status, task.opts.maxRun, before);
    }
    pending = started;
    pendingCovers = i;
    if (!aborted && opts.shouldStop?.()) aborted = "stop";
    if (aborted) break;
  }
  if (pending) {
    // Drain the read in flight, so nothing dangles (and its status is not lost).
    const [, v] = await pending;
    s.blockingReads++;
    status = decodeStatus(v);
    if (!aborted) aborted = alarm(status, task.opts.maxRun, before);
  }
  return { completed: s.steps, aborted, actions, status, stats: finish(s) };
}

// ---------------------------------------------------------------- checkpoints

/** Saves the task and `extra` tensors with `meta` (JSON) to `path`, atomically. */
export async function saveGanCheckpoint(
  path: string,
  task: GanTask,
  extra: Record<string, Tensor> = {},
  meta: Record<string, unknown> = {},
): Promise<void> {
  const { tensors, metadata } = task.checkpointState("task.");
  await saveCheckpoint(path, { ...tensors, ...extra }, {
    ...metadata,
    "run.meta": JSON.stringify(meta),
  });
}

/** The run-level metadata saved by {@link saveGanCheckpoint}. */
export function checkpointMeta<T>(ckpt: Checkpoint): T {
  const text = ckpt.metadata["run.meta"];
  if (!text) throw new Error("not a GAN run checkpoint (no run.meta)");
  return JSON.parse(text) as T;
}

/** Writes the checkpoint's values of `named` (names prefixed by `prefix`) into the tensors. */
export function restoreNamed(ckpt: Checkpoint, named: [string, Tensor][], prefix: string): void {
  const be = backend();
  const problems: string[] = [];
  for (const [n, t] of named) {
    const src = ckpt.tensors.get(prefix + n);
    if (!src || src.data.length !== t.size) problems.push(`${prefix}${n}`);
    else be.write(t.storageFor("restore"), src.data, t.offset);
  }
  if (problems.length) {
    throw new Error(`checkpoint lacks or mis-sizes: ${problems.join(", ")}`);
  }
}

/** Sums the counters of several loops. */
export function mergeStats(list: LoopStats[]): LoopStats {
  const out = zeroStats();
  for (const s of list) {
    out.steps += s.steps;
    out.hostSyncs += s.hostSyncs;
    out.pipelinedReads += s.pipelinedReads;
    out.blockingReads += s.blockingReads;
    out.waitMs += s.waitMs;
    out.recordMs += s.recordMs;
    out.seconds += s.seconds;
    if (s.minQueuedAtWait >= 0) {
      out.minQueuedAtWait = out.minQueuedAtWait < 0
        ? s.minQueuedAtWait
        : Math.min(out.minQueuedAtWait, s.minQueuedAtWait);
    }
  }
  return out;
}
