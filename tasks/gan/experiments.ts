/**
 * The `gan` task's experiments over several runs (registered by tasks/gan/commands.ts):
 *
 * - `compare gan`: fixed schedules and AutoLoss over seeds: the converged-IS table with the
 *   paper's numbers beside, and the steps to reach an IS threshold; `--resume` keeps the runs
 *   already finished.
 * - `transfer gan RUNDIR`: the controller of RUNDIR guides (a) random DCGAN architectures of
 *   appendix A.5 and (b) a GAN on Fashion-MNIST, each against fixed schedules.
 * - `eval gan RUNDIR`: the controller of RUNDIR guides a fresh GAN of the given config.
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { join } from "node:path";
import { init } from "../../gpu/backend.ts";
import { Generator } from "../../gpu/random.ts";
import { type ControllerFile, loadController } from "../../rl/controller_file.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { type Layer, loadYamlFile, parseSet, resolveConfig } from "../../run/config.ts";
import { formatDuration, Progress } from "../../run/progress.ts";
import { RunDir, timestamp } from "../../run/run_dir.ts";
import { loadPreset, openSession, recordBackend } from "../../run/session.ts";
import type { CommonOptions } from "../registry.ts";
import { ganFeatureNames } from "./actions.ts";
import { formatIs, type GanStatus } from "./status.ts";
import { GAN_SCHEMA, type GanConfig, scheduleList } from "./config.ts";
import { ganSchedule, runFixed, runLearned } from "./driver.ts";
import { OnlinePpo } from "./online_ppo.ts";
import type { RemoteEpisodes } from "./episodic.ts";
import { type DcganArch, describeArch, sampleArchs } from "./model.ts";
import {
  archOf,
  finalIs,
  fmt,
  type GanContext,
  isPlot,
  type IsPoint,
  loadContext,
  makeTask,
  meanStd,
  onlinePpoOptions,
  PAPER_IS,
  readStatus,
  requireSegment,
  stepsToReach,
} from "./run.ts";
// ---------------------------------------------------------------- guided runs (compare, transfer)

/** How a guided run chooses actions. */
export type Method =
  | { kind: "fixed"; name: string; schedule: string }
  | { kind: "online"; name: string }
  | { kind: "frozen"; name: string; controller: PolicyController; greedy: boolean };

/** A guided run's method as the workers take it: a frozen controller as its file. */
export type RemoteMethod =
  | { kind: "fixed"; name: string; schedule: string }
  | { kind: "online"; name: string }
  | { kind: "frozen"; name: string; greedy: boolean; controller: ControllerFile };

/** One guided run for the workers (`--workers`). */
export interface GuidedRunRequest {
  /** The method. */
  method: RemoteMethod;
  /** The GAN's seed. */
  seed: number;
  /** Steps. */
  steps: number;
  /** The DCGAN. */
  arch: DcganArch;
}

/**
 * Runs guided runs on the workers (dist/learner.ts, one job each, all at once) in the context
 * `ctx` (its data and classifier); the outcomes come back in request order.
 */
export type GuidedRunExec = (runs: GuidedRunRequest[], ctx: GanContext) => Promise<RunOutcome[]>;

/** The learner of `--workers` as the GAN commands use it. */
export interface GanWorkers {
  /** Guided runs on the workers (`compare gan`). */
  guided: GuidedRunExec;
  /** Episodes of the episodic REINFORCE controller on the workers (`train gan`). */
  episodes: RemoteEpisodes;
  /** Counters, printed at the end. */
  stats: unknown;
  /** Closes the connection. */
  close(): Promise<void>;
}

/**
 * With `--workers`, connects the learner side of dist/ for the run at `runPath` (the NATS client
 * is loaded, and fetched, only then, through a computed specifier); null without it.
 */
