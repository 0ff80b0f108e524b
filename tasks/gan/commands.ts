/**
 * The `gan` task's commands ({@link GAN_TASK}, registered in tasks/mod.ts):
 *
 * - `train gan`: trains a DCGAN on MNIST under an AutoLoss controller: online PPO in segments
 *   (`controller.algorithm: ppo`, the `quick` preset), episodic REINFORCE as the authors' code
 *   (`reinforce`), or a fixed schedule (`fixed`). Shows progress (step, D and G loss, IS, share of
 *   G actions, ETA) and writes `runs/<id>/`: config.yaml, metrics.jsonl, samples.png (8x8 grid,
 *   also kept per checkpoint in samples/), is.svg, controller.json, checkpoint.safetensors (GAN,
 *   optimizer, controller, RNG and data-iterator state), summary.json/.md. `--resume runs/<id>`
 *   continues from the last checkpoint; Ctrl-C stops at the next step, keeping that checkpoint.
 * - `baseline gan`: the same with the fixed schedule `controller.schedule`.
 * - `compare gan`: tasks/gan/experiments.ts; `transfer`, `eval gan`: tasks/gan/transfer.ts
 *   (registered here).
 *
 * Shared plumbing (context, run book, plots): tasks/gan/run.ts.
 * @module
 */

import { loadCheckpoint } from "../../nn/checkpoint.ts";
import { controllerToJson, saveController } from "../../rl/controller_file.ts";
import { UserError } from "../../util/errors.ts";
import { formatDuration } from "../../run/progress.ts";
import type { RunDir } from "../../run/run_dir.ts";
import { openSession } from "../../run/session.ts";
import type { CommonOptions, Task } from "../registry.ts";
import type { GanTask } from "./task.ts";
import { formatIs } from "./status.ts";
import { GAN_SCHEMA, type GanConfig } from "./config.ts";
import { ganSchedule, type LoopStats, mergeStats, runFixed, saveGanCheckpoint } from "./driver.ts";
import { type EpisodeLog, type EpisodePlay, EpisodicReinforce, remotePlay } from "./episodic.ts";
import type { GanStatus } from "./status.ts";
import { OnlinePpo } from "./online_ppo.ts";
import { describeArch } from "./model.ts";
import {
  archOf,
  finalIs,
  fmt,
  type GanContext,
  type IsPoint,
  loadContext,
  loopNote,
  makeTask,
  onlinePpoOptions,
  readStatus,
  requireSegment,
  RunBook,
} from "./run.ts";
import { compare, connectGanWorkers, type GanWorkers } from "./experiments.ts";
import { evaluate, transfer } from "./transfer.ts";
import { ganWorkload } from "./profile.ts";

// ---------------------------------------------------------------- train

async function train(opts: CommonOptions, forceFixed = false): Promise<number> {
  const { cfg, dir, resumed } = await openSession(opts, GAN_SCHEMA, "gan");
  if (forceFixed) cfg.controller.algorithm = "fixed";
  const log = (s: string) => console.log(s);
  log(`run directory: ${dir.path}${resumed ? " (resumed)" : ""}`);
  if (cfg.note) log(`preset note: ${cfg.note}`);
  if (opts.workers && cfg.controller.algorithm !== "reinforce") {
    throw new UserError(
      `${opts.command} gan --workers runs the episodes of the episodic REINFORCE controller on ` +
        `the workers (--set controller.algorithm=reinforce; --set controller.reinforce.batch=N ` +
        `plays N episodes per update at once); controller.algorithm=` +
        `${cfg.controller.algorithm} ` +
        (cfg.controller.algorithm === "ppo"
          ? `trains online, one GAN step after another: nothing to run in parallel`
          : `has no controller to train`),
    );
  }
  if (cfg.controller.algorithm === "ppo") requireSegment(cfg, cfg.train.steps, "train.steps");
  const ctx = await loadContext(cfg, log);
  const length = cfg.controller.algorithm === "reinforce"
    ? `${cfg.controller.reinforce.episodes} episodes of up to ${cfg.controller.reinforce.episodeSteps} steps`
    : `${cfg.train.steps} steps`;
  log(
    `DCGAN ${describeArch(archOf(cfg))}, batch ${cfg.optim.batchSize}, ${length}, ` +
      `controller: ${
        cfg.controller.algorithm === "fixed"
          ? `fixed ${cfg.controller.schedule}`
          : cfg.controller.algorithm
      } (${cfg.features.set} features)`,
  );
  try {
    if (cfg.controller.algorithm === "ppo") return await trainOnline(cfg, dir, resumed, ctx, log);
    if (cfg.controller.algorithm === "reinforce") {
      return await trainEpisodic(opts, cfg, dir, resumed, ctx, log);
    }
    return await trainFixed(cfg, dir, resumed, ctx, log);
  } finally {
    ctx.classifier?.dispose();
  }
}

