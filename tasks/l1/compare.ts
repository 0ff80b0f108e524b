/**
 * `compare` of the regression and MLP tasks (registered through tasks/l1/commands.ts): Table 1
 * (W/O L1, S1-S3, DGS, AutoLoss; mean +- std over trials, the paper's numbers beside ours), plus
 * the optional lambda sweep (Fig. 1), data-budget comparison (Fig. 3R) and feature ablation
 * (Table 3). Table 1's methods: tasks/l1/table1.ts. `eval` and `transfer mlp` (Table 2):
 * tasks/l1/evaluate.ts.
 * @module
 */

import type { ControllerFile } from "../../rl/controller_file.ts";
import { formatDuration } from "../../run/progress.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { GracefulStop } from "../../run/signals.ts";
import { linePlot } from "../../run/svg.ts";
import { Rng } from "./data/rng.ts";
import type { FeatureGroup } from "./task.ts";
import type { SharedConfig } from "./config.ts";
import { table1 } from "./table1.ts";
import {
  autoLossMethod,
  type Curve,
  evaluatePopulation,
  mean,
  type MethodResult,
} from "./methods.ts";
import { type TrainedController, TrainingStopped } from "./training.ts";
import type { ControllerTrainCheckpoint } from "./training_checkpoint.ts";
import {
  loadTrainCheckpoint,
  MethodCache,
  openCommandRun,
  RunStopped,
  syncRoundMetrics,
  TRAIN_CHECKPOINT,
} from "./resume.ts";
import type { L1Problem } from "./problems.ts";
import type { CommonOptions } from "../registry.ts";
import type { Learner } from "../../dist/learner.ts";
import { taskOnly } from "./schedules.ts";
import {
  curveSeries,
  fmt,
  machine,
  type MethodSummary,
  methodTable,
  PAPER_TABLE1,
  PAPER_TABLE3,
  resolveController,
  type ShippedInfo,
  summarize,
  type TaskSpec,
  trainFromConfig,
  trainingShape,
  writeController,
  writeLearningReport,
} from "./run.ts";

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

/**
 * Training steps each method spends (task-model steps, every member counted): the grid or the
 * controller training, plus the trials; for AutoLoss the controller training steps are those of
 * the controller used (its provenance when loaded).
 */
export function costTable(
  cfg: SharedConfig,
  results: MethodResult[],
  file: ControllerFile | null,
): { rows: Record<string, { search: number; trials: number; total: number }>; md: string } {
  const c = cfg.compare;
  const gridSteps = c.gridSteps > 0 ? c.gridSteps : cfg.train.steps;
  const trials = c.trials * cfg.train.steps;
  const rows: Record<string, { search: number; trials: number; total: number }> = {};
  for (const r of results) {
    let search = 0;
    if (r.name === "DGS") search = c.dgsCount * gridSteps;
    else if (/^S[123]$/.test(r.name)) search = c[r.name.toLowerCase() as "s1"].length * gridSteps;
    else if (r.name === "AutoLoss") {
      // The whole training (every round run), not the kept round's snapshot: the settings it
      // was trained with when shipped, else this config's (trained now or given).
      const shipped = (file?.provenance.shipped as ShippedInfo | undefined)?.controller as
        | SharedConfig["controller"]
        | undefined;
      const c = shipped ?? cfg.controller;
      search = c.rounds * c.population * c.steps;
    } else if (r.name !== "W/O L1") continue;
    rows[r.name] = { search, trials, total: search + trials };
  }
  const md = [
    "Cost (task-model training steps; search = threshold/lambda grid or controller training):",
    "",
    "| Method | search | trials | total |",
    "|---|---|---|---|",
    ...Object.entries(rows).map(([n, v]) =>
      `| ${n} | ${v.search.toLocaleString("en")} | ${v.trials.toLocaleString("en")} | ${
        v.total.toLocaleString("en")
      } |`
    ),
  ].join("\n");
  return { rows, md };
}

/**
 * With `--workers`, connects the learner side of dist/ for this run (the NATS client is loaded, and
 * fetched, only then, through a computed specifier); null without it.
 */