export async function connectGanWorkers(
  opts: CommonOptions,
  cfg: GanConfig,
  runPath: string,
): Promise<GanWorkers | null> {
  if (!opts.workers) return null;
  const dist = new URL("../../dist/learner.ts", import.meta.url).href;
  return await (await import(dist) as typeof import("../../dist/learner.ts")).connectLearner({
    ...opts.workers,
    task: "gan",
    config: cfg as unknown as Record<string, unknown>,
    runName: runPath.split(/[\\/]/).filter(Boolean).pop()!,
  });
}

/** The outcome of one guided run. */
export interface RunOutcome {
  /** Method name. */
  method: string;
  /** Seed. */
  seed: number;
  /** IS at each evaluation. */
  curve: IsPoint[];
  /** Final IS with `finalSamples`. */
  final: number;
  /** Best IS of the curve. */
  best: number;
  /** Share of G actions. */
  gShare: number;
  /** Seconds. */
  seconds: number;
  /** Whether it stopped on collapse or non-finite values. */
  failed: string | null;
}

/**
 * Trains one GAN for `steps` steps under `method`, evaluating the IS every `every` steps (PPO:
 * every segment), and returns its curve and final IS.
 */
export async function guidedRun(
  cfg: GanConfig,
  ctx: GanContext,
  method: Method,
  seed: number,
  steps: number,
  arch: DcganArch,
  label: string,
): Promise<RunOutcome> {
  const every = method.kind === "online" ? cfg.controller.ppo.segment : cfg.is.every;
  const task = makeTask(cfg, ctx, {
    arch,
    isEvery: method.kind === "online" ? 0 : every,
    totalSteps: steps,
  });
  const started = performance.now();
  const curve: IsPoint[] = [];
  const progress = new Progress({ total: steps, label });
  let failed: string | null = null;
  const onStatus = (t: number, s: GanStatus) =>
    progress.update(t, { D: s.discCost, G: s.genCost, IS: formatIs(s.is) });
  try {
    task.reset(seed);
    if (method.kind === "online") {
      const p = cfg.controller.ppo;
      const trainer = new OnlinePpo(task, onlinePpoOptions(cfg, cfg.controller.seed + seed));
      try {
        task.evaluateIs();
        await trainer.start();
        curve.push({ step: 0, is: trainer.isHistory[0] });
        let before = 0;
        while (task.t + p.segment <= steps) {
          const r = await trainer.segment({ onStatus, nonfiniteBefore: before });
          if (
            "aborted" in r || r.status.nonfinite > before || r.status.run > cfg.controller.maxRun
          ) {
            const why = "aborted" in r ? r.aborted : "collapse/nonfinite";
            if (!(await trainer.rollback(null))) {
              failed = why;
              break;
            }
            curve.splice(0, curve.length, { step: 0, is: trainer.isHistory[0] });
            before = 0;
            continue;
          }
          before = r.status.nonfinite;
          curve.push({ step: r.step, is: r.is });
        }
      } finally {
        trainer.dispose();
      }
    } else if (method.kind === "fixed") {
      const schedule = ganSchedule(method.schedule);
      while (task.t < steps) {
        const r = await runFixed(task, schedule, {
          steps: Math.min(every, steps - task.t),
          readEvery: every,
          onStatus,
        });
        if (r.aborted) {
          failed = r.aborted;
          break;
        }
        curve.push({ step: task.t, is: r.status!.is });
      }
    } else {
      const gen = new Generator((seed ^ 0x2f1f3c5b) >>> 0);
      while (task.t < steps) {
        const r = await runLearned(task, method.controller, {
          steps: Math.min(every, steps - task.t),
          gen,
          greedy: method.greedy,
          onStatus,
        });
        if (r.aborted) {
          failed = r.aborted;
          break;
        }
        curve.push({ step: task.t, is: r.status!.is });
      }
    }
    const status = await readStatus(task);
    const fin = failed ? null : await finalIs(task, ctx, cfg, cfg.is.finalSamples);
    return {
      method: method.name,
      seed,
      curve,
      final: fin?.mean ?? NaN,
      best: curve.length ? Math.max(...curve.map((c) => c.is)) : NaN,
      gShare: status.gCount / Math.max(task.t, 1),
      seconds: (performance.now() - started) / 1000,
      failed,
    };
  } finally {
    progress.done(task.t);
    task.dispose();
  }
}

