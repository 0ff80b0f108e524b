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
import type { PolicyController } from "../../rl/controller.ts";
import type { ControllerFile } from "../../rl/controller_file.ts";
import type { GanContext } from "./run.ts";
import type { GanTask } from "./task.ts";
import { G_ACTION } from "./actions.ts";
import {
  checkpointMeta,
  type LoopOptions,
  type LoopStats,
  mergeStats,
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
    return this.learn([await this.play(seed, hooks)])[0];
  }

  /** Plays one episode from `seed` under the current controller (no update). */
  play(
    seed: number,
    hooks: Pick<LoopOptions, "onStatus" | "shouldStop"> = {},
  ): Promise<EpisodePlay> {
    return playEpisode(this.task, this.controller, this.opts, seed, hooks);
  }

  /**
   * Takes one controller update from `plays` (episodes played under the current controller, in
   * episode order; frees their buffers) and returns their logs. One play is the authors' update:
   * reward `C * bestIS^2` (0 on collapse), advantage from the moving-average baseline (-20 on
   * collapse). Several (`controller.reinforce.batch`) take one baseline step on the mean reward of
   * those that did not collapse, and one Adam step on the mean loss over all their steps, each
   * step weighted by its episode's advantage. A collapse re-initializes the controller after the
   * update; a play cut short by `shouldStop` cancels the update (nothing counts).
   */
  learn(plays: EpisodePlay[]): EpisodeLog[] {
    try {
      return plays.length === 1 ? [this.#learnOne(plays[0])] : this.#learnMany(plays);
    } finally {
      for (const p of plays) p.buffer.dispose();
    }
  }

  #collapseAdvantage(): number {
    const clip = this.reinforce.args.advantageClip;
    return -(clip.kind === "magnitude" ? clip.hi : clip.kind === "symmetric" ? clip.c : 20);
  }

  #learnOne(p: EpisodePlay): EpisodeLog {
    const { steps, collapsed, stopped, buffer } = p;
    const reward = collapsed ? 0 : inceptionReward(p.bestIs, this.opts.c);
    const advantage = collapsed
      ? this.#collapseAdvantage()
      : this.reinforce.advantages([reward])[0];
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
    return logOf(p, stopped ? this.episodes : this.episodes - 1, reward, advantage);
  }

  #learnMany(plays: EpisodePlay[]): EpisodeLog[] {
    if (plays.some((p) => p.stopped)) {
      return plays.map((p) => logOf({ ...p, stopped: true }, this.episodes, 0, 0));
    }
    const rewards = plays.map((p) => (p.collapsed ? 0 : inceptionReward(p.bestIs, this.opts.c)));
    const kept = plays.map((p, i) => [p, i] as const).filter(([p]) => !p.collapsed);
    const adv = kept.length ? this.reinforce.advantages(kept.map(([, i]) => rewards[i])) : [];
    const advantages = plays.map((p) => (p.collapsed ? this.#collapseAdvantage() : 0));
    kept.forEach(([, i], k) => (advantages[i] = adv[k]));
    const rows = plays.reduce((n, p) => n + p.steps, 0);
    if (rows > 0) {
      // All steps of all episodes in one buffer, each weighted by its episode's advantage (the
      // dense-reward field with a zero episode advantage: the loss is their plain mean).
      const all = new TrajectoryBuffer(rows, 1, this.task.featureNames.length, { rewards: true });
      try {
        const weights = new Float32Array(rows);
        let at = 0;
        plays.forEach((p, i) => {
          copyRows(p.buffer, all, at, p.steps);
          weights.fill(advantages[i], at, at + p.steps);
          at += p.steps;
        });
        const w = all.scalars.rewards!;
        backend().write(w.storageFor("learnMany"), weights, w.offset);
        this.reinforce.update(all, [[0]]).dispose();
      } finally {
        all.dispose();
      }
    }
    const first = this.episodes;
    plays.forEach((p, i) => {
      if (!p.collapsed && rewards[i] > this.best.reward) {
        this.best = { reward: rewards[i], episode: first + i };
      }
    });
    if (plays.some((p) => p.collapsed)) {
      this.#newController(this.opts.seed + 7919 * ++this.#reinits);
    }
    this.episodes += plays.length;
    return plays.map((p, i) => logOf(p, first + i, rewards[i], advantages[i]));
  }

  /**
   * Saves the controller, its Adam state and the REINFORCE bookkeeping (episodes, best, baseline)
   * to `path`: resuming continues with the next episode exactly as if uninterrupted.
   */
  async save(path: string): Promise<void> {
    const ctrl = this.reinforce.checkpointState("ctrl.");
    const meta: EpisodicMeta = {
      kind: "reinforce",
      episodes: this.episodes,
      best: this.best,
      reinits: this.#reinits,
      seed: this.#seed,
    };
    await saveCheckpoint(path, ctrl.tensors, {
      ...ctrl.metadata,
      "run.meta": JSON.stringify(meta),
    });
  }

  /** Restores what {@link EpisodicReinforce.save} wrote (also the earlier layout). */
  restore(ckpt: Checkpoint): void {
    const meta = checkpointMeta<EpisodicMeta & { baseline?: number | null; updates?: number }>(
      ckpt,
    );
    if (meta.kind !== "reinforce") {
      throw new UserError(
        `checkpoint holds a '${meta.kind}' run, not REINFORCE: resume it with the command that made it`,
      );
    }
    this.#newController(meta.seed);
    // Written before the counters were the learner part's: they were in run.meta.
    const legacy: Record<string, string> = ckpt.metadata["ctrl.updates"] === undefined
      ? { "ctrl.baseline": JSON.stringify(meta.baseline), "ctrl.updates": String(meta.updates) }
      : {};
    this.reinforce.loadCheckpoint(ckpt, "ctrl.", legacy);
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

/** The run's JSON in an episodic REINFORCE checkpoint (the controller: `Reinforce`'s part). */
interface EpisodicMeta {
  kind: "reinforce";
  /** Episodes completed. */
  episodes: number;
  /** The best episode so far. */
  best: { reward: number; episode: number };
  /** Controller re-initializations after collapse. */
  reinits: number;
  /** Seed of the current controller. */
  seed: number;
}

/** Copies the first `rows` rows of `src` (features, actions) into `dst` from row `at`. */
function copyRows(src: TrajectoryBuffer, dst: TrajectoryBuffer, at: number, rows: number): void {
  const be = backend();
  for (const [field, width] of [["features", src.featureSize], ["actions", 1]] as const) {
    const a = src.field(field);
    const b = dst.field(field);
    be.copy(
      a.storageFor("copyRows"),
      a.offset,
      b.storageFor("copyRows"),
      b.offset + at * width * 4,
      rows * width * 4,
    );
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

function logOf(p: EpisodePlay, episode: number, reward: number, advantage: number): EpisodeLog {
  return {
    episode,
    stopped: p.stopped,
    steps: p.steps,
    bestIs: p.bestIs,
    reward,
    advantage,
    collapsed: p.collapsed,
    gShare: p.actions.filter((a) => a === G_ACTION).length / Math.max(p.steps, 1),
    loop: p.loop,
  };
}

/** One episode as played, before the update: what the update and the log need. */
export interface EpisodePlay {
  /** Steps run. */
  steps: number;
  /** Best IS of the episode. */
  bestIs: number;
  /** Whether it ended in collapse (or non-finite values). */
  collapsed: boolean;
  /** Whether it was cut short by `shouldStop`. */
  stopped: boolean;
  /** The actions taken. */
  actions: number[];
  /** Loop counters. */
  loop: LoopStats;
  /** The trajectory: features, actions (and log-probabilities) in the first `steps` rows. */
  buffer: TrajectoryBuffer;
}

/**
 * Plays one episode as the authors' code: `task` reset to `seed`, the controller's actions in
 * chunks of `task.opts.isEvery` steps (the IS is evaluated at each chunk end), until
 * `episodeSteps`, IS patience, or collapse. Depends only on the controller's weights, the task's
 * config and `seed`, so a worker (dist/gan.ts) plays the learner's episode bit for bit.
 */
export async function playEpisode(
  task: GanTask,
  controller: PolicyController,
  o: Pick<EpisodicOptions, "episodeSteps" | "patience">,
  seed: number,
  hooks: Pick<LoopOptions, "onStatus" | "shouldStop"> = {},
): Promise<EpisodePlay> {
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
      const r = await runLearned(task, controller, {
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
  } catch (err) {
    buffer.dispose();
    throw err;
  }
  return {
    steps: actions.length,
    bestIs: best,
    collapsed,
    stopped,
    actions,
    loop: mergeStats(loops),
    buffer,
  };
}

/** An episode for the workers (`train gan --workers`): its index, seed and whether to keep its GAN. */
export interface RemoteEpisodeRequest {
  /** Episode index. */
  episode: number;
  /** The GAN's seed. */
  seed: number;
  /** Send back the GAN's final state (the last episode of an update: pictures, final IS). */
  keepGan: boolean;
}

/** What a worker played: the trajectory as plain arrays. */
export interface RemoteEpisode {
  /** Steps run. */
  steps: number;
  /** Best IS of the episode. */
  bestIs: number;
  /** Whether it ended in collapse. */
  collapsed: boolean;
  /** Loop counters. */
  loop: LoopStats;
  /** Features [steps, K]. */
  features: Float32Array;
  /** Actions [steps]. */
  actions: Int32Array;
  /** The GAN's final state (a GAN checkpoint file) when asked for. */
  gan?: Uint8Array;
}

/**
 * Plays episodes on the workers (dist/learner.ts, one job each, all at once) under the controller
 * file `controller`; the episodes come back in request order.
 */
export type RemoteEpisodes = (
  episodes: RemoteEpisodeRequest[],
  controller: ControllerFile,
  o: Pick<EpisodicOptions, "episodeSteps" | "patience">,
  ctx: GanContext,
) => Promise<RemoteEpisode[]>;

/** A remote episode as a play (its buffer written from the arrays). */
export function remotePlay(e: RemoteEpisode, featureSize: number): EpisodePlay {
  if (e.features.length !== e.steps * featureSize || e.actions.length !== e.steps) {
    throw new Error(
      `remote episode: ${e.features.length} features and ${e.actions.length} actions for ` +
        `${e.steps} steps of ${featureSize} features`,
    );
  }
  const buffer = new TrajectoryBuffer(Math.max(e.steps, 1), 1, featureSize, { logProbs: true });
  const be = backend();
  if (e.steps > 0) {
    be.write(buffer.features.storageFor("remote"), e.features, buffer.features.offset);
    be.write(buffer.actions.storageFor("remote"), e.actions, buffer.actions.offset);
  }
  return {
    steps: e.steps,
    bestIs: e.bestIs,
    collapsed: e.collapsed,
    stopped: false,
    actions: Array.from(e.actions),
    loop: e.loop,
    buffer,
  };
}
