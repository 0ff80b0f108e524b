/**
 * The scoring classifier and the inception score: a few steps on a tiny MNIST subset reduce the
 * loss; a checkpoint restores the exact next step; weights files round trip and a missing one names
 * the command that produces it; the inception score matches a plain-TypeScript reference (logits
 * and probabilities, batches straddling split boundaries, sampler and tensor sources) and hits its
 * extremes (uniform predictions: 1; balanced one-hot: the number of classes). Tiny models keep it
 * fast on llvmpipe.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../cli.ts";
import { resolveConfig } from "../run/config.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { ClassifierTrainer, evaluateClassifier } from "../tasks/classifier/task.ts";
import { augmentImages, loadClassifierData, parseDataset } from "../tasks/classifier/data.ts";
import { saveClassifierWeights } from "../tasks/classifier/model.ts";
import { type ClassifierConfig, classifierSchema } from "../tasks/classifier/config.ts";
import {
  inceptionScore,
  InceptionScoreAccumulator,
  inceptionScoreOf,
  loadScoringClassifier,
} from "../tasks/classifier/inception_score.ts";
import { assertClose, rng, setup } from "./helpers.ts";

await setup();

/** A tiny, fast config (4/8 channels) over a small training subset. */
function tinyConfig(overrides: Record<string, unknown> = {}): ClassifierConfig {
  return resolveConfig(classifierSchema, [{
    source: "test",
    values: {
      model: { conv1: 4, conv2: 8, hidden: 32, dropout: 0.5 },
      train: { batchSize: 32, epochs: 4, limit: 256 },
      optim: { lr: 0.003, warmupSteps: 2 },
      augment: { shift: 2, hflip: "on" },
      ...overrides,
    },
  }]);
}

// ---------------------------------------------------------------- inception score reference

/** Plain-TypeScript inception score of probability rows: mean and population std over splits. */
function referenceIs(probs: number[][], splits: number): { mean: number; std: number } {
  const n = probs.length;
  const k = probs[0].length;
  const scores: number[] = [];
  for (let s = 0; s < splits; s++) {
    const part = probs.slice(Math.floor((s * n) / splits), Math.floor(((s + 1) * n) / splits));
    const py = Array.from(
      { length: k },
      (_, y) => part.reduce((a, p) => a + p[y], 0) / part.length,
    );
    let kl = 0;
    for (const p of part) {
      for (let y = 0; y < k; y++) if (p[y] > 0) kl += p[y] * (Math.log(p[y]) - Math.log(py[y]));
    }
    scores.push(Math.exp(kl / part.length));
  }
  const mean = scores.reduce((a, b) => a + b, 0) / splits;
  const std = Math.sqrt(scores.reduce((a, v) => a + (v - mean) ** 2, 0) / splits);
  return { mean, std };
}

/** Random logits [n, k] (spread wide enough that predictions differ a lot between rows). */
function randomLogits(n: number, k: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: n }, () => Array.from({ length: k }, () => 4 * (r() - 0.5)));
}

const softmaxRows = (logits: number[][]) =>
  logits.map((row) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  });

Deno.test("inception score: matches a TypeScript reference from logits and from probabilities", async () => {
  const logits = randomLogits(103, 7, 1);
  const probs = softmaxRows(logits);
  for (const splits of [1, 4, 5]) {
    const want = referenceIs(probs, splits);
    const l = tensor(logits);
    const p = tensor(probs);
    try {
      const fromLogits = await inceptionScoreOf(l, { splits });
      const fromProbs = await inceptionScoreOf(p, { splits, from: "probs" });
      for (const got of [fromLogits, fromProbs]) {
        assertClose([got.mean, got.std], [want.mean, want.std], 1e-4, 1e-4, `splits ${splits}`);
        assert.equal(got.scores.length, splits);
        assert.equal(got.samples, 103);
      }
      assert.ok(want.mean > 1.2, `the test data should score well above 1, got ${want.mean}`);
    } finally {
      l.dispose();
      p.dispose();
    }
  }
});