/** Drops episode rows from episode `episodes` on (redone after resuming). */
async function trimEpisodes(dir: RunDir, episodes: number): Promise<Record<string, unknown>[]> {
  const rows = (await dir.readMetrics()).filter((r) =>
    r.kind !== "episode" || (r.episode as number) < episodes
  );
  await dir.writeFile("metrics.jsonl", rows.map((r) => JSON.stringify(r) + "\n").join(""));
  return rows;
}

/** Drops metrics rows past `step` (work redone after resuming from a checkpoint). */
async function trimMetrics(dir: RunDir, step: number): Promise<Record<string, unknown>[]> {
  const rows = (await dir.readMetrics()).filter((r) =>
    typeof r.step !== "number" || r.step <= step
  );
  await dir.writeFile("metrics.jsonl", rows.map((r) => JSON.stringify(r) + "\n").join(""));
  return rows;
}

function curveFrom(rows: Record<string, unknown>[]): IsPoint[] {
  return rows.filter((r) => r.kind === "is" && typeof r.is === "number")
    .map((r) => ({ step: r.step as number, is: r.is as number }));
}

async function finishRun(
  book: RunBook,
  task: GanTask,
  ctx: GanContext,
  cfg: GanConfig,
  extra: Record<string, unknown>,
  log: (s: string) => void,
  progressAt = task.t,
): Promise<void> {
  const fin = await finalIs(task, ctx, cfg, cfg.is.finalSamples);
  if (fin && book.unit === "step") book.curve.push({ step: task.t, is: fin.mean });
  await book.pictures(task);
  const minutes = book.minutes;
  const summary = {
    task: "gan",
    steps: task.t,
    minutes,
    finalIs: fin ? { mean: fin.mean, std: fin.std, samples: fin.samples } : null,
    realIs: ctx.realIs ? { mean: ctx.realIs.mean, std: ctx.realIs.std } : null,
    classifier: ctx.classifierNote,
    arch: archOf(cfg),
    ...extra,
  };
  const md = [
    `# train gan`,
    "",
    `- steps: ${task.t} of ${cfg.train.steps} in ${minutes.toFixed(1)} min`,
    `- final IS (${fin?.samples ?? 0} samples, ${cfg.is.splits} splits): ${fmt(fin?.mean)} +- ${
      fmt(fin?.std)
    }`,
    `- real test images: ${fmt(ctx.realIs?.mean)} (${ctx.classifierNote})`,
    `- DCGAN: ${describeArch(archOf(cfg))}, batch ${cfg.optim.batchSize}`,
    ...Object.entries(extra).map(([k, v]) =>
      `- ${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`
    ),
    "",
    "samples.png: 64 samples from fixed noise; is.svg: IS vs step.",
  ].join("\n");
  await book.dir.writeSummary(summary, md);
  book.done(progressAt);
  log(
    `done: ${task.t} steps in ${formatDuration(minutes * 60)}; final IS ${fmt(fin?.mean)} +- ${
      fmt(fin?.std)
    } on ${fin?.samples ?? 0} samples (real images: ${fmt(ctx.realIs?.mean)}); ${book.dir.path}`,
  );
}

