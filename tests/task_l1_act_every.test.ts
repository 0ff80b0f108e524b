/**
 * The L1 controller's decision interval (`controller.actEvery`, issue 15): actions held for k
 * steps on the GPU, one log-probability per decision in the updates, the interval carried by the
 * controller file into guided runs, and interval 1 equal to the per-step controller.
 */

import assert from "node:assert/strict";
import {
  actEveryOf,
  autoLossMethod,
  holdActions,
  matchedRandom,
  type MethodResult,
  randomShare,
} from "../tasks/l1/methods.ts";
import { trainController } from "../tasks/l1/training.ts";
import { decisionRows } from "../rl/trajectory.ts";
import { MlpController } from "../rl/controller.ts";
import { runEpisode } from "../rl/runner.ts";
import { TrajectoryBuffer } from "../rl/trajectory.ts";
import { regressionProblem } from "../tasks/l1/problems.ts";
import { REGRESSION_SPEC, trainFromConfig } from "../tasks/l1/run.ts";
import { resolveTaskConfig } from "../run/session.ts";
import type { SharedConfig } from "../tasks/l1/config.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, type Tensor } from "../tensor/tensor.ts";
import { setup } from "./helpers.ts";

await setup();

function smallProblem() {
  return regressionProblem({
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
}

const base = {
  population: 4,
  rounds: 2,
  steps: 20,
  seed: 3,
  hidden: 4,
  temperature: 2,
  keep: "last" as const,
  baseline: "zscore" as const,
  args: { learningRate: 0.05, stepReward: null },
};

Deno.test("actEvery: held actions change only every k steps, one draw per decision", async () => {
  const problem = smallProblem();
  const task = problem.create({
    population: 3,
    lambda: 0.2,
    mode: "schedule",
    data: "task",
    steps: 20,
  });
  const inner = randomShare([0.5, 0.5, 0.5]);
  let calls = 0;
  const counted = {
    name: inner.name,
    act: (f: Tensor, ctx: Parameters<typeof inner.act>[1]) => (calls++, inner.act(f, ctx)),
    dispose: () => inner.dispose(),
  };
  const held = holdActions(counted, 5);
  try {
    const run = await runEpisode(task, held, { steps: 20, seed: 1, sampleSeed: 2, record: true });
    assert.equal(calls, 4);
    const rows = run.actions!;
    for (let i = 0; i < 20; i++) assert.deepEqual(rows[i], rows[i - (i % 5)], `step ${i}`);
    // Some decision changes (12 fair draws all equal would be a broken sampler).
    assert.ok(new Set(rows.filter((_, i) => i % 5 === 0).flat()).size === 2);
  } finally {
    held.dispose();
    task.dispose();
  }
  assert.throws(() => holdActions(counted, 0), /integer >= 1/);
});

Deno.test("actEvery: decisionRows keeps the decisions' rows and sums the step rewards", async () => {
  const [t, p, k, every] = [6, 2, 3, 3];
  const buffer = new TrajectoryBuffer(t, p, k, { rewards: true, logProbs: true });
  try {
    for (let i = 0; i < t; i++) {
      buffer.record("features", i, tensor(Float32Array.from({ length: p * k }, () => i), [p, k]));
      buffer.record("actions", i, tensor(Int32Array.of(i, -i), [p], "i32"));
      buffer.record("rewards", i, tensor(Float32Array.of(i, 1), [p]));
      buffer.record("logProbs", i, tensor(Float32Array.of(-i, -1), [p]));
    }
    const dec = decisionRows(buffer, every);
    try {
      assert.deepEqual(dec.features.shape, [2, p, k]);
      assert.deepEqual(Array.from((await readMany([dec.features]))[0]), [
        0,
        0,
        0,
        0,
        0,
        0,
        3,
        3,
        3,
        3,
        3,
        3,
      ]);
      assert.deepEqual(Array.from((await readMany([dec.actions]))[0]), [0, 0, 3, -3]);
      assert.deepEqual(Array.from((await readMany([dec.logProbs!]))[0]), [-0, -1, -3, -1]);
      // Rewards of steps 0-2 and 3-5: member 0 sums 0+1+2 and 3+4+5, member 1 three 1s.
      assert.deepEqual(Array.from((await readMany([dec.rewards!]))[0]), [3, 3, 12, 3]);
    } finally {
      dec.dispose();
    }
    assert.equal(decisionRows(buffer, 1).features, buffer.features);
    assert.throws(() => decisionRows(buffer, 4), /multiple/);
  } finally {
    buffer.dispose();
  }
});

Deno.test("actEvery 1 trains exactly as the per-step controller; k counts once per decision", async () => {
  const problem = smallProblem();
  const plain = await trainController(problem, base);
  const one = await trainController(problem, { ...base, actEvery: 1 });
  assert.deepEqual(one.file.weights, plain.file.weights);
  assert.deepEqual(
    one.history.map((h) => h.meanReward),
    plain.history.map((h) => h.meanReward),
  );
  assert.equal(actEveryOf(plain.file), 1);
  // An old file without the field acts every step.
  const old = structuredClone(plain.file);
  delete old.provenance.actEvery;
  assert.equal(actEveryOf(old), 1);
  const o = { trials: 3, steps: 40, seed: 5, greedy: false };
  const a = await autoLossMethod(problem, { ...o, controller: old });
  const b = await autoLossMethod(problem, { ...o, controller: plain.file });
  assert.deepEqual(a.values, b.values);

  // actEvery 5 (PPO and REINFORCE): each update's log-probabilities cover 20 / 5 = 4 decisions.
  const rows: number[] = [];
  const logProb = MlpController.prototype.logProb;
  MlpController.prototype.logProb = function (features: Tensor, actions: Tensor) {
    rows.push(features.shape[0]);
    return logProb.call(this, features, actions);
  };
  let held;
  try {
    held = await trainController(problem, { ...base, actEvery: 5 });
    await trainController(problem, { ...base, actEvery: 5, updates: "ppo", ppoEpochs: 2 });
  } finally {
    MlpController.prototype.logProb = logProb;
  }
  assert.equal(rows.length, 2 * 4 + 2 * 2 * 4);
  assert.ok(rows.every((r) => r === 4), rows.join(","));
  assert.equal(held.file.provenance.actEvery, 5);
  assert.notDeepEqual(held.file.weights, held.initial.weights);
  for (const h of held.history) assert.ok(h.entropy! > 0 && h.gradNorm! > 0);
  // The guided run holds the file's k: every trial's L1 steps come in blocks of 5.
  const r = await autoLossMethod(problem, { ...o, controller: held.file });
  assert.equal(r.detail.actEvery, 5);
  for (const f of r.detail.l1Fractions as number[]) {
    const steps = Math.round(f * 40);
    assert.ok(Math.abs(f * 40 - steps) < 1e-6 && steps % 5 === 0, `share ${f}`);
  }
  // Matched-share random holds its draws as long.
  const m = await matchedRandom(problem, r as MethodResult, { trials: 3, steps: 40, seed: 5 });
  for (const f of m.detail.l1Fractions as number[]) assert.equal(Math.round(f * 40) % 5, 0);
  await assert.rejects(() => trainController(problem, { ...base, actEvery: 3 }), /dividing/);
  await assert.rejects(
    () => trainController(problem, { ...base, actEvery: 5, updates: "round" }),
    /episode or ppo/,
  );
});

Deno.test("controller.actEvery: range-checked and a divisor of controller.steps", async () => {
  const load = (set: string[]) =>
    resolveTaskConfig(
      { preset: "quick", config: [], set },
      REGRESSION_SPEC.schema,
      "regression",
    ) as Promise<SharedConfig>;
  assert.equal((await load([])).controller.actEvery, 1);
  assert.equal((await load(["controller.actEvery=10"])).controller.actEvery, 10);
  await assert.rejects(() => load(["controller.actEvery=0"]), /actEvery/);
  await assert.rejects(() => load(["controller.actEvery=2.5"]), /actEvery/);
  const cfg = await load(["controller.actEvery=7"]);
  // deno-lint-ignore no-explicit-any
  const problem = REGRESSION_SPEC.problem(cfg as any);
  await assert.rejects(() => trainFromConfig(problem, cfg, () => {}), /must divide/);
});