/** Mean curve over runs evaluated at the same steps. */
function meanCurve(runs: RunOutcome[]): IsPoint[] {
  const steps = [...new Set(runs.flatMap((r) => r.curve.map((c) => c.step)))].sort((a, b) => a - b);
  return steps.map((step) => ({
    step,
    is: meanStd(
      runs.map((r) => r.curve.find((c) => c.step === step)?.is ?? NaN).filter(Number.isFinite),
    )
      .mean,
  }));
}

/** Opens `runs/gan-<command>-<stamp>` (or `--out`) with the resolved config. */
async function openCommandRun(opts: CommonOptions, command: string): Promise<{
  cfg: GanConfig;
  dir: RunDir;
  resumed: boolean;
}> {
  const out = opts.out ?? join("runs", `gan-${command}-${timestamp()}`);
  return await openSession({ ...opts, out }, GAN_SCHEMA, "gan");
}

// ---------------------------------------------------------------- compare

/** `compare gan`. */
export async function compare(opts: CommonOptions): Promise<number> {
  const { cfg, dir, resumed } = await openCommandRun(opts, "compare");
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}${resumed ? " (resumed)" : ""}`);
  // `--resume`: runs finished before the interruption are kept (they are whole lines of
  // metrics.jsonl); the interrupted one starts again from its first step.
  const finished = resumed
    ? (await dir.readMetrics()).filter((m) => m.kind === "run") as unknown as RunOutcome[]
    : [];
  if (cfg.note) log(`preset note: ${cfg.note}`);
  const ctx = await loadContext(cfg, log);
  const c = cfg.compare;
  const methods: Method[] = scheduleList(c.schedules).map((s) => ({
    kind: "fixed",
    name: ganSchedule(s).name,
    schedule: s,
  }));
  let frozen: PolicyController | null = null;
  let frozenFile: ControllerFile | null = null;
  if (c.autoloss) {
    if (c.controller) {
      frozen = await loadController(c.controller, { actions: ["G", "D"] });
      frozenFile = JSON.parse(await Deno.readTextFile(c.controller)) as ControllerFile;
      methods.push({ kind: "frozen", name: "AutoLoss", controller: frozen, greedy: false });
    } else {
      requireSegment(cfg, c.steps, "compare.steps");
      methods.push({ kind: "online", name: "AutoLoss" });
    }
  }
  const runs: RunOutcome[] = [];
  // --workers: every run not finished before is a job, all published at once; the outcomes are
  // then taken in the local order (seeds, then methods), so the files are the local path's.
  let workers: GanWorkers | null = null;
  const finishedBefore = (m: Method, seed: number) =>
    finished.find((r) => r.method === m.name && r.seed === seed);
  try {
    workers = await connectGanWorkers(opts, cfg, dir.path);
    const remote = new Map<string, RunOutcome>();
    if (workers) {
      const todo = Array.from({ length: c.seeds }, (_, s) => cfg.seed + s)
        .flatMap((seed) => methods.map((m) => ({ m, seed })))
        .filter(({ m, seed }) => !finishedBefore(m, seed));
      const outcomes = await workers.guided(
        todo.map(({ m, seed }) => ({
          method: m.kind === "frozen"
            ? { kind: "frozen", name: m.name, greedy: m.greedy, controller: frozenFile! }
            : m,
          seed,
          steps: c.steps,
          arch: archOf(cfg),
        })),
        ctx,
      );
      todo.forEach(({ m, seed }, i) => remote.set(`${m.name}\n${seed}`, outcomes[i]));
    }
    for (let s = 0; s < c.seeds; s++) {
      for (const m of methods) {
        const seed = cfg.seed + s;
        const before = finishedBefore(m, seed);
        if (before) {
          runs.push(before);
          log(`${m.name} seed ${seed}: final IS ${fmt(before.final)} (finished before the resume)`);
          continue;
        }
        const r = remote.get(`${m.name}\n${seed}`) ?? await guidedRun(
          cfg,
          ctx,
          m,
          seed,
          c.steps,
          archOf(cfg),
          `${m.name} seed ${seed}`,
        );
        runs.push(r);
        await dir.appendMetrics({ kind: "run", ...r });
        log(
          `${m.name} seed ${seed}: final IS ${fmt(r.final)}, best ${fmt(r.best)}, G share ` +
            `${fmt(r.gShare, 2)}, ${formatDuration(r.seconds)}${r.failed ? ` (${r.failed})` : ""}`,
        );
      }
    }
  } finally {
    frozen?.dispose();
    ctx.classifier?.dispose();
    await workers?.close();
  }
  if (workers) log(`workers: ${JSON.stringify((workers as GanWorkers).stats)}`);
  const rows = methods.map((m) => {
    const rs = runs.filter((r) => r.method === m.name);
    const fin = meanStd(rs.map((r) => r.final).filter(Number.isFinite));
    const reach = rs.map((r) => stepsToReach(r.curve, c.threshold));
    const hit = reach.filter((x): x is number => x !== null);
    return {
      method: m.name,
      final: fin,
      best: meanStd(rs.map((r) => r.best).filter(Number.isFinite)),
      reached: `${hit.length}/${rs.length}`,
      stepsToThreshold: hit.length ? meanStd(hit).mean : null,
      gShare: meanStd(rs.map((r) => r.gShare)).mean,
      paper: PAPER_IS[m.name] ?? null,
    };
  });
  const table = [
    `| method | final IS (mean ± std over ${c.seeds} seeds) | best IS | steps to IS ${c.threshold} (reached) | G share | paper IS |`,
    "|---|---|---|---|---|---|",
    ...rows.map((r) =>
      `| ${r.method} | ${fmt(r.final.mean)} ± ${fmt(r.final.std)} | ${fmt(r.best.mean)} | ${
        r.stepsToThreshold === null ? "-" : Math.round(r.stepsToThreshold)
      } (${r.reached}) | ${fmt(r.gShare, 2)} | ${r.paper === null ? "-" : r.paper.toFixed(4)} |`
    ),
  ].join("\n");
  const md = [
    `# compare gan (${opts.preset})`,
    "",
    `${c.steps} steps per run, DCGAN ${describeArch(archOf(cfg))}, batch ${cfg.optim.batchSize}; ` +
    `final IS on ${cfg.is.finalSamples} samples, ${cfg.is.splits} splits; ${ctx.classifierNote}. ` +
    `Real test images: IS ${fmt(ctx.realIs?.mean)}.`,
    "",
    table,
    "",
    "Paper (section 5.1.2): converged IS after full training of the authors' DCGAN (batch 128), " +
    "with the paper's own classifier (real MNIST 9.5); AutoLoss there is a REINFORCE-trained " +
    "controller. Our numbers come from much shorter runs and a different classifier: compare the " +
    "ordering, not the values.",
  ].join("\n");
  await dir.writeSummary({ rows, runs, realIs: ctx.realIs?.mean ?? null }, md);
  await dir.writeFile(
    "is.svg",
    isPlot(
      methods.map((m) => ({
        name: m.name,
        points: meanCurve(runs.filter((r) => r.method === m.name)),
      })),
      cfg,
      "compare gan: mean IS vs step",
    ),
  );
  log("\n" + table);
  log(`\n${dir.file("summary.md")}`);
  return 0;
}