async function trainOnline(
  cfg: GanConfig,
  dir: RunDir,
  resumed: boolean,
  ctx: GanContext,
  log: (s: string) => void,
): Promise<number> {
  const p = cfg.controller.ppo;
  const task = makeTask(cfg, ctx, { isEvery: 0 });
  const trainer = new OnlinePpo(task, onlinePpoOptions(cfg, cfg.controller.seed));
  const ckpt = dir.file("checkpoint.safetensors");
  const segmentsPerCkpt = Math.max(1, Math.ceil(cfg.train.checkpointEvery / p.segment));
  const saveActor = () =>
    saveController(dir.file("controller.json"), trainer.actor, {
      actions: ["G", "D"],
      provenance: {
        task: "gan",
        seed: cfg.controller.seed,
        episodes: trainer.segments,
        reward: null,
        algorithm: "ppo-online",
        steps: task.t,
      },
    });
  let book: RunBook | null = null;
  let healthyNonfinite = 0;
  let code = 0;
  try {
    if (resumed) {
      trainer.restore(await loadCheckpoint(ckpt));
      healthyNonfinite = (await readStatus(task)).nonfinite;
      const rows = await trimMetrics(dir, task.t);
      book = new RunBook(dir, cfg, cfg.train.steps, task.t);
      book.curve.push(...curveFrom(rows));
      log(`resumed at step ${task.t} (segment ${trainer.segments})`);
    } else {
      task.reset(cfg.seed);
      task.evaluateIs();
      await trainer.start();
      await trainer.save(ckpt);
      book = new RunBook(dir, cfg, cfg.train.steps, 0);
      book.curve.push({ step: 0, is: trainer.isHistory[0] });
      await book.log({ kind: "is", step: 0, is: trainer.isHistory[0] });
    }
    const loops: LoopStats[] = [];
    while (task.t + p.segment <= cfg.train.steps && !book.shouldStop()) {
      const r = await trainer.segment({
        onStatus: book.onStatus,
        shouldStop: book.shouldStop,
        nonfiniteBefore: healthyNonfinite,
      });
      const reason = "aborted" in r
        ? r.aborted
        : r.status.nonfinite > healthyNonfinite
        ? "nonfinite"
        : r.status.run > cfg.controller.maxRun
        ? "collapse"
        : null;
      if (reason === "stop") break;
      if (reason) {
        const at = task.t;
        const ok = await trainer.rollback(ckpt);
        await book.log({ kind: "event", event: "rollback", reason, at_step: at, to_step: task.t });
        log(`\n${reason} detected at step ${at}: rolled back to step ${task.t}, controller reset`);
        if (!ok) {
          log(`stopping: ${cfg.controller.maxRollbacks} rollbacks did not get past the problem`);
          code = 1;
          break;
        }
        healthyNonfinite = (await readStatus(task)).nonfinite;
        const keep = book.curve.filter((c) => c.step <= task.t);
        book.curve.splice(0, book.curve.length, ...keep);
        continue;
      }
      if ("aborted" in r) continue;
      loops.push(r.loop);
      healthyNonfinite = r.status.nonfinite;
      book.curve.push({ step: r.step, is: r.is });
      book.onStatus(task.t, r.status);
      await book.log({
        kind: "is",
        step: r.step,
        segment: r.segment,
        is: r.is,
        is_std: r.status.isStd,
        gen_cost: r.status.genCost,
        disc_cost: r.status.discCost,
        d_accuracy: r.status.dAccuracy,
        g_share_segment: r.gShare,
        g_share_total: r.status.gCount / Math.max(task.t, 1),
        reward: r.reward,
        ppo: r.ppo,
        loop: loopNote(r.loop),
        minutes: book.minutes,
      });
      if (trainer.segments % segmentsPerCkpt === 0 || task.t + p.segment > cfg.train.steps) {
        await trainer.save(ckpt);
        await book.pictures(task);
        await saveActor();
      }
    }
    const stopped = book.stopRequested ? "interrupted" : book.overBudget ? "time budget" : null;
    if (stopped) {
      log(
        `\n${stopped}: stopped at step ${task.t}; the last checkpoint is at a segment boundary ` +
          `(resume with --resume ${dir.path})`,
      );
    }
    const all = mergeStats(loops);
    await finishRun(book, task, ctx, cfg, {
      controller: "online PPO",
      segments: trainer.segments,
      rollbacks: trainer.rollbacks,
      stopped: stopped ?? "completed",
      gShare: (await readStatus(task)).gCount / Math.max(task.t, 1),
      pipeline: loopNote(all),
    }, log);
    await saveActor();
    return code;
  } finally {
    book?.close(task.t);
    trainer.dispose();
    task.dispose();
  }
}

