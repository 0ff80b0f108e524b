/**
 * Controller training on the L1 tasks ({@link trainController}): REINFORCE on the controller
 * partitions (core `trainReinforce`, P episodes per update, or per-episode updates as the
 * authors), locally or with the episodes run on workers ({@link RemoteRounds}, dist/), with a
 * checkpoint after every round (tasks/l1/training_checkpoint.ts).
 * @module
 */

import * as ops from "../../tensor/ops.ts";
import { type ControllerFile, controllerToJson } from "../../rl/controller_file.ts";
import { MlpController } from "../../rl/controller.ts";
import {
  clipAdvantage,
  DenseStepReward,
  Reinforce,
  REINFORCE_PRESETS,
  type ReinforceArgs,
} from "../../rl/reinforce.ts";
import { deriveSeed, runEpisode } from "../../rl/runner.ts";
import { trainReinforce } from "../../rl/training.ts";
import { decisionRows, TrajectoryBuffer } from "../../rl/trajectory.ts";
import { backend } from "../../gpu/backend.ts";
import { tensor } from "../../tensor/functional.ts";
import { keep, noGrad, readMany, type Tensor, tidy } from "../../tensor/tensor.ts";
import { clippedSurrogate } from "../../rl/ppo.ts";
import { runningNormalization } from "../../rl/normalization.ts";
import type { FeatureGroup, FeatureSetKind, L1ScheduleTask } from "./task.ts";
import type { CreateOptions, L1Problem } from "./problems.ts";
import { holdActions, mean, std, untrainedLike } from "./methods.ts";
import { type ActedDiagnostics, actedDiagnostics, esRounds } from "./training_es.ts";
import {
  type ControllerTrainCheckpoint,
  restoreTraining,
  saveControllerCheckpoint,
  trainingSettings,
} from "./training_checkpoint.ts";

/** Thrown when `shouldStop` ended controller training after a round (its checkpoint is saved). */
export class TrainingStopped extends Error {
  /** Rounds completed. */
  readonly rounds: number;

  /** After `rounds` completed rounds. */
  constructor(rounds: number) {
    super(`controller training stopped after round ${rounds}`);
    this.rounds = rounds;
  }
}

/** Controller-training settings. */
export interface ControllerTrainOptions {
  /** P: episodes run in lockstep per REINFORCE update. */
  population: number;
  /** Updates (rounds of P episodes). */
  rounds: number;
  /** Steps per episode. */
  steps: number;
  /** Seed. */
  seed: number;
  /** Controller hidden units (authors 16). */
  hidden: number;
  /** Softmax temperature (authors 2). */
  temperature: number;
  /** REINFORCE settings over the task preset (learning rate, baseline, clip, step reward). */
  args: Partial<ReinforceArgs>;
  /** Keep the controller of the best round ("best", the authors) or the last one. */
  keep: "best" | "last";
  /**
   * "episode": one REINFORCE update per episode (the authors' S = 1), taken for each of the P
   * episodes of a round in turn; "round": one update from all P episodes (core `trainReinforce`);
   * "ppo": PPO epochs over the round's episodes; "es": evolution strategies, the P episodes as
   * antithetic pairs of perturbed controllers, one update per round (tasks/l1/training_es.ts).
   */
  updates?: "episode" | "round" | "ppo" | "es";
  /** ES (`updates: "es"`, rl/es.ts): the parameter noise scale sigma (default 0.1). */
  esSigma?: number;
  /**
   * The baseline of the advantages: "moving" (the authors' moving average of rewards), "round"
   * (the mean reward of the round's P episodes) or "zscore" (the round's rewards standardized:
   * `(R - mean) / std` over its P episodes, so the advantage scale does not depend on the
   * reward's units or on how much episodes differ); "round" and "zscore": per-episode and PPO
   * updates only.
   */
  baseline?: "moving" | "round" | "zscore";
  /** PPO over episodes (`updates: "ppo"`): epochs over a round's episodes (default 4). */
  ppoEpochs?: number;
  /** PPO ratio clip (default 0.2). */
  ppoClip?: number;
  /**
   * Standardize the controller's inputs with running statistics (updated from every round's
   * features, saved in the controller file) instead of feeding the raw features.
   */
  normalizeFeatures?: boolean;
  /** The episodes of a round share one initialization (common random numbers). */
  sharedInit?: boolean;
  /**
   * Decision interval k (default 1): the controller samples an action every k task steps and
   * holds it for the k steps ({@link holdActions}); the updates count each decision once (its
   * features, action and log-probability at the step it was taken; the dense step rewards of its
   * k steps summed). Recorded in the controller file (`provenance.actEvery`), so guided runs act
   * with the same k. `steps` must be a multiple of k. Per-episode and PPO updates, local only.
   */
  actEvery?: number;
  /** Feature set (default: the problem's). */
  features?: FeatureSetKind;
  /** Feature groups to drop (Table 3). */
  dropFeatures?: readonly FeatureGroup[];
  /** Called after each round with the controller as updated by it (after its checkpoint). */
  onRound?: (r: RoundLog, current: ControllerFile) => void | Promise<void>;
  /** Polled after each round (after `onRound`): true ends training with {@link TrainingStopped}. */
  shouldStop?: () => boolean;
  /**
   * A checkpoint rewritten atomically at `path` after every round (see
   * {@link ControllerTrainCheckpoint}), with `metadata` added to its string metadata: training
   * interrupted at any point can continue from the last completed round with `resume`.
   */
  checkpoint?: { path: string; metadata?: Record<string, string> };
  /**
   * Continue from this checkpoint (read with {@link loadControllerCheckpoint}) with round
   * `resume.round`; the result equals that of an uninterrupted run with the same options.
   * `rounds` may differ from the interrupted run's (to extend it); other settings must match.
   */
  resume?: ControllerTrainCheckpoint;
  /**
   * Run each round's P episodes elsewhere (dist/: jobs of slices of the members on NATS workers)
   * instead of in lockstep here; the updates that follow are the same. Per-episode and PPO
   * updates only.
   */
  remote?: RemoteRounds;
}

