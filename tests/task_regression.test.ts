/**
 * The regression task: data statistics, the population step (gradients, per-member seeding, no
 * host syncs, no per-step kernel compiles), the threshold rules and the DGS selection.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { MlpController } from "../rl/controller.ts";
import { runEpisode, runSteps } from "../rl/runner.ts";
import { thresholdRule } from "../rl/schedules.ts";
import { memberSeed } from "../rl/task.ts";
import { Generator } from "../gpu/random.ts";
import { concatRegression, makeRegressionData, noiseFloor } from "../tasks/l1/data/regression.ts";
import { Rng } from "../tasks/l1/data/rng.ts";
import { RULE_FEATURES } from "../tasks/l1/task.ts";
import { denseGridSearch, logSpace, mean, selectBest, std } from "../tasks/l1/methods.ts";
import {
  type ControllerTrainOptions,
  trainController,
  type TrainedController,
} from "../tasks/l1/training.ts";
import { loadControllerCheckpoint } from "../tasks/l1/training_checkpoint.ts";
import { regressionProblem } from "../tasks/l1/problems.ts";
import { quadraticFeatures, RegressionTask } from "../tasks/l1/regression.ts";
import { RULES, thresholdGrid } from "../tasks/l1/schedules.ts";
import { assertClose, setup } from "./helpers.ts";

await setup();

const DATA = makeRegressionData({ sizes: [200, 200, 200, 200, 1000] });

function sampleStats(xs: ArrayLike<number>): { mean: number; variance: number } {
  let m = 0;
  for (let i = 0; i < xs.length; i++) m += xs[i] / xs.length;
  let v = 0;
  for (let i = 0; i < xs.length; i++) v += (xs[i] - m) ** 2;
  return { mean: m, variance: v / xs.length };
}

Deno.test("rng: reproducible, uniform and normal moments", () => {
  const a = new Rng(7);
  const b = new Rng(7);
  const xs = Array.from({ length: 20000 }, () => a.uniform());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b.uniform()));
  const u = sampleStats(xs);
  assert.ok(Math.abs(u.mean - 0.5) < 0.01 && Math.abs(u.variance - 1 / 12) < 0.005);
  const n = sampleStats(Array.from({ length: 20000 }, () => a.normal()));
  assert.ok(Math.abs(n.mean) < 0.03 && Math.abs(n.variance - 1) < 0.04);
  const tn = Array.from({ length: 5000 }, () => a.truncatedNormal(0.1));
  assert.ok(tn.every((v) => Math.abs(v) <= 0.2));
  const pick = a.sampleWithoutReplacement(16, 4);
  assert.equal(new Set(pick).size, 4);
  assert.ok(pick.every((v) => v >= 0 && v < 16));
});

Deno.test("regression data: sizes, ranges, moments and the noise floor", () => {
  const { w, partitions } = DATA;
  assert.equal(w.length, 16);
  assert.ok(w.every((v) => v >= -0.5 && v < 0.5));
  assert.deepEqual(
    Object.values(partitions).map((p) => p.n),
    [200, 200, 200, 200, 1000],
  );
  const test = partitions.test;
  assert.ok(test.x.every((v) => v >= -5 && v < 5));
  const x = sampleStats(test.x);
  assert.ok(Math.abs(x.mean) < 0.1, `input mean ${x.mean}`);
  assert.ok(Math.abs(x.variance - 100 / 12) < 0.3, `input variance ${x.variance}`);
  // Var(y) = |w|^2 Var(x) + noise variance.
  const expected = w.reduce((a, v) => a + v * v, 0) * (100 / 12) + 4;
  const y = sampleStats(test.y);
  assert.ok(
    Math.abs(y.variance - expected) / expected < 0.12,
    `Var(y) ${y.variance} vs ${expected}`,
  );
  // The noise floor (the true model's MSE) is about the noise variance 4.
  const floor = noiseFloor(DATA, test);
  assert.ok(Math.abs(floor - 4) < 0.5, `noise floor ${floor}`);
  // Reproducible from the seed; another seed gives other data.
  const again = makeRegressionData({ sizes: [200, 200, 200, 200, 1000] });
  assert.deepEqual(again.partitions.trainCtrl.y, partitions.trainCtrl.y);
  assert.notDeepEqual(makeRegressionData({ seed: 2 }).w, w);
  assert.equal(concatRegression(partitions.trainTask, partitions.validTask).n, 400);
});

Deno.test("regression: quadratic features match the model's formula", () => {
  const s = { ...DATA.partitions.trainTask, n: 3 };
  const phi = quadraticFeatures(s, 0.1, true);
  const f = 16 + 256 + 1;
  assert.equal(phi.length, f * 3);
  const x = s.x.subarray(16, 32); // row 1
  assert.equal(phi[5 * 3 + 1], x[5]);
  assert.ok(Math.abs(phi[(16 + 3 * 16 + 7) * 3 + 1] - x[3] * x[7] * 0.1) < 1e-6);
  assert.equal(phi[(f - 1) * 3 + 1], 1);
});

function smallTask(
  population: number,
  extra: Partial<ConstructorParameters<typeof RegressionTask>[0]> = {},
) {
  const p = DATA.partitions;
  return new RegressionTask({
    population,
    lambda: 0.2,
    lr: 5e-4,
    totalSteps: 100,
    train: p.trainTask,
    val: p.validTask,
    test: p.test,
    ...extra,
  });
}

Deno.test("regression: each member gets exactly the gradient of its chosen loss", async () => {
  const task = smallTask(4, { lr: 0.01 });
  task.reset(3);
  const flat = task.parameters;
  const before = await flat.data.data();
  // Expected: per member, the MSE gradient (action 0) or lambda * sign(w) (action 1), then Adam
  // with t = 1: a step of lr * sign(g) per coordinate where g != 0.
  const grad = await flat.grad.data();
  task.step(new Int32Array([0, 1, 1, 0]));
  const after = await flat.data.data();
  const n = task.featureDim;
  for (let m = 0; m < 4; m++) {
    for (let j = 0; j < n; j += 37) {
      const i = m * n + j;
      const g = m === 1 || m === 2 ? 0.2 * Math.sign(before[i]) : grad[i];
      const expected = before[i] - (g === 0 ? 0 : 0.01 * Math.sign(g));
      assert.ok(Math.abs(after[i] - expected) < 1e-5, `member ${m} elem ${j}`);
    }
  }
  const [l1Fraction] = await readMany([task.metrics().l1Fraction]);
  assert.deepEqual(Array.from(l1Fraction), [0, 1, 1, 0]);
  task.dispose();
});

Deno.test("regression: a population equals separate single-member runs with the same seeds", async () => {
  const seed = 11;
  const sampleSeed = 5;
  const steps = 25;
  const run = async (population: number, s: number, ss: number) => {
    const task = smallTask(population);
    const ctrl = new MlpController({ featureNames: task.featureNames, actions: 2, seed: 3 });
    const r = await runEpisode(task, ctrl, { steps, seed: s, sampleSeed: ss, record: true });
    ctrl.dispose();
    task.dispose();
    return r;
  };
  const pop = await run(4, seed, sampleSeed);
  for (let p = 0; p < 4; p++) {
    const one = await run(1, memberSeed(seed, p), memberSeed(sampleSeed, p));
    assert.deepEqual(one.actions!.map((a) => a[0]), pop.actions!.map((a) => a[p]), `member ${p}`);
    for (const key of ["val", "trainLoss", "l1", "best", "test"]) {
      assertClose(
        [one.metrics[key][0]],
        [pop.metrics[key][p]],
        1e-4,
        1e-4,
        `${key} of member ${p}`,
      );
    }
  }
  assert.ok(new Set(pop.metrics.trainLoss).size > 1, "members differ");
});

Deno.test("regression: no host sync and no kernel compile inside the step loop", async () => {
  const task = smallTask(4);
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 2, seed: 1 });
  task.reset(1);
  const gen = new Generator(2);
  await runSteps(task, ctrl, { steps: 12, gen }); // warm-up: compile every kernel once
  await backend().sync();
  const syncs = backend().stats.hostSyncs;
  const pipelines = backend().stats.pipelines;
  const stats = await runSteps(task, ctrl, { steps: 30, gen });
  assert.equal(stats.hostSyncs, 0);
  assert.equal(backend().stats.hostSyncs, syncs);
  assert.equal(backend().stats.pipelines, pipelines, "no step-dependent constant in a kernel");
  const reports: number[] = [];
  const r = await runSteps(task, ctrl, {
    steps: 30,
    gen,
    interval: 10,
    onInterval: (rep) => void reports.push(rep.hostSyncs),
  });
  assert.deepEqual(reports, [1, 2, 3]);
  assert.equal(r.hostSyncs, 3);
  ctrl.dispose();
  task.dispose();
});

Deno.test("regression: shared initialization and the paper's feature set", async () => {
  const shared = smallTask(3, { sharedInit: true, features: "paper" });
  shared.reset(5);
  const n = shared.featureDim;
  const w = await shared.parameters.data.data();
  for (let m = 1; m < 3; m++) {
    assert.deepEqual(w.slice(m * n, m * n + n), w.slice(0, n), `member ${m} starts as member 0`);
  }
  assert.deepEqual(shared.featureNames.slice(0, 5), [
    "progress",
    "grad.task",
    "grad.l1",
    "loss.task",
    "loss.l1",
  ]);
  const ctrl = new MlpController({ featureNames: shared.featureNames, actions: 2, seed: 1 });
  const gen = new Generator(1);
  await runSteps(shared, ctrl, { steps: 6, gen });
  await backend().sync();
  const pipelines = backend().stats.pipelines;
  const stats = await runSteps(shared, ctrl, { steps: 20, gen });
  assert.equal(stats.hostSyncs, 0);
  assert.equal(backend().stats.pipelines, pipelines, "the lazy history compiles nothing per step");
  const [f] = await readMany([shared.features()]);
  assert.ok(Math.abs(f[0] - 26 / 100) < 1e-6, "progress t/T");
  ctrl.dispose();
  shared.dispose();
});

Deno.test("regression: best-validation tracking and early stopping on the GPU", async () => {
  const task = smallTask(2, { lr: 0.05, patience: 2, valEvery: 5 });
  task.reset(1);
  const vals: number[][] = [];
  const bests: number[][] = [];
  for (let t = 0; t < 60; t++) {
    task.step(new Int32Array([0, 0]));
    if ((t + 1) % 5 === 0) {
      const m = task.metrics();
      const [v, b] = await readMany([m.val, m.best]);
      vals.push(Array.from(v));
      bests.push(Array.from(b));
    }
  }
  // best is the running minimum of the validation losses seen while alive.
  for (let i = 1; i < bests.length; i++) {
    assert.ok(bests[i][0] <= bests[i - 1][0] + 1e-6);
  }
  const m = task.metrics();
  const [done, bestStep] = await readMany([m.done, m.bestStep]);
  assert.deepEqual(Array.from(done), [1, 1], "lr 0.05 overfits: patience 2 runs out");
  assert.ok(bestStep.every((s) => s % 5 === 0 && s <= 60));
  task.dispose();
});

Deno.test("threshold rules: per-member grid equals the core rule at each threshold", async () => {
  const names = [...RULE_FEATURES];
  // Rows: val, loss.task, loss.l1, grad.task, grad.l1.
  const rows = [
    [4.4, 4.0, 3.0, 0.5, 0.3],
    [4.0, 4.0, 5.0, 0.2, 0.4],
    [6.0, 3.0, 1.0, 1.0, 0.1],
    [3.9, 4.1, 4.0, 0.3, 0.3],
  ];
  const feats = tensor(rows);
  const thresholds = [-0.5, 0, 0.05, 0.2, 1];
  const ctx = { t: 0, greedy: false, gen: new Generator(0) };
  for (const kind of RULES) {
    for (const th of thresholds) {
      const core = thresholdRule(kind, {
        featureNames: names,
        actions: [
          { name: "task", loss: "task", group: "all" },
          { name: "l1", loss: "l1", group: "all" },
        ],
      }, { threshold: th });
      const grid = thresholdGrid(kind, names, new Array(rows.length).fill(th));
      const [a, b] = await readMany(
        tidy(() => [core.act(feats, ctx).actions, grid.act(feats, ctx).actions]),
      );
      const [ia, ib] = kind === "S1" ? [0, 1] : kind === "S2" ? [2, 0] : [4, 3];
      const expected = rows.map((r) => ((r[ia] - r[ib]) / r[ib] > th ? 1 : 0));
      assert.deepEqual(Array.from(a), expected, `${kind} th=${th} (core)`);
      assert.deepEqual(Array.from(b), expected, `${kind} th=${th} (grid)`);
      core.dispose();
      grid.dispose();
    }
  }
  // Different thresholds per member in one call.
  const grid = thresholdGrid("S1", names, [0.05, 0.15, 0.5, -0.1]);
  const [acts] = await readMany([tidy(() => grid.act(feats, ctx).actions) as Tensor]);
  assert.deepEqual(Array.from(acts), [1, 0, 1, 1]);
  grid.dispose();
  feats.dispose();
});

Deno.test("DGS: the lambda with the best validation score is selected", async () => {
  assert.equal(selectBest([3, 1, 2], false), 1);
  assert.equal(selectBest([0.8, 0.9, 0.85], true), 1);
  const lambdas = logSpace(0.001, 50, 4);
  assertClose(lambdas, [0.001, 0.001 * 50000 ** (1 / 3), 0.001 * 50000 ** (2 / 3), 50], 1e-9, 1e-9);
  const problem = regressionProblem({
    data: { seed: 1, dim: 16, sizes: [200, 200, 200, 200, 200], noiseStd: 2 },
    model: { form: "authors", quadScale: 0 },
    train: {
      lr: 5e-3,
      lambda: 0.2,
      valEvery: 10,
      featureValEvery: 1,
      features: "authors",
      improvementDecay: 0.8,
    },
    rewardC: 20000,
  });
  const r = await denseGridSearch(problem, lambdas, {
    trials: 2,
    steps: 60,
    gridSteps: 120,
    seed: 1,
  });
  const best = r.detail.gridBest as number[];
  assert.equal(r.detail.lambda, lambdas[best.indexOf(Math.min(...best))]);
  assert.equal(r.values.length, 2);
  assert.ok(r.values.every(Number.isFinite));
  assert.ok(Number.isFinite(mean(r.values)) && std(r.values) >= 0);
});

/** A controller file and history without what differs between runs (dates, seconds). */
function outcome(t: TrainedController) {
  return {
    file: { ...t.file, provenance: { ...t.file.provenance, date: "" } },
    history: t.history.map(({ seconds: _, ...h }) => h),
  };
}

