/** rl/features.ts, rl/rewards.ts and rl/schedules.ts: GPU bookkeeping against host arithmetic. */

import assert from "node:assert/strict";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany, type Tensor } from "../tensor/tensor.ts";
import { FeatureHistory, ImprovementEma, paperFeatureNames } from "../rl/features.ts";
import { featureSet } from "../rl/feature_sets.ts";
import { FeatureNormalizer, runningNormalization } from "../rl/normalization.ts";
import {
  classificationReward,
  improvementStepReward,
  improvementStepRewardHost,
  inceptionReward,
  inverseErrorReward,
  NormalizedImprovementReward,
  perplexityReward,
  REWARDS,
} from "../rl/rewards.ts";
import {
  parseRatio,
  proportionalSchedule,
  ratioSchedule,
  roundRobin,
  scheduleFromName,
  thresholdRule,
} from "../rl/schedules.ts";
import type { ActContext } from "../rl/task.ts";
import { assertClose, setup } from "./helpers.ts";

await setup();

const rows = (flat: ArrayLike<number>, k: number) =>
  Array.from({ length: flat.length / k }, (_, i) => Array.from(flat).slice(i * k, i * k + k));

Deno.test("FeatureHistory: names, progress and LAZY per-loss history", async () => {
  const h = new FeatureHistory({
    population: 3,
    losses: ["mse", "l1"],
    actionLoss: [0, 1],
    totalSteps: 10,
    extras: ["gap"],
  });
  assert.deepEqual(h.names, [
    "progress",
    "grad.mse",
    "grad.l1",
    "loss.mse",
    "loss.l1",
    "val",
    "val.ema",
    "val.d1.ema",
    "val.d2.ema",
    "gap",
  ]);
  assert.deepEqual(paperFeatureNames({ losses: ["a"], valDiffOrders: 1 }), [
    "progress",
    "grad.a",
    "loss.a",
    "val",
    "val.ema",
    "val.d1.ema",
  ]);
  // Step 1: members 0 and 2 optimize mse, member 1 optimizes l1.
  h.recordStep(tensor([0, 1, 0], [3], "i32"), tensor([1, 2, 3]), tensor([10, 20, 30]));
  h.setExtras(tensor([[7], [8], [9]]));
  h.advance();
  // Step 2: only the chosen loss's entry changes.
  h.recordStep(tensor([1, 1, 0], [3], "i32"), tensor([4, 5, 6]), tensor([40, 50, 60]));
  h.advance();
  const f = rows(await h.features().data(), 10);
  assert.deepEqual(f.map((r) => r[0]), [0.2, 0.2, 0.2].map(Math.fround));
  assert.deepEqual(f.map((r) => r.slice(1, 3)), [[10, 40], [0, 50], [60, 0]]);
  assert.deepEqual(f.map((r) => r.slice(3, 5)), [[1, 4], [0, 5], [6, 0]]);
  assert.deepEqual(f.map((r) => r[9]), [7, 8, 9]);
  h.reset();
  assert.ok((await h.features().data()).every((v) => v === 0));
  h.dispose();
});

Deno.test("FeatureHistory: validation EMA and EMAs of higher-order differences", async () => {
  const beta = 0.5;
  const h = new FeatureHistory({
    population: 2,
    losses: ["task"],
    actionLoss: [0],
    totalSteps: 4,
    valEvery: 2,
    valEmaDecay: beta,
    valDiffOrders: 2,
  });
  const series = [[4, 1], [2, 1], [1, 3], [0.5, 3]];
  // Host reference: x0 = v, x_o = x_{o-1} - prev x_{o-1}; EMA starts at the first defined value.
  const ref = [0, 1].map((m) => {
    const ema: (number | null)[] = [null, null, null];
    const prev: (number | null)[] = [null, null];
    for (const s of series) {
      let x = s[m];
      for (let o = 0; o <= 2; o++) {
        ema[o] = ema[o] === null ? x : beta * ema[o]! + (1 - beta) * x;
        if (o === 2) break;
        const p = prev[o];
        prev[o] = x;
        if (p === null) break;
        x = x - p;
      }
    }
    return [series[series.length - 1][m], ...ema.map((e) => e ?? 0)];
  });
  let due = 0;
  for (let t = 0; t < 8; t++) {
    if (h.validationDue()) h.recordValidation(tensor(series[due++]));
    h.advance();
  }
  assert.equal(due, 4);
  const f = rows(await h.features().data(), h.names.length);
  assertClose(f.map((r) => r.slice(3, 7)).flat(), ref.flat(), 1e-6, 1e-6, "val features");
  h.dispose();
});