Deno.test("inception score: batches straddling split boundaries add up to the whole", async () => {
  const logits = randomLogits(50, 5, 2);
  const want = referenceIs(softmaxRows(logits), 3); // splits [0,16) [16,33) [33,50)
  const acc = new InceptionScoreAccumulator(50, { splits: 3 });
  try {
    for (const [a, b] of [[0, 7], [7, 30], [30, 31], [31, 50]]) {
      tidy(() => acc.addLogits(tensor(logits.slice(a, b))));
    }
    const got = await acc.result();
    assertClose([got.mean, got.std], [want.mean, want.std], 1e-4, 1e-4);
    assert.throws(() => tidy(() => acc.addLogits(tensor([[0, 0, 0, 0, 0]]))), /more than the 50/);
  } finally {
    acc.dispose();
  }
  const short = new InceptionScoreAccumulator(10, { splits: 2 });
  tidy(() => short.addLogits(tensor(logits.slice(0, 4))));
  await assert.rejects(short.result(), /4 of the 10 expected samples/);
  short.dispose();
  assert.throws(() => new InceptionScoreAccumulator(3, { splits: 5 }), /at least one sample/);
});

Deno.test("inception score: uniform predictions score 1, balanced one-hot scores the class count", async () => {
  const k = 10;
  const n = 200; // 5 splits of 40: each split holds every class 4 times
  const uniform = tensor(new Float32Array(n * k).fill(1 / k), [n, k]);
  const oneHot = tensor(
    Float32Array.from({ length: n * k }, (_, i) => (i % k === Math.floor(i / k) % k ? 1 : 0)),
    [n, k],
  );
  const sharp = tensor(
    Float32Array.from({ length: n * k }, (_, i) => (i % k === Math.floor(i / k) % k ? 30 : 0)),
    [n, k],
  );
  try {
    const u = await inceptionScoreOf(uniform, { from: "probs" });
    assertClose([u.mean, u.std], [1, 0], 1e-5, 0);
    const h = await inceptionScoreOf(oneHot, { from: "probs" });
    assertClose([h.mean, h.std], [k, 0], 1e-4, 1e-5);
    const l = await inceptionScoreOf(sharp); // logits: softmax is one-hot to within e^-30
    assertClose([l.mean], [k], 1e-3, 1e-4);
  } finally {
    uniform.dispose();
    oneHot.dispose();
    sharp.dispose();
  }
});

Deno.test("inceptionScore: tensor and sampler sources stream in batches and agree", async () => {
  const n = 60;
  const r = rng(3);
  const images = Float32Array.from({ length: n * 4 }, () => 2 * r() - 1);
  const x = tensor(images, [n, 1, 2, 2]);
  const w = tensor(Float32Array.from({ length: 4 * 6 }, () => 3 * (r() - 0.5)), [4, 6]);
  const scorer = (b: Tensor) => b.reshape([b.shape[0], 4]).matmul(w);
  const all = scorer(x);
  const calls: [number, number][] = [];
  try {
    const want = await inceptionScoreOf(all, { splits: 4 });
    const fromTensor = await inceptionScore(scorer, x, { splits: 4, batchSize: 7 });
    const sampler = (b: number, i: number) => {
      calls.push([b, i]);
      const start = calls.slice(0, -1).reduce((a, [s]) => a + s, 0);
      return tensor(images.slice(start * 4, (start + b) * 4), [b, 1, 2, 2]);
    };
    const fromSampler = await inceptionScore(scorer, sampler, {
      splits: 4,
      batchSize: 25,
      samples: n,
    });
    for (const got of [fromTensor, fromSampler]) {
      assertClose([got.mean, got.std], [want.mean, want.std], 1e-5, 1e-5);
      assert.equal(got.samples, n);
    }
    assert.deepEqual(calls, [[25, 0], [25, 1], [10, 2]]);
    const half = await inceptionScore({ logits: scorer }, x, { splits: 2, samples: 30 });
    const wantHalf = tidy(() => all.slice([0, 0], [30, 6]));
    assertClose([half.mean], [(await inceptionScoreOf(wantHalf, { splits: 2 })).mean], 1e-5, 1e-5);
    wantHalf.dispose();
    await assert.rejects(inceptionScore(scorer, x, { samples: 61 }), /samples must be an integer/);
    await assert.rejects(
      inceptionScore(scorer, () => tensor(new Float32Array(4), [1, 1, 2, 2]), {
        samples: 10,
        splits: 2,
      }),
      /returned Tensor\[1,1,2,2\] f32 for a batch of 10/,
    );
  } finally {
    x.dispose();
    w.dispose();
    all.dispose();
  }
});

