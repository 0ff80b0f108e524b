/**
 * Episodic REINFORCE for a {@link GanTask}, as the authors' code: whole training runs are
 * episodes, the reward is C * IS^2 at the episode end, collapse ends an episode early; the
 * controller decides through the pipelined loop of tasks/gan/driver.ts.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { backend } from "../../gpu/backend.ts";
import { Generator } from "../../gpu/random.ts";
import { saveCheckpoint } from "../../nn/checkpoint.ts";
import type { Checkpoint } from "../../nn/checkpoint.ts";
import { MlpController } from "../../rl/controller.ts";
import { Reinforce, type ReinforceArgs } from "../../rl/reinforce.ts";
import { inceptionReward } from "../../rl/rewards.ts";
import { TrajectoryBuffer } from "../../rl/trajectory.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import type { GanTask } from "./task.ts";
import { G_ACTION } from "./actions.ts";
import {
  checkpointMeta,
  type LoopOptions,
  type LoopStats,
  mergeStats,
  restoreNamed,
  runLearned,
} from "./driver.ts";

/** Settings of {@link EpisodicReinforce}. */
export interface EpisodicOptions {
  /** Steps per episode (the authors stop on IS patience or 200k steps). */
  episodeSteps: number;
  /** Early stop: IS evaluations without a new best (0: never). */
  patience: number;
  /** REINFORCE hyperparameters (default: the authors' GAN settings). */
  args: Partial<ReinforceArgs>;
  /** C of the reward `C * IS^2` (authors: 10). */
  c: number;
  /** Hidden units of the controller (authors: 16). */
  hidden: number;
  /** Controller seed. */
  seed: number;
}

/** One episode, in plain numbers. */
export interface EpisodeLog {
  /** Episode index. */
  episode: number;
  /** Steps run. */
  steps: number;
  /** Best IS of the episode. */
  bestIs: number;
  /** Reward `C * bestIS^2` (0 on collapse). */
  reward: number;
  /** Advantage used (clipped; -20 on collapse). */
  advantage: number;
  /** Whether it ended in collapse (or non-finite values). */
  collapsed: boolean;
  /** Whether it was cut short by `shouldStop` (then no update was taken and it does not count). */
  stopped: boolean;
  /** Share of G actions. */
  gShare: number;
  /** Loop counters. */
  loop: LoopStats;
}

/**
 * Episodic REINFORCE as the authors' code (reference doc 3.1-3.2, 4.3): each episode trains a
 * fresh GAN under the controller (4 features, MLP 4-16-2, temperature 1), the IS is evaluated
 * every `task.opts.isEvery` steps, the episode ends at `episodeSteps`, on IS patience, or on
 * collapse; the reward is `C * bestIS^2` with a moving-average baseline and the advantage
 * magnitude clipped into [1, 20]; a collapse gives advantage -20 and re-initializes the
 * controller after the update. One difference from the authors: the reward uses the best IS
 * measured during the episode (on `task.opts.isSamples` samples) instead of re-scoring the best
 * checkpoint on 500k samples, which would cost about 100 evaluations per episode.
 */
export class EpisodicReinforce {
  /** The GAN (reset every episode). */
  readonly task: GanTask;
  /** Settings. */
  readonly opts: EpisodicOptions;
  /** The controller. */
  controller!: MlpController;
  /** REINFORCE state. */
  reinforce!: Reinforce;
  /** Episodes done. */
  episodes = 0;
  /** Best reward so far and the episode it came from. */
  best = { reward: -Infinity, episode: -1 };
  #reinits = 0;
  #seed = 0;

  /** Builds the controller. */
  constructor(task: GanTask, opts: EpisodicOptions) {
    this.task = task;
    this.opts = opts;
    this.#newController(opts.seed);
  }

