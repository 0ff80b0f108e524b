/**
 * CLI handlers of the regression and MLP tasks (`train`, `compare`, `eval`, and `transfer mlp`),
 * written once over {@link L1Problem}:
 *
 * - `train <task>`: REINFORCE on the controller partitions; writes controller.json, per-round
 *   metrics, a reward curve and a summary into the run directory, and a checkpoint after every
 *   round: `train <task> --resume RUNDIR` continues an interrupted run (Ctrl-C, crash) from its
 *   last completed round and ends exactly as the uninterrupted run would have.
 * - `compare <task>`: Table 1 (W/O L1, S1-S3, DGS, AutoLoss; mean +- std over trials, the paper's
 *   numbers beside ours), plus the optional lambda sweep (Fig. 1), data-budget comparison
 *   (Fig. 3R) and feature ablation (Table 3). Writes summary.json / summary.md and SVG curves.
 * - `eval <task> RUNDIR`: the controller saved in RUNDIR guides fresh models on the task data.
 * - `transfer mlp [RUNDIR]`: Table 2, the controller trained on data set #0 guiding models on the
 *   other distributions, against W/O L1 and DGS on each.
 * @module
 */

import { UserError } from "../run/errors.ts";
import { onInterrupt } from "../run/signals.ts";
import { fileURLToPath } from "node:url";
import { adapterInfo } from "../gpu/device.ts";
import { init } from "../gpu/backend.ts";
import type { ControllerFile } from "../rl/controller_file.ts";
import {
  ConfigError,
  type Layer,
  loadYamlFile,
  parseSet,
  resolveConfig,
  type Schema,
} from "../run/config.ts";
import { formatDuration, Progress } from "../run/progress.ts";
import { RunDir } from "../run/run_dir.ts";
import { linePlot, type Series } from "../run/svg.ts";
import { TRANSFER_SPECS } from "./data/classification.ts";
import { Rng } from "./data/rng.ts";
import type { FeatureGroup, FeatureSetKind } from "./l1_task.ts";
import {
  MLP_SCHEMA,
  type MlpConfig,
  REGRESSION_SCHEMA,
  type RegressionConfig,
  type SharedConfig,
} from "./l1_config.ts";
import {
  autoLossMethod,
  type ControllerTrainCheckpoint,
  type Curve,
  denseGridSearch,
  evaluatePopulation,
  loadControllerCheckpoint,
  logSpace,
  mean,
  type MethodOptions,
  type MethodResult,
  type RoundLog,
  std,
  thresholdMethod,
  trainController,
  type TrainedController,
  withoutL1,
} from "./methods.ts";
import { type L1Problem, mlpProblem, regressionProblem } from "./problems.ts";
import type { CommonOptions, TaskHandler } from "./registry.ts";
import { taskOnly } from "./schedules.ts";

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
async function machine(): Promise<Record<string, unknown>> {
  const a = await adapterInfo().catch(() => null);
  return {
    adapter: a?.description || a?.vendor || "unknown",
    fallbackAdapter: a?.isFallbackAdapter ?? null,
    cpus: navigator.hardwareConcurrency,
    loadAverage: loadAverage(),
    deno: Deno.version.deno,
  };
}

