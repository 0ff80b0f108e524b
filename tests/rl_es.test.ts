/**
 * Evolution strategies over controller parameters (rl/es.ts): the host math, the per-member
 * network against the base controller run with each member's parameters, the gradient against
 * the host sum, pairs sampling alike, and learning a contextual bandit.
 */

import assert from "node:assert/strict";
import { MlpController } from "../rl/controller.ts";
import { centeredRanks, esGradient, esRound, pairWeights, PerturbedPolicy } from "../rl/es.ts";
import { Reinforce } from "../rl/reinforce.ts";
import { runEpisode } from "../rl/runner.ts";
import { ContextualBanditTask } from "../rl/toy_tasks.ts";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { readMany } from "../tensor/tensor.ts";
import { assertClose, rng, setup } from "./helpers.ts";

await setup();

Deno.test("ES host math: centered ranks, pair weights, the gradient sum", () => {
  assert.deepEqual(centeredRanks([3, 1, 2]), [0.5, -0.5, 0]);
  assert.deepEqual(centeredRanks([7]), [0]);
  // Ties keep input order.
  assert.deepEqual(centeredRanks([1, 1, 0]), [0, 0.5, -0.5]);
  const f = [0.5, -0.5, 0, 0.25];
  assert.deepEqual(pairWeights(f, 0.5), [0.5, -0.125]);
  const noise = Float32Array.of(1, 2, 3, -1, 0, 4);
  assertClose(esGradient(f, noise, 3, 0.5), [0.5 + 0.125, 1, 1.5 - 0.5]);
  assert.throws(() => pairWeights([1, 2, 3], 0.1), /do not make antithetic pairs/);
  assert.throws(() => pairWeights([1, 2], 0), /sigma must be > 0/);
});

Deno.test("PerturbedPolicy: member p is the base network with theta +- sigma eps, the gradient is the host sum", async () => {
  const p = 6;
  const k = 3;
  const base = new MlpController({ inputs: k, actions: 2, hidden: 5, temperature: 2, seed: 4 });
  const reinforce = new Reinforce(base, { learningRate: 0.01 });
  const flat = reinforce.flat;
  const policy = new PerturbedPolicy(base, flat, p);
  const r = rng(9);
  const x = tensor(Float32Array.from({ length: p * k }, () => r() * 2 - 1), [p, k]);
  const sigma = 0.3;
  policy.perturb(sigma, new Generator(11), 5);
  const [noise, theta, logp] = await readMany([policy.noise, flat.data, policy.logPolicy(x)]);
  const n = flat.size;
  assert.equal(noise.length, (p / 2) * n);
  // Zero on the flat buffer's padding.
  const inRange = (j: number) => [...flat.ranges.values()].some((q) => j >= q.start && j < q.end);
  for (let j = 0; j < n; j++) if (!inRange(j)) assert.ok(noise[j] === 0, `padding ${j}`);
  // The simple composition: the base controller itself, loaded with member m's parameters.
  const rows = await x.array() as number[][];
  for (let m = 0; m < p; m++) {
    const sign = m % 2 === 0 ? sigma : -sigma;
    const member = Float32Array.from(theta, (v, j) => v + sign * noise[((m / 2) | 0) * n + j]);
    const copy = new MlpController({ inputs: k, actions: 2, hidden: 5, temperature: 2 });
    const copyFlat = new Reinforce(copy, {}).flat;
    ops.assign_(copyFlat.data, tensor(member, [n]));
    const want = await copy.logPolicy(tensor([rows[m]], [1, k])).data();
    assertClose(logp.slice(m * 2, m * 2 + 2), want, 1e-5, 1e-4, `member ${m}`);
    copy.dispose();
  }
  // The gradient written is minus the host ES sum.
  const fitness = centeredRanks([3, 1, 4, 1.5, 9, 2]);
  policy.writeGradient(fitness);
  const g = await flat.grad.data();
  const want = esGradient(fitness, Float32Array.from(noise), n, sigma).map((v) => -v);
  assertClose(g, want, 1e-5, 1e-4, "gradient");
  policy.dispose();
  reinforce.dispose();
  base.dispose();
});

