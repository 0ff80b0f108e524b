/**
 * What the regression and MLP commands share (tasks/commands.ts, tasks/l1_compare.ts): the
 * paper's tables, the task specs and configs, controller training from a config, summaries,
 * tables and the machine description.
 * @module
 */

import { UserError } from "../run/errors.ts";
import { fileURLToPath } from "node:url";
import { backend, init } from "../gpu/backend.ts";
import { recordBackend } from "../run/session.ts";
import type { ControllerFile } from "../rl/controller_file.ts";
import { type Layer, loadYamlFile, parseSet, resolveConfig, type Schema } from "../run/config.ts";
import { formatDuration, Progress } from "../run/progress.ts";
import { RunDir } from "../run/run_dir.ts";
import { linePlot, type Series } from "../run/svg.ts";
import { TRANSFER_SPECS } from "./data/classification.ts";
import type { FeatureGroup, FeatureSetKind } from "./l1_task.ts";
import {
  MLP_SCHEMA,
  type MlpConfig,
  REGRESSION_SCHEMA,
  type RegressionConfig,
  type SharedConfig,
} from "./l1_config.ts";
import {
  type ControllerTrainCheckpoint,
  mean,
  type MethodResult,
  std,
  trainController,
  type TrainedController,
} from "./methods.ts";
import { type L1Problem, mlpProblem, regressionProblem } from "./problems.ts";
import type { CommonOptions } from "./registry.ts";

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

/** Resolves the preset, `--config` files and `--set` overrides against `schema`. */
export async function loadTaskConfig<C>(
  schema: Schema,
  opts: Pick<CommonOptions, "task" | "preset" | "config" | "set">,
): Promise<C> {
  const preset = fileURLToPath(
    new URL(`../configs/${opts.task}/${opts.preset}.yaml`, import.meta.url),
  );
  const layers: Layer[] = [await loadYamlFile(preset)];
  for (const file of opts.config) layers.push(await loadYamlFile(file));
  for (const s of opts.set) layers.push(parseSet(s));
  return resolveConfig(schema, layers) as C;
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
    spec: index === undefined ? cfg.data.generator : TRANSFER_SPECS[index],
    sizes: cfg.data.sizes,
    hidden: cfg.model.hidden,
    train: trainSettings(cfg),
    rewardC: cfg.controller.rewardC,
  });
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

/** "R rounds of P episodes in lockstep, U REINFORCE updates" for summaries. */
export function trainingShape(cfg: SharedConfig, rounds: number): string {
  const c = cfg.controller;
  const updates = c.updates === "episode" ? rounds * c.population : rounds;
  return `${rounds} rounds of ${c.population} episodes in lockstep, ${updates} REINFORCE updates`;
}

/** Trains a controller with the config's settings, reporting progress. */
export async function trainFromConfig(
  problem: L1Problem,
  cfg: SharedConfig,
  log: (s: string) => void,
  extra: TrainExtras = {},
): Promise<TrainedController> {
  const c = cfg.controller;
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
    sharedInit: c.sharedInit,
    dropFeatures: extra.dropFeatures,
    checkpoint: extra.checkpoint,
    resume: extra.resume,
    args: {
      learningRate: c.lr,
      baselineDecay: c.baselineDecay,
      advantageClip: { kind: "symmetric", c: c.advantageClip },
      stepReward: c.stepReward ? { metric: "val", scale: c.stepRewardScale } : null,
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

/** Creates the run directory of a new run and saves its config (`--resume` is refused). */
export async function openRun(opts: CommonOptions, cfg: unknown): Promise<RunDir> {
  if (opts.resume) {
    throw new UserError(
      `${opts.task} runs cannot be resumed yet (${opts.command} takes minutes); start a new run`,
    );
  }
  const be = await init();
  const run = await RunDir.create({ task: `${opts.task}-${opts.command}`, out: opts.out });
  await run.writeConfig(cfg);
  await recordBackend(run, be);
  return run;
}

/** The mean episode reward per round of controller training, as an SVG plot. */
export function rewardPlot(history: TrainedController["history"], title: string): string {
  return linePlot([
    { name: "mean reward", x: history.map((h) => h.round), y: history.map((h) => h.meanReward) },
  ], { title, xLabel: "round (REINFORCE update)", yLabel: "mean episode reward" });
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