/**
 * What a round's episodes need when they run elsewhere: a slice of members `lo..` runs as a
 * population with `memberOffset: lo` (tasks/l1/task.ts, rl/runner.ts), reset with `seed` and
 * sampling with `sampleSeed`, so that member m draws as member lo + m of the lockstep round.
 */
export interface RemoteRoundRequest {
  /** Round index. */
  round: number;
  /** The controller that acts in this round. */
  controller: ControllerFile;
  /** The round's task seed. */
  seed: number;
  /** The round's sampling seed. */
  sampleSeed: number;
  /** P: episodes (members) of the round. */
  population: number;
  /** How each member's task is built (population aside). */
  create: Omit<CreateOptions, "population">;
  /** The REINFORCE settings (the dense step reward, when set, is recorded per step). */
  args: ReinforceArgs;
  /** Record the log-probabilities of the actions (PPO). */
  logProbs: boolean;
}

/** A round's episodes as run elsewhere, assembled in member order. */
export interface RemoteRoundResult {
  /** Final metrics, [P] each. */
  metrics: Record<string, number[]>;
  /** Features [T, P, K]. */
  features: Float32Array;
  /** Actions [T, P]. */
  actions: Int32Array;
  /** Dense step rewards [T, P] (when `args.stepReward` is set). */
  stepRewards?: Float32Array;
  /** Log-probabilities [T, P] (when `logProbs`). */
  logProbs?: Float32Array;
}

/** Runs a round's episodes elsewhere (see {@link ControllerTrainOptions.remote}). */
export type RemoteRounds = (req: RemoteRoundRequest) => Promise<RemoteRoundResult>;

/** One round of controller training. */
export interface RoundLog {
  /** Round index. */
  round: number;
  /** Mean final reward of the round's episodes. */
  meanReward: number;
  /** Mean validation score of the round's episodes. */
  meanBest: number;
  /** Mean share of L1 steps. */
  l1Fraction: number;
  /** Standard deviation of the round's episode rewards. */
  rewardStd?: number;
  /** Smallest and largest episode reward of the round. */
  rewardRange?: [number, number];
  /** Mean, standard deviation and mean magnitude of the advantages (after clipping). */
  advantage?: { mean: number; std: number; absMean: number; clipped: number };
  /** Mean policy entropy (nats) over the states of the round, under the policy that acted. */
  entropy?: number;
  /** Share of L1 actions in each tenth of the episode (time bins, first to last). */
  l1ByTime?: number[];
  /** Mean L2 norm of the controller gradient over the round's updates. */
  gradNorm?: number;
  /** Training steps consumed so far (rounds x P x steps): the data budget of Fig. 3R. */
  stepsSoFar: number;
  /** Seconds of the round. */
  seconds: number;
}

/** A trained controller and its training history. */
export interface TrainedController {
  /** The controller file (the kept controller). */
  file: ControllerFile;
  /** The controller before any update (the untrained null baseline). */
  initial: ControllerFile;
  /** Per-round logs. */
  history: RoundLog[];
  /** Wall-clock seconds of training. */
  seconds: number;
}

