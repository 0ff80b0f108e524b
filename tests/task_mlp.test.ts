/**
 * The MLP classification task: the sklearn-style and appendix-A.2 generators (statistics, column
 * roles, label noise), the population model against a host forward pass, per-member seeding, no
 * host syncs in the step loop, and the DGS selection on accuracy.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import { readMany } from "../tensor/tensor.ts";
import { MlpController } from "../rl/controller.ts";
import { runEpisode, runSteps } from "../rl/runner.ts";
import { memberSeed } from "../rl/task.ts";
import {
  AUTHORS_SPEC,
  type ClassificationSplit,
  makeClassification,
  makeClassificationData,
  makePaperClassification,
  TRANSFER_SPECS,
} from "../tasks/l1/data/classification.ts";
import { denseGridSearch } from "../tasks/l1/methods.ts";
import { MlpTask } from "../tasks/l1/mlp.ts";
import { mlpProblem } from "../tasks/l1/problems.ts";
import { assertClose, setup } from "./helpers.ts";

await setup();

const DATA = makeClassificationData(AUTHORS_SPEC);

function column(s: ClassificationSplit, j: number): number[] {
  return Array.from({ length: s.n }, (_, r) => s.x[r * s.d + j]);
}

function moments(xs: number[]): { mean: number; variance: number } {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return { mean: m, variance: xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length };
}

/** 5-nearest-neighbour accuracy of `test` against `train`, using only columns `cols`. */
function knnAccuracy(
  train: ClassificationSplit,
  test: ClassificationSplit,
  cols: number[],
): number {
  let correct = 0;
  for (let r = 0; r < test.n; r++) {
    const dist: [number, number][] = [];
    for (let q = 0; q < train.n; q++) {
      let d = 0;
      for (const j of cols) d += (test.x[r * test.d + j] - train.x[q * train.d + j]) ** 2;
      dist.push([d, train.y[q]]);
    }
    dist.sort((a, b) => a[0] - b[0]);
    const votes = dist.slice(0, 5).reduce((a, [, y]) => a + y, 0);
    if ((votes >= 3 ? 1 : 0) === test.y[r]) correct++;
  }
  return correct / test.n;
}

/** R^2 of the least-squares fit of column `target` on columns `from` (normal equations). */
function rSquared(s: ClassificationSplit, target: number, from: number[]): number {
  const k = from.length;
  const ata = Array.from({ length: k }, () => new Array(k).fill(0));
  const aty = new Array(k).fill(0);
  const y = column(s, target);
  for (let r = 0; r < s.n; r++) {
    const a = from.map((j) => s.x[r * s.d + j]);
    for (let i = 0; i < k; i++) {
      aty[i] += a[i] * y[r];
      for (let j = 0; j < k; j++) ata[i][j] += a[i] * a[j];
    }
  }
  // Gaussian elimination.
  for (let i = 0; i < k; i++) {
    for (let j = i + 1; j < k; j++) {
      const f = ata[j][i] / ata[i][i];
      for (let c = i; c < k; c++) ata[j][c] -= f * ata[i][c];
      aty[j] -= f * aty[i];
    }
  }
  const beta = new Array(k).fill(0);
  for (let i = k - 1; i >= 0; i--) {
    let v = aty[i];
    for (let j = i + 1; j < k; j++) v -= ata[i][j] * beta[j];
    beta[i] = v / ata[i][i];
  }
  const { variance } = moments(y);
  let sse = 0;
  for (let r = 0; r < s.n; r++) {
    const pred = from.reduce((a, j, i) => a + beta[i] * s.x[r * s.d + j], 0);
    sse += (y[r] - pred) ** 2;
  }
  return 1 - sse / s.n / variance;
}

Deno.test("make_classification: partitions, balance, column roles and their statistics", () => {
  const p = DATA.partitions;
  assert.deepEqual(Object.values(p).map((s) => s.n), [200, 1000, 200, 1000, 1000]);
  const { informative, redundant, repeated, useless } = DATA.roles;
  assert.equal(informative.length, 2);
  assert.equal(redundant.length, 2);
  assert.equal(repeated.length, 0);
  assert.equal(useless.length, 28);
  assert.equal(new Set([...informative, ...redundant, ...useless]).size, 32);
  assert.notDeepEqual(informative, [0, 1], "columns are shuffled");
  const all = [p.validCtrl, p.validTask, p.test];
  for (const s of all) {
    const ones = s.y.reduce((a, b) => a + b, 0) / s.n;
    assert.ok(Math.abs(ones - 0.5) < 0.05, `label balance ${ones}`);
  }
  // Useless columns are standard normal noise.
  for (const j of useless.slice(0, 6)) {
    const m = moments(column(p.validTask, j));
    assert.ok(Math.abs(m.mean) < 0.1 && Math.abs(m.variance - 1) < 0.15, `useless ${j}: ${m}`);
  }
  // Redundant columns are linear combinations of the informative ones.
  for (const j of redundant) assert.ok(rSquared(p.test, j, informative) > 0.9999);
  assert.ok(rSquared(p.test, useless[0], informative) < 0.02);
  // Informative columns carry the class signal; useless ones do not.
  const signal = knnAccuracy(p.validCtrl, p.test, informative);
  const noise = knnAccuracy(p.validCtrl, p.test, useless.slice(0, 2));
  assert.ok(signal > 0.8, `kNN on informative columns: ${signal}`);
  assert.ok(Math.abs(noise - 0.5) < 0.07, `kNN on useless columns: ${noise}`);
});

