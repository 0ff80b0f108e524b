/**
 * Control on the GPU for all four tasks: 0 host syncs between reporting intervals (regression,
 * MLP and GAN through their loops, NMT through its AutoLoss segments), and gated branches chosen
 * by a GPU action give the host-chosen branches' results (NMT here; the GAN in
 * tests/task_gan.test.ts). Tiny sizes.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import { MlpController } from "../rl/controller.ts";
import { makeActor } from "../rl/ppo.ts";
import { type IntervalReport, runEpisode } from "../rl/runner.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany } from "../tensor/tensor.ts";
import { AUTHORS_SPEC, makeClassificationData } from "../tasks/l1/data/classification.ts";
import { makeRegressionData } from "../tasks/l1/data/regression.ts";
import { GanTask } from "../tasks/gan/task.ts";
import { runLearned } from "../tasks/gan/driver.ts";
import { AUTHORS_DCGAN } from "../tasks/gan/model.ts";
import { MlpTask } from "../tasks/l1/mlp.ts";
import { buildNmtCorpusFromText, encodeCorpus } from "../tasks/nmt/data.ts";
import type { EnglishTagger } from "../tasks/nmt/tagger.ts";
import { NmtTask } from "../tasks/nmt/task.ts";
import { type CurvePoint, runAutoLoss } from "../tasks/nmt/train.ts";
import { RegressionTask } from "../tasks/l1/regression.ts";
import type { ScheduleTask } from "../rl/task.ts";
import { assertClose, rng, setup } from "./helpers.ts";

await setup();

/** Runs 3 reporting intervals of 5 steps; returns the host syncs counted at each report. */
async function l1Syncs(task: ScheduleTask): Promise<number[]> {
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 2, seed: 1 });
  const reports: IntervalReport[] = [];
  await runEpisode(task, ctrl, {
    steps: 15,
    seed: 1,
    sampleSeed: 2,
    interval: 5,
    onInterval: (r) => void reports.push(r),
  });
  ctrl.dispose();
  task.dispose();
  return reports.map((r) => r.hostSyncs);
}

Deno.test("regression and MLP: one read per reporting interval, 0 host syncs between", async () => {
  const r = makeRegressionData({ sizes: [64, 64, 64, 64, 64] }).partitions;
  const regression = new RegressionTask({
    population: 2,
    lambda: 0.2,
    lr: 5e-4,
    totalSteps: 15,
    train: r.trainTask,
    val: r.validTask,
    test: r.test,
  });
  assert.deepEqual(await l1Syncs(regression), [1, 2, 3]);
  const c = makeClassificationData(AUTHORS_SPEC, [64, 64, 64, 64, 64]).partitions;
  const mlp = new MlpTask({
    population: 2,
    lambda: 0.02,
    lr: 1e-3,
    totalSteps: 15,
    train: c.trainTask,
    val: c.validTask,
    test: c.test,
  });
  assert.deepEqual(await l1Syncs(mlp), [1, 2, 3]);
});

Deno.test("GAN: one read per reporting interval, 0 host syncs between", async () => {
  const r = rng(1);
  const px = Float32Array.from({ length: 32 * 784 }, () => r() * 2 - 1);
  const task = new GanTask({
    arch: { ...AUTHORS_DCGAN, zDim: 8, gFilters: 4, dFilters: 4 },
    data: { images: px, labels: new Int32Array(32), n: 32, h: 28, w: 28 },
    batchSize: 4,
    lr: 2e-4,
    betas: [0.5, 0.999],
    features: "paper",
  });
  task.reset(1);
  const actor = makeActor({ inputs: task.featureNames.length, actions: 2 }, { hidden: [8] });
  const start = backend().stats.hostSyncs;
  const seen: number[] = [];
  await runLearned(task, actor, {
    steps: 15,
    gen: new Generator(2),
    readEvery: 5,
    onStatus: () => void seen.push(backend().stats.hostSyncs - start),
  });
  assert.deepEqual(seen, [1, 2, 3]);
  actor.dispose();
  task.dispose();
});