/** The REINFORCE preset of a problem (the authors' settings, reference doc section 4). */
export function reinforcePreset(problem: L1Problem): Partial<ReinforceArgs> {
  return problem.name === "regression"
    ? REINFORCE_PRESETS.regression
    : REINFORCE_PRESETS.classification;
}

/**
 * Trains an MLP controller with REINFORCE on the controller partitions: `rounds` updates, each
 * from P episodes run in lockstep; keeps the controller that produced the best round (the
 * authors save on every new best episode) or the last one.
 */
export async function trainController(
  problem: L1Problem,
  o: ControllerTrainOptions,
): Promise<TrainedController> {
  const began = performance.now();
  const actEvery = o.actEvery ?? 1;
  if (!Number.isInteger(actEvery) || actEvery < 1 || o.steps % actEvery !== 0) {
    throw new Error(
      `controller.actEvery must be an integer >= 1 dividing controller.steps (${o.steps}), ` +
        `not ${actEvery}`,
    );
  }
  if (o.updates === "es" && (actEvery > 1 || o.remote)) {
    throw new Error(
      "controller.updates es acts at every step, here (no controller.actEvery > 1, no --workers)",
    );
  }
  if (actEvery > 1 && (o.updates === "round" || o.remote)) {
    throw new Error(
      "controller.actEvery > 1 needs controller.updates episode or ppo, run here (no --workers)",
    );
  }
  const task = problem.create({
    population: o.population,
    lambda: problem.settings.lambda,
    mode: "schedule",
    data: "controller",
    steps: o.steps,
    features: o.features,
    dropFeatures: o.dropFeatures,
    sharedInit: o.sharedInit,
    // ES: the two members of an antithetic pair start alike (common random numbers).
    initGroup: o.updates === "es" ? 2 : 1,
  });
  const controller = new MlpController({
    featureNames: task.featureNames,
    actions: task.actions.length,
    hidden: o.hidden,
    temperature: o.temperature,
    seed: o.seed,
    normalization: o.normalizeFeatures ? runningNormalization(task.featureNames.length) : undefined,
  });
  const args = { ...reinforcePreset(problem), ...o.args };
  const reinforce = new Reinforce(controller, args);
  const settings = trainingSettings(problem, o, args);
  const meta = {
    featureNames: task.featureNames,
    actions: task.actions.map((a) => a.name),
  };
  const snapshot = (episodes: number, reward: number | null) =>
    controllerToJson(controller, {
      ...meta,
      provenance: {
        task: problem.name,
        seed: o.seed,
        episodes,
        trainingSteps: episodes * o.population * o.steps,
        reward,
        keep: o.keep,
        features: o.features ?? problem.settings.features,
        dropFeatures: [...(o.dropFeatures ?? [])],
        actEvery,
      },
    });
  const history: RoundLog[] = [];
  const secondsBefore = o.resume?.seconds ?? 0;
  const seconds = () => secondsBefore + (performance.now() - began) / 1000;
  try {
    if (o.resume) restoreTraining(o.resume, settings, controller, reinforce);
    history.push(...(o.resume?.history ?? []));
    const start = o.resume?.round ?? 0;
    // The controller that runs round e is the one saved after round e - 1.
    const initial = await untrainedLike(o.resume?.current ?? await snapshot(0, null));
    let current = o.resume?.current ?? await snapshot(0, null);
    let best: { file: ControllerFile; reward: number } | null = o.resume?.best ?? null;
    let last = performance.now();
    const onRound = async (
      round: number,
      rewards: number[],
      metrics: Record<string, number[]>,
      diagnostics: RoundDiagnostics = {},
    ) => {
      const now = performance.now();
      const r: RoundLog = {
        round,
        meanReward: mean(rewards),
        meanBest: mean(metrics.best),
        l1Fraction: mean(metrics.l1Fraction),
        rewardStd: std(rewards),
        rewardRange: [Math.min(...rewards), Math.max(...rewards)],
        ...diagnostics,
        stepsSoFar: (round + 1) * o.population * o.steps,
        seconds: (now - last) / 1000,
      };
      last = now;
      history.push(r);
      if (!best || r.meanReward > best.reward) {
        best = {
          file: { ...current, provenance: { ...current.provenance, reward: r.meanReward } },
          reward: r.meanReward,
        };
      }
      current = await snapshot(round + 1, null);
      if (o.checkpoint) {
        await saveControllerCheckpoint(o.checkpoint, reinforce, {
          round: round + 1,
          history,
          best,
          current,
          seconds: seconds(),
          settings,
        });
      }
      await o.onRound?.(r, current);
      if (o.shouldStop?.() && round + 1 < o.rounds) throw new TrainingStopped(round + 1);
    };
    if ((o.updates ?? "episode") === "round") {
      if (o.remote) throw new Error("remote episodes need controller.updates episode or ppo");
      await trainReinforce(task, controller, {
        episodes: o.rounds,
        startEpisode: start,
        reinforce,
        steps: o.steps,
        seed: o.seed,
        reward: problem.reward,
        onEpisode: (log) => onRound(log.episode, log.rewards, log.metrics),
      });
    } else if (o.updates === "es") {
      const es = { rounds: o.rounds, steps: o.steps, seed: o.seed, sigma: o.esSigma ?? 0.1 };
      await esRounds(task, reinforce, problem, es, start, onRound);
    } else {
      await reinforcePerEpisode(task, reinforce, problem, o, start, onRound, () => current);
    }
    const kept = o.keep === "best" && best ? (best as { file: ControllerFile }).file : current;
    return { file: kept, initial, history, seconds: seconds() };
  } finally {
    reinforce.dispose();
    controller.dispose();
    task.dispose();
  }
}

