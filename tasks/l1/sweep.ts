/**
 * `compare <task> sweep`: the robustness sweep. The same recipe (the preset, `--config` and
 * `--set` layers) runs on several data settings (input dimension, noise, training-set size, data
 * seed); in each, a controller is trained on that setting's controller partitions and every
 * method runs `robust.trials` paired trials (one population per method, the same initializations
 * for all methods). Per setting: the mean of every method, the paired difference AutoLoss minus
 * the best baseline (the baseline with the lowest mean) with its 95% t interval and the per-trial
 * win/tie/loss count, and the same against matched-share random and the untrained controller.
 * Writes `sweep.md` / `summary.md`, `summary.json`, `sweep.svg` and one `settings/<name>.json` per
 * setting as it completes; `--resume RUNDIR` skips the settings already there.
 * @module
 */

import { init } from "../../gpu/backend.ts";
import { loadYamlFile, parseSet, resolveConfig } from "../../run/config.ts";
import { UserError } from "../../util/errors.ts";
import { formatDuration } from "../../run/progress.ts";
import { RunDir } from "../../run/run_dir.ts";
import { escapeXml } from "../../run/svg.ts";
import { recordBackend } from "../../run/session.ts";
import { fileURLToPath } from "node:url";
import type { SharedConfig } from "./config.ts";
import { MATCHED, table1, UNTRAINED } from "./table1.ts";
import { fmt, machine, type TaskSpec, trainFromConfig } from "./run.ts";
import { type PairedDiff, pairedDiff } from "./stats.ts";
import { mean, type MethodResult } from "./methods.ts";
import type { CommonOptions } from "../registry.ts";

/** One data setting of the sweep: a name and the config values it overrides. */
export interface SweepSetting {
  /** Short name (file name and table row). */
  name: string;
  /** Nested config values layered over the recipe. */
  values: Record<string, unknown>;
}

/** The regression sweep: the authors' setting, then one knob changed at a time. */
export const REGRESSION_SWEEP: readonly SweepSetting[] = [
  { name: "base", values: {} },
  { name: "dim 8", values: { data: { dim: 8 } } },
  { name: "dim 32", values: { data: { dim: 32 } } },
  { name: "noise 1", values: { data: { noiseStd: 1 } } },
  { name: "noise 4", values: { data: { noiseStd: 4 } } },
  { name: "train 100", values: { data: { sizes: [100, 200, 100, 200, 200] } } },
  { name: "train 400", values: { data: { sizes: [400, 200, 400, 200, 200] } } },
  { name: "data seed 2", values: { data: { seed: 2 } } },
  { name: "data seed 3", values: { data: { seed: 3 } } },
];

/** The MLP sweep. */
export const MLP_SWEEP: readonly SweepSetting[] = [
  { name: "base", values: {} },
  { name: "dim 16", values: { data: { features: 16 } } },
  { name: "dim 64", values: { data: { features: 64 } } },
  { name: "label noise 0.1", values: { data: { flipY: 0.1 } } },
  { name: "train 100", values: { data: { sizes: [100, 1000, 100, 1000, 1000] } } },
  { name: "train 400", values: { data: { sizes: [400, 1000, 400, 1000, 1000] } } },
  { name: "data seed 2", values: { data: { seed: 2 } } },
  { name: "data seed 3", values: { data: { seed: 3 } } },
];

/** The baselines AutoLoss is compared with (the best of them per setting). */
export const BASELINES: readonly string[] = ["W/O L1", "S1", "S2", "S3", "DGS"];

/** One setting's outcome. */
export interface SettingResult {
  /** Setting name. */
  name: string;
  /** Per-method per-trial values. */
  values: Record<string, number[]>;
  /** Per-method means. */
  means: Record<string, number>;
  /** The baseline with the lowest mean. */
  best: string;
  /** AutoLoss minus the best baseline. */
  vsBest: PairedDiff;
  /** AutoLoss minus matched-share random. */
  vsMatched: PairedDiff | null;
  /** AutoLoss minus the untrained controller. */
  vsUntrained: PairedDiff | null;
  /** AutoLoss's mean L1 share. */
  l1Share: number;
  /** Controller training: first and last round's mean reward, and the last round's entropy. */
  training: { firstReward: number; lastReward: number; lastEntropy: number | null } | null;
  /** Seconds. */
  seconds: number;
}