Deno.test("controller training: stopped after a round and resumed, it ends as uninterrupted", async () => {
  const problem = regressionProblem({
    data: { seed: 1, dim: 4, sizes: [40, 40, 40, 40, 40], noiseStd: 2 },
    model: { form: "authors", quadScale: 0 },
    train: {
      lr: 5e-3,
      lambda: 0.2,
      valEvery: 5,
      featureValEvery: 1,
      features: "authors",
      improvementDecay: 0.8,
    },
    rewardC: 20000,
  });
  const dir = await Deno.makeTempDir();
  try {
    for (const updates of ["episode", "round", "es"] as const) {
      const o: ControllerTrainOptions = {
        // ES runs antithetic pairs: an even population.
        population: updates === "es" ? 4 : 3,
        rounds: 4,
        steps: 12,
        seed: 5,
        hidden: 4,
        temperature: 2,
        keep: "last",
        updates,
        args: { learningRate: 0.05 },
      };
      const whole = await trainController(problem, o);
      const path = `${dir}/${updates}.safetensors`;
      const stop = new Error("simulated interruption");
      await assert.rejects(
        trainController(problem, {
          ...o,
          checkpoint: { path, metadata: { note: "kept" } },
          onRound: (r) => {
            if (r.round === 1) throw stop;
          },
        }),
        (err) => err === stop,
      );
      const ckpt = await loadControllerCheckpoint(path);
      assert.equal(ckpt.round, 2);
      assert.equal(ckpt.tensors.metadata.note, "kept");
      const resumed = await trainController(problem, {
        ...o,
        checkpoint: { path },
        resume: ckpt,
      });
      assert.deepEqual(outcome(resumed), outcome(whole), updates);
      // The controller changed after the resumption (the comparison is not vacuous).
      assert.notDeepEqual(resumed.file.weights, ckpt.current.weights);
      assert.equal((await loadControllerCheckpoint(path)).round, 4);
      // Other settings than the checkpoint's are refused.
      await assert.rejects(
        trainController(problem, { ...o, seed: 6, resume: ckpt }),
        /other settings \(seed: 5 there, 6 here\)/,
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