  #newController(seed: number): void {
    const baseline = this.reinforce?.baseline ?? null;
    this.#seed = seed;
    this.reinforce?.dispose();
    this.controller?.dispose();
    this.controller = new MlpController({
      featureNames: this.task.featureNames,
      actions: 2,
      hidden: this.opts.hidden,
      temperature: 1,
      seed,
    });
    this.reinforce = new Reinforce(this.controller, this.opts.args);
    this.reinforce.baseline = baseline;
  }

  /** Runs one episode from `seed` and takes one controller update. */
  async episode(
    seed: number,
    hooks: Pick<LoopOptions, "onStatus" | "shouldStop"> = {},
  ): Promise<EpisodeLog> {
    const o = this.opts;
    const task = this.task;
    task.reset(seed);
    const every = task.opts.isEvery;
    const chunk = every > 0 ? every : o.episodeSteps;
    const buffer = new TrajectoryBuffer(o.episodeSteps, 1, task.featureNames.length, {
      logProbs: true,
    });
    const gen = new Generator(seed ^ 0x2545f491);
    const loops: LoopStats[] = [];
    let best = 0;
    let sinceBest = 0;
    let collapsed = false;
    let stopped = false;
    const actions: number[] = [];
    try {
      // Chunks of `isEvery` steps: the IS is evaluated at each chunk end inside task.step().
      while (task.t < o.episodeSteps) {
        const r = await runLearned(task, this.controller, {
          steps: Math.min(chunk, o.episodeSteps - task.t),
          gen,
          record: { buffer, offset: task.t },
          ...hooks,
        });
        loops.push(r.stats);
        actions.push(...r.actions);
        if (r.aborted === "stop") {
          stopped = true;
          break;
        }
        if (r.aborted) {
          collapsed = true;
          break;
        }
        const now = r.status!.is;
        if (now > best) {
          best = now;
          sinceBest = 0;
        } else if (o.patience > 0 && ++sinceBest >= o.patience) break;
      }
      const steps = actions.length;
      const reward = collapsed ? 0 : inceptionReward(best, o.c);
      let advantage: number;
      if (collapsed) {
        const clip = this.reinforce.args.advantageClip;
        advantage =
          -(clip.kind === "magnitude" ? clip.hi : clip.kind === "symmetric" ? clip.c : 20);
      } else {
        advantage = this.reinforce.advantages([reward])[0];
      }
      if (!stopped && steps > 0) {
        const used = steps === buffer.steps ? buffer : truncate(buffer, steps);
        const loss = this.reinforce.update(used, [[advantage]]);
        loss.dispose();
        if (used !== buffer) used.dispose();
      }
      if (!stopped) {
        if (collapsed) this.#newController(this.opts.seed + 7919 * ++this.#reinits);
        if (!collapsed && reward > this.best.reward) this.best = { reward, episode: this.episodes };
        this.episodes++;
      }
      return {
        episode: stopped ? this.episodes : this.episodes - 1,
        stopped,
        steps,
        bestIs: best,
        reward,
        advantage,
        collapsed,
        gShare: actions.filter((a) => a === G_ACTION).length / Math.max(steps, 1),
        loop: mergeStats(loops),
      };
    } finally {
      buffer.dispose();
    }
  }

  /**
   * Saves the controller, its Adam state and the REINFORCE bookkeeping (episodes, best, baseline)
   * to `path`: resuming continues with the next episode exactly as if uninterrupted.
   */
  async save(path: string): Promise<void> {
    const tensors: Record<string, Tensor> = {};
    this.reinforce.flat.names.forEach((
      n,
      i,
    ) => (tensors[`ctrl.${n}`] = this.reinforce.flat.params[i]));
    const opt = this.reinforce.optimizer.state("ctrl.optim.");
    Object.assign(tensors, opt.tensors);
    const meta = {
      kind: "reinforce",
      episodes: this.episodes,
      best: this.best,
      baseline: this.reinforce.baseline,
      reinits: this.#reinits,
      seed: this.#seed,
      updates: this.reinforce.updates,
    };
    await saveCheckpoint(path, tensors, { ...opt.metadata, "run.meta": JSON.stringify(meta) });
  }

  /** Restores what {@link EpisodicReinforce.save} wrote. */
  restore(ckpt: Checkpoint): void {
    const meta = checkpointMeta<{
      kind: string;
      episodes: number;
      best: { reward: number; episode: number };
      baseline: number | null;
      reinits: number;
      seed: number;
      updates: number;
    }>(ckpt);
    if (meta.kind !== "reinforce") {
      throw new UserError(
        `checkpoint holds a '${meta.kind}' run, not REINFORCE: resume it with the command that made it`,
      );
    }
    this.#newController(meta.seed);
    const flat = this.reinforce.flat;
    restoreNamed(ckpt, flat.names.map((n, i) => [n, flat.params[i]]), "ctrl.");
    this.reinforce.optimizer.loadState(ckpt, "ctrl.optim.");
    this.reinforce.baseline = meta.baseline;
    this.reinforce.updates = meta.updates;
    this.episodes = meta.episodes;
    this.best = meta.best;
    this.#reinits = meta.reinits;
  }

  /** Frees the controller (the task is the caller's). */
  dispose(): void {
    this.reinforce.dispose();
    this.controller.dispose();
  }
}

/** A new buffer holding the first `rows` rows of `src` (features, actions, logProbs). */
function truncate(src: TrajectoryBuffer, rows: number): TrajectoryBuffer {
  const out = new TrajectoryBuffer(rows, 1, src.featureSize, { logProbs: true });
  const be = backend();
  for (
    const [field, width] of [["features", src.featureSize], ["actions", 1], [
      "logProbs",
      1,
    ]] as const
  ) {
    const a = src.field(field);
    const b = out.field(field);
    be.copy(
      a.storageFor("truncate"),
      a.offset,
      b.storageFor("truncate"),
      b.offset,
      rows * width * 4,
    );
  }
  return out;
}