// ---------------------------------------------------------------- training

Deno.test("classifier: a few steps on a tiny MNIST subset reduce the loss", async () => {
  const cfg = tinyConfig({
    optim: { lr: 0.01, schedule: "constant" },
    augment: { shift: 0, hflip: "off" },
  });
  const data = await loadClassifierData("mnist", "train", 256);
  const trainer = new ClassifierTrainer(cfg, data);
  try {
    const before = await evaluateClassifier(trainer.model, data, { batchSize: 128 });
    for (let i = 0; i < 24; i++) trainer.trainStep().dispose();
    const metrics = await trainer.readTrainMetrics();
    const after = await evaluateClassifier(trainer.model, data, { batchSize: 128 });
    assert.equal(metrics.steps, 24);
    assert.ok(Number.isFinite(metrics.loss) && metrics.accuracy >= 0 && metrics.accuracy <= 1);
    assert.ok(
      after.loss < before.loss - 0.3,
      `loss should drop: ${before.loss.toFixed(3)} -> ${after.loss.toFixed(3)}`,
    );
    assert.ok(after.accuracy > before.accuracy, `${before.accuracy} -> ${after.accuracy}`);
    assert.equal(trainer.step, 24);
    assert.equal(trainer.totalSteps, 32); // 4 epochs of 8 batches
    assert.equal(trainer.model.training, true, "evaluation restores training mode");
  } finally {
    trainer.dispose();
  }
});

