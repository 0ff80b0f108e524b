/**
 * The `nmt` task on the command line (paper sections 4.3, 5.1.3, appendix A.3):
 *
 * - `train nmt`: one AutoLoss run, the PPO controller trained online while it schedules MT, POS
 *   and NER updates; saves controller.json, the BPE models, metrics.jsonl, the validation curve,
 *   the controller's action probabilities (paper Fig. 3M) and a summary.
 * - `compare nmt`: every method of tasks/nmt/train.ts on the same data, seed and batch budget;
 *   validation perplexity vs epoch curves (SVG, paper Fig. 3L), the controller's probabilities
 *   (Fig. 3M), and a table with the paper's numbers beside ours (its data differ), test
 *   perplexity and test BLEU (greedy and beam).
 *
 * Data: tasks/nmt/data.ts (Ding dictionary from Debian's `trans-de-en`, read at run time; silver
 * POS/NER from npm taggers). Presets: configs/nmt/quick.yaml (minutes on a laptop CPU) and
 * configs/nmt/paper.yaml (the paper's sizes). See tasks/nmt/README.md.
 * @module
 */

import { loadCheckpoint } from "../../nn/checkpoint.ts";
import { saveController } from "../../rl/controller_file.ts";
import { formatDuration } from "../../run/progress.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { openSession } from "../../run/session.ts";
import { GracefulStop } from "../../run/signals.ts";
import { linePlot, type Series } from "../../run/svg.ts";
import {
  buildNmtCorpus,
  DataMissingError,
  encodeCorpus,
  type EncodedCorpus,
  type NmtCorpus,
} from "./data.ts";
import { NmtTask } from "./task.ts";
import {
  autoLossProgress,
  type CurvePoint,
  METHOD_LABELS,
  type MethodContext,
  type MethodResult,
  NMT_METHODS,
  type NmtMethod,
  PAPER_PPL,
  runAutoLoss,
  runMethod,
} from "./train.ts";
import type { CommonOptions, Task } from "../registry.ts";
import { NMT_SCHEMA, type NmtConfig } from "./config.ts";
import { nmtWorkload } from "./profile.ts";

/** The corpus built and encoded from a config, with the time it took. */
export interface PreparedData {
  /** The text corpus (splits, stats, label quality). */
  corpus: NmtCorpus;
  /** BPE, vocabularies and ids. */
  encoded: EncodedCorpus;
  /** Seconds spent. */
  seconds: number;
}

/** Builds and encodes the corpus of `cfg`. */
export async function prepareData(cfg: NmtConfig): Promise<PreparedData> {
  const t0 = performance.now();
  const corpus = await buildNmtCorpus({
    path: cfg.data.path,
    seed: cfg.seed,
    maxWords: cfg.data.maxWords,
    limit: cfg.data.limit,
    shares: cfg.data.shares,
  });
  const encoded = encodeCorpus(corpus, {
    srcMerges: cfg.data.srcMerges,
    tgtMerges: cfg.data.tgtMerges,
    maxTokens: cfg.data.maxTokens,
  });
  return { corpus, encoded, seconds: (performance.now() - t0) / 1000 };
}

/** A plain description of the data (data.json and the summary). */
export function dataReport(d: PreparedData): Record<string, unknown> {
  const sizes = (k: "mt" | "pos" | "ner") => {
    const s = d.encoded.data[k];
    return { train: s.train.length, valid: s.valid.length, test: s.test.length };
  };
  const meanLen = (k: "mt" | "pos" | "ner", side: "src" | "tgt") => {
    const xs = d.encoded.data[k].train.map((e) => e[side].length);
    return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
  };
  return {
    source: "Ding dictionary (Debian trans-de-en), English -> German; POS/NER silver labels",
    ding: d.corpus.stats,
    sizes: { mt: sizes("mt"), pos: sizes("pos"), ner: sizes("ner") },
    vocab: {
      src: d.encoded.srcVocab.size,
      mt: d.encoded.tgtVocab.mt.size,
      pos: d.encoded.tgtVocab.pos.size,
      ner: d.encoded.tgtVocab.ner.size,
    },
    meanLength: {
      mtSrc: meanLen("mt", "src"),
      mtTgt: meanLen("mt", "tgt"),
      posSrc: meanLen("pos", "src"),
      nerSrc: meanLen("ner", "src"),
    },
    merges: { src: d.encoded.srcBpe.merges.length, tgt: d.encoded.tgtBpe.merges.length },
    labelQuality: d.corpus.quality,
    seconds: d.seconds,
  };
}