async function trainFixed(
  cfg: GanConfig,
  dir: RunDir,
  resumed: boolean,
  ctx: GanContext,
  log: (s: string) => void,
): Promise<number> {
  const schedule = ganSchedule(cfg.controller.schedule);
  const task = makeTask(cfg, ctx);
  const ckpt = dir.file("checkpoint.safetensors");
  let book: RunBook | null = null;
  let code = 0;
  try {
    if (resumed) {
      task.loadCheckpoint(await loadCheckpoint(ckpt));
      const rows = await trimMetrics(dir, task.t);
      book = new RunBook(dir, cfg, cfg.train.steps, task.t);
      book.curve.push(...curveFrom(rows));
      log(`resumed at step ${task.t}`);
    } else {
      task.reset(cfg.seed);
      await saveGanCheckpoint(ckpt, task, {}, { kind: "fixed" });
      book = new RunBook(dir, cfg, cfg.train.steps, 0);
    }
    const before = (await readStatus(task)).nonfinite;
    const loops: LoopStats[] = [];
    const every = cfg.train.checkpointEvery;
    while (task.t < cfg.train.steps && !book.shouldStop()) {
      const steps = Math.min(every - (task.t % every), cfg.train.steps - task.t);
      const r = await runFixed(task, schedule, {
        steps,
        readEvery: cfg.train.logEvery,
        onStatus: (t, s) => {
          book!.onStatus(t, s);
          if (cfg.is.every > 0 && t % cfg.is.every === 0) book!.curve.push({ step: t, is: s.is });
        },
        shouldStop: book.shouldStop,
        nonfiniteBefore: before,
      });
      loops.push(r.stats);
      if (r.aborted === "stop") break;
      if (r.aborted) {
        await book.log({ kind: "event", event: r.aborted, at_step: task.t });
        log(
          `\n${r.aborted} at step ${task.t}: a fixed schedule has no controller to reset; stopping`,
        );
        code = 1;
        break;
      }
      const s = r.status!;
      await book.log({
        kind: "is",
        step: task.t,
        is: s.is,
        is_std: s.isStd,
        gen_cost: s.genCost,
        disc_cost: s.discCost,
        d_accuracy: s.dAccuracy,
        g_share_total: s.gCount / Math.max(task.t, 1),
        loop: loopNote(r.stats),
        minutes: book.minutes,
      });
      await saveGanCheckpoint(ckpt, task, {}, { kind: "fixed" });
      await book.pictures(task);
    }
    await finishRun(book, task, ctx, cfg, {
      controller: schedule.name,
      pipeline: loopNote(mergeStats(loops)),
    }, log);
    return code;
  } finally {
    book?.close(task.t);
    task.dispose();
  }
}