const STUB_TAGGER: EnglishTagger = {
  pos(sentence) {
    const tokens = sentence.match(/\w+|[^\s\w]/g) ?? [];
    return { tokens, pos: tokens.map((t) => (/^\W$/.test(t) ? "PUNCT" : "NOUN")) };
  },
  tag(sentence) {
    const { tokens, pos } = this.pos(sentence);
    return { tokens, pos, ner: tokens.map(() => "O"), posCheck: pos.map(() => null) };
  },
};

function nmtTask(): NmtTask {
  const line = (i: number) =>
    `w | Der Hund ${"abcdefgh"[i % 8]} sieht ${i % 5} Katzen. :: w | ` +
    `The dog ${"abcdefgh"[i % 8]} sees ${i % 5} cats.`;
  const text = Array.from({ length: 80 }, (_, i) => line(i)).join("\n");
  const corpus = buildNmtCorpusFromText(text, {
    seed: 1,
    maxWords: 12,
    limit: 0,
    shares: { mt: 0.5, pos: 0.25, ner: 0.25 },
  }, STUB_TAGGER);
  const data = encodeCorpus(corpus, { srcMerges: 20, tgtMerges: 20, maxTokens: 0 });
  return new NmtTask({
    data,
    model: {
      emb: 8,
      hidden: 8,
      encoderLayers: 1,
      decoderHidden: 8,
      decoderLayers: 1,
      dropout: 0.2,
    },
    batch: 4,
    lr: 1e-3,
    clip: 1,
    valEvery: 4,
    evalBatch: 8,
    totalBatches: 12,
    bucket: 4,
  });
}

Deno.test("NMT: GPU-chosen (gated) steps give the host-chosen steps' results", async () => {
  const host = nmtTask();
  const gpu = nmtTask();
  host.reset(3);
  gpu.reset(3);
  const syncs = backend().stats.hostSyncs;
  for (const a of [0, 2, 1, 1, 0, 2]) {
    host.step(Int32Array.of(a));
    const t = tensor(Int32Array.of(a), [1], "i32");
    gpu.step(t);
    t.dispose();
  }
  assert.equal(backend().stats.hostSyncs, syncs, "no host sync in a step");
  const [ph, pg] = await readMany([host.flat.data, gpu.flat.data]);
  // Exact on the CPU backend; on WebGPU the embedding gradient's scatter-add uses atomic float
  // adds whose order varies between runs, so the two runs agree only to rounding.
  if (backend().info.kind === "cpu") assert.deepEqual(pg, ph, "parameters");
  else assertClose(pg, ph, 1e-5, 1e-3, "parameters");
  const [fh, fg] = await readMany([host.features(), gpu.features()]);
  if (backend().info.kind === "cpu") assert.deepEqual(fg, fh, "features");
  else assertClose(fg, fh, 1e-4, 1e-3, "features");
  assert.throws(() => gpu.step(tensor([1])), /one i32 action/);
  host.dispose();
  gpu.dispose();
});

Deno.test("NMT AutoLoss: one read per segment (the PPO update's), 0 host syncs between", async () => {
  const task = nmtTask();
  const syncs: number[] = [];
  const points: CurvePoint[] = [];
  const result = (await runAutoLoss({
    task,
    seed: 1,
    batches: 12,
    finetuneAt: 0.5,
    dwaTemperature: 2,
    ppo: { args: { hidden: [8] }, rewardC: 1, rewardK: 2 },
    decode: { beam: 1, maxLenRatio: 1.5, maxLenExtra: 2, batch: 8 },
    onValidation: (p) => {
      points.push(p);
      syncs.push(backend().stats.hostSyncs);
    },
  }))!;
  assert.equal(points.length, 4, "the initial validation and one per segment");
  assert.deepEqual(syncs.slice(1).map((s, i) => s - syncs[i]), [1, 1, 1]);
  assert.equal(result.probs!.length, 12);
  assert.ok(result.probs!.every((p) => Math.abs(p[0] + p[1] + p[2] - 1) < 1e-5));
  assert.equal(result.updates.reduce((a, b) => a + b, 0), 12);
  assert.deepEqual(points[3].updates, result.updates);
  task.dispose();
});
