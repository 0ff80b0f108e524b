/**
 * What the regression and MLP commands share (tasks/l1/commands.ts, tasks/l1/compare.ts): the
 * paper's tables, the task specs and configs, controller training from a config, summaries,
 * tables and the machine description.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { fileURLToPath } from "node:url";
import { backend } from "../../gpu/backend.ts";
import type { ControllerFile } from "../../rl/controller_file.ts";
import type { Schema } from "../../run/config.ts";
import { formatDuration, Progress } from "../../run/progress.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { linePlot, type Series } from "../../run/svg.ts";
import {
  AUTHORS_SPEC,
  type ClassificationSpec,
  PAPER_SPEC,
  TRANSFER_SPECS,
} from "./data/classification.ts";
import type { FeatureGroup, FeatureSetKind } from "./task.ts";
import {
  MLP_SCHEMA,
  type MlpConfig,
  REGRESSION_SCHEMA,
  type RegressionConfig,
  type SharedConfig,
} from "./config.ts";
import { mean, type MethodResult, std } from "./methods.ts";
import { type RemoteRounds, trainController, type TrainedController } from "./training.ts";
import type { ControllerTrainCheckpoint } from "./training_checkpoint.ts";
import { type L1Problem, mlpProblem, regressionProblem } from "./problems.ts";

/** The paper's Table 1 (regression: MSE above the 3.94 floor; MLP: test error). */
export const PAPER_TABLE1: Record<"regression" | "mlp", Record<string, number>> = {
  regression: { "W/O L1": 0.79, S1: 0.086, S2: 0.096, S3: 0.095, DGS: 0.086, AutoLoss: 0.07 },
  mlp: { "W/O L1": 0.124, S1: 0.091, S2: 0.094, S3: 0.094, DGS: 0.093, AutoLoss: 0.088 },
};

/** The paper's Table 2 (MLP test error on transfer data sets #1-#3). */
export const PAPER_TABLE2: Record<string, number[]> = {
  "W/O L1": [0.1337, 0.1294, 0.1318],
  DGS: [0.1019, 0.1035, 0.1022],
  AutoLoss: [0.1037, 0.1016, 0.0997],
};

/** The paper's Table 3 (regression MSE with a feature group dropped). */
export const PAPER_TABLE3: Record<string, number> = {
  "drop gradient norms": 0.086,
  "drop loss values": 0.101,
  "drop validation metrics": 0.085,
  "full": 0.07,
};

/** Summary statistics of one method (the shape summary.json promises). */
export interface MethodSummary {
  /** Mean over trials. */
  mean: number;
  /** Sample standard deviation over trials. */
  std: number;
  /** Trials. */
  n: number;
  /** Per-trial values. */
  values: number[];
  /** The paper's number, when it has one. */
  paper?: number;
  /** What the method chose. */
  detail?: Record<string, unknown>;
  /** Seconds. */
  seconds?: number;
}

/** A task's command-line description. */
export interface TaskSpec<C extends SharedConfig> {
  /** Registry name. */
  name: "regression" | "mlp";
  /** Its config schema. */
  schema: Schema;
  /** Builds the problem from a resolved config. */
  problem(cfg: C): L1Problem;
}

/** Builds the regression problem from its config. */
export function regressionFromConfig(cfg: RegressionConfig): L1Problem {
  return regressionProblem({
    data: cfg.data,
    model: cfg.model,
    train: trainSettings(cfg),
    rewardC: cfg.controller.rewardC,
  });
}

/** Builds the MLP problem from its config (data set `index` of TRANSFER_SPECS when given). */
export function mlpFromConfig(cfg: MlpConfig, index?: number): L1Problem {
  return mlpProblem({
    spec: index === undefined ? mlpSpec(cfg) : TRANSFER_SPECS[index],
    sizes: cfg.data.sizes,
    hidden: cfg.model.hidden,
    train: trainSettings(cfg),
    rewardC: cfg.controller.rewardC,
  });
}

/** The data distribution of an MLP config: its generator with the `data` overrides applied. */
export function mlpSpec(cfg: MlpConfig): ClassificationSpec {
  const d = cfg.data;
  const base = d.generator === "authors" ? AUTHORS_SPEC : PAPER_SPEC;
  if (d.generator === "paper" && d.flipY >= 0) {
    throw new UserError("data.flipY applies to the authors' (sklearn) generator only");
  }
  const options = {
    ...base.options,
    ...(d.seed > 0 ? { seed: d.seed } : {}),
    ...(d.features > 0 ? { nFeatures: d.features } : {}),
    ...(d.flipY >= 0 ? { flipY: d.flipY } : {}),
  };
  return { ...base, options } as ClassificationSpec;
}

