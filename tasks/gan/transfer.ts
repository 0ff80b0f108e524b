/**
 * `transfer gan` and `eval gan` (paper section 5.3; registered by tasks/gan/commands.ts): a
 * trained controller guides GANs it was not trained on.
 *
 * - `transfer gan RUNDIR`: the controller of RUNDIR guides (a) random DCGAN architectures of
 *   appendix A.5 and (b) a GAN on Fashion-MNIST, each against fixed schedules.
 * - `eval gan RUNDIR`: the controller of RUNDIR guides a fresh GAN of the given config.
 *
 * The controller is copied into the run directory (controller.json) and every guided run is one
 * metrics.jsonl line as it finishes, so `--resume DIR` keeps the finished runs and reruns the
 * interrupted one from its first step: the results are those of an uninterrupted run (each run
 * depends only on its seed and config).
 * @module
 */

import { UserError } from "../../util/errors.ts";
import { join } from "node:path";
import { init } from "../../gpu/backend.ts";
import { loadController } from "../../rl/controller_file.ts";
import type { PolicyController } from "../../rl/controller.ts";
import {
  ConfigError,
  type Layer,
  loadYamlFile,
  parseSet,
  resolveConfig,
} from "../../run/config.ts";
import { RunDir } from "../../run/run_dir.ts";
import { loadPreset, recordBackend, reopenRun } from "../../run/session.ts";
import type { CommonOptions } from "../registry.ts";
import { ganFeatureNames } from "./actions.ts";
import { GAN_SCHEMA, type GanConfig, scheduleList } from "./config.ts";
import { ganSchedule } from "./driver.ts";
import { guidedRun, type Method, type RunOutcome } from "./experiments.ts";
import { type DcganArch, describeArch, sampleArchs } from "./model.ts";
import { archOf, fmt, type GanContext, loadContext } from "./run.ts";

/**
 * The config of `transfer`/`eval`: the preset, then the features, model and optimizer of RUNDIR's
 * config.yaml (the controller was trained on them), then `--config`, `--set` and `--seed`.
 */