/** The task of a config over prepared data. */
export function taskFromConfig(cfg: NmtConfig, data: EncodedCorpus): NmtTask {
  return new NmtTask({
    data,
    model: cfg.model,
    batch: cfg.train.batch,
    lr: cfg.train.lr,
    clip: cfg.train.clip,
    valEvery: cfg.train.valEvery,
    evalBatch: cfg.train.evalBatch,
    totalBatches: cfg.train.batches,
    auxValLimit: cfg.data.auxValLimit,
    bucket: cfg.data.bucket,
  });
}

/** The method context of a config (with a progress/metrics hook writing to `dir`, if given). */
export function methodContext(cfg: NmtConfig, task: NmtTask, dir?: RunDir): MethodContext {
  const t0 = performance.now();
  return {
    task,
    seed: cfg.seed,
    batches: cfg.train.batches,
    finetuneAt: cfg.methods.finetuneAt,
    dwaTemperature: cfg.methods.dwaTemperature,
    ppo: {
      args: {
        learningRate: cfg.ppo.lr,
        gamma: cfg.ppo.gamma,
        gaeLambda: cfg.ppo.gaeLambda,
        hidden: [cfg.ppo.hidden],
        updateEpochs: cfg.ppo.epochs,
        numMinibatches: cfg.ppo.minibatches,
        entCoef: cfg.ppo.entCoef,
        clipCoef: cfg.ppo.clip,
      },
      rewardC: cfg.ppo.rewardC,
      rewardK: cfg.ppo.rewardK,
    },
    decode: cfg.decode,
    onValidation: dir
      ? async (p: CurvePoint, method: NmtMethod) => {
        await dir.appendMetrics({ method, ...p });
        console.log(validationLine(p, method, t0));
      }
      : undefined,
  };
}

function validationLine(p: CurvePoint, method: NmtMethod, t0: number): string {
  const at = formatDuration((performance.now() - t0) / 1000);
  return `[${at}] ${method.padEnd(8)} epoch ${p.epoch.toFixed(2).padStart(6)}  val ppl ${
    p.ppl.toFixed(2).padStart(8)
  }  pos ${p.valPos.toFixed(3)}  ner ${p.valNer.toFixed(3)}  updates ${p.updates.join("/")}`;
}

/**
 * Runs methods of `compare nmt` on the workers (dist/learner.ts, one job each, all at once) over
 * the corpus `data` built from `cfg`; the results come back in request order.
 */
export type NmtMethodExec = (
  methods: NmtMethod[],
  cfg: NmtConfig,
  data: PreparedData,
) => Promise<MethodResult[]>;

/** The learner of `--workers` as `compare nmt` uses it. */
export interface NmtWorkers {
  /** Methods on the workers. */
  nmtMethods: NmtMethodExec;
  /** Counters, printed at the end. */
  stats: unknown;
  /** Closes the connection. */
  close(): Promise<void>;
}

/**
 * With `--workers`, connects the learner side of dist/ for the run at `runPath` (the NATS client
 * is loaded, and fetched, only then, through a computed specifier); null without it.
 */
async function connectNmtWorkers(
  opts: CommonOptions,
  cfg: NmtConfig,
  runPath: string,
): Promise<NmtWorkers | null> {
  if (!opts.workers) return null;
  const dist = new URL("../../dist/learner.ts", import.meta.url).href;
  return await (await import(dist) as typeof import("../../dist/learner.ts")).connectLearner({
    ...opts.workers,
    task: "nmt",
    config: cfg as unknown as Record<string, unknown>,
    runName: runPath.split(/[\\/]/).filter(Boolean).pop()!,
  });
}

// ---------------------------------------------------------------- reports

/** Validation perplexity vs epoch for each method (paper Fig. 3L). */
export function pplPlot(results: readonly MethodResult[]): string {
  const series: Series[] = results.map((r) => ({
    name: r.label,
    x: r.curve.map((p) => p.epoch),
    y: r.curve.map((p) => p.ppl),
  }));
  return linePlot(series, {
    title: "MT validation perplexity (ours; paper Fig. 3L)",
    xLabel: "epochs (training batches / MT batches per epoch)",
    yLabel: "validation perplexity",
    logY: true,
  });
}