// ---------------------------------------------------------------- transfer and eval

async function controllerOf(opts: CommonOptions, featureNames: readonly string[]) {
  const run = opts.args[0];
  if (!run) {
    throw new Error(
      "missing RUNDIR: give the run directory of a trained controller, e.g. " +
        "`transfer gan runs/gan-20250101-120000` (make one with `train gan`)",
    );
  }
  const path = run.endsWith(".json") ? run : `${run}/controller.json`;
  const controller = await loadController(path, { featureNames, actions: ["G", "D"] });
  return { controller, path };
}

/**
 * The config of `transfer`/`eval`: the preset, then the features, model and optimizer of RUNDIR's
 * config.yaml (the controller was trained on them), then `--config`, `--set` and `--seed`.
 */
async function configFor(opts: CommonOptions): Promise<GanConfig> {
  const layers: Layer[] = [await loadPreset("gan", opts.preset)];
  const run = opts.args[0];
  if (run && !run.endsWith(".json")) {
    const saved = await loadYamlFile(join(run, "config.yaml")).catch(() => null);
    const v = saved?.values as Partial<GanConfig> | null;
    if (v) {
      layers.push({
        source: `${run}/config.yaml (features, model, optim)`,
        values: { features: v.features, model: v.model, optim: v.optim },
      });
    }
  }
  for (const f of opts.config) layers.push(await loadYamlFile(f));
  for (const s of opts.set) layers.push(parseSet(s));
  if (opts.seed !== undefined) layers.push({ source: "--seed", values: { seed: opts.seed } });
  return resolveConfig(GAN_SCHEMA, layers);
}