Deno.test("make_classification: flip_y redraws labels; class_sep moves the clusters apart", () => {
  const base = { nSamples: 4000, nFeatures: 8, shuffle: false, seed: 3 };
  const clean = makeClassification({ ...base, flipY: 0 });
  const noisy = makeClassification({ ...base, flipY: 0.2 });
  assert.deepEqual(noisy.x, clean.x);
  const changed = clean.y.reduce((a, y, i) => a + (y !== noisy.y[i] ? 1 : 0), 0) / clean.n;
  // A redrawn label equals the old one half the time: about 0.2 * 0.5 change.
  assert.ok(Math.abs(changed - 0.1) < 0.02, `changed ${changed}`);
  const near = makeClassification({ ...base, flipY: 0, classSep: 0.5 });
  const far = makeClassification({ ...base, flipY: 0, classSep: 3 });
  const cols = [0, 1];
  const acc = (s: typeof near) => {
    // Unshuffled rows are grouped by cluster: interleave by taking every other row.
    const idx = Array.from({ length: 1200 }, (_, i) => i * 3);
    const pick = (ids: number[]) => ({
      x: Float32Array.from(ids.flatMap((r) => Array.from(s.x.subarray(r * s.d, r * s.d + s.d)))),
      y: Int32Array.from(ids.map((r) => s.y[r])),
      n: ids.length,
      d: s.d,
    });
    return knnAccuracy(pick(idx.slice(0, 600)), pick(idx.slice(600)), cols);
  };
  assert.ok(acc(far) > acc(near) + 0.1, `${acc(far)} vs ${acc(near)}`);
  // All four hypercube vertices are used by 2 classes x 2 clusters in 2 informative dims.
  const centers = new Set<string>();
  for (let r = 0; r < far.n; r += 50) {
    centers.add(`${Math.sign(far.x[r * 8])},${Math.sign(far.x[r * 8 + 1])}`);
  }
  assert.ok(centers.size >= 3);
});

Deno.test("paper A.2 generator and the four transfer distributions", () => {
  const s = makePaperClassification({ nSamples: 3000, seed: 2 });
  assert.deepEqual(s.roles.informative, [0, 1]);
  assert.deepEqual(s.roles.redundant, [2, 3]);
  const ones = s.y.reduce((a, b) => a + b, 0) / s.n;
  assert.ok(Math.abs(ones - 0.5) < 0.04);
  for (const j of [2, 3]) assert.ok(rSquared(s, j, [0, 1]) > 0.9999);
  for (const j of [5, 20, 31]) {
    const m = moments(column(s, j));
    assert.ok(Math.abs(m.mean) < 0.1 && Math.abs(m.variance - 1) < 0.12);
  }
  // Informative columns: centers at +-1 plus unit noise, so variance about 2.
  const m0 = moments(column(s, 0));
  assert.ok(Math.abs(m0.variance - 2) < 0.25, `informative variance ${m0.variance}`);
  const half = { x: s.x.slice(0, 1500 * 32), y: s.y.slice(0, 1500), n: 1500, d: 32 };
  const rest = { x: s.x.slice(1500 * 32), y: s.y.slice(1500), n: 1500, d: 32 };
  assert.ok(knnAccuracy(half, rest, [0, 1]) > 0.6);
  assert.equal(TRANSFER_SPECS.length, 4);
  const sets = TRANSFER_SPECS.map((spec) => makeClassificationData(spec, [50, 50, 50, 50, 50]));
  for (let i = 1; i < 4; i++) {
    assert.notDeepEqual(sets[i].partitions.test.x, sets[0].partitions.test.x);
  }
  assert.equal(sets[2].roles.informative.length, 3);
  assert.equal(sets[3].roles.repeated.length, 2);
});

function smallTask(
  population: number,
  extra: Partial<ConstructorParameters<typeof MlpTask>[0]> = {},
) {
  const p = DATA.partitions;
  return new MlpTask({
    population,
    lambda: 0.02,
    lr: 1e-3,
    totalSteps: 100,
    train: p.trainTask,
    val: {
      ...p.validTask,
      x: p.validTask.x.slice(0, 200 * 32),
      y: p.validTask.y.slice(0, 200),
      n: 200,
    },
    test: { ...p.test, x: p.test.x.slice(0, 200 * 32), y: p.test.y.slice(0, 200), n: 200 },
    ...extra,
  });
}

