/**
 * The `classifier` task's commands (registered in tasks/mod.ts):
 *
 * - `train classifier mnist|fashion` trains the scoring CNN of tasks/classifier/model.ts
 *   (configs/classifier/{quick,paper}.yaml): test-set evaluation every `eval.every` steps,
 *   checkpoints every `checkpoint.every` steps and on Ctrl-C, `--resume runs/<id>`,
 *   metrics.jsonl, summary.json/md and an accuracy curve. The weights with the best test accuracy
 *   are kept in `best.safetensors`; with `--set export=true` they are copied to
 *   `weights/<dataset>_classifier.safetensors` at the end.
 * - `eval classifier mnist|fashion [RUNDIR]` scores the committed weights (or a run's best
 *   ones): test accuracy and the inception score of the real test images.
 * @module
 */

import { join } from "node:path";
import { ConfigError } from "../../run/config.ts";
import { formatDuration, Progress } from "../../run/progress.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { openSession } from "../../run/session.ts";
import { onInterrupt } from "../../run/signals.ts";
import { linePlot } from "../../run/svg.ts";
import { tensor } from "../../tensor/functional.ts";
import type { Tensor } from "../../tensor/tensor.ts";
import { init } from "../../gpu/backend.ts";
import type { CommonOptions, Task } from "../registry.ts";
import { inceptionScore, loadScoringClassifier } from "./inception_score.ts";
import { ClassifierTrainer, evaluateClassifier, type Evaluation } from "./task.ts";
import { loadClassifierData, parseDataset } from "./data.ts";
import { describeArchitecture, saveClassifierWeights, weightsUrl } from "./model.ts";
import { type ClassifierConfig, classifierSchema } from "./config.ts";

/** How the command line is shown in metadata. */
const PROG = "npx -y deno@2.9.6 run -A cli.ts";