Deno.test("authors' feature sets follow the code's formulas, with the guards", async () => {
  const reg = featureSet("authors-regression");
  assert.equal(reg.names.length, 5);
  const r = reg.compute({
    valLoss: tensor([5, 1]),
    trainLoss: tensor([4, 0]),
    improvementEma: tensor([0.01, -2]),
    mseLoss: tensor([30, 4]),
    l1Loss: tensor([1.5, 0.2]),
    gradMse: tensor([0.3, 0.1]),
    gradL1: tensor([0.1, 0.4]),
  });
  const want = [
    [0.25, 1 + Math.log(0.01 + 1e-5) / 12, 0.5, 0.5, 0.2],
    [0, 1 + Math.log(2 + 1e-5) / 12, 4 / 20 - 0.5, -0.8, -0.3],
  ];
  assertClose(await r.data(), want.flat(), 1e-5, 1e-5, "regression");
  const cls = featureSet("authors-classification").compute({
    valLoss: tensor([0.6]),
    trainLoss: tensor([0.5]),
    improvementEma: tensor([0.1]),
    ceLoss: tensor([0.5]),
    l1Loss: tensor([3]),
    trainAcc: tensor([0.9]),
    valAcc: tensor([0]),
    gradCe: tensor([0.2]),
    gradL1: tensor([0.1]),
  });
  assertClose(
    await cls.data(),
    [0.2, 1 + Math.log(0.1 + 1e-4) / 10, 0.5, 3, 0, 1],
    1e-5,
    1e-5,
    "classification",
  );
  const gan = featureSet("authors-gan", { isOffset: 6 }).compute({
    gradG: tensor([0.5, 0]),
    gradD: tensor([2, 1]),
    genCostEma: tensor([1.5, 0]),
    dRealEma: tensor([0.8, 0]),
    dFakeEma: tensor([0.2, 0]),
    inceptionScore: tensor([7, 0]),
  });
  assertClose(await gan.data(), [Math.log(4), 0.5, 0.5, 1, 0, -1, 0, -6], 1e-5, 1e-5, "gan");
  assert.throws(
    () => featureSet("authors-gan").compute({ gradG: tensor([1]) }),
    /needs raw inputs .*missing \[gradD, genCostEma/,
  );
});

Deno.test("normalization: affine, running statistics (parallel update), spec round trip", async () => {
  const aff = new FeatureNormalizer({ kind: "affine", shift: [1, 2], scale: [2, 0.5] }, 2);
  assert.deepEqual(Array.from(await aff.apply(tensor([[3, 4]])).data()), [4, 1]);
  assert.deepEqual(await aff.toSpec(), { kind: "affine", shift: [1, 2], scale: [2, 0.5] });
  assert.throws(
    () => new FeatureNormalizer({ kind: "affine", shift: [1], scale: [1] }, 2),
    /2 numbers/,
  );
  const run = new FeatureNormalizer(runningNormalization(2), 2);
  const batches = [[[1, 10], [3, 10], [5, 13]], [[0, -2], [2, 4]]];
  for (const b of batches) run.update(tensor(b));
  const all = batches.flat();
  const n = all.length;
  const mean = [0, 1].map((j) => all.reduce((s, r) => s + r[j], 0) / n);
  const vari = [0, 1].map((j) => all.reduce((s, r) => s + (r[j] - mean[j]) ** 2, 0) / n);
  const spec = await run.toSpec();
  assert.equal(spec.kind, "running");
  if (spec.kind !== "running") return;
  // The 1e-4 prior count (mean 0, var 1) barely moves the result.
  assertClose(spec.mean, mean, 1e-3, 1e-3, "running mean");
  assertClose(spec.var, vari, 1e-3, 1e-3, "running var");
  const y = await run.apply(tensor([[mean[0], mean[1] + Math.sqrt(vari[1])]])).data();
  assertClose(y, [0, 1], 1e-3, 1e-3, "normalized");
  run.frozen = true;
  run.update(tensor([[100, 100]]));
  assert.deepEqual((await run.toSpec() as typeof spec).mean, spec.mean);
});

Deno.test("improvement EMA and the authors' dense step reward", async () => {
  const eta = 0.8;
  const imp = new ImprovementEma(2, { decay: eta });
  const vals = [[5, 5], [4, 5.5], [3.9, 5.5], [4.2, 5]];
  let prev: number[] | null = null;
  let ema: number[] = [0, 0];
  for (const v of vals) {
    const delta = prev ? prev.map((p, i) => p - v[i]) : [0.1, 0.1];
    ema = prev ? ema.map((e, i) => eta * e + (1 - eta) * delta[i]) : delta;
    prev = v;
    const d = imp.observe(tensor(v));
    const r = improvementStepReward(d, imp.ema, { rmax: 2, scale: 0.5 });
    const [dv, ev, rv] = await readMany([d, imp.ema, r]);
    assertClose(dv, delta, 1e-6, 1e-5, "delta");
    assertClose(ev, ema, 1e-6, 1e-5, "ema");
    const want = delta.map((x, i) => improvementStepRewardHost(x, ema[i], { rmax: 2, scale: 0.5 }));
    assertClose(rv, want, 1e-5, 1e-4, "step reward");
  }
  // The first step: delta 0.1 = ema, so the reward is sign * min(sqrt(0.1/(0.1+1e-5)), rmax).
  assert.ok(Math.abs(improvementStepRewardHost(0.1, 0.1) - 1) < 1e-4);
  assert.equal(improvementStepRewardHost(-50, 0.001, { rmax: 20, scale: 1 }), -20);
  imp.reset();
  assert.deepEqual(Array.from(await imp.ema.data()), [1, 1]);
  imp.dispose();
});

Deno.test("final rewards: C/err, -C/max(acc, .5), C*IS^2, C/PPL", () => {
  assert.equal(inverseErrorReward(4, 20000), 5000);
  assert.equal(classificationReward(0.9, 1000), -1000 / 0.9);
  assert.equal(classificationReward(0.3, 1000), -2000);
  // = the paper's C / (err - 1).
  assert.ok(Math.abs(classificationReward(0.9, 1000) - 1000 / (0.1 - 1)) < 1e-9);
  assert.equal(inceptionReward(9, 10), 810);
  assert.equal(perplexityReward(4, 2), 0.5);
  assert.deepEqual(REWARDS.regression("best")({ best: [4, 5] }), [5000, 4000]);
  assert.throws(() => REWARDS.gan("is")({ best: [1] }), /no metric 'is'; metrics: best/);
});

Deno.test("the paper's normalized-improvement segment reward", async () => {
  const r = new NormalizedImprovementReward({ c: 2, k: 2 });
  r.reset(tensor([1, 10]));
  const seg = async (now: number[]) => Array.from(await r.next(tensor(now)).data());
  // First segment: no history, R = C * sign(gain).
  assertClose(await seg([2, 9]), [2, -2], 1e-6, 1e-6, "first");
  // h = 1: rate = P(t) - P(t-T).
  assertClose(await seg([2.5, 9.5]), [2 * 0.5 / 1, 2 * 0.5 / 1], 1e-5, 1e-5, "second");
  // h = k = 2: rate = (P(t) - P(t-2T)) / 2.
  assertClose(await seg([3.5, 9.5]), [2 * 1 / 0.75, 0], 1e-5, 1e-5, "third");
  const ppl = new NormalizedImprovementReward({ higherIsBetter: false });
  ppl.reset(tensor([10]));
  assert.deepEqual(Array.from(await ppl.next(tensor([8])).data()), [1]);
  r.dispose();
  ppl.dispose();
});

const ctx = (t: number, greedy = false): ActContext => ({ t, greedy, gen: new Generator(1) });

async function actionsOf(
  s: { act(f: Tensor, c: ActContext): { actions: Tensor } },
  f: Tensor,
  steps: number,
) {
  const out: number[][] = [];
  for (let t = 0; t < steps; t++) out.push(Array.from(await s.act(f, ctx(t)).actions.data()));
  return out;
}

Deno.test("fixed schedules: ratios, round-robin, proportional interleave and sampling", async () => {
  const f = tensor(new Float32Array(2 * 3), [2, 3]);
  assert.deepEqual(parseRatio("1:5"), [1, 5]);
  assert.throws(() => parseRatio("1:x"), /invalid ratio/);
  const r = ratioSchedule([1, 2]);
  assert.deepEqual((await actionsOf(r, f, 6)).map((a) => a[0]), [0, 1, 1, 0, 1, 1]);
  assert.deepEqual((await actionsOf(r, f, 2))[1], [1, 1], "every member takes the same action");
  assert.deepEqual((await actionsOf(roundRobin(3), f, 4)).map((a) => a[0]), [0, 1, 2, 0]);
  const prop = proportionalSchedule([3, 2, 1]);
  const seq = (await actionsOf(prop, f, 12)).map((a) => a[0]);
  assert.deepEqual([0, 1, 2].map((a) => seq.filter((x) => x === a).length), [6, 4, 2]);
  // Sampled: frequencies follow the sizes.
  const big = tensor(new Float32Array(4000 * 3), [4000, 3]);
  const sampled = proportionalSchedule([3, 1], "sample");
  const draws = await sampled.act(big, ctx(0)).actions.data();
  const frac = Array.from(draws).filter((a) => a === 0).length / draws.length;
  assert.ok(Math.abs(frac - 0.75) < 0.03, `P(action 0) = ${frac}`);
  sampled.dispose();
  assert.equal(scheduleFromName("ratio 1:5", { featureNames: [], actions: [] }).name, "fixed 1:5");
  assert.throws(
    () => scheduleFromName("bogus", { featureNames: [], actions: [] }),
    /unknown schedule 'bogus'/,
  );
});

Deno.test("threshold rules S1-S3 are computed on the GPU from the feature tensor", async () => {
  const names = paperFeatureNames({ losses: ["mse", "l1"] });
  const task = {
    featureNames: names,
    actions: [
      { name: "task", loss: "mse", group: "all" },
      { name: "reg", loss: "l1", group: "all" },
    ],
  };
  const col = (n: string) => names.indexOf(n);
  // Three members; columns val, loss.mse, loss.l1, grad.mse, grad.l1 set per member.
  const members = [
    { val: 1.2, "loss.mse": 1.0, "loss.l1": 5, "grad.mse": 1, "grad.l1": 3 },
    { val: 1.05, "loss.mse": 1.0, "loss.l1": 1, "grad.mse": 2, "grad.l1": 1 },
    { val: 2.0, "loss.mse": 1.0, "loss.l1": 2.1, "grad.mse": 1, "grad.l1": 1.1 },
  ];
  const x = new Float32Array(3 * names.length);
  members.forEach((m, p) => {
    for (const [k, v] of Object.entries(m)) x[p * names.length + col(k)] = v;
  });
  const f = tensor(x, [3, names.length]);
  const act = async (kind: "S1" | "S2" | "S3", th: number) =>
    Array.from(await thresholdRule(kind, task, { threshold: th }).act(f, ctx(0)).actions.data());
  // S1: (val - train)/train > 0.1 -> regularize.
  assert.deepEqual(await act("S1", 0.1), [1, 0, 1]);
  // S2: (l1 - val)/val > 1.
  assert.deepEqual(await act("S2", 1), [1, 0, 0]);
  // S3: (g_l1 - g_mse)/g_mse > 0.05.
  assert.deepEqual(await act("S3", 0.05), [1, 0, 1]);
  assert.deepEqual(
    Array.from(await scheduleFromName("S1 0.5", task).act(f, ctx(0)).actions.data()),
    [
      0,
      0,
      1,
    ],
  );
  assert.throws(
    () => thresholdRule("S1", { featureNames: ["a"], actions: task.actions }, { threshold: 0 }),
    /has no feature 'val'; features: \[a\]/,
  );
});
