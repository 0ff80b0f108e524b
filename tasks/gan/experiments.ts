/**
 * The `gan` task's experiments over several runs (registered by tasks/gan/commands.ts):
 *
 * - `compare gan`: fixed schedules and AutoLoss over seeds: the converged-IS table with the
 *   paper's numbers beside, and the steps to reach an IS threshold; `--resume` keeps the runs
 *   already finished.
 *
 * The guided run (`guidedRun`) is shared with `transfer gan` and `eval gan` (tasks/gan/transfer.ts)
 * and with the workers (dist/gan.ts).
 * @module
 */

import { join } from "node:path";
import { Generator } from "../../gpu/random.ts";
import { type ControllerFile, loadController } from "../../rl/controller_file.ts";
import type { PolicyController } from "../../rl/controller.ts";
import { formatDuration, Progress } from "../../run/progress.ts";
import { type RunDir, timestamp } from "../../run/run_dir.ts";
import { openSession } from "../../run/session.ts";
import type { CommonOptions } from "../registry.ts";
import { formatIs, type GanStatus } from "./status.ts";
import { GAN_SCHEMA, type GanConfig, scheduleList } from "./config.ts";
import { ganSchedule, runFixed, runLearned } from "./driver.ts";
import { OnlinePpo } from "./online_ppo.ts";
import type { RemoteEpisodes } from "./episodic.ts";
import { type DcganArch, describeArch } from "./model.ts";
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