/**
 * The controller's probabilities of MT, POS and NER over training (paper Fig. 3M), averaged over
 * windows of `window` steps.
 */
export function probsPlot(probs: readonly number[][], window: number, perEpoch: number): string {
  const xs: number[] = [];
  const ys: number[][] = [[], [], []];
  for (let s = 0; s < probs.length; s += window) {
    const part = probs.slice(s, s + window);
    xs.push((s + part.length / 2) / perEpoch);
    for (let a = 0; a < 3; a++) ys[a].push(part.reduce((acc, p) => acc + p[a], 0) / part.length);
  }
  return linePlot(
    ["MT", "POS", "NER"].map((name, a) => ({ name, x: xs, y: ys[a] })),
    {
      title: "AutoLoss controller: action probabilities (paper Fig. 3M)",
      xLabel: "epochs",
      yLabel: "probability",
    },
  );
}

const fmt = (v: number, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : "-");

/** The results table (markdown). */
export function resultsTable(results: readonly MethodResult[]): string {
  const rows = [
    "| Method | Paper val PPL (their data) | Final val PPL | Best val PPL (epoch) | Test PPL | Test BLEU greedy | Test BLEU beam | Updates MT/POS/NER | Train time |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of results) {
    const paper = PAPER_PPL[r.method];
    rows.push(
      `| ${r.label} | ${paper === undefined ? "-" : paper.toFixed(2)} | ${fmt(r.finalPpl)} | ${
        fmt(r.bestPpl)
      } (${fmt(r.bestEpoch, 1)}) | ${fmt(r.test.ppl)} | ${fmt(r.test.bleuGreedy)} | ${
        fmt(r.test.bleuBeam)
      } | ${r.updates.join("/")} | ${formatDuration(r.trainSeconds)} |`,
    );
  }
  return rows.join("\n");
}

function dataMarkdown(report: Record<string, unknown>): string {
  const r = report as {
    ding: { dingPairs: number; withinLength: number; used: number };
    sizes: Record<string, { train: number; valid: number; test: number }>;
    vocab: Record<string, number>;
    labelQuality: {
      posCompared: number;
      posAgreement: number;
      nerEntityTokenFraction: number;
      nerSentencesWithEntity: number;
      nerEntities: Record<string, number>;
    };
  };
  const q = r.labelQuality;
  const split = (k: string) => `${r.sizes[k].train}/${r.sizes[k].valid}/${r.sizes[k].test}`;
  return [
    `Data: ${r.ding.dingPairs} Ding sentence pairs, ${r.ding.withinLength} within the length ` +
    `limit, ${r.ding.used} used. Train/valid/test: MT ${split("mt")}, POS ${split("pos")}, ` +
    `NER ${split("ner")}. Vocabularies: source ${r.vocab.src}, German ${r.vocab.mt}, ` +
    `POS ${r.vocab.pos}, NER ${r.vocab.ner} (4 specials each).`,
    "",
    `Silver-label checks: wink UPOS agrees with compromise's coarse tags on ` +
    `${(100 * q.posAgreement).toFixed(1)}% of ${q.posCompared} comparable POS training tokens; ` +
    `${(100 * q.nerEntityTokenFraction).toFixed(1)}% of NER training tokens are inside an ` +
    `entity (${q.nerSentencesWithEntity} sentences with one; ` +
    `${Object.entries(q.nerEntities).map(([k, v]) => `${k} ${v}`).join(", ")}).`,
  ].join("\n");
}

/** Saves the BPE models and vocabularies with the run. */
async function saveTokenizers(dir: RunDir, data: EncodedCorpus): Promise<void> {
  await dir.writeFile("bpe_src.json", JSON.stringify(data.srcBpe.toJson()) + "\n");
  await dir.writeFile("bpe_tgt.json", JSON.stringify(data.tgtBpe.toJson()) + "\n");
  await dir.writeFile(
    "vocab.json",
    JSON.stringify({
      src: data.srcVocab.tokens,
      mt: data.tgtVocab.mt.tokens,
      pos: data.tgtVocab.pos.tokens,
      ner: data.tgtVocab.ner.tokens,
    }) + "\n",
  );
}