function trainSettings(cfg: SharedConfig) {
  return {
    lr: cfg.train.lr,
    lambda: cfg.train.lambda,
    valEvery: cfg.train.valEvery,
    featureValEvery: cfg.train.featureValEvery,
    features: cfg.train.features as FeatureSetKind,
    improvementDecay: cfg.train.improvementDecay,
  };
}

/** The load average, or null without `--allow-sys=loadavg` (it only annotates timings). */
function loadAverage(): number[] | null {
  try {
    return Deno.loadavg();
  } catch {
    return null;
  }
}

/** Machine description for summaries (timings depend on it). */
export function machine(): Promise<Record<string, unknown>> {
  const be = backend().info;
  return Promise.resolve({
    backend: be.kind,
    device: be.device,
    cpus: navigator.hardwareConcurrency,
    loadAverage: loadAverage(),
    deno: Deno.version.deno,
  });
}

/** `v` with `digits` decimals. */
export function fmt(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : String(v);
}

/** Summary statistics of per-trial values. */
export function summarize(values: number[], paper?: number): MethodSummary {
  return { mean: mean(values), std: std(values), n: values.length, values, paper };
}

/** A markdown table of methods: ours (mean +- std over n) beside the paper's number. */
export function methodTable(
  label: string,
  rows: [string, MethodSummary][],
  digits: number,
): string {
  const lines = [
    `| Method | ${label}: ours (mean ± std) | n | paper |`,
    "|---|---|---|---|",
  ];
  for (const [name, s] of rows) {
    const paper = s.paper === undefined ? "—" : fmt(s.paper, digits);
    lines.push(`| ${name} | ${fmt(s.mean, digits)} ± ${fmt(s.std, digits)} | ${s.n} | ${paper} |`);
  }
  return lines.join("\n");
}

/** The mean validation curve of each method, as plot series. */
export function curveSeries(results: MethodResult[]): Series[] {
  return results.map((r) => ({ name: r.name, x: r.curve.x, y: r.curve.y }));
}

/** "R rounds of P episodes in lockstep, U REINFORCE (PPO, ES) updates" for summaries. */
export function trainingShape(cfg: SharedConfig, rounds: number): string {
  const c = cfg.controller;
  const updates = c.updates === "episode"
    ? rounds * c.population
    : c.updates === "ppo"
    ? rounds * c.population * c.ppoEpochs
    : rounds;
  const kind = c.updates === "ppo"
    ? "PPO"
    : c.updates === "es"
    ? `ES (${c.population / 2} antithetic pairs, sigma ${c.esSigma})`
    : "REINFORCE";
  return `${rounds} rounds of ${c.population} episodes in lockstep, ${updates} ${kind} updates`;
}

/** Trains a controller with the config's settings, reporting progress. */
export async function trainFromConfig(
  problem: L1Problem,
  cfg: SharedConfig,
  log: (s: string) => void,
  extra: TrainExtras = {},
): Promise<TrainedController> {
  const c = cfg.controller;
  if (c.updates === "es" && c.population % 2 !== 0) {
    throw new UserError(
      `controller.updates es runs antithetic pairs: controller.population (${c.population}) ` +
        "must be even",
    );
  }
  if (c.updates === "es" && c.actEvery !== 1) {
    throw new UserError("controller.updates es acts at every step: set controller.actEvery=1");
  }
  if (c.steps % c.actEvery !== 0) {
    throw new UserError(
      `controller.actEvery (${c.actEvery}) must divide controller.steps (${c.steps})`,
    );
  }
  const progress = new Progress({
    total: c.rounds,
    unit: "rounds",
    label: extra.label ?? `train ${problem.name}`,
    start: extra.resume?.round ?? 0,
  });
  const trained = await trainController(problem, {
    population: c.population,
    rounds: c.rounds,
    steps: c.steps,
    seed: cfg.seed,
    hidden: c.hidden,
    temperature: c.temperature,
    keep: c.keep,
    updates: c.updates,
    baseline: c.baseline,
    ppoEpochs: c.ppoEpochs,
    ppoClip: c.ppoClip,
    esSigma: c.esSigma,
    normalizeFeatures: c.normalize,
    sharedInit: c.sharedInit,
    actEvery: c.actEvery,
    dropFeatures: extra.dropFeatures,
    checkpoint: extra.checkpoint,
    resume: extra.resume,
    remote: extra.remote,
    shouldStop: extra.shouldStop,
    args: {
      learningRate: c.lr,
      baselineDecay: c.baselineDecay,
      advantageClip: { kind: "symmetric", c: c.advantageClip },
      stepReward: c.stepReward ? { metric: "val", scale: c.stepRewardScale } : null,
      entropyCoef: c.entropy,
    },
    onRound: async (r, current) => {
      progress.update(r.round + 1, { reward: r.meanReward, best: r.meanBest, l1: r.l1Fraction });
      await extra.run?.appendMetrics({ kind: "round", ...r });
      await extra.onRound?.(r.round, current);
    },
  });
  progress.done(c.rounds);
  log(
    `${extra.label ?? "controller"}: ${c.rounds} rounds x ${c.population} episodes x ${c.steps} ` +
      `steps in ${formatDuration(trained.seconds)}`,
  );
  return trained;
}