/** The command line that `opts` came from (for metadata and the weights README). */
export function commandLine(opts: CommonOptions): string {
  const q = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`);
  const parts = [opts.command, opts.task, ...opts.args, "--preset", opts.preset];
  for (const c of opts.config) parts.push("--config", c);
  for (const s of opts.set) parts.push("--set", s);
  if (opts.seed !== undefined) parts.push("--seed", String(opts.seed));
  if (opts.out) parts.push("--out", opts.out);
  if (opts.resume) parts.push("--resume", opts.resume);
  return `${PROG} ${parts.map(q).join(" ")}`;
}

/** Numbers rounded for summaries. */
const r4 = (v: number) => Math.round(v * 1e4) / 1e4;

/** `train classifier mnist|fashion`: trains (or resumes) the scoring CNN. */
export async function trainClassifier(opts: CommonOptions): Promise<number> {
  if (opts.args.length > 1) {
    throw new ConfigError(`train classifier takes one dataset, got '${opts.args.join(" ")}'`);
  }
  const resume = opts.resume !== undefined;
  const dataset = opts.args.length || !resume ? parseDataset(opts.args[0]) : undefined;
  const { cfg, dir, resumed } = await openSession(
    resume ? opts : { ...opts, set: [...opts.set, `dataset=${dataset}`] },
    classifierSchema,
  );
  if (dataset && cfg.dataset !== dataset) {
    throw new ConfigError(`${dir.path} trained '${cfg.dataset}', not '${dataset}'`);
  }
  const [train, test] = await Promise.all([
    loadClassifierData(cfg.dataset, "train", cfg.train.limit),
    loadClassifierData(cfg.dataset, "test", cfg.eval.limit),
  ]);
  const trainer = new ClassifierTrainer(cfg, train);
  const ckptPath = dir.file("checkpoint.safetensors");
  const bestPath = dir.file("best.safetensors");
  let command = commandLine(opts);
  let best = { accuracy: -1, step: 0, epoch: 0, loss: NaN };
  let elapsedBefore = 0;
  if (resumed) {
    const exists = await Deno.stat(ckptPath).then(() => true, () => false);
    if (exists) {
      const m = await trainer.load(ckptPath);
      best = JSON.parse(m.best ?? JSON.stringify(best));
      elapsedBefore = Number(m.elapsed ?? 0);
      command = m.command ?? command;
      console.log(`resuming ${dir.path} at step ${trainer.step}/${trainer.totalSteps}`);
    } else {
      console.log(`resuming ${dir.path}: no checkpoint yet, starting over`);
    }
  }
  const total = trainer.totalSteps;
  const perEpoch = trainer.iterator.batchesPerEpoch;
  const evalEvery = cfg.eval.every > 0 ? cfg.eval.every : perEpoch;
  console.log(
    `classifier ${cfg.dataset}: ${describeArchitecture(trainer.model.arch)} ` +
      `(${trainer.model.numParameters().toLocaleString("en")} parameters); ${train.n} training ` +
      `images, ${total} steps of ${cfg.train.batchSize} (${perEpoch} per epoch); run ${dir.path}`,
  );
  const t0 = performance.now();
  const elapsed = () => elapsedBefore + (performance.now() - t0) / 1000;
  const meta = (): Record<string, string> => ({
    command,
    best: JSON.stringify(best),
    elapsed: String(elapsed()),
  });
  const saveCkpt = () => trainer.save(ckptPath, meta());

  let stop: "interrupt" | null = null;
  let stopped: () => void = () => {};
  const saved = new Promise<void>((r) => (stopped = r));
  const removeInterrupt = onInterrupt(async () => {
    stop = "interrupt";
    console.log("\ninterrupted: saving a checkpoint at the end of the current step...");
    await saved;
  });

  const evaluate = async () => {
    const ev = await evaluateClassifier(trainer.model, test, {
      batchSize: cfg.eval.batchSize,
      splits: cfg.eval.splits,
    });
    await dir.appendMetrics({
      step: trainer.step,
      epoch: r4(trainer.epoch),
      test_loss: r4(ev.loss),
      test_acc: r4(ev.accuracy),
      test_is: ev.inceptionScore ? r4(ev.inceptionScore.mean) : null,
      elapsed_s: Math.round(elapsed()),
    });
    if (ev.accuracy > best.accuracy) {
      best = { accuracy: ev.accuracy, step: trainer.step, epoch: r4(trainer.epoch), loss: ev.loss };
      await saveClassifierWeights(bestPath, trainer.model, weightsMetadata(ev));
    }
    return ev;
  };
  const weightsMetadata = (ev: Evaluation): Record<string, string> => ({
    dataset: cfg.dataset,
    test_accuracy: String(r4(ev.accuracy)),
    test_images: String(ev.n),
    ...(ev.inceptionScore
      ? {
        test_inception_score: `${ev.inceptionScore.mean.toFixed(3)} +- ${
          ev.inceptionScore.std.toFixed(3)
        } (${cfg.eval.splits} splits)`,
      }
      : {}),
    step: String(trainer.step),
    epoch: String(r4(trainer.epoch)),
    command,
    date: new Date().toISOString(),
    train_seconds: String(Math.round(elapsed())),
    recipe: JSON.stringify({ train: cfg.train, optim: cfg.optim, augment: cfg.augment }),
    seed: String(cfg.seed),
    run: dir.path,
  });

  const shown = (v: Record<string, number | undefined>) =>
    Object.fromEntries(
      Object.entries(v).filter((e): e is [string, number] => Number.isFinite(e[1])),
    );
  const progress = new Progress({ total, label: `classifier ${cfg.dataset}`, start: trainer.step });
  const last: { loss?: number; acc?: number; test?: number } = {};
  let pending: Tensor | null = null;
  try {
    while (trainer.step < total && !stop) {
      pending?.dispose();
      pending = trainer.trainStep();
      const s = trainer.step;
      if (s % cfg.log.every === 0 || s === total) {
        const lr = trainer.schedule(s - 1);
        const m = await trainer.readTrainMetrics();
        last.loss = m.loss;
        last.acc = m.accuracy;
        await dir.appendMetrics({
          step: s,
          epoch: r4(trainer.epoch),
          lr,
          loss: r4(m.loss),
          train_acc: r4(m.accuracy),
        });
      }
      if (s % evalEvery === 0 || s === total) {
        const ev = await evaluate();
        last.test = ev.accuracy;
        console.log(
          `\nstep ${s} epoch ${trainer.epoch.toFixed(2)}: test accuracy ${
            (100 * ev.accuracy).toFixed(2)
          }% loss ${ev.loss.toFixed(4)}` +
            (ev.inceptionScore ? ` IS ${ev.inceptionScore.mean.toFixed(3)}` : "") +
            ` (${formatDuration(elapsed())} elapsed)`,
        );
      }
      if (cfg.checkpoint.every > 0 && s % cfg.checkpoint.every === 0 && s < total) {
        await saveCkpt();
      }
      progress.update(s, shown(last));
      // Let signal handlers run between steps (a macrotask turn; about a millisecond).
      await new Promise((r) => setTimeout(r, 0));
    }
    pending?.dispose();
    pending = null;
    if (stop) {
      await saveCkpt();
      console.log(`checkpoint saved at step ${trainer.step}; continue with --resume ${dir.path}`);
      stopped();
      return 130;
    }
    progress.done(trainer.step, shown(last));
    await saveCkpt();
    await finish(dir, cfg, trainer, best, elapsed(), command, bestPath);
    return 0;
  } finally {
    pending?.dispose();
    removeInterrupt();
    trainer.dispose();
  }
}

/** Summary, accuracy curve and the optional export at the end of a run. */
async function finish(
  dir: RunDir,
  cfg: ClassifierConfig,
  trainer: ClassifierTrainer,
  best: { accuracy: number; step: number; epoch: number; loss: number },
  seconds: number,
  command: string,
  bestPath: string,
): Promise<void> {
  const records = await dir.readMetrics();
  const trainPts = records.filter((r) => typeof r.train_acc === "number");
  const testPts = records.filter((r) => typeof r.test_acc === "number");
  const last = testPts[testPts.length - 1] ?? {};
  const svg = linePlot([
    {
      name: "train (augmented, dropout)",
      x: trainPts.map((r) => r.step as number),
      y: trainPts.map((r) => r.train_acc as number),
    },
    {
      name: "test",
      x: testPts.map((r) => r.step as number),
      y: testPts.map((r) => r.test_acc as number),
    },
  ], { title: `${cfg.dataset} classifier accuracy`, xLabel: "step", yLabel: "accuracy" });
  await dir.writeFile("accuracy.svg", svg);
  const perEpoch = seconds / Math.max(trainer.epoch, 1e-9);
  let exported: string | null = null;
  if (cfg.export) {
    const dest = weightsUrl(cfg.dataset);
    await Deno.mkdir(new URL(".", dest), { recursive: true });
    await Deno.copyFile(bestPath, dest);
    exported = dest.pathname;
  }
  const summary = {
    task: "classifier",
    dataset: cfg.dataset,
    architecture: describeArchitecture(trainer.model.arch),
    parameters: trainer.model.numParameters(),
    steps: trainer.step,
    epochs: r4(trainer.epoch),
    final_test_accuracy: last.test_acc ?? null,
    final_test_inception_score: last.test_is ?? null,
    best_test_accuracy: r4(best.accuracy),
    best_step: best.step,
    wall_seconds: Math.round(seconds),
    seconds_per_epoch: Math.round(perEpoch),
    command,
    best_weights: join(dir.path, "best.safetensors"),
    exported,
  };
  const md = [
    `# ${cfg.dataset} scoring classifier`,
    "",
    `- architecture: ${summary.architecture} (${summary.parameters} parameters)`,
    `- steps: ${summary.steps} (${summary.epochs} epochs of batch ${cfg.train.batchSize})`,
    `- final test accuracy: ${
      typeof last.test_acc === "number" ? (100 * last.test_acc).toFixed(2) + "%" : "-"
    }`,
    `- best test accuracy: ${(100 * best.accuracy).toFixed(2)}% at step ${best.step}`,
    `- inception score of the test images (final model): ${last.test_is ?? "-"}`,
    `- wall time: ${formatDuration(seconds)} (${formatDuration(perEpoch)} per epoch)`,
    `- command: \`${command}\``,
    `- best weights: ${summary.best_weights}${exported ? `, exported to ${exported}` : ""}`,
    "",
    "![accuracy](accuracy.svg)",
  ].join("\n");
  await dir.writeSummary(summary, md);
  console.log(
    `done: best test accuracy ${(100 * best.accuracy).toFixed(2)}% (step ${best.step}); ` +
      `${formatDuration(seconds)} total` + (exported ? `; exported to ${exported}` : ""),
  );
}