function fmt(v: number, digits: number): string {
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

function curveSeries(results: MethodResult[]): Series[] {
  return results.map((r) => ({ name: r.name, x: r.curve.x, y: r.curve.y }));
}

/** "R rounds of P episodes in lockstep, U REINFORCE updates" for summaries. */
function trainingShape(cfg: SharedConfig, rounds: number): string {
  const c = cfg.controller;
  const updates = c.updates === "episode" ? rounds * c.population : rounds;
  return `${rounds} rounds of ${c.population} episodes in lockstep, ${updates} REINFORCE updates`;
}

/** Trains a controller with the config's settings, reporting progress. */
async function trainFromConfig(
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

async function writeController(run: RunDir, file: ControllerFile, name = "controller.json") {
  await run.writeFile(name, JSON.stringify(file, null, 2) + "\n");
}

async function readControllerFile(path: string): Promise<ControllerFile> {
  return JSON.parse(await Deno.readTextFile(path)) as ControllerFile;
}

/** Creates the run directory of a new run and saves its config (`--resume` is refused). */
async function openRun(opts: CommonOptions, cfg: unknown): Promise<RunDir> {
  if (opts.resume) {
    throw new UserError(
      `${opts.task} runs cannot be resumed yet (${opts.command} takes minutes); start a new run`,
    );
  }
  const run = await RunDir.create({ task: `${opts.task}-${opts.command}`, out: opts.out });
  await run.writeConfig(cfg);
  return run;
}

function rewardPlot(history: TrainedController["history"], title: string): string {
  return linePlot([
    { name: "mean reward", x: history.map((h) => h.round), y: history.map((h) => h.meanReward) },
  ], { title, xLabel: "round (REINFORCE update)", yLabel: "mean episode reward" });
}

/** The checkpoint `train <task>` rewrites after every round. */
const TRAIN_CHECKPOINT = "checkpoint.safetensors";

/**
 * Reopens the run of `train <task> --resume DIR` with its saved config.yaml, as run/session.ts
 * does: a resumed run continues exactly the run it was, so `--config`, `--set` and `--seed` are
 * refused.
 */
async function resumeRun<C>(
  opts: CommonOptions,
  schema: Schema,
): Promise<{ run: RunDir; cfg: C }> {
  if (opts.config.length || opts.set.length || opts.seed !== undefined) {
    throw new ConfigError(
      "--resume continues a run with its saved config.yaml; drop --config/--set/--seed " +
        "(or start a new run)",
    );
  }
  const run = await RunDir.open(opts.resume!);
  const cfg = resolveConfig(schema, [await loadYamlFile(run.file("config.yaml"))]) as C;
  return { run, cfg };
}

/**
 * Makes metrics.jsonl agree with a checkpoint's history before a resumed run appends to it:
 * drops the round records of rounds the checkpoint does not hold (they are run again) and adds
 * the ones it holds but the file lacks (a crash between the checkpoint and the append).
 */
async function syncRoundMetrics(run: RunDir, history: readonly RoundLog[]): Promise<void> {
  const rows = await run.readMetrics();
  const isRound = (r: Record<string, unknown>) => r.kind === "round";
  const kept = rows.filter((r) => !isRound(r) || (r.round as number) < history.length);
  const logged = new Set(kept.filter(isRound).map((r) => r.round));
  const added = history.filter((h) => !logged.has(h.round)).map((h) => ({ kind: "round", ...h }));
  if (kept.length === rows.length && added.length === 0) return;
  const lines = [...kept, ...added].map((r) => JSON.stringify(r) + "\n");
  await run.writeFile("metrics.jsonl", lines.join(""));
}

/**
 * `train <task>`: a new run, or with `--resume DIR` the continuation of an interrupted one from
 * the checkpoint of its last completed round (a resumed run that had finished only rewrites its
 * final files).
 */
async function trainCommand<C extends SharedConfig>(spec: TaskSpec<C>, opts: CommonOptions) {
  let cfg: C;
  let run: RunDir;
  let resume: ControllerTrainCheckpoint | undefined;
  let preset: string = opts.preset;
  if (opts.resume) {
    ({ cfg, run } = await resumeRun<C>(opts, spec.schema));
    await init();
    const path = run.file(TRAIN_CHECKPOINT);
    if (await Deno.stat(path).then(() => true, () => false)) {
      resume = await loadControllerCheckpoint(path);
      preset = resume.tensors.metadata.preset ?? preset;
      console.log(`resuming ${run.path} after round ${resume.round} of ${cfg.controller.rounds}`);
    } else {
      console.log(`resuming ${run.path}: no round was completed, starting over`);
    }
    await syncRoundMetrics(run, resume?.history ?? []);
  } else {
    cfg = await loadTaskConfig<C>(spec.schema, opts);
    if (opts.seed !== undefined) cfg.seed = opts.seed;
    await init();
    run = await openRun(opts, cfg);
  }
  const problem = spec.problem(cfg);
  // Ctrl-C exits at once: the round in progress is lost, the checkpoint (written atomically after
  // every round) holds the completed ones.
  let done = resume?.round ?? 0;
  const removeInterrupt = onInterrupt(() => {
    console.error(
      `\ninterrupted: ${run.file(TRAIN_CHECKPOINT)} holds ${done} of ${cfg.controller.rounds} ` +
        `rounds; continue with: train ${spec.name} --resume ${run.path}`,
    );
  });
  let trained: TrainedController;
  try {
    trained = await trainFromConfig(problem, cfg, console.log, {
      run,
      checkpoint: { path: run.file(TRAIN_CHECKPOINT), metadata: { preset } },
      resume,
      onRound: (round) => {
        done = round + 1;
      },
    });
  } finally {
    removeInterrupt();
  }
  await writeController(run, trained.file);
  await run.writeFile(
    "reward.svg",
    rewardPlot(trained.history, `${spec.name}: controller training`),
  );
  const summary = {
    task: spec.name,
    preset,
    rounds: trained.history.length,
    episodes: trained.history.length * cfg.controller.population,
    keptReward: trained.file.provenance.reward,
    seconds: trained.seconds,
    history: trained.history,
    machine: await machine(),
  };
  const md = [
    `# train ${spec.name} (${preset})`,
    "",
    `${summary.episodes} episodes of ${cfg.controller.steps} steps (${
      trainingShape(cfg, summary.rounds)
    }) in ` +
    `${formatDuration(trained.seconds)}; kept controller reward ${
      fmt(summary.keptReward ?? NaN, 2)
    }.`,
    "",
    `Controller: ${run.file("controller.json")}`,
  ].join("\n");
  await run.writeSummary(summary, md);
  console.log(md);
  console.log(`run directory: ${run.path}`);
}

/** The methods of Table 1 for a problem, in the paper's column order. */
async function table1(
  problem: L1Problem,
  cfg: SharedConfig,
  controller: () => Promise<ControllerFile>,
  log: (s: string) => void,
): Promise<MethodResult[]> {
  const c = cfg.compare;
  const o: MethodOptions = {
    trials: c.trials,
    steps: cfg.train.steps,
    seed: cfg.seed,
    curvePoints: c.curvePoints,
    log,
  };
  const gridSteps = c.gridSteps > 0 ? c.gridSteps : cfg.train.steps;
  const out: MethodResult[] = [];
  const done = (r: MethodResult) => {
    out.push(r);
    log(
      `${r.name}: ${fmt(mean(r.values), 4)} ± ${fmt(std(r.values), 4)} ` +
        `(${formatDuration(r.seconds)})`,
    );
  };
  if (c.methods.wol1) done(await withoutL1(problem, o));
  for (const kind of ["S1", "S2", "S3"] as const) {
    const key = kind.toLowerCase() as "s1" | "s2" | "s3";
    if (c.methods[key]) done(await thresholdMethod(problem, kind, c[key], { ...o, gridSteps }));
  }
  if (c.methods.dgs) {
    const lambdas = logSpace(c.dgsMin, c.dgsMax, c.dgsCount);
    done(await denseGridSearch(problem, lambdas, { ...o, gridSteps }));
  }
  if (c.methods.autoloss) {
    done(
      await autoLossMethod(problem, {
        ...o,
        controller: await controller(),
        greedy: cfg.controller.greedy,
      }),
    );
  }
  return out;
}

/** Fig. 1: DGS and AutoLoss at each lambda (one population each: lambdas x trials members). */
async function lambdaSweep(
  problem: L1Problem,
  cfg: SharedConfig,
  file: ControllerFile,
): Promise<{ lambdas: number[]; dgs: number[]; autoloss: number[] }> {
  const lambdas = cfg.sweep.lambdas;
  const n = cfg.sweep.trials;
  const perMember = lambdas.flatMap((l) => new Array(n).fill(l));
  const steps = cfg.train.steps;
  const byLambda = (test: number[]) =>
    lambdas.map((_, i) => mean(test.slice(i * n, i * n + n).map((t) => problem.report(t))));
  const { run } = await evaluatePopulation(
    problem,
    { population: perMember.length, lambda: perMember, mode: "joint", data: "task", steps },
    taskOnly,
    { seed: cfg.seed, curvePoints: 1 },
  );
  const dgs = byLambda(run.metrics.test);
  const auto = await autoLossMethod(problem, {
    trials: perMember.length,
    steps,
    seed: cfg.seed,
    controller: file,
    greedy: cfg.controller.greedy,
    lambda: perMember,
    curvePoints: 1,
  });
  const autoloss = lambdas.map((_, i) => mean(auto.values.slice(i * n, i * n + n)));
  return { lambdas, dgs, autoloss };
}

/**
 * Fig. 3R, DGS side: after k runs of the lambda grid, taken in random order, the test value of the
 * lambda that is best by validation among them, against the k * gridSteps training steps
 * consumed; averaged over `orders` random orders (seeded), i.e. the expected outcome of a grid
 * search stopped after k runs.
 */
function dgsBudgetCurve(
  dgs: MethodResult,
  gridSteps: number,
  seed: number,
  higherIsBetter: boolean,
  orders = 256,
): Curve {
  const best = dgs.detail.gridBest as number[];
  const test = dgs.detail.gridTest as number[];
  const n = best.length;
  const sum = new Array(n).fill(0);
  const rng = new Rng(seed);
  for (let o = 0; o < orders; o++) {
    const order = rng.permutation(n);
    let at = order[0];
    order.forEach((i, k) => {
      if (higherIsBetter ? best[i] > best[at] : best[i] < best[at]) at = i;
      sum[k] += test[at];
    });
  }
  return {
    x: sum.map((_, k) => (k + 1) * gridSteps),
    y: sum.map((v) => v / orders),
  };
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

/** `compare <task>`. */
async function compareCommand<C extends SharedConfig>(spec: TaskSpec<C>, opts: CommonOptions) {
  const cfg = await loadTaskConfig<C>(spec.schema, opts);
  if (opts.seed !== undefined) cfg.seed = opts.seed;
  await init();
  const began = performance.now();
  const run = await openRun(opts, cfg);
  const problem = spec.problem(cfg);
  const log = (s: string) => console.log(s);
  const digits = spec.name === "regression" ? 3 : 4;
  const budget: Curve = { x: [], y: [] };
  let trained: TrainedController | null = null;
  let controllerFile: ControllerFile | null = null;
  const controller = async (): Promise<ControllerFile> => {
    if (controllerFile) return controllerFile;
    if (cfg.controller.file) {
      controllerFile = await readControllerFile(cfg.controller.file);
      return controllerFile;
    }
    const onRound = async (round: number, current: ControllerFile) => {
      if ((round + 1) % cfg.budget.every !== 0) return;
      const r = await autoLossMethod(problem, {
        trials: cfg.budget.trials,
        steps: cfg.train.steps,
        seed: cfg.seed,
        controller: current,
        greedy: cfg.controller.greedy,
        curvePoints: 1,
      });
      budget.x.push((round + 1) * cfg.controller.population * cfg.controller.steps);
      budget.y.push(mean(r.values));
      await run.appendMetrics({
        kind: "budget",
        round,
        steps: budget.x.at(-1),
        value: budget.y.at(-1),
      });
    };
    trained = await trainFromConfig(problem, cfg, log, {
      run,
      onRound: cfg.budget.enabled ? onRound : undefined,
    });
    await writeController(run, trained.file);
    await run.writeFile("reward.svg", rewardPlot(trained.history, `${spec.name}: training`));
    controllerFile = trained.file;
    return controllerFile;
  };
  const results = await table1(problem, cfg, controller, log);
  const paper = PAPER_TABLE1[spec.name];
  const methods: Record<string, MethodSummary> = {};
  for (const r of results) {
    methods[r.name] = {
      ...summarize(r.values, paper[r.name]),
      detail: r.detail,
      seconds: r.seconds,
    };
  }
  const md = [
    `# compare ${spec.name} (preset ${opts.preset}, seed ${cfg.seed})`,
    "",
    `Table 1: ${problem.metricLabel}, ${cfg.compare.trials} trials of ${cfg.train.steps} steps ` +
    "each, test metric at the best validation point.",
    "",
    methodTable(problem.metricLabel, Object.entries(methods), digits),
  ];
  const summary: Record<string, unknown> = {
    task: spec.name,
    preset: opts.preset,
    metric: problem.metricLabel,
    ...("floor" in problem ? { noiseFloor: (problem as { floor: number }).floor } : {}),
    methods,
  };
  const t = trained as TrainedController | null;
  if (t) {
    summary.controller = {
      episodes: t.history.length * cfg.controller.population,
      rounds: t.history.length,
      seconds: t.seconds,
      keptReward: t.file.provenance.reward,
    };
    md.push(
      "",
      `AutoLoss controller: ${t.history.length * cfg.controller.population} episodes of ` +
        `${cfg.controller.steps} steps (${trainingShape(cfg, t.history.length)}), trained in ` +
        `${formatDuration(t.seconds)}.`,
    );
  }
  await run.writeFile(
    "curves.svg",
    linePlot(curveSeries(results), {
      title: `${spec.name}: validation loss (mean over trials)`,
      xLabel: "step",
      yLabel: "validation loss",
    }),
  );
  if (cfg.sweep.enabled) {
    const sw = await lambdaSweep(problem, cfg, await controller());
    summary.sweep = sw;
    const x = sw.lambdas.map((l) => Math.log(l));
    await run.writeFile(
      "lambda_sweep.svg",
      linePlot([
        { name: "linear combination (DGS at lambda)", x, y: sw.dgs },
        { name: "AutoLoss", x, y: sw.autoloss },
      ], { title: `${spec.name}: Fig. 1`, xLabel: "ln(lambda)", yLabel: problem.metricLabel }),
    );
    md.push(
      "",
      `Fig. 1 (lambda sweep, ${cfg.sweep.trials} trials per lambda; lambda_sweep.svg):`,
      "",
      "| lambda | task + lambda L1 | AutoLoss |",
      "|---|---|---|",
      ...sw.lambdas.map((l, i) =>
        `| ${l} | ${fmt(sw.dgs[i], digits)} | ${fmt(sw.autoloss[i], digits)} |`
      ),
    );
  }
  const dgs = results.find((r) => r.name === "DGS");
  if (cfg.budget.enabled && dgs && budget.x.length) {
    const gridSteps = cfg.compare.gridSteps > 0 ? cfg.compare.gridSteps : cfg.train.steps;
    const dgsCurve = dgsBudgetCurve(dgs, gridSteps, cfg.seed, problem.higherIsBetter);
    const report = (c: Curve) => ({ x: c.x, y: c.y });
    summary.budget = { autoloss: report(budget), dgs: report(dgsCurve) };
    await run.writeFile(
      "budget.svg",
      linePlot([
        { name: "AutoLoss (controller training)", x: budget.x, y: budget.y },
        {
          name: "DGS (runs so far, best by validation)",
          x: dgsCurve.x,
          y: dgsCurve.y,
        },
      ], {
        title: `${spec.name}: Fig. 3R`,
        xLabel: "training steps consumed",
        yLabel: problem.metricLabel,
      }),
    );
    md.push("", "Fig. 3R (data budget): budget.svg");
  }
  if (cfg.ablation.enabled && methods.AutoLoss) {
    const rows: [string, MethodSummary][] = [];
    const groups: [FeatureGroup, string][] = [
      ["grad", "drop gradient norms"],
      ["loss", "drop loss values"],
      ["val", "drop validation metrics"],
    ];
    for (const [group, label] of groups) {
      const tc = await trainFromConfig(problem, cfg, log, { dropFeatures: [group], label });
      await writeController(run, tc.file, `controller_no_${group}.json`);
      const r = await autoLossMethod(problem, {
        trials: cfg.compare.trials,
        steps: cfg.train.steps,
        seed: cfg.seed,
        controller: tc.file,
        greedy: cfg.controller.greedy,
        dropFeatures: [group],
        name: label,
      });
      rows.push([label, { ...summarize(r.values, PAPER_TABLE3[label]), seconds: r.seconds }]);
    }
    rows.push(["full", { ...methods.AutoLoss, paper: PAPER_TABLE3.full }]);
    summary.ablation = Object.fromEntries(rows);
    md.push("", "Table 3 (feature ablation):", "", methodTable(problem.metricLabel, rows, digits));
  }
  summary.seconds = (performance.now() - began) / 1000;
  summary.machine = await machine();
  md.push("", `Total ${formatDuration(summary.seconds as number)}.`);
  await run.writeSummary(summary, md.join("\n"));
  console.log(md.join("\n"));
  console.log(`\nrun directory: ${run.path}`);
}

/** `eval <task> RUNDIR`: the controller saved in RUNDIR guides fresh models on the task data. */
async function evalCommand<C extends SharedConfig>(spec: TaskSpec<C>, opts: CommonOptions) {
  const dir = opts.args[0];
  if (!dir) {
    console.error(`error: usage: eval ${spec.name} RUNDIR (a run directory with controller.json)`);
    return 2;
  }
  if (opts.resume) throw new UserError(`eval ${spec.name} cannot be resumed; run it again`);
  const cfg = await loadTaskConfig<C>(spec.schema, opts);
  if (opts.seed !== undefined) cfg.seed = opts.seed;
  await init();
  const file = await readControllerFile(`${dir}/controller.json`);
  const problem = spec.problem(cfg);
  const r = await autoLossMethod(problem, {
    trials: cfg.compare.trials,
    steps: cfg.train.steps,
    seed: cfg.seed,
    controller: file,
    greedy: cfg.controller.greedy,
  });
  const digits = spec.name === "regression" ? 3 : 4;
  const s = summarize(r.values, PAPER_TABLE1[spec.name].AutoLoss);
  console.log(methodTable(problem.metricLabel, [["AutoLoss", s]], digits));
  console.log(`L1 share of steps: ${fmt(r.detail.l1Fraction as number, 3)}`);
}

/** `transfer mlp [RUNDIR]`: Table 2. */
async function transferCommand(opts: CommonOptions) {
  const cfg = await loadTaskConfig<MlpConfig>(MLP_SCHEMA, opts);
  if (opts.seed !== undefined) cfg.seed = opts.seed;
  await init();
  const began = performance.now();
  const run = await openRun(opts, cfg);
  const log = (s: string) => console.log(s);
  const source = opts.args[0] ? `${opts.args[0]}/controller.json` : cfg.controller.file;
  let file: ControllerFile;
  if (source) file = await readControllerFile(source);
  else {
    const trained = await trainFromConfig(mlpFromConfig(cfg, 0), cfg, log, { run });
    file = trained.file;
  }
  await writeController(run, file);
  const o: MethodOptions = {
    trials: cfg.compare.trials,
    steps: cfg.train.steps,
    seed: cfg.seed,
    curvePoints: cfg.compare.curvePoints,
    log,
  };
  const gridSteps = cfg.compare.gridSteps > 0 ? cfg.compare.gridSteps : cfg.train.steps;
  const lambdas = logSpace(cfg.compare.dgsMin, cfg.compare.dgsMax, cfg.compare.dgsCount);
  const table: Record<string, MethodSummary[]> = { "W/O L1": [], DGS: [], AutoLoss: [] };
  for (const [k, index] of cfg.transfer.datasets.entries()) {
    const problem = mlpFromConfig(cfg, index);
    log(`data set #${index} (${TRANSFER_SPECS[index].name})`);
    const rs = [
      await withoutL1(problem, o),
      await denseGridSearch(problem, lambdas, { ...o, gridSteps }),
      await autoLossMethod(problem, { ...o, controller: file, greedy: cfg.controller.greedy }),
    ];
    for (const r of rs) {
      table[r.name].push({ ...summarize(r.values, PAPER_TABLE2[r.name]?.[k]), detail: r.detail });
      log(`  ${r.name}: ${fmt(mean(r.values), 4)} ± ${fmt(std(r.values), 4)}`);
    }
  }
  const sets = cfg.transfer.datasets;
  const md = [
    `# transfer mlp (preset ${opts.preset}, seed ${cfg.seed})`,
    "",
    `Table 2: test error, ${cfg.compare.trials} trials; the controller was trained on data set #0 ` +
    "(the authors' distribution). Paper numbers in parentheses.",
    "",
    `| Method | ${sets.map((i) => `#${i} (${TRANSFER_SPECS[i].name})`).join(" | ")} |`,
    `|---|${sets.map(() => "---|").join("")}`,
    ...Object.entries(table).map(([name, rows]) =>
      `| ${name} | ${
        rows.map((s) =>
          `${fmt(s.mean, 4)} ± ${fmt(s.std, 4)}${
            s.paper === undefined ? "" : ` (${fmt(s.paper, 4)})`
          }`
        ).join(" | ")
      } |`
    ),
  ];
  const methods = Object.fromEntries(
    Object.entries(table).flatMap(([name, rows]) =>
      rows.map((s, k) => [`${name} #${sets[k]}`, s] as const)
    ),
  );
  const seconds = (performance.now() - began) / 1000;
  md.push("", `Total ${formatDuration(seconds)}.`);
  await run.writeSummary(
    {
      task: "mlp",
      preset: opts.preset,
      metric: "test error",
      methods,
      seconds,
      machine: await machine(),
    },
    md.join("\n"),
  );
  console.log(md.join("\n"));
  console.log(`\nrun directory: ${run.path}`);
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

/** The `train`, `compare` and `eval` handlers of a task, ready for `registerTask`. */
export function handlers<C extends SharedConfig>(
  spec: TaskSpec<C>,
): { train: TaskHandler; compare: TaskHandler; eval: TaskHandler } {
  return {
    train: (o) => trainCommand(spec, o),
    compare: (o) => compareCommand(spec, o),
    eval: (o) => evalCommand(spec, o),
  };
}

/** `transfer mlp [RUNDIR]` (Table 2). */
export function transferMlp(o: CommonOptions): Promise<number | void> {
  return transferCommand(o);
}