/** What a round of per-episode training measured besides rewards (see {@link RoundLog}). */
type RoundDiagnostics = ActedDiagnostics;

/**
 * The advantages of one round's P episode rewards: the authors' moving-average baseline (updated
 * once per episode, in member order), the round's mean, or the round's standardized rewards;
 * then clipped.
 */
export function roundAdvantages(
  rewards: readonly number[],
  baseline: "moving" | "round" | "zscore",
  reinforce: Pick<Reinforce, "advantages" | "args">,
): number[] {
  const clip = reinforce.args.advantageClip;
  if (baseline === "moving") return rewards.map((r) => reinforce.advantages([r])[0]);
  const m = mean(rewards);
  const s = baseline === "zscore" ? std(rewards) : 1;
  return rewards.map((r) => clipAdvantage(s > 1e-12 ? (r - m) / s : 0, clip));
}

/**
 * Per-episode controller updates over a population: each round runs P episodes in lockstep
 * through the core runner, recording features, actions, their log-probabilities and the dense
 * step rewards on the GPU; then the advantages of the P final rewards ({@link roundAdvantages});
 * then either ("episode") one REINFORCE Adam step per member in turn on its own T recorded steps
 * (the authors' S = 1), or ("ppo") `ppoEpochs` passes over the members, each member's step the
 * clipped surrogate of its episode against the log-probabilities that acted (so the later updates
 * of a round are corrected for being off-policy). With running feature normalization the
 * statistics absorb the round's features after its updates. One readback per round for the
 * diagnostics (entropy, L1 share over time, gradient norms).
 */