async function configFor(opts: CommonOptions, run: string): Promise<GanConfig> {
  const layers: Layer[] = [await loadPreset("gan", opts.preset)];
  if (!run.endsWith(".json")) {
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

/** An opened `transfer`/`eval` run: config, directory, controller and the runs finished before. */
interface GuidedRun {
  cfg: GanConfig;
  dir: RunDir;
  controller: PolicyController;
  /** The controller file given on the command line (the run keeps a copy). */
  source: string;
  /** Runs whose metrics line was written before a `--resume`, by key. */
  finished: Map<string, RunOutcome>;
}

/**
 * Opens the run directory of `transfer`/`eval`: a new one (config of {@link configFor}; RUNDIR's
 * controller copied in as controller.json, its path as the first metrics line) or, with
 * `--resume DIR`, DIR with its saved config and controller copy.
 */
async function openGuidedRun(opts: CommonOptions, command: string): Promise<GuidedRun> {
  let cfg: GanConfig;
  let dir: RunDir;
  let source: string;
  const finished = new Map<string, RunOutcome>();
  if (opts.resume) {
    if (opts.args.length) {
      throw new ConfigError(
        `--resume continues a ${command} run with the controller it copied; drop ${opts.args[0]}`,
      );
    }
    ({ cfg, dir } = await reopenRun(opts, GAN_SCHEMA));
    await recordBackend(dir, await init());
    const rows = await dir.readMetrics();
    const head = rows.find((r) => r.kind === "controller");
    if (!head) throw new UserError(`${dir.path} is not a ${command} gan run (no controller line)`);
    source = head.path as string;
    for (const row of rows) {
      // A run's line: its key, where it belongs (runOnce's `extra`), then the outcome.
      const { kind, key, part: _p, index: _i, arch: _a, ...outcome } = row;
      if (kind === "run") finished.set(key as string, outcome as unknown as RunOutcome);
    }
  } else {
    const run = opts.args[0];
    if (!run) {
      throw new UserError(
        `missing RUNDIR: give the run directory of a trained controller, e.g. ` +
          `\`${command} gan runs/gan-20250101-120000\` (make one with \`train gan\`)`,
      );
    }
    source = run.endsWith(".json") ? run : `${run}/controller.json`;
    cfg = await configFor(opts, run);
    const be = await init();
    dir = await RunDir.create({ task: `gan-${command}`, out: opts.out });
    await dir.writeConfig(cfg);
    await recordBackend(dir, be);
    await dir.writeFile("controller.json", await Deno.readTextFile(source));
    await dir.appendMetrics({ kind: "controller", path: source });
  }
  const controller = await loadController(dir.file("controller.json"), {
    featureNames: ganFeatureNames(cfg.features.set),
    actions: ["G", "D"],
  });
  return { cfg, dir, controller, source, finished };
}

/**
 * The guided run `key` of an opened run: the one finished before a `--resume`, or a new one
 * (whose metrics line, with `extra`, is written when it finishes).
 */
async function runOnce(
  g: GuidedRun,
  key: string,
  extra: Record<string, unknown>,
  run: () => Promise<RunOutcome>,
): Promise<RunOutcome> {
  const before = g.finished.get(key);
  if (before) {
    console.log(`${key}: final IS ${fmt(before.final)} (finished before the resume)`);
    return before;
  }
  const r = await run();
  await g.dir.appendMetrics({ kind: "run", key, ...extra, ...r });
  return r;
}

async function againstBaselines(
  g: GuidedRun,
  cfg: GanConfig,
  ctx: GanContext,
  method: Method,
  baselines: readonly string[],
  arch: DcganArch,
  label: string,
  extra: Record<string, unknown>,
): Promise<RunOutcome[]> {
  const steps = cfg.transfer.steps;
  const one = (m: Method) =>
    runOnce(
      g,
      `${label} ${m.name}`,
      extra,
      () => guidedRun(cfg, ctx, m, cfg.seed, steps, arch, `${label} ${m.name}`),
    );
  const runs = [await one(method)];
  for (const b of baselines) {
    runs.push(await one({ kind: "fixed", name: ganSchedule(b).name, schedule: b }));
  }
  return runs;
}

/** `transfer gan RUNDIR`. */
export async function transfer(opts: CommonOptions): Promise<number> {
  const g = await openGuidedRun(opts, "transfer");
  const { cfg, dir, controller } = g;
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}${opts.resume ? " (resumed)" : ""}`);
  log(`controller: ${g.source}`);
  const t = cfg.transfer;
  const baselines = scheduleList(t.baselines);
  const results: Record<string, unknown>[] = [];
  const lines: string[] = [];
  const autoloss: Method = { kind: "frozen", name: "AutoLoss", controller, greedy: t.greedy };
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
            g,
            cfg,
            ctx,
            autoloss,
            baselines,
            arch,
            `arch ${i + 1}`,
            { part: "arch", index: i + 1, arch },
          );
          const best = fixed.reduce((a, b) => (b.final > a.final ? b : a));
          const better = auto.final > best.final;
          if (better) wins++;
          results.push({ kind: "arch", index: i + 1, arch, autoloss: auto, fixed });
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
              g,
              fcfg,
              ctx,
              autoloss,
              baselines,
              archOf(cfg),
              "fashion",
              { part: "fashion" },
            );
            results.push({ kind: "fashion", runs: rows });
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
  const md = [`# transfer gan (${opts.preset})`, "", `Controller: ${g.source}`, "", ...lines].join(
    "\n",
  );
  await dir.writeSummary({ controller: g.source, results }, md);
  log("\n" + md);
  return 0;
}

/** `eval gan RUNDIR`. */
export async function evaluate(opts: CommonOptions): Promise<number> {
  const g = await openGuidedRun(opts, "eval");
  const { cfg, dir, controller } = g;
  const log = (s: string) => console.log(s);
  const ctx = await loadContext(cfg, log);
  try {
    const method: Method = {
      kind: "frozen",
      name: "AutoLoss",
      controller,
      greedy: cfg.transfer.greedy,
    };
    const steps = cfg.train.steps;
    const r = await runOnce(
      g,
      "eval",
      {},
      () => guidedRun(cfg, ctx, method, cfg.seed, steps, archOf(cfg), "eval"),
    );
    const md =
      `# eval gan\n\nController ${g.source}: final IS ${fmt(r.final)} after ${cfg.train.steps} ` +
      `steps (G share ${fmt(r.gShare, 2)}; real images ${fmt(ctx.realIs?.mean)}).`;
    await dir.writeSummary({ controller: g.source, run: r }, md);
    log(md);
    return 0;
  } finally {
    controller.dispose();
    ctx.classifier?.dispose();
  }
}