Deno.test("mlp: population forward matches a host forward pass per member", async () => {
  const task = smallTask(3);
  task.reset(4);
  const [w1, w2, b2] = (task as unknown as { params: { data(): Promise<Float32Array> }[] }).params;
  const [hw1, hw2, hb2] = await Promise.all([w1.data(), w2.data(), b2.data()]);
  const m = task.metrics();
  const [loss, acc, l1] = await readMany([m.trainLoss, m.trainAcc, m.l1]);
  const s = DATA.partitions.trainTask;
  for (let p = 0; p < 3; p++) {
    let ce = 0;
    let correct = 0;
    let abs = 0;
    for (let i = 0; i < 32 * 33; i++) abs += Math.abs(hw1[p * 32 * 33 + i]);
    for (let i = 0; i < 64; i++) abs += Math.abs(hw2[p * 64 + i]);
    abs += Math.abs(hb2[p * 2]) + Math.abs(hb2[p * 2 + 1]);
    for (let r = 0; r < s.n; r++) {
      const h = Array.from({ length: 32 }, (_, j) => {
        let v = hw1[p * 1056 + j * 33 + 32];
        for (let k = 0; k < 32; k++) v += hw1[p * 1056 + j * 33 + k] * s.x[r * 32 + k];
        return Math.max(v, 0);
      });
      const z = [0, 1].map((c) =>
        h.reduce((a, hv, j) => a + hv * hw2[p * 64 + c * 32 + j], hb2[p * 2 + c])
      );
      const lse = Math.max(...z) +
        Math.log(z.reduce((a, v) => a + Math.exp(v - Math.max(...z)), 0));
      ce += (lse - z[s.y[r]]) / s.n;
      if ((z[1] > z[0] ? 1 : 0) === s.y[r]) correct++;
    }
    assertClose([loss[p]], [ce], 1e-4, 1e-4, `cross-entropy of member ${p}`);
    assertClose([acc[p]], [correct / s.n], 1e-6, 0, `accuracy of member ${p}`);
    assertClose([l1[p]], [0.02 * abs], 1e-4, 1e-4, `L1 of member ${p}`);
  }
  task.dispose();
});

Deno.test("mlp: a population equals separate single-member runs with the same seeds", async () => {
  const run = async (population: number, seed: number, sampleSeed: number) => {
    const task = smallTask(population);
    const ctrl = new MlpController({ featureNames: task.featureNames, actions: 2, seed: 2 });
    const r = await runEpisode(task, ctrl, { steps: 20, seed, sampleSeed, record: true });
    ctrl.dispose();
    task.dispose();
    return r;
  };
  const pop = await run(3, 21, 8);
  for (let p = 0; p < 3; p++) {
    const one = await run(1, memberSeed(21, p), memberSeed(8, p));
    assert.deepEqual(one.actions!.map((a) => a[0]), pop.actions!.map((a) => a[p]));
    for (const key of ["val", "valAcc", "trainLoss", "l1", "best", "test"]) {
      assertClose(
        [one.metrics[key][0]],
        [pop.metrics[key][p]],
        1e-4,
        1e-4,
        `${key} of member ${p}`,
      );
    }
  }
});

Deno.test("mlp: no host sync and no kernel compile inside the step loop", async () => {
  const task = smallTask(2, { featureValEvery: 3 });
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 2, seed: 1 });
  task.reset(1);
  const gen = new Generator(3);
  await runSteps(task, ctrl, { steps: 12, gen });
  await backend().sync();
  const pipelines = backend().stats.pipelines;
  const stats = await runSteps(task, ctrl, { steps: 31, gen });
  assert.equal(stats.hostSyncs, 0);
  assert.equal(backend().stats.pipelines, pipelines);
  ctrl.dispose();
  task.dispose();
});

Deno.test("mlp DGS: lambda picked by the best validation accuracy", async () => {
  const problem = mlpProblem({
    spec: "authors",
    sizes: [100, 200, 100, 200, 200],
    hidden: 8,
    train: {
      lr: 1e-2,
      lambda: 0.02,
      valEvery: 10,
      featureValEvery: 10,
      features: "authors",
      improvementDecay: 0.9,
    },
    rewardC: 1000,
  });
  const lambdas = [0.0001, 0.01, 0.1, 1];
  const r = await denseGridSearch(problem, lambdas, {
    trials: 2,
    steps: 40,
    gridSteps: 80,
    seed: 2,
  });
  const best = r.detail.gridBest as number[];
  assert.equal(r.detail.lambda, lambdas[best.indexOf(Math.max(...best))]);
  assert.ok(r.values.every((v) => v >= 0 && v <= 1), "test errors are rates");
});