/** Summarizes one setting's method results. */
export function settingResult(
  name: string,
  results: readonly MethodResult[],
  extra: Pick<SettingResult, "training" | "seconds">,
): SettingResult {
  const values = Object.fromEntries(results.map((r) => [r.name, r.values]));
  const means = Object.fromEntries(results.map((r) => [r.name, mean(r.values)]));
  const present = BASELINES.filter((b) => b in values);
  if (!present.length || !values.AutoLoss) {
    throw new Error(`sweep: setting ${name} lacks AutoLoss or every baseline`);
  }
  const best = present.reduce((a, b) => (means[b] < means[a] ? b : a));
  const auto = values.AutoLoss;
  const auto0 = results.find((r) => r.name === "AutoLoss")!;
  return {
    name,
    values,
    means,
    best,
    vsBest: pairedDiff(auto, values[best]),
    vsMatched: values[MATCHED] ? pairedDiff(auto, values[MATCHED]) : null,
    vsUntrained: values[UNTRAINED] ? pairedDiff(auto, values[UNTRAINED]) : null,
    l1Share: auto0.detail.l1Fraction as number,
    ...extra,
  };
}

function ci(d: PairedDiff | null, digits: number): string {
  if (!d) return "—";
  const mark = d.verdict === "better" ? " ✓" : d.verdict === "worse" ? " ✗" : "";
  return `${fmt(d.mean, digits)} [${fmt(d.lo, digits)}, ${fmt(d.hi, digits)}]${mark}`;
}

/** The sweep's markdown table (one row per setting) and its tallies. */
export function sweepTable(rows: readonly SettingResult[], digits: number): string {
  const methods = [...BASELINES, "AutoLoss", UNTRAINED, MATCHED].filter((m) =>
    rows.some((r) => m in r.means)
  );
  const short = (m: string) => m === UNTRAINED ? "untrained" : m === MATCHED ? "matched rnd" : m;
  const lines = [
    `| setting | ${methods.map(short).join(" | ")} | best baseline | AutoLoss − best [95% CI] | ` +
    "W/T/L vs best | AutoLoss − matched rnd [95% CI] | AutoLoss − untrained [95% CI] | L1 share |",
    `|---|${methods.map(() => "---|").join("")}---|---|---|---|---|---|`,
    ...rows.map((r) =>
      `| ${r.name} | ${
        methods.map((m) => m in r.means ? fmt(r.means[m], digits) : "—").join(" | ")
      }` +
      ` | ${r.best} | ${ci(r.vsBest, digits)} | ${r.vsBest.wins}/${r.vsBest.ties}/` +
      `${r.vsBest.losses} | ${ci(r.vsMatched, digits)} | ${ci(r.vsUntrained, digits)} | ` +
      `${fmt(r.l1Share, 2)} |`
    ),
  ];
  const tally = (f: (r: SettingResult) => PairedDiff | null) => {
    const v = rows.map(f).filter((d): d is PairedDiff => d !== null);
    const n = (k: PairedDiff["verdict"]) => v.filter((d) => d.verdict === k).length;
    return `${n("better")} better, ${n("tie")} within the CI, ${n("worse")} worse`;
  };
  lines.push(
    "",
    `Over ${rows.length} settings (95% CI of the paired difference; ✓ excludes 0 on the better ` +
      "side, ✗ on the worse side):",
    "",
    `- AutoLoss vs the best baseline: ${tally((r) => r.vsBest)}.`,
    `- AutoLoss vs matched-share random: ${tally((r) => r.vsMatched)}.`,
    `- AutoLoss vs the untrained controller: ${tally((r) => r.vsUntrained)}.`,
  );
  return lines.join("\n");
}

/**
 * An SVG of paired differences with their 95% intervals, one row per setting and one column
 * panel per comparison; 0 marked by a vertical line (left of it: AutoLoss better).
 */