async function reinforcePerEpisode(
  task: L1ScheduleTask,
  reinforce: Reinforce,
  problem: L1Problem,
  o: ControllerTrainOptions,
  start: number,
  onRound: (
    round: number,
    rewards: number[],
    metrics: Record<string, number[]>,
    diagnostics: RoundDiagnostics,
  ) => Promise<void>,
  current: () => ControllerFile,
): Promise<void> {
  const controller = reinforce.controller;
  const a = reinforce.args;
  const p = task.population;
  const k = task.featureNames.length;
  const t = o.steps;
  // Decision interval: the updates see d = t / every decisions (rows 0, every, 2 every, ...).
  const every = o.actEvery ?? 1;
  const d = t / every;
  const actor = holdActions(controller, every);
  const ppo = o.updates === "ppo";
  const epochs = ppo ? o.ppoEpochs ?? 4 : 1;
  const clipCoef = o.ppoClip ?? 0.2;
  const buffer = new TrajectoryBuffer(t, p, k, {
    rewards: a.stepReward !== null,
    logProbs: ppo,
  });
  const dense = a.stepReward ? new DenseStepReward(p, a.stepReward, a) : null;
  try {
    for (let round = start; round < o.rounds; round++) {
      dense?.reset();
      buffer.clear();
      const run = o.remote
        ? await remoteRound(o.remote, buffer, problem, {
          round,
          controller: current(),
          seed: deriveSeed(o.seed, round),
          sampleSeed: deriveSeed(o.seed + 1, round),
          population: p,
          create: {
            lambda: problem.settings.lambda,
            mode: "schedule",
            data: "controller",
            steps: t,
            features: o.features,
            dropFeatures: o.dropFeatures,
            sharedInit: o.sharedInit,
          },
          args: a,
          logProbs: ppo,
        })
        : await runEpisode(task, actor, {
          steps: t,
          seed: deriveSeed(o.seed, round),
          sampleSeed: deriveSeed(o.seed + 1, round),
          buffer,
          onStep: dense
            ? (info) =>
              buffer.record("rewards", info.i, dense.step(task.metrics()[a.stepReward!.metric]))
            : undefined,
          reward: problem.reward,
        });
      actor.release();
      const adv = roundAdvantages(run.rewards, o.baseline ?? "moving", reinforce);
      const dec = decisionRows(buffer, every);
      // Diagnostics of the policy that acted, before it is updated.
      const [entropy, l1ByTime] = actedDiagnostics(
        controller,
        dec.features.reshape([d * p, k]),
        buffer.actions,
      );
      let gradNorms: Tensor = keep(tensor(new Float32Array(1), [1]));
      const addNorm = () => {
        const next = tidy(() =>
          noGrad(() => gradNorms.add(reinforce.flat.grad.square().sum().sqrt().reshape([1])))
        );
        gradNorms.dispose();
        gradNorms = keep(next);
      };
      let updates = 0;
      for (let epoch = 0; epoch < epochs; epoch++) {
        for (let m = 0; m < p; m++) {
          reinforce.flat.zeroGrad();
          tidy(() => {
            const member = (x: Tensor, width: number) =>
              ops.slice(x, [0, m, 0], [d, m + 1, width]).reshape(width === 1 ? [d] : [d, width]);
            const features = member(dec.features.reshape([d, p, k]), k);
            const actions = member(dec.actions.reshape([d, p, 1]), 1);
            // The advantage is uploaded, not baked into a kernel (that would compile one per value).
            const advantage = tensor(Float32Array.of(adv[m]), [1]);
            const stepRewards = dec.rewards;
            const weights = stepRewards
              ? member(stepRewards.reshape([d, p, 1]), 1).add(advantage)
              : advantage.expand([d]);
            if (ppo) {
              const old = member(dec.logProbs!.reshape([d, p, 1]), 1);
              let loss = clippedSurrogate(
                controller.logProb(features, actions),
                old,
                weights,
                clipCoef,
              );
              if (a.entropyCoef !== 0) {
                loss = loss.sub(controller.entropy(features).mean().mul(a.entropyCoef));
              }
              loss.backward();
            } else {
              reinforce.loss(features, actions, weights).backward();
            }
          });
          addNorm();
          reinforce.optimizer.step();
          reinforce.updates++;
          updates++;
        }
      }
      tidy(() => noGrad(() => controller.normalizer.update(dec.features.reshape([d * p, k]))));
      dec.dispose();
      const [ent, byTime, norms] = await readMany([entropy, l1ByTime, gradNorms]);
      entropy.dispose();
      l1ByTime.dispose();
      gradNorms.dispose();
      const clip = a.advantageClip;
      const limit = clip.kind === "symmetric" ? clip.c : Infinity;
      await onRound(round, run.rewards, run.metrics, {
        advantage: {
          mean: mean(adv),
          std: std(adv),
          absMean: mean(adv.map(Math.abs)),
          clipped: adv.filter((v) => Math.abs(v) >= limit).length / adv.length,
        },
        entropy: ent[0],
        l1ByTime: Array.from(byTime),
        gradNorm: norms[0] / Math.max(updates, 1),
      });
    }
  } finally {
    actor.release();
    buffer.dispose();
    dense?.dispose();
  }
}

/** Runs a round remotely and writes its trajectories into `buffer` (as the local run records). */
async function remoteRound(
  remote: RemoteRounds,
  buffer: TrajectoryBuffer,
  problem: L1Problem,
  req: RemoteRoundRequest,
): Promise<{ rewards: number[]; metrics: Record<string, number[]> }> {
  const r = await remote(req);
  const put = (
    dst: Tensor | undefined,
    src: Float32Array | Int32Array | undefined,
    what: string,
  ) => {
    if (!dst) return;
    if (!src || src.length !== dst.size) {
      throw new Error(
        `remote round ${req.round}: ${what} has ${src?.length ?? 0} values, not ${dst.size}`,
      );
    }
    backend().write(dst.storageFor("remote"), src, dst.offset);
  };
  put(buffer.features, r.features, "features");
  put(buffer.actions, r.actions, "actions");
  put(buffer.scalars.rewards, r.stepRewards, "step rewards");
  put(buffer.scalars.logProbs, r.logProbs, "log-probabilities");
  return { rewards: problem.reward(r.metrics), metrics: r.metrics };
}
