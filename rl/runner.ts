/**
 * The schedule runner: steps a task and a controller (learned or hand-made) together. The
 * training loops built on it (`trainReinforce`, `trainPpo`) are in rl/training.ts.
 *
 * - {@link runSteps}: the step loop. Per step: features -> `controller.act` -> optional recording
 *   (one GPU copy per field) -> optional hook -> `task.step`, inside a `tidy` scope. Nothing in
 *   the loop awaits or reads the GPU back, except one `readMany` of the task's metrics at each
 *   reporting interval.
 * - {@link runEpisode}: reset the task, run the steps, read the final metrics once; returns a plain
 *   {@link EpisodeResult} with {@link RunStats} (host syncs measured from the backend counters).
 * - {@link runSpec}: the same from a plain {@link EpisodeSpec}.
 *
 * Seeding: the task is reset with `seed` (member p uses `memberSeed(seed, p)`, see rl/task.ts);
 * sampling uses a fresh generator seeded with `sampleSeed` whose stream number advances one per
 * draw, and per-member seeds `memberSeed(sampleSeed, p)`. So member p of a population run equals a
 * single-member run with seeds `memberSeed(seed, p)` and `memberSeed(sampleSeed, p)`.
 * @module
 */

import * as ops from "../tensor/ops.ts";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import { keep, readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { controllerFromJson } from "./controller_file.ts";
import type { RewardFn } from "./rewards.ts";
import { scheduleFromName } from "./schedules.ts";
import {
  type Controller,
  type EpisodeResult,
  type EpisodeSpec,
  memberSeed,
  type ScheduleTask,
} from "./task.ts";
import type { TrajectoryBuffer } from "./trajectory.ts";

/** Counters of a run (host syncs are what the step loop must avoid). */
export interface RunStats {
  /** Steps run. */
  steps: number;
  /** GPU readbacks/syncs during the run (backend `stats.hostSyncs` delta). */
  hostSyncs: number;
  /** Kernel dispatches during the run. */
  dispatches: number;
  /** Queue submits during the run. */
  submits: number;
  /**
   * Kernels compiled during the run: 0 once warm. A count growing with the steps means some op
   * bakes a per-step value into its shader (see rl/features.ts on uploading such values).
   */
  pipelines: number;
  /** Wall-clock seconds. */
  seconds: number;
}

/**
 * What the per-step hooks see (GPU tensors, valid only during the call; `features` is the task's
 * and may be freed by `task.step`, so read it in `onAct`).
 */
export interface StepInfo {
  /** Step index (ActContext.t). */
  t: number;
  /** Index of this step in the run (0-based). */
  i: number;
  /** The features the controller saw, [P, K]. */
  features: Tensor;
  /** Actions taken, i32 [P]. */
  actions: Tensor;
  /** Their log-probabilities, when the controller samples. */
  logProbs?: Tensor;
}

/** What the interval callback receives (plain values). */
export interface IntervalReport {
  /** Steps completed in this run. */
  steps: number;
  /** ActContext.t of the last step. */
  t: number;
  /** The task's metrics, read back once. */
  metrics: Record<string, number[]>;
  /** Host syncs since the run started (including this interval's read). */
  hostSyncs: number;
}

/** Options of {@link runSteps}. */
export interface RunStepsOptions {
  /** Steps to run. */
  steps: number;
  /** The sampling generator (its stream advances one per draw). */
  gen: Generator;
  /** Per-member sampling seeds, u32 [P] (see rl/task.ts `memberSeed`). */
  memberSeeds?: Tensor;
  /** Greedy (argmax) actions. */
  greedy?: boolean;
  /** ActContext.t of the first step (default 0; online training continues counting). */
  t0?: number;
  /** Records features, actions (and logProbs when allocated) at row `bufferOffset + i`. */
  buffer?: TrajectoryBuffer;
  /** First buffer row (default 0). */
  bufferOffset?: number;
  /** Synchronous GPU-only hook after `act`, before `task.step` (must not await or read back). */
  onAct?: (info: StepInfo) => void;
  /** Synchronous GPU-only hook after each `task.step` (must not await or read back). */
  onStep?: (info: StepInfo) => void;
  /** Reporting interval in steps (default: no reports). */
  interval?: number;
  /** Called every `interval` steps with the metrics, read back once. */
  onInterval?: (report: IntervalReport) => void | Promise<void>;
  /**
   * Host hook after each step (and its report), outside the step's tidy scope: it may await (a
   * task's own packed read, a yield to signal handlers); returning true ends the loop there.
   */
  afterStep?: (info: { t: number; i: number }) => boolean | void | Promise<boolean | void>;
}

function snapshot() {
  const s = backend().stats;
  return {
    hostSyncs: s.hostSyncs,
    dispatches: s.dispatches,
    submits: s.submits,
    pipelines: s.pipelines,
    at: performance.now(),
  };
}

function statsSince(start: ReturnType<typeof snapshot>, steps: number): RunStats {
  const now = snapshot();
  return {
    steps,
    hostSyncs: now.hostSyncs - start.hostSyncs,
    dispatches: now.dispatches - start.dispatches,
    submits: now.submits - start.submits,
    pipelines: now.pipelines - start.pipelines,
    seconds: (now.at - start.at) / 1000,
  };
}

/** Reads all of a task's metrics in one round trip, as plain arrays. */
export async function readMetrics(
  task: ScheduleTask,
  extra: Tensor[] = [],
): Promise<{ metrics: Record<string, number[]>; extra: number[][] }> {
  const m = task.metrics();
  const names = Object.keys(m);
  const values = await readMany([...names.map((n) => m[n]), ...extra]);
  const metrics: Record<string, number[]> = {};
  names.forEach((n, i) => (metrics[n] = Array.from(values[i])));
  return { metrics, extra: values.slice(names.length).map((v) => Array.from(v)) };
}

/** The per-member seeds `memberSeed(seed, offset + p)` as a u32 [P] tensor. */
export function memberSeedTensor(seed: number, population: number, offset = 0): Tensor {
  return tensor(
    Uint32Array.from({ length: population }, (_, p) => memberSeed(seed, offset + p)),
    [population],
    "u32",
  );
}

/** A seed derived from (seed, index), e.g. per episode; distinct from `memberSeed` streams. */
export function deriveSeed(seed: number, index: number): number {
  return memberSeed((seed ^ 0x85ebca6b) >>> 0, index + 1);
}

/**
 * Steps `task` and `controller` together for `opts.steps` steps (see the module doc). The only
 * host syncs are one metrics read per reporting interval.
 */
export async function runSteps(
  task: ScheduleTask,
  controller: Controller,
  opts: RunStepsOptions,
): Promise<RunStats> {
  const start = snapshot();
  const t0 = opts.t0 ?? 0;
  const offset = opts.bufferOffset ?? 0;
  const buffer = opts.buffer;
  let done = 0;
  for (let i = 0; i < opts.steps; i++) {
    const t = t0 + i;
    tidy(() => {
      const features = task.features();
      const { actions, logProbs } = controller.act(features, {
        t,
        greedy: opts.greedy ?? false,
        gen: opts.gen,
        memberSeeds: opts.memberSeeds,
      });
      if (buffer) {
        buffer.record("features", offset + i, features);
        buffer.record("actions", offset + i, actions);
        if (logProbs && buffer.scalars.logProbs) buffer.record("logProbs", offset + i, logProbs);
      }
      const info = { t, i, features, actions, logProbs };
      opts.onAct?.(info);
      task.step(actions);
      opts.onStep?.(info);
    });
    if (opts.interval && opts.onInterval && (i + 1) % opts.interval === 0) {
      const { metrics } = await readMetrics(task);
      await opts.onInterval({
        steps: i + 1,
        t,
        metrics,
        hostSyncs: backend().stats.hostSyncs - start.hostSyncs,
      });
    }
    done = i + 1;
    if (opts.afterStep && (await opts.afterStep({ t, i })) === true) break;
  }
  return statsSince(start, done);
}

/** Options of {@link runEpisode}. */
export interface RunEpisodeOptions {
  /** Steps to run. */
  steps: number;
  /**
   * Task seed: the task is reset with it when given (else it continues as it is, and the
   * result's spec records -1).
   */
  seed?: number;
  /** Sampling seed. */
  sampleSeed: number;
  /**
   * The task's members are members `memberOffset..` of a larger population: member p samples
   * with `memberSeed(sampleSeed, memberOffset + p)` (default 0).
   */
  memberOffset?: number;
  /** Greedy (argmax) actions (evaluation). */
  greedy?: boolean;
  /** Return the actions taken, [steps][P] (read back with the final metrics). */
  record?: boolean;
  /** Record into this buffer (features, actions, logProbs when allocated). */
  buffer?: TrajectoryBuffer;
  /** First buffer row. */
  bufferOffset?: number;
  /** Per-step GPU-only hook. */
  onStep?: (info: StepInfo) => void;
  /** Reporting interval in steps. */
  interval?: number;
  /** Reporting callback (one metrics read each). */
  onInterval?: (report: IntervalReport) => void | Promise<void>;
  /** Final rewards from the final metrics (default: the "reward" metric, else zeros). */
  reward?: RewardFn;
  /** More tensors to read back with the final metrics (returned in `extra`). */
  alsoRead?: Tensor[];
  /** Task config recorded in the result's spec. */
  config?: Record<string, unknown>;
  /** What to record as the spec's controller (default the controller's name). */
  controllerSpec?: unknown;
}

/** An episode's result plus its run statistics. */
export interface EpisodeRun extends EpisodeResult {
  /** Counters of the run (including the final read). */
  stats: RunStats;
  /** Values of `alsoRead`, in order. */
  extra: number[][];
}

/**
 * Runs one episode: reset (when `seed` is given), `steps` steps, one final read of the metrics
 * (and the recorded actions and `alsoRead` tensors). Returns plain arrays.
 */
export async function runEpisode(
  task: ScheduleTask,
  controller: Controller,
  opts: RunEpisodeOptions,
): Promise<EpisodeRun> {
  const start = snapshot();
  const p = task.population;
  if (opts.seed !== undefined) task.reset(opts.seed);
  const memberSeeds = keep(memberSeedTensor(opts.sampleSeed, p, opts.memberOffset));
  const actionsLog = opts.record
    ? keep(ops.empty([opts.steps, p], "i32", "episode.actions"))
    : null;
  const onStep = (info: StepInfo) => {
    if (actionsLog) {
      backend().copy(
        info.actions.storageFor("record"),
        info.actions.offset,
        actionsLog.storageFor("record"),
        info.i * p * 4,
        p * 4,
      );
    }
    opts.onStep?.(info);
  };
  try {
    await runSteps(task, controller, {
      steps: opts.steps,
      gen: new Generator(opts.sampleSeed),
      memberSeeds,
      greedy: opts.greedy,
      buffer: opts.buffer,
      bufferOffset: opts.bufferOffset,
      onStep,
      interval: opts.interval,
      onInterval: opts.onInterval,
    });
    const extraTensors = [...(actionsLog ? [actionsLog] : []), ...(opts.alsoRead ?? [])];
    const { metrics, extra } = await readMetrics(task, extraTensors);
    const actionRows = actionsLog ? extra.shift()! : null;
    const rewards = opts.reward ? opts.reward(metrics) : metrics.reward ?? new Array(p).fill(0);
    return {
      spec: {
        task: task.name,
        config: opts.config ?? {},
        seed: opts.seed ?? -1,
        sampleSeed: opts.sampleSeed,
        controller: opts.controllerSpec ?? controller.name,
        steps: opts.steps,
      },
      rewards,
      metrics,
      ...(actionRows
        ? {
          actions: Array.from({ length: opts.steps }, (_, s) => actionRows.slice(s * p, s * p + p)),
        }
        : {}),
      stats: statsSince(start, opts.steps),
      extra,
    };
  } finally {
    memberSeeds.dispose();
    actionsLog?.dispose();
  }
}

/** How {@link runSpec} builds what a plain spec names. */
export interface SpecFactories {
  /** Creates the task from its registry name and config. */
  createTask(name: string, config: Record<string, unknown>): ScheduleTask;
  /** Final rewards (default: the "reward" metric). */
  reward?: RewardFn;
}

/**
 * Runs an {@link EpisodeSpec}: builds the task, then the controller from `spec.controller` (a
 * controller file's JSON, checked against the task's features and actions, or a schedule name
 * understood by `scheduleFromName`), runs the episode (greedy for learned controllers unless
 * `opts.greedy` is false; sampling then uses `spec.sampleSeed`) and frees
 * everything. The result is plain data, so specs can run in workers or elsewhere.
 */
export async function runSpec(
  spec: EpisodeSpec,
  factories: SpecFactories,
  opts: { record?: boolean; greedy?: boolean } = {},
): Promise<EpisodeRun> {
  const task = factories.createTask(spec.task, spec.config);
  let controller: Controller & { dispose(): void };
  let greedy = opts.greedy ?? false;
  try {
    if (typeof spec.controller === "string") {
      controller = scheduleFromName(spec.controller, task);
    } else {
      controller = controllerFromJson(spec.controller, {
        featureNames: task.featureNames,
        actions: task.actions.map((a) => a.name),
      });
      greedy = opts.greedy ?? true;
    }
  } catch (err) {
    task.dispose();
    throw err;
  }
  try {
    return await runEpisode(task, controller, {
      steps: spec.steps,
      seed: spec.seed,
      sampleSeed: spec.sampleSeed,
      greedy,
      record: opts.record,
      reward: factories.reward,
      config: spec.config,
      controllerSpec: spec.controller,
    });
  } finally {
    controller.dispose();
    task.dispose();
  }
}

// ---------------------------------------------------------------- REINFORCE