export function intervalPlot(
  rows: readonly SettingResult[],
  title: string,
  label: string,
): string {
  const panels: [string, (r: SettingResult) => PairedDiff | null][] = [
    ["AutoLoss − best baseline", (r) => r.vsBest],
    ["AutoLoss − matched-share random", (r) => r.vsMatched],
    ["AutoLoss − untrained controller", (r) => r.vsUntrained],
  ];
  const rowH = 26;
  const [left, top, panelW, gap] = [110, 56, 240, 30];
  const W = left + panels.length * (panelW + gap);
  const H = top + rows.length * rowH + 40;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" ` +
    `font-size="12"><rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
  ];
  rows.forEach((r, i) => {
    out.push(
      `<text x="${left - 8}" y="${top + i * rowH + rowH / 2 + 4}" text-anchor="end">${
        escapeXml(r.name)
      }</text>`,
    );
  });
  panels.forEach(([name, f], k) => {
    const x0 = left + k * (panelW + gap);
    const ds = rows.map(f);
    const ext = ds.flatMap((d) => (d ? [d.lo, d.hi] : [])).filter(Number.isFinite);
    const m = Math.max(1e-9, ...ext.map(Math.abs)) * 1.1;
    const sx = (v: number) => x0 + ((v + m) / (2 * m)) * panelW;
    out.push(
      `<text x="${x0 + panelW / 2}" y="${top - 22}" text-anchor="middle">${escapeXml(name)}</text>`,
      `<text x="${x0 + panelW / 2}" y="${top - 8}" text-anchor="middle" fill="#555">${
        escapeXml(label)
      } (±${fmt(m, 3)})</text>`,
      `<rect x="${x0}" y="${top}" width="${panelW}" height="${
        rows.length * rowH
      }" fill="none" stroke="#999"/>`,
      `<line x1="${sx(0)}" x2="${sx(0)}" y1="${top}" y2="${
        top + rows.length * rowH
      }" stroke="#333" stroke-dasharray="4 3"/>`,
    );
    ds.forEach((d, i) => {
      if (!d) return;
      const y = top + i * rowH + rowH / 2;
      const color = d.verdict === "better"
        ? "#2ca02c"
        : d.verdict === "worse"
        ? "#d62728"
        : "#1f77b4";
      const lo = Number.isFinite(d.lo) ? sx(d.lo) : x0;
      const hi = Number.isFinite(d.hi) ? sx(d.hi) : x0 + panelW;
      out.push(
        `<line x1="${lo.toFixed(1)}" x2="${hi.toFixed(1)}" y1="${y}" y2="${y}" stroke="${color}" ` +
          `stroke-width="2"/>`,
        `<circle cx="${sx(d.mean).toFixed(1)}" cy="${y}" r="4" fill="${color}"/>`,
      );
    });
    out.push(
      `<text x="${x0 + panelW / 2}" y="${top + rows.length * rowH + 18}" text-anchor="middle" ` +
        `fill="#555">← AutoLoss better | worse →</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** The settings a sweep runs: all of the task's, or those named in `robust.settings`. */
function chosenSettings(task: string, names: string): readonly SweepSetting[] {
  const all = task === "regression" ? REGRESSION_SWEEP : MLP_SWEEP;
  if (!names.trim()) return all;
  const want = names.split(",").map((s) => s.trim()).filter(Boolean);
  const unknown = want.filter((w) => !all.some((s) => s.name === w));
  if (unknown.length) {
    throw new UserError(
      `robust.settings: unknown ${unknown.join(", ")}; known: ${all.map((s) => s.name).join(", ")}`,
    );
  }
  return all.filter((s) => want.includes(s.name));
}

/** A file name for a setting. */
function slug(name: string): string {
  return name.replace(/[^a-z0-9]+/gi, "_").toLowerCase();
}

/** `compare <task> sweep [--resume RUNDIR]`. */
export async function sweepCommand<C extends SharedConfig>(
  spec: TaskSpec<C>,
  opts: CommonOptions,
): Promise<void> {
  const preset = fileURLToPath(
    new URL(`../../configs/${opts.task}/${opts.preset}.yaml`, import.meta.url),
  );
  const layers = [await loadYamlFile(preset)];
  for (const f of opts.config) layers.push(await loadYamlFile(f));
  for (const s of opts.set) layers.push(parseSet(s));
  const base = resolveConfig(spec.schema, layers) as C;
  if (opts.seed !== undefined) base.seed = opts.seed;
  const be = await init();
  let run: RunDir;
  if (opts.resume) {
    run = await RunDir.open(opts.resume);
    const saved = JSON.parse(await Deno.readTextFile(run.file("sweep_config.json")));
    if (JSON.stringify(saved) !== JSON.stringify(base)) {
      throw new UserError(
        `cannot resume ${opts.resume}: it ran with another config; pass the same --preset, ` +
          "--config and --set",
      );
    }
  } else {
    run = await RunDir.create({ task: `${opts.task}-sweep`, out: opts.out });
    await run.writeConfig(base);
    await run.writeFile("sweep_config.json", JSON.stringify(base, null, 2) + "\n");
    await recordBackend(run, be);
  }
  const began = performance.now();
  const settings = chosenSettings(spec.name, base.robust.settings);
  const digits = spec.name === "regression" ? 3 : 4;
  const rows: SettingResult[] = [];
  for (const [i, setting] of settings.entries()) {
    const file = `settings/${slug(setting.name)}.json`;
    try {
      rows.push(JSON.parse(await Deno.readTextFile(run.file(file))) as SettingResult);
      console.log(`[${i + 1}/${settings.length}] ${setting.name}: done before, skipped`);
      continue;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    const t0 = performance.now();
    const cfg = resolveConfig(spec.schema, [
      ...layers,
      { source: `sweep setting ${setting.name}`, values: setting.values },
    ]) as C;
    cfg.seed = base.seed;
    cfg.compare.trials = base.robust.trials;
    for (const k of ["sweep", "budget", "ablation"] as const) cfg[k].enabled = false;
    const problem = spec.problem(cfg);
    const log = (s: string) => console.log(`  ${s}`);
    console.log(`[${i + 1}/${settings.length}] ${setting.name}`);
    let training: SettingResult["training"] = null;
    const results = await table1(problem, cfg, async () => {
      const t = await trainFromConfig(problem, cfg, log, { label: `train ${setting.name}` });
      const h = t.history;
      training = {
        firstReward: h[0].meanReward,
        lastReward: h.at(-1)!.meanReward,
        lastEntropy: h.at(-1)!.entropy ?? null,
      };
      return { file: t.file, initial: t.initial };
    }, log);
    const r = settingResult(setting.name, results, {
      training,
      seconds: (performance.now() - t0) / 1000,
    });
    console.log(
      `  AutoLoss − ${r.best}: ${ci(r.vsBest, digits)}; − matched random: ${
        ci(r.vsMatched, digits)
      } (${formatDuration(r.seconds)})`,
    );
    await run.writeFile(file, JSON.stringify(r, null, 2) + "\n");
    rows.push(r);
  }
  const seconds = (performance.now() - began) / 1000;
  const label = spec.name === "regression" ? "test MSE − noise floor" : "test error";
  await run.writeFile(
    "sweep.svg",
    intervalPlot(rows, `${spec.name}: paired differences, 95% CI`, label),
  );
  const md = [
    `# compare ${spec.name} sweep (preset ${opts.preset}, seed ${base.seed})`,
    "",
    `${label}, mean over ${base.robust.trials} paired trials per method and setting; a controller ` +
    `trained per setting (${base.controller.rounds} rounds x ${base.controller.population} episodes ` +
    `of ${base.controller.steps} steps, updates "${base.controller.updates}", baseline ` +
    `"${base.controller.baseline}"); differences are AutoLoss minus the other, per trial.`,
    "",
    sweepTable(rows, digits),
    "",
    `sweep.svg; ${formatDuration(seconds)} (this session).`,
  ].join("\n");
  await run.writeFile("sweep.md", md + "\n");
  await run.writeSummary({
    task: spec.name,
    preset: opts.preset,
    metric: label,
    trials: base.robust.trials,
    settings: rows,
    seconds,
    machine: await machine(),
  }, md);
  console.log(md);
  console.log(`\nrun directory: ${run.path}`);
}