async function trainEpisodic(
  opts: CommonOptions,
  cfg: GanConfig,
  dir: RunDir,
  resumed: boolean,
  ctx: GanContext,
  log: (s: string) => void,
): Promise<number> {
  const r = cfg.controller.reinforce;
  const task = makeTask(cfg, ctx, { totalSteps: r.episodeSteps });
  const trainer = new EpisodicReinforce(task, {
    episodeSteps: r.episodeSteps,
    patience: r.patience,
    args: {
      learningRate: r.lr,
      baselineDecay: r.baselineDecay,
      advantageClip: { kind: "magnitude", lo: 1, hi: 20 },
      stepReward: null,
    },
    c: r.rewardC,
    hidden: r.hidden,
    seed: cfg.controller.seed,
  });
  const ckpt = dir.file("checkpoint.safetensors");
  if (resumed) {
    trainer.restore(await loadCheckpoint(ckpt));
    log(`resumed at episode ${trainer.episodes}`);
  }
  const book = new RunBook(dir, cfg, r.episodes, trainer.episodes, "episode");
  const startEpisodes = trainer.episodes;
  if (resumed) {
    const rows = await trimEpisodes(dir, trainer.episodes);
    book.curve.push(
      ...rows.filter((x) => x.kind === "episode").map((x) => ({
        step: x.episode as number,
        is: x.bestIs as number,
      })),
    );
  }
  // --workers: the episodes of each update are jobs (their GANs trained there); the GAN of an
  // update's last episode comes back, for the pictures and the final IS.
  let workers: GanWorkers | null = null;
  const featureSize = task.featureNames.length;
  const hooks = {
    onStatus: (t: number, s: GanStatus) =>
      book.progress.update(trainer.episodes, {
        step: t,
        D: s.discCost,
        G: s.genCost,
        IS: formatIs(s.is),
      }),
    shouldStop: book.shouldStop,
  };
  try {
    workers = await connectGanWorkers(opts, cfg, dir.path);
    while (trainer.episodes < r.episodes && !book.shouldStop()) {
      const first = trainer.episodes;
      const n = Math.min(r.batch, r.episodes - first);
      const seeds = Array.from({ length: n }, (_, b) => cfg.seed + first + b);
      let logs: EpisodeLog[];
      if (workers) {
        // No date in the provenance: the job ids stay the same, so a resumed learner finds them.
        const file = await controllerToJson(trainer.controller, {
          actions: ["G", "D"],
          provenance: {
            task: "gan",
            seed: cfg.controller.seed,
            episodes: first,
            reward: null,
            date: "in training",
          },
        });
        const got = await workers.episodes(
          seeds.map((seed, b) => ({ episode: first + b, seed, keepGan: b === n - 1 })),
          file,
          { episodeSteps: r.episodeSteps, patience: r.patience },
          ctx,
        );
        const gan = await Deno.makeTempFile({ prefix: "autoloss-gan-", suffix: ".safetensors" });
        try {
          await Deno.writeFile(gan, got[n - 1].gan!);
          task.loadCheckpoint(await loadCheckpoint(gan));
        } finally {
          await Deno.remove(gan).catch(() => {});
        }
        logs = trainer.learn(got.map((e) => remotePlay(e, featureSize)));
        book.progress.update(trainer.episodes, { IS: formatIs(logs[n - 1].bestIs) });
      } else if (n === 1) logs = [await trainer.episode(seeds[0], hooks)];
      else {
        const plays: EpisodePlay[] = [];
        for (const seed of seeds) {
          const p = await trainer.play(seed, hooks);
          plays.push(p);
          if (p.stopped) break;
        }
        logs = trainer.learn(plays);
      }
      if (logs.some((e) => e.stopped)) break;
      for (const e of logs) {
        await book.log({ kind: "episode", ...e, loop: loopNote(e.loop) });
        book.curve.push({ step: e.episode, is: e.bestIs });
      }
      const e = logs[logs.length - 1];
      const provenance = {
        task: "gan",
        seed: cfg.controller.seed,
        episodes: trainer.episodes,
        reward: logs.find((l) => l.episode === trainer.best.episode)?.reward ?? e.reward,
        algorithm: "reinforce",
      };
      await trainer.save(ckpt);
      if (logs.some((l) => l.episode === trainer.best.episode)) {
        await saveController(dir.file("controller.json"), trainer.controller, {
          actions: ["G", "D"],
          provenance,
        });
      }
      await book.pictures(task);
    }
    if (trainer.episodes === startEpisodes) {
      log(`nothing to do: ${trainer.episodes} of ${r.episodes} episodes are done`);
      return 0;
    }
    await finishRun(
      book,
      task,
      ctx,
      cfg,
      {
        controller: "episodic REINFORCE",
        episodes: trainer.episodes,
        best: trainer.best,
      },
      log,
      trainer.episodes,
    );
    return 0;
  } finally {
    book.close(trainer.episodes);
    trainer.dispose();
    task.dispose();
    await workers?.close();
    if (workers) log(`workers: ${JSON.stringify(workers.stats)}`);
  }
}

/** The `gan` task (registered in tasks/mod.ts). */
export const GAN_TASK: Task = {
  name: "gan",
  description: "DCGAN on MNIST, G/D steps chosen by AutoLoss (paper 5.1.2, 5.3: IS, transfer)",
  train: (o) => train(o),
  baseline: (o) => train(o, true),
  compare,
  transfer,
  eval: evaluate,
  profile: ganWorkload,
};