/** Writes a controller file into the run directory (atomically). */
export async function writeController(run: RunDir, file: ControllerFile, name = "controller.json") {
  await run.writeFile(name, JSON.stringify(file, null, 2) + "\n");
}

/** Reads a controller.json. */
export async function readControllerFile(path: string): Promise<ControllerFile> {
  return JSON.parse(await Deno.readTextFile(path)) as ControllerFile;
}

/** The mean episode reward per round of controller training (with +-1 std), as an SVG plot. */
export function rewardPlot(history: TrainedController["history"], title: string): string {
  const x = history.map((h) => h.round);
  const m = history.map((h) => h.meanReward);
  const sd = history.map((h) => h.rewardStd ?? NaN);
  return linePlot([
    { name: "mean reward", x, y: m },
    { name: "mean + std", x, y: m.map((v, i) => v + sd[i]) },
    { name: "mean - std", x, y: m.map((v, i) => v - sd[i]) },
  ], { title, xLabel: "round", yLabel: "episode reward" });
}

/**
 * How controller training went, round by round: the plots (`learning_*.svg`: reward, advantages,
 * policy entropy, controller gradient norm, and the share of L1 actions over the episode's time
 * in the first, middle and last rounds) and a markdown table of the same numbers.
 */
export function learningReport(
  history: TrainedController["history"],
  title: string,
): { md: string; files: Record<string, string> } {
  const x = history.map((h) => h.round);
  const col = (f: (h: TrainedController["history"][number]) => number | undefined) =>
    history.map((h) => f(h) ?? NaN);
  const files: Record<string, string> = {
    "reward.svg": rewardPlot(history, `${title}: episode reward per round`),
    "learning_advantage.svg": linePlot([
      { name: "mean advantage", x, y: col((h) => h.advantage?.mean) },
      { name: "std", x, y: col((h) => h.advantage?.std) },
      { name: "mean |advantage|", x, y: col((h) => h.advantage?.absMean) },
      { name: "share clipped", x, y: col((h) => h.advantage?.clipped) },
    ], { title: `${title}: advantages per round`, xLabel: "round", yLabel: "advantage" }),
    "learning_entropy.svg": linePlot([
      { name: "policy entropy (nats)", x, y: col((h) => h.entropy) },
      { name: "L1 share", x, y: col((h) => h.l1Fraction) },
    ], { title: `${title}: policy entropy and L1 share`, xLabel: "round", yLabel: "" }),
    "learning_gradnorm.svg": linePlot([
      { name: "controller gradient norm", x, y: col((h) => h.gradNorm) },
    ], { title: `${title}: mean gradient norm per update`, xLabel: "round", yLabel: "L2 norm" }),
  };
  const picks = [...new Set([0, Math.floor((history.length - 1) / 2), history.length - 1])]
    .filter((i) => i >= 0 && history[i]?.l1ByTime);
  if (picks.length) {
    files["learning_l1_time.svg"] = linePlot(
      picks.map((i) => {
        const b = history[i].l1ByTime!;
        return { name: `round ${i}`, x: b.map((_, j) => (j + 0.5) / b.length), y: b };
      }),
      {
        title: `${title}: share of L1 steps over the episode`,
        xLabel: "t / T",
        yLabel: "L1 share",
      },
    );
  }
  const f = (v: number | undefined, d: number) => (v === undefined ? "—" : fmt(v, d));
  const md = [
    "| round | reward (mean ± std) | advantage mean / std / share clipped | entropy | L1 share: " +
    "all (first tenth → last tenth) | grad norm |",
    "|---|---|---|---|---|---|",
    ...history.map((h) =>
      `| ${h.round} | ${fmt(h.meanReward, 4)} ± ${f(h.rewardStd, 4)} | ` +
      (h.advantage
        ? `${fmt(h.advantage.mean, 3)} / ${fmt(h.advantage.std, 3)} / ${
          fmt(h.advantage.clipped, 2)
        }`
        : "—") +
      ` | ${f(h.entropy, 4)} | ${fmt(h.l1Fraction, 3)} (${
        h.l1ByTime ? `${fmt(h.l1ByTime[0], 2)} → ${fmt(h.l1ByTime.at(-1)!, 2)}` : "—"
      }) | ${f(h.gradNorm, 4)} |`
    ),
  ].join("\n");
  return { md, files };
}