Deno.test("classifier: a checkpoint restores the exact next step (model, Adam, batches, dropout)", async () => {
  const cfg = tinyConfig();
  const data = await loadClassifierData("mnist", "train", 256);
  const dir = await Deno.makeTempDir();
  const a = new ClassifierTrainer(cfg, data);
  const b = new ClassifierTrainer(cfg, data);
  try {
    for (let i = 0; i < 10; i++) a.trainStep().dispose(); // crosses an epoch (8 batches)
    await a.save(join(dir, "ckpt.safetensors"), { note: "hello" });
    const la = a.trainStep();
    for (let i = 0; i < 3; i++) b.trainStep().dispose(); // different state, overwritten by load
    const meta = await b.load(join(dir, "ckpt.safetensors"));
    assert.equal(meta.note, "hello");
    assert.equal(b.step, 10);
    assert.deepEqual(b.iterator.state(), { seed: 0, epoch: 1, position: 64 });
    const lb = b.trainStep();
    const [va, vb, pa, pb] = await readMany([la, lb, a.flat.data, b.flat.data]);
    la.dispose();
    lb.dispose();
    assert.equal(vb[0], va[0], "next-step loss after resume");
    assert.deepEqual(pb, pa, "parameters after the resumed step");
    const [ma, mb] = [await a.readTrainMetrics(), await b.readTrainMetrics()];
    assert.deepEqual(mb, ma, "pending metric sums are part of the checkpoint");
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("classifier: a checkpoint of another architecture is refused", async () => {
  const data = await loadClassifierData("mnist", "train", 64);
  const dir = await Deno.makeTempDir();
  const a = new ClassifierTrainer(tinyConfig(), data);
  const b = new ClassifierTrainer(tinyConfig({ model: { conv1: 4, conv2: 8, hidden: 16 } }), data);
  try {
    await a.save(join(dir, "c.safetensors"));
    await assert.rejects(b.load(join(dir, "c.safetensors")), /architecture .* differs/);
  } finally {
    a.dispose();
    b.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("augmentImages: integer shifts fill with the background, flips mirror rows", () => {
  const img = Float32Array.from({ length: 9 }, (_, i) => i); // 3x3: rows 0 1 2 / 3 4 5 / 6 7 8
  const none = img.slice();
  augmentImages(none, 1, 3, { shift: 0, hflip: false, fill: -1, seed: 1 });
  assert.deepEqual(none, img);
  // Over many seeds each result must be some shift of the image (or its mirror) by <= 1 pixel.
  const candidates = new Set<string>();
  for (const flip of [false, true]) {
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const out = Array.from({ length: 9 }, (_, i) => {
          const [r, c] = [Math.floor(i / 3), i % 3];
          const [sr, sc0] = [r - dy, c - dx];
          const sc = flip ? 2 - sc0 : sc0;
          return sr >= 0 && sr < 3 && sc0 >= 0 && sc0 < 3 ? img[sr * 3 + sc] : -1;
        });
        candidates.add(out.join(","));
      }
    }
  }
  const seen = new Set<string>();
  for (let seed = 0; seed < 200; seed++) {
    const x = img.slice();
    augmentImages(x, 1, 3, { shift: 1, hflip: true, fill: -1, seed });
    assert.ok(candidates.has(Array.from(x).join(",")), `seed ${seed}: ${x}`);
    seen.add(Array.from(x).join(","));
  }
  assert.equal(seen.size, 18, "all 9 shifts, mirrored or not, occur");
});

// ---------------------------------------------------------------- weights files and the CLI

Deno.test("loadScoringClassifier: a missing weights file names the file and the command", async () => {
  const path = "/nonexistent/fashion_classifier.safetensors";
  await assert.rejects(
    loadScoringClassifier("fashion", { path }),
    (e: Error) => {
      assert.match(e.message, /weights not found: \/nonexistent\/fashion_classifier\.safetensors/);
      assert.match(e.message, /cli\.ts train classifier fashion --preset paper --set export=true/);
      return true;
    },
  );
});

Deno.test("loadScoringClassifier: saved weights load with their architecture and give the same logits", async () => {
  const cfg = tinyConfig({
    model: { conv1: 3, conv2: 5, kernel: 3, padding: "same", hidden: 12 },
    train: { batchSize: 8 },
  });
  const data = await loadClassifierData("mnist", "test", 16);
  const trainer = new ClassifierTrainer(cfg, data);
  const dir = await Deno.makeTempDir();
  const path = join(dir, "w.safetensors");
  const x = tensor(data.images, [16, 1, 28, 28]);
  try {
    trainer.model.eval();
    const want = tidy(() => trainer.model.forward(x));
    await saveClassifierWeights(path, trainer.model, { dataset: "mnist", test_accuracy: "0.1" });
    const scorer = await loadScoringClassifier("mnist", { path });
    const got = scorer.logits(x);
    const [g, w] = await readMany([got, want]);
    assert.deepEqual(g, w);
    assert.equal(got.requiresGrad, false);
    assert.equal(scorer.metadata.test_accuracy, "0.1");
    assert.deepEqual(scorer.model.arch, trainer.model.arch);
    got.dispose();
    want.dispose();
    scorer.model.dispose();
    await assert.rejects(loadScoringClassifier("fashion", { path }), /holds a 'mnist' classifier/);
  } finally {
    x.dispose();
    trainer.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train classifier: an unknown or missing dataset is a usage error listing both", async () => {
  assert.equal(parseDataset("fashion"), "fashion");
  for (const args of [["cifar"], []]) {
    const err: string[] = [];
    const code = await main(["train", "classifier", ...args], {
      out: () => {},
      err: (t) => err.push(t),
    });
    assert.equal(code, 2);
    assert.match(err.join("\n"), /datasets: mnist, fashion/);
  }
});

Deno.test("committed weights: both classifiers load and classify real test images", async () => {
  for (const dataset of ["mnist", "fashion"] as const) {
    const scorer = await loadScoringClassifier(dataset);
    const test = await loadClassifierData(dataset, "test", 200);
    try {
      const ev = await evaluateClassifier(scorer.model, test, { batchSize: 100 });
      const floor = dataset === "mnist" ? 0.97 : 0.85;
      assert.ok(ev.accuracy >= floor, `${dataset}: ${ev.accuracy} on 200 test images`);
      assert.equal(scorer.metadata.dataset, dataset);
      assert.match(
        scorer.metadata.command,
        new RegExp(`train classifier ${dataset} --preset paper`),
      );
    } finally {
      scorer.model.dispose();
    }
  }
});