/** `eval classifier <dataset> [RUNDIR]`: accuracy and test-image IS of committed or run weights. */
/** `eval classifier`: test accuracy and inception score of real images for saved weights. */
export async function evalClassifier(opts: CommonOptions): Promise<number> {
  if (opts.args.length > 2) {
    throw new ConfigError(`eval classifier takes a dataset and an optional run directory`);
  }
  const dataset = parseDataset(opts.args[0]);
  await init();
  const path = opts.args[1] ? join(opts.args[1], "best.safetensors") : weightsUrl(dataset).pathname;
  const scorer = await loadScoringClassifier(dataset, { path });
  const test = await loadClassifierData(dataset, "test");
  const x = tensor(test.images, [test.n, 1, test.h, test.w]);
  try {
    const ev = await evaluateClassifier(scorer.model, test, { splits: 5 });
    const is10 = await inceptionScore(scorer, x, { splits: 10 });
    const is5 = ev.inceptionScore!;
    console.log([
      path,
      `test accuracy: ${(100 * ev.accuracy).toFixed(2)}% (${test.n} images)`,
      `inception score of the test images: ${is5.mean.toFixed(3)} +- ${is5.std.toFixed(3)} ` +
      `(5 splits), ${is10.mean.toFixed(3)} +- ${is10.std.toFixed(3)} (10 splits)`,
    ].join("\n"));
  } finally {
    x.dispose();
    scorer.model.dispose();
  }
  return 0;
}

/** The `classifier` task (registered in tasks/mod.ts). */
export const CLASSIFIER_TASK: Task = {
  name: "classifier",
  description: "train the CNN that scores GAN samples (mnist|fashion; inception score network)",
  train: trainClassifier,
  eval: evalClassifier,
};