/** Writes {@link learningReport}'s plots into the run directory; returns its markdown table. */
export async function writeLearningReport(
  run: RunDir,
  history: TrainedController["history"],
  title: string,
): Promise<string> {
  const { md, files } = learningReport(history, title);
  for (const [name, text] of Object.entries(files)) await run.writeFile(name, text);
  return md;
}

/** Options of {@link trainFromConfig} besides the config. */
interface TrainExtras {
  dropFeatures?: readonly FeatureGroup[];
  label?: string;
  run?: RunDir;
  onRound?: (round: number, current: ControllerFile) => void | Promise<void>;
  /** Checkpoint after every round: its path and extra string metadata. */
  checkpoint?: { path: string; metadata?: Record<string, string> };
  /** Continue from this checkpoint. */
  resume?: ControllerTrainCheckpoint;
  /** Run the rounds' episodes elsewhere (dist/: NATS workers). */
  remote?: RemoteRounds;
  /** Polled after each round: true stops (training.ts `TrainingStopped`). */
  shouldStop?: () => boolean;
}

/** The regression task: config schema and problem factory. */
export const REGRESSION_SPEC: TaskSpec<RegressionConfig> = {
  name: "regression",
  schema: REGRESSION_SCHEMA,
  problem: (cfg) => regressionFromConfig(cfg),
};

/** The MLP task: config schema and problem factory. */
export const MLP_SPEC: TaskSpec<MlpConfig> = {
  name: "mlp",
  schema: MLP_SCHEMA,
  problem: (cfg) => mlpFromConfig(cfg),
};

/** Where the shipped controllers live (weights/, next to this repository's tasks/). */
export function shippedPath(task: "regression" | "mlp"): string {
  return fileURLToPath(new URL(`../../weights/${task}_controller.json`, import.meta.url));
}

/**
 * What a controller depends on besides its weights: the task, the data, the model and the
 * task-training settings (all of `train` but the run length). A shipped controller is used only
 * for a config with the same key.
 */
export function controllerKey(task: string, cfg: SharedConfig): Record<string, unknown> {
  const c = cfg as SharedConfig & { data?: unknown; model?: unknown };
  const { steps: _steps, ...train } = cfg.train;
  return JSON.parse(JSON.stringify({ task, data: c.data, model: c.model, train }));
}

/** What a shipped controller file records about itself (`provenance.shipped`). */
export interface ShippedInfo {
  /** {@link controllerKey} of the config it was trained with. */
  key: Record<string, unknown>;
  /** The command that trained it. */
  command: string;
  /** The preset and the controller-training settings. */
  preset: string;
  /** The controller section of the config it was trained with. */
  controller: Record<string, unknown>;
  /** The numbers it gives, with the command and settings that reproduce them. */
  stated: {
    /** The command. */
    command: string;
    /** Trials, steps and seed of the evaluation. */
    trials: number;
    /** Steps per run. */
    steps: number;
    /** Seed. */
    seed: number;
    /** Mean of the reported metric over the trials. */
    mean: number;
    /** Per-trial values. */
    values: number[];
    /** Mean share of L1 steps. */
    l1Fraction: number;
  };
}

/** Reads the shipped controller of a task, or null when there is none. */
export async function readShipped(task: "regression" | "mlp"): Promise<ControllerFile | null> {
  try {
    return await readControllerFile(shippedPath(task));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * The controller a command uses without training: `controller.file` when set; else, unless
 * `controller.retrain`, the shipped one when it was trained for this config's data, model and
 * training settings ({@link controllerKey}); else null (train one). `why` says which and why.
 */
export async function resolveController(
  task: "regression" | "mlp",
  cfg: SharedConfig,
): Promise<{ file: ControllerFile | null; source: string; why: string }> {
  if (cfg.controller.file) {
    return {
      file: await readControllerFile(cfg.controller.file),
      source: cfg.controller.file,
      why: "controller.file",
    };
  }
  if (cfg.controller.retrain) return { file: null, source: "trained", why: "controller.retrain" };
  const shipped = await readShipped(task);
  if (!shipped) return { file: null, source: "trained", why: "no shipped controller" };
  const info = shipped.provenance.shipped as ShippedInfo | undefined;
  const want = JSON.stringify(controllerKey(task, cfg));
  if (!info || JSON.stringify(info.key) !== want) {
    return {
      file: null,
      source: "trained",
      why: "the shipped controller was trained for other data/model/training settings",
    };
  }
  return { file: shipped, source: shippedPath(task), why: "shipped (weights/)" };
}
