/**
 * `eval` and `transfer` of the regression and MLP tasks (registered through
 * tasks/l1/commands.ts): `eval` guides fresh models with a saved controller; `transfer mlp` is
 * Table 2.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { ConfigError } from "../../run/config.ts";
import { resolveTaskConfig } from "../../run/session.ts";
import { GracefulStop } from "../../run/signals.ts";
import { TrainingStopped } from "./training.ts";
import { init } from "../../gpu/backend.ts";
import type { ControllerFile } from "../../rl/controller_file.ts";
import { formatDuration } from "../../run/progress.ts";
import { TRANSFER_SPECS } from "./data/classification.ts";
import { MLP_SCHEMA, type MlpConfig, type SharedConfig } from "./config.ts";
import {
  autoLossMethod,
  denseGridSearch,
  logSpace,
  mean,
  type MethodOptions,
  type MethodResult,
  std,
  withoutL1,
} from "./methods.ts";
import type { CommonOptions } from "../registry.ts";
import {
  loadTrainCheckpoint,
  MethodCache,
  openCommandRun,
  RunStopped,
  syncRoundMetrics,
  TRAIN_CHECKPOINT,
} from "./resume.ts";
import {
  fmt,
  machine,
  type MethodSummary,
  methodTable,
  mlpFromConfig,
  PAPER_TABLE1,
  PAPER_TABLE2,
  readControllerFile,
  resolveController,
  type ShippedInfo,
  summarize,
  type TaskSpec,
  trainFromConfig,
  writeController,
} from "./run.ts";

/**
 * `eval <task> [RUNDIR]`: the controller saved in RUNDIR (default: the shipped one, when it was
 * trained for this config) guides fresh models on the task data; with the shipped controller and
 * its stated evaluation settings, prints the stated number beside the measured one.
 */
export async function evalCommand<C extends SharedConfig>(spec: TaskSpec<C>, opts: CommonOptions) {
  const dir = opts.args[0];
  if (opts.resume) throw new UserError(`eval ${spec.name} cannot be resumed; run it again`);
  const cfg = await resolveTaskConfig(opts, spec.schema, spec.name) as C;
  await init();
  let file: ControllerFile;
  if (dir) file = await readControllerFile(`${dir}/controller.json`);
  else {
    const r = await resolveController(spec.name, cfg);
    if (!r.file) {
      console.error(
        `error: no controller to evaluate (${r.why}); usage: eval ${spec.name} [RUNDIR] ` +
          "(a run directory with controller.json)",
      );
      return 2;
    }
    file = r.file;
    console.log(`controller: ${r.source} (${r.why})`);
  }
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
  const stated = (file.provenance.shipped as ShippedInfo | undefined)?.stated;
  if (
    stated && stated.trials === cfg.compare.trials && stated.steps === cfg.train.steps &&
    stated.seed === cfg.seed
  ) {
    console.log(
      `stated in ${spec.name}_controller.json: ${fmt(stated.mean, digits + 1)}, ` +
        `measured ${fmt(s.mean, digits + 1)}`,
    );
  }
}

/** `transfer mlp [RUNDIR]`: Table 2. */
export async function transferCommand(opts: CommonOptions) {
  const { cfg, run, resumed } = await openCommandRun<MlpConfig>(opts, MLP_SCHEMA);
  if (resumed && opts.args[0]) {
    throw new ConfigError(
      `--resume continues a transfer run with the controller it saved; drop ${opts.args[0]}`,
    );
  }
  const began = performance.now();
  const log = (s: string) => console.log(s);
  // Ctrl-C: the method (or controller round) in progress finishes and is kept, then the run stops.
  const stop = new GracefulStop("method");
  const cache = await MethodCache.open(run, resumed, () => stop.requested);
  try {
    const savedPath = run.file("controller.json");
    const saved = resumed && await Deno.stat(savedPath).then(() => true, () => false);
    let file: ControllerFile;
    const given = opts.args[0] || saved ? null : await resolveController("mlp", cfg);
    if (saved) {
      file = await readControllerFile(savedPath);
      log(`controller: ${savedPath} (saved before the resume)`);
    } else if (opts.args[0]) file = await readControllerFile(`${opts.args[0]}/controller.json`);
    else if (given?.file) {
      file = given.file;
      log(`controller: ${given.source} (${given.why})`);
    } else {
      log(`controller: trained (${given?.why})`);
      const resume = resumed ? await loadTrainCheckpoint(run) : undefined;
      if (resumed) await syncRoundMetrics(run, resume?.history ?? []);
      const trained = await trainFromConfig(mlpFromConfig(cfg, 0), cfg, log, {
        run,
        checkpoint: { path: run.file(TRAIN_CHECKPOINT), metadata: { preset: opts.preset } },
        resume,
      });
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
      const at = (name: string, run: () => Promise<MethodResult>) =>
        cache.result(`${name} #${index}`, run, log);
      const rs = [
        await at("W/O L1", () => withoutL1(problem, o)),
        await at("DGS", () => denseGridSearch(problem, lambdas, { ...o, gridSteps })),
        await at(
          "AutoLoss",
          () => autoLossMethod(problem, { ...o, controller: file, greedy: cfg.controller.greedy }),
        ),
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
  } catch (err) {
    if (!(err instanceof RunStopped || err instanceof TrainingStopped)) throw err;
    console.error(
      `stopped (${err.message}); the finished methods are kept: continue with ` +
        `transfer mlp --resume ${run.path}`,
    );
    return 130;
  } finally {
    stop.done();
  }
}