Deno.test("PerturbedPolicy: a pair draws the same uniforms (same actions at a tiny sigma), pairs differ", async () => {
  const p = 16;
  const task = new ContextualBanditTask({ population: p, payoff: [[1, 0], [0, 1]] });
  const base = new MlpController({ featureNames: task.featureNames, actions: 2, seed: 1 });
  const reinforce = new Reinforce(base, {});
  const policy = new PerturbedPolicy(base, reinforce.flat, p);
  policy.perturb(1e-6, new Generator(2), 3);
  // One context for every member: the features then agree and only the draws can differ.
  const x = tensor(Float32Array.from({ length: p * 2 }, (_, i) => (i % 2 === 0 ? 1 : 0)), [p, 2]);
  const gen = new Generator(4);
  const draws: number[][] = [];
  for (let t = 0; t < 12; t++) {
    draws.push(Array.from(await policy.act(x, { t, greedy: false, gen }).actions.data()));
  }
  for (let i = 0; i < p / 2; i++) {
    assert.deepEqual(draws.map((d) => d[2 * i]), draws.map((d) => d[2 * i + 1]), `pair ${i}`);
  }
  const pairs = new Set(Array.from({ length: p / 2 }, (_, i) => draws.map((d) => d[2 * i]).join()));
  assert.ok(pairs.size > 1, "different pairs draw from different streams");
  policy.dispose();
  reinforce.dispose();
  base.dispose();
  task.dispose();
});

Deno.test("ES learns a contextual bandit (8 antithetic pairs, 3 contexts, permuted payoff)", async () => {
  const payoff = [[0, 1, 0], [0, 0, 1], [1, 0, 0]];
  const p = 16;
  const task = new ContextualBanditTask({ population: p, payoff });
  const base = new MlpController({
    featureNames: task.featureNames,
    actions: 3,
    temperature: 1,
    seed: 3,
  });
  const reinforce = new Reinforce(base, { learningRate: 0.1 });
  const policy = new PerturbedPolicy(base, reinforce.flat, p);
  const scores: number[] = [];
  for (let round = 0; round < 40; round++) {
    const { run, fitness } = await esRound(task, policy, reinforce.optimizer, {
      steps: 8,
      seed: 100 + round,
      sampleSeed: 200 + round,
      noiseSeed: 300 + round,
      sigma: 0.5,
      reward: (m) => m.score,
    });
    assert.equal(run.stats.hostSyncs, 1, "one read per round");
    assert.equal(fitness.length, p);
    scores.push(run.rewards.reduce((a, b) => a + b, 0) / p);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(scores.slice(0, 3)) < 0.6, `starts near chance: ${scores.slice(0, 3)}`);
  // The base policy (no noise) picks the paying action in every context, greedy and sampled.
  const probs = await base.probabilities(tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    .array() as number[][];
  probs.forEach((row, c) => assert.ok(row[payoff[c].indexOf(1)] > 0.8, `context ${c}: ${row}`));
  const check = await runEpisode(task, base, {
    steps: 8,
    seed: 999,
    sampleSeed: 998,
    reward: (m) => m.score,
  });
  assert.ok(mean(check.rewards) > 0.8, `learned: mean payoff ${mean(check.rewards)}`);
  policy.dispose();
  reinforce.dispose();
  base.dispose();
  task.dispose();
});

Deno.test("PerturbedPolicy: an odd population is refused with the fix", () => {
  const base = new MlpController({ inputs: 2, actions: 2 });
  const reinforce = new Reinforce(base, {});
  assert.throws(
    () => new PerturbedPolicy(base, reinforce.flat, 5),
    /even population >= 2, not 5 \(set controller.population to an even number\)/,
  );
  reinforce.dispose();
  base.dispose();
});