export async function connectWorkers(
  opts: CommonOptions,
  task: "regression" | "mlp",
  cfg: SharedConfig,
  runPath: string,
): Promise<Learner | null> {
  if (!opts.workers) return null;
  const dist = new URL("../../dist/learner.ts", import.meta.url).href;
  return await (await import(dist) as typeof import("../../dist/learner.ts")).connectLearner({
    ...opts.workers,
    task,
    config: cfg as unknown as Record<string, unknown>,
    runName: runPath.split(/[\\/]/).filter(Boolean).pop()!,
  });
}

/** `compare <task>`. */
export async function compareCommand<C extends SharedConfig>(
  spec: TaskSpec<C>,
  opts: CommonOptions,
) {
  const { cfg, run, resumed } = await openCommandRun<C>(opts, spec.schema);
  const began = performance.now();
  // Ctrl-C: the method (or controller round) in progress finishes and is kept, then the run stops.
  const stop = new GracefulStop("method");
  const cache = await MethodCache.open(run, resumed, () => stop.requested);
  const resume = resumed ? await loadTrainCheckpoint(run) : undefined;
  if (resumed) {
    await syncRoundMetrics(run, resume?.history ?? []);
    console.log(
      `resuming ${run.path}: ${cache.size} methods finished before, controller training after ` +
        `round ${resume?.round ?? 0}`,
    );
  }
  const problem = spec.problem(cfg);
  // --workers: Table 1's methods and the controller's rounds run as jobs.
  const learner = await connectWorkers(opts, spec.name, cfg, run.path);
  try {
    await compareRun(spec, opts, cfg, run, problem, began, learner, cache, resume);
  } catch (err) {
    if (!(err instanceof RunStopped || err instanceof TrainingStopped)) throw err;
    console.error(
      `stopped (${err.message}); the finished methods are kept: continue with ` +
        `compare ${spec.name} --resume ${run.path}`,
    );
    return 130;
  } finally {
    stop.done();
    await learner?.close();
  }
  if (learner) console.log(`workers: ${JSON.stringify(learner.stats)}`);
}

async function compareRun<C extends SharedConfig>(
  spec: TaskSpec<C>,
  opts: CommonOptions,
  cfg: C,
  run: RunDir,
  problem: L1Problem,
  began: number,
  learner: Pick<Learner, "rounds" | "methods"> | null,
  cache: MethodCache,
  resume: ControllerTrainCheckpoint | undefined,
) {
  const log = (s: string) => console.log(s);
  const digits = spec.name === "regression" ? 3 : 4;
  const budget: Curve = { x: [], y: [] };
  if (resume) {
    // The data-budget points of the rounds the checkpoint holds (syncRoundMetrics kept only them).
    for (const r of await run.readMetrics()) {
      if (r.kind === "budget") {
        budget.x.push(r.steps as number);
        budget.y.push(r.value as number);
      }
    }
  }
  let trained: TrainedController | null = null;
  let controllerFile: ControllerFile | null = null;
  let controllerSource = "";
  let learning = "";
  const controller = async (): Promise<{ file: ControllerFile; initial?: ControllerFile }> => {
    if (controllerFile) return { file: controllerFile, initial: trained?.initial };
    // The data-budget curve (Fig. 3R) needs the training itself.
    const given = cfg.budget.enabled
      ? { file: null, source: "trained", why: "budget.enabled" }
      : await resolveController(spec.name, cfg);
    controllerSource = `${given.source} (${given.why})`;
    log(`controller: ${controllerSource}`);
    if (given.file) {
      controllerFile = given.file;
      return { file: controllerFile };
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
      remote: learner?.rounds,
      checkpoint: { path: run.file(TRAIN_CHECKPOINT), metadata: { preset: opts.preset } },
      resume,
      shouldStop: cache.shouldStop,
    });
    await writeController(run, trained.file);
    learning = await writeLearningReport(run, trained.history, `${spec.name}: training`);
    controllerFile = trained.file;
    return { file: controllerFile, initial: trained.initial };
  };
  const results = await table1(problem, cfg, controller, log, learner?.methods, cache);
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
  const cost = costTable(cfg, results, controllerFile);
  summary.cost = cost.rows;
  md.push("", cost.md);
  if (controllerSource) {
    summary.controllerSource = controllerSource;
    md.push("", `AutoLoss controller: ${controllerSource}.`);
  }
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
      "",
      "Controller training (reward.svg, learning_*.svg):",
      "",
      learning,
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
    const sw = await lambdaSweep(problem, cfg, (await controller()).file);
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