/** Creates the run directory of `transfer`/`eval` and saves the config. */
async function openGuidedRun(opts: CommonOptions, command: string, cfg: GanConfig) {
  if (opts.resume) {
    throw new UserError(`${command} gan cannot be resumed yet; start a new run`);
  }
  const be = await init();
  const dir = await RunDir.create({ task: `gan-${command}`, out: opts.out });
  await dir.writeConfig(cfg);
  await recordBackend(dir, be);
  return dir;
}

/**
 * Runs `method` and then each fixed schedule of `baselines` on `arch`, all for
 * `cfg.transfer.steps` steps from seed `cfg.seed`; returns the method's run first.
 */
async function againstBaselines(
  cfg: GanConfig,
  ctx: GanContext,
  method: Method,
  baselines: readonly string[],
  arch: DcganArch,
  label: string,
): Promise<RunOutcome[]> {
  const steps = cfg.transfer.steps;
  const runs = [
    await guidedRun(cfg, ctx, method, cfg.seed, steps, arch, `${label} ${method.name}`),
  ];
  for (const b of baselines) {
    const fixed: Method = { kind: "fixed", name: ganSchedule(b).name, schedule: b };
    runs.push(await guidedRun(cfg, ctx, fixed, cfg.seed, steps, arch, `${label} ${b}`));
  }
  return runs;
}