/** Reports a missing dictionary as a user error (exit 1) instead of a stack trace. */
async function guard(run: () => Promise<number>): Promise<number> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof DataMissingError) {
      console.error(`error: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

/**
 * The methods a resumed `compare nmt` run already finished (summary.json is rewritten after
 * each method), and metrics.jsonl trimmed to their lines (the interrupted method starts over).
 */
async function finishedMethods(dir: RunDir): Promise<MethodResult[]> {
  const text = await Deno.readTextFile(dir.file("summary.json")).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  });
  const done: MethodResult[] = text ? JSON.parse(text).results ?? [] : [];
  const names = new Set(done.map((r) => r.method));
  const rows = await dir.readMetrics();
  const kept = rows.filter((r) => typeof r.method !== "string" || names.has(r.method as NmtMethod));
  if (kept.length !== rows.length) {
    await dir.writeFile("metrics.jsonl", kept.map((r) => JSON.stringify(r) + "\n").join(""));
  }
  return done;
}

/**
 * `compare nmt`: every enabled method, curves, controller plot and the table. With `--resume`,
 * the methods finished before the interruption are kept and the others run (each method starts
 * from the same seeded initialization, so the order of runs does not change the results).
 */
export function compareNmt(opts: CommonOptions): Promise<number> {
  return guard(async () => {
    const t0 = performance.now();
    const { cfg, dir, resumed } = await openSession(opts, NMT_SCHEMA);
    console.log(`nmt compare: run directory ${dir.path}${resumed ? " (resumed)" : ""}`);
    const finished = resumed ? await finishedMethods(dir) : [];
    const data = await prepareData(cfg);
    const report = dataReport(data);
    await dir.writeFile("data.json", JSON.stringify(report, null, 2) + "\n");
    await saveTokenizers(dir, data.encoded);
    console.log(dataMarkdown(report));
    const task = taskFromConfig(cfg, data.encoded);
    const results: MethodResult[] = [];
    // --workers: the methods not finished before are jobs, all published at once; their results
    // are then taken in the local order, their validation rows written as the local run does.
    let workers: NmtWorkers | null = null;
    try {
      workers = await connectNmtWorkers(opts, cfg, dir.path);
      const ctx = methodContext(cfg, task, dir);
      const todo = NMT_METHODS.filter((m) =>
        cfg.methods[m] && !finished.some((r) => r.method === m)
      );
      const remote = new Map<NmtMethod, MethodResult>();
      if (workers) {
        const got = await workers.nmtMethods(todo, cfg, data);
        todo.forEach((m, i) => remote.set(m, got[i]));
      }
      for (const m of NMT_METHODS) {
        if (!cfg.methods[m]) continue;
        const before = finished.find((r) => r.method === m);
        if (before) {
          results.push(before);
          console.log(`${METHOD_LABELS[m]}: best val ppl ${fmt(before.bestPpl)} (finished before)`);
          continue;
        }
        let r = remote.get(m);
        if (r) {
          for (const p of r.curve) {
            await dir.appendMetrics({ method: m, ...p });
            console.log(validationLine(p, m, t0));
          }
        } else r = await runMethod(m, ctx);
        results.push(r);
        console.log(
          `${METHOD_LABELS[m]}: best val ppl ${fmt(r.bestPpl)}, test BLEU ${
            fmt(r.test.bleuBeam)
          } ` +
            `(beam) / ${fmt(r.test.bleuGreedy)} (greedy), ${formatDuration(r.trainSeconds)}`,
        );
        await writeCompare(dir, cfg, report, results, (performance.now() - t0) / 1000);
      }
    } finally {
      task.dispose();
      await workers?.close();
    }
    if (workers) console.log(`workers: ${JSON.stringify((workers as NmtWorkers).stats)}`);
    console.log(`\n${resultsTable(results)}\n\nwrote ${dir.file("summary.md")}`);
    return 0;
  });
}

async function writeCompare(
  dir: RunDir,
  cfg: NmtConfig,
  report: Record<string, unknown>,
  results: MethodResult[],
  seconds: number,
): Promise<void> {
  await dir.writeFile("val_ppl.svg", pplPlot(results));
  const auto = results.find((r) => r.method === "autoloss");
  const perEpoch = results[0]?.curve.length
    ? results[0].curve[results[0].curve.length - 1].batches /
      Math.max(results[0].curve[results[0].curve.length - 1].epoch, 1e-9)
    : 1;
  if (auto?.probs?.length) {
    await dir.writeFile(
      "controller_probs.svg",
      probsPlot(auto.probs, cfg.train.valEvery, perEpoch),
    );
  }
  const md = [
    "# nmt: multi-task translation (MT + POS + NER) under AutoLoss",
    "",
    `Seed ${cfg.seed}; ${cfg.train.batches} training batches per method (batch ${cfg.train.batch}); ` +
    `total wall time ${formatDuration(seconds)}.`,
    "",
    resultsTable(results),
    "",
    "The paper's perplexities come from its own data (WIT3 TED de-en, TIGER, GermEval 2014; " +
    "German -> English, gold tags). Ours come from the Ding dictionary, English -> German, with " +
    "silver POS/NER labels and a far smaller model and budget: compare the methods with each " +
    "other, not with the paper's numbers. Test numbers use the parameters at the best " +
    "validation perplexity. BLEU is corpus BLEU-4 on word tokens of the German test split.",
    "",
    dataMarkdown(report),
    "",
    "Plots: val_ppl.svg (Fig. 3L)" +
    (auto?.probs?.length ? ", controller_probs.svg (Fig. 3M)" : "") +
    ".",
  ].join("\n");
  await dir.writeSummary({ config: cfg, data: report, results, seconds }, md);
}

/**
 * `train nmt`: one AutoLoss run; saves the controller and the tokenizers. Checkpoints
 * (checkpoint.safetensors: model, optimizers, data position, controller, sampler, curve) every
 * `train.checkpointEvery` batches; `--resume DIR` continues exactly where the last one left off,
 * and Ctrl-C stops after the current segment with a checkpoint.
 */
export function trainNmt(opts: CommonOptions): Promise<number> {
  return guard(async () => {
    const t0 = performance.now();
    const { cfg, dir, resumed } = await openSession(opts, NMT_SCHEMA);
    console.log(
      `nmt train (AutoLoss, online PPO): run directory ${dir.path}${resumed ? " (resumed)" : ""}`,
    );
    const path = dir.file("checkpoint.safetensors");
    const resume = resumed ? await loadCheckpoint(path).catch(noCheckpoint) : undefined;
    if (resumed) {
      // Metrics rewrite: only the points the checkpoint holds stay (the rest come again).
      const points = resume ? autoLossProgress(resume).points : 0;
      const rows = (await dir.readMetrics()).slice(0, points);
      await dir.writeFile("metrics.jsonl", rows.map((r) => JSON.stringify(r) + "\n").join(""));
      console.log(
        resume
          ? `resuming after segment ${autoLossProgress(resume).segments}`
          : "no checkpoint yet: starting over",
      );
    }
    const data = await prepareData(cfg);
    const report = dataReport(data);
    await dir.writeFile("data.json", JSON.stringify(report, null, 2) + "\n");
    await saveTokenizers(dir, data.encoded);
    console.log(dataMarkdown(report));
    const task = taskFromConfig(cfg, data.encoded);
    const stop = new GracefulStop("segment");
    try {
      const ctx = methodContext(cfg, task, dir);
      const r = await runAutoLoss(ctx, {
        checkpoint: {
          path,
          everySegments: Math.ceil(cfg.train.checkpointEvery / cfg.train.valEvery),
          resume,
          shouldStop: () => stop.requested,
        },
        onActor: async (actor, ppo) => {
          await saveController(dir.file("controller.json"), actor, {
            featureNames: task.featureNames,
            actions: task.actions.map((a) => a.name),
            provenance: {
              task: "nmt",
              seed: cfg.seed,
              episodes: ppo.updates,
              reward: null,
              mode: "online PPO",
            },
          });
        },
      });
      if (!r) {
        console.error(`stopped with a checkpoint; continue with --resume ${dir.path}`);
        return 130;
      }
      await writeCompare(dir, cfg, report, [r], (performance.now() - t0) / 1000);
      console.log(`\n${resultsTable([r])}\n\nwrote ${dir.file("controller.json")}`);
    } finally {
      task.dispose();
      stop.done();
    }
    return 0;
  });
}

/** A missing checkpoint (a run stopped before its first one) is no error on resume. */
function noCheckpoint(err: unknown): undefined {
  if (err instanceof Deno.errors.NotFound) return undefined;
  throw err;
}

/** The `nmt` task (registered in tasks/mod.ts). */
export const NMT_TASK: Task = {
  name: "nmt",
  description: "multi-task translation MT + POS + NER, Ding en->de (paper sections 4.3, 5.1.3)",
  train: trainNmt,
  compare: compareNmt,
  profile: nmtWorkload,
};