/** `transfer gan RUNDIR`. */
export async function transfer(opts: CommonOptions): Promise<number> {
  const cfg = await configFor(opts);
  const dir = await openGuidedRun(opts, "transfer", cfg);
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}`);
  const { controller, path } = await controllerOf(opts, ganFeatureNames(cfg.features.set));
  log(`controller: ${path}`);
  const t = cfg.transfer;
  const baselines = scheduleList(t.baselines);
  const results: Record<string, unknown>[] = [];
  const lines: string[] = [];
  try {
    // (a) random architectures (appendix A.5)
    if (t.archs > 0) {
      const ctx = await loadContext(cfg, log);
      try {
        const archs = sampleArchs(t.archs, t.archSeed, t.filters);
        const table = [
          "| # | architecture | AutoLoss IS | best fixed IS (schedule) | AutoLoss better |",
          "|---|---|---|---|---|",
        ];
        let wins = 0;
        for (const [i, arch] of archs.entries()) {
          const [auto, ...fixed] = await againstBaselines(
            cfg,
            ctx,
            { kind: "frozen", name: "AutoLoss", controller, greedy: t.greedy },
            baselines,
            arch,
            `arch ${i + 1}`,
          );
          const best = fixed.reduce((a, b) => (b.final > a.final ? b : a));
          const better = auto.final > best.final;
          if (better) wins++;
          results.push({ kind: "arch", index: i + 1, arch, autoloss: auto, fixed });
          await dir.appendMetrics({ kind: "arch", index: i + 1, arch, autoloss: auto, fixed });
          table.push(
            `| ${i + 1} | ${describeArch(arch)} | ${fmt(auto.final)} | ${
              fmt(best.final)
            } (${best.method}) | ${better ? "yes" : "no"} |`,
          );
          log(table[table.length - 1]);
        }
        lines.push(
          `## (a) ${archs.length} random architectures (appendix A.5; widths from ` +
            `{${t.filters.join(", ")}}), ${t.steps} steps each`,
          "",
          ...table,
          "",
          `AutoLoss better in ${wins} of ${archs.length} (paper: 16 of 20, against DCGAN 1:1, ` +
            "full training).",
          "",
        );
      } finally {
        ctx.classifier?.dispose();
      }
    }
    // (b) Fashion-MNIST
    if (t.fashion) {
      let ctx: GanContext | null = null;
      try {
        // is.classifier names the MNIST weights; Fashion-MNIST has its own (transfer.fashionClassifier).
        const fashion = {
          ...cfg,
          data: { ...cfg.data, dataset: "fashion" as const },
          is: { ...cfg.is, classifier: "" },
        };
        ctx = await loadContext(fashion, log, "fashion");
      } catch (err) {
        lines.push(`## (b) Fashion-MNIST: skipped (${(err as Error).message.split("\n")[0]})`, "");
      }
      if (ctx) {
        try {
          if (!ctx.scorer) {
            lines.push(
              `## (b) Fashion-MNIST: no Fashion-MNIST classifier (${ctx.classifierNote})`,
              "",
            );
          } else {
            const fcfg = { ...cfg, data: { ...cfg.data, dataset: "fashion" as const } };
            const rows = await againstBaselines(
              fcfg,
              ctx,
              { kind: "frozen", name: "AutoLoss", controller, greedy: t.greedy },
              baselines,
              archOf(cfg),
              "fashion",
            );
            results.push({ kind: "fashion", runs: rows });
            await dir.appendMetrics({ kind: "fashion", runs: rows });
            lines.push(
              `## (b) Fashion-MNIST, ${t.steps} steps (real test images: IS ${
                fmt(ctx.realIs?.mean)
              })`,
              "",
              "| method | final IS | best IS | G share |",
              "|---|---|---|---|",
              ...rows.map((r) =>
                `| ${r.method} | ${fmt(r.final)} | ${fmt(r.best)} | ${fmt(r.gShare, 2)} |`
              ),
              "",
            );
          }
        } finally {
          ctx.classifier?.dispose();
        }
      }
    }
  } finally {
    controller.dispose();
  }
  const md = [`# transfer gan (${opts.preset})`, "", `Controller: ${path}`, "", ...lines].join(
    "\n",
  );
  await dir.writeSummary({ controller: path, results }, md);
  log("\n" + md);
  return 0;
}

/** `eval gan RUNDIR`. */
export async function evaluate(opts: CommonOptions): Promise<number> {
  const cfg = await configFor(opts);
  const dir = await openGuidedRun(opts, "eval", cfg);
  const log = (s: string) => console.log(s);
  const { controller, path } = await controllerOf(opts, ganFeatureNames(cfg.features.set));
  const ctx = await loadContext(cfg, log);
  try {
    const r = await guidedRun(
      cfg,
      ctx,
      {
        kind: "frozen",
        name: "AutoLoss",
        controller,
        greedy: cfg.transfer.greedy,
      },
      cfg.seed,
      cfg.train.steps,
      archOf(cfg),
      "eval",
    );
    await dir.appendMetrics({ kind: "run", ...r });
    const md =
      `# eval gan\n\nController ${path}: final IS ${fmt(r.final)} after ${cfg.train.steps} ` +
      `steps (G share ${fmt(r.gShare, 2)}; real images ${fmt(ctx.realIs?.mean)}).`;
    await dir.writeSummary({ controller: path, run: r }, md);
    log(md);
    return 0;
  } finally {
    controller.dispose();
    ctx.classifier?.dispose();
  }
}
