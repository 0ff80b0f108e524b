/** PPO: GAE against hand computation, clipping at the ratio boundaries, and a chain MDP. */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { tensor } from "../tensor/functional.ts";
import { readMany } from "../tensor/tensor.ts";
import { gae, gaeHost, reverseScan } from "../rl/gae.ts";
import { clippedSurrogate, makeActor, normalizeAdvantages, Ppo, valueLoss } from "../rl/ppo.ts";
import { trainPpo } from "../rl/training.ts";
import { ChainTask } from "../rl/toy_tasks.ts";
import { TrajectoryBuffer } from "../rl/trajectory.ts";
import { assertClose, randomData, setup } from "./helpers.ts";

await setup();

Deno.test("GAE matches a hand computation (done masking, bootstrap)", async () => {
  // T = 3, P = 1, gamma 0.9, lambda 0.8; observation 2 starts a new episode.
  const { advantages, returns } = gae({
    rewards: tensor([[1], [0], [2]]),
    values: tensor([[0.5], [0.4], [0.3]]),
    dones: tensor([[0], [0], [1]]),
    nextValue: tensor([0.6]),
    nextDone: tensor([0]),
    gamma: 0.9,
    lambda: 0.8,
  });
  // t=2: delta = 2 + 0.9*0.6 - 0.3 = 2.24 = A2
  // t=1: next obs starts an episode: delta = 0 - 0.4 = -0.4 = A1
  // t=0: delta = 1 + 0.9*0.4 - 0.5 = 0.86; A0 = 0.86 + 0.72 * -0.4 = 0.572
  const [a, r] = await readMany([advantages, returns]);
  assertClose(a, [0.572, -0.4, 2.24], 1e-6, 1e-5, "advantages");
  assertClose(r, [1.072, 0, 2.54], 1e-6, 1e-5, "returns");
});

Deno.test("GAE scan matches CleanRL's loop for T not a power of two, P > 1", async () => {
  const t = 13;
  const p = 3;
  const rewards = randomData(t * p, 1);
  const values = randomData(t * p, 2);
  const dones = randomData(t * p, 3, 0, 1).map((x) => (x > 0.8 ? 1 : 0));
  const nextValue = randomData(p, 4);
  const nextDone = new Float32Array([0, 1, 0]);
  const ref = gaeHost(rewards, values, dones, nextValue, nextDone, 0.99, 0.95);
  const out = gae({
    rewards: tensor(rewards, [t, p]),
    values: tensor(values, [t, p]),
    dones: tensor(dones, [t, p]),
    nextValue: tensor(nextValue),
    nextDone: tensor(nextDone),
    gamma: 0.99,
    lambda: 0.95,
  });
  const [a, r] = await readMany([out.advantages, out.returns]);
  assertClose(a, ref.advantages, 1e-5, 1e-4, "advantages");
  assertClose(r, ref.returns, 1e-5, 1e-4, "returns");
  // The scan itself on a single row.
  const y = await reverseScan(tensor([[0.5], [2], [1]]), tensor([[1], [1], [1]])).data();
  assertClose(y, [1 + 0.5 * (1 + 2 * 1), 3, 1], 1e-6, 1e-6, "scan");
});

Deno.test("clipped surrogate: gradients just inside/outside 1 +- eps", async () => {
  const eps = 0.2;
  // [advantage, ratio, clipped?]: a ratio past the clip on the side the advantage favors has no
  // gradient; everywhere else the gradient of -A*r w.r.t. log r is -A*r / N.
  const cases: [number, number, boolean][] = [
    [1, 1.19, false],
    [1, 1.21, true],
    [1, 0.79, false],
    [-1, 0.81, false],
    [-1, 0.79, true],
    [-1, 1.21, false],
    [2, 1.0, false],
  ];
  const n = cases.length;
  const newLogp = tensor(cases.map(([, r]) => Math.log(r))).requiresGrad_();
  const oldLogp = tensor(new Float32Array(n));
  const adv = tensor(cases.map(([a]) => a));
  const loss = clippedSurrogate(newLogp, oldLogp, adv, eps);
  loss.backward();
  const [g, l] = await readMany([newLogp.grad!, loss]);
  const want = cases.map(([a, r, clipped]) => (clipped ? 0 : (-a * r) / n));
  assertClose(g, want, 1e-6, 1e-4, "d loss / d log pi");
  const wantLoss = cases.reduce(
    (s, [a, r]) => s + Math.max(-a * r, -a * Math.min(Math.max(r, 1 - eps), 1 + eps)),
    0,
  ) / n;
  assertClose(l, [wantLoss], 1e-6, 1e-5, "loss");
});

Deno.test("clipped value loss and per-minibatch advantage normalization", async () => {
  const newV = tensor([1.0, 0.0, 2.0]).requiresGrad_();
  const oldV = tensor([0.5, 0.5, 1.95]);
  const ret = tensor([2.0, 1.0, 2.0]);
  const loss = valueLoss(newV, oldV, ret, 0.2, true);
  loss.backward();
  // Member 0: unclipped (1-2)^2 = 1, clipped (0.7-2)^2 = 1.69 -> clipped branch, no grad to v.
  // Member 1: unclipped 1, clipped (0.3-1)^2 = 0.49 -> unclipped, grad (v - R) / N = -1/3.
  // Member 2: |v - v_old| < 0.2 -> both equal, unclipped branch: grad 0.
  const [l, g] = await readMany([loss, newV.grad!]);
  assertClose(l, [0.5 * (1.69 + 1 + 0) / 3], 1e-6, 1e-5, "value loss");
  assertClose(g, [0, -1 / 3, 0], 1e-6, 1e-5, "value grad");
  const plain = await valueLoss(tensor([1]), tensor([0]), tensor([3]), 0.2, false).item();
  assert.equal(plain, 2);
  const z = Array.from(await normalizeAdvantages(tensor([1, 2, 3, 6])).data());
  const mean = 3;
  const std = Math.sqrt([4, 1, 0, 9].reduce((a, b) => a + b) / 3);
  assertClose(z, [1, 2, 3, 6].map((x) => (x - mean) / (std + 1e-8)), 1e-6, 1e-5, "normalized");
});

Deno.test("target-KL early stop is decided on the GPU (no extra host sync)", async () => {
  const task = new ChainTask({ population: 4, length: 3 });
  const args = { numSteps: 8, hidden: [8], numMinibatches: 2, updateEpochs: 4, learningRate: 0.05 };
  const actor = makeActor({ inputs: 3, actions: 2 }, args);
  const ppo = new Ppo(actor, { ...args, targetKl: 0 });
  const buf = new TrajectoryBuffer(8, 4, 3, {
    logProbs: true,
    values: true,
    rewards: true,
    dones: true,
  });
  for (let t = 0; t < 8; t++) {
    buf.record("features", t, task.features());
    buf.record("actions", t, tensor([0, 1, 1, 0], [4], "i32"));
    buf.record("logProbs", t, tensor([-0.69, -0.69, -0.69, -0.69]));
    buf.record("rewards", t, tensor([1, 0, 0, 1]));
  }
  const next = { features: task.features(), done: tensor([0, 0, 0, 0]) };
  const syncs = backend().stats.hostSyncs;
  const stats = await ppo.update(buf, next);
  assert.equal(backend().stats.hostSyncs - syncs, 1, "one readback per update");
  // Any positive KL after the first epoch stops the remaining three.
  assert.equal(stats.epochs, 1);
  for (const k of ["policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac"] as const) {
    assert.ok(Number.isFinite(stats[k]), `${k} = ${stats[k]}`);
  }
  // The gated minibatches changed nothing: same parameters as a one-epoch update.
  const one = new Ppo(makeActor({ inputs: 3, actions: 2 }, args), { ...args, updateEpochs: 1 });
  assert.equal((await one.update(buf, next)).epochs, 1);
  const [gated, single] = await readMany([ppo.flat.data, one.flat.data]);
  assert.deepEqual(gated, single);
  const none = new Ppo(makeActor({ inputs: 3, actions: 2 }, args), args);
  assert.equal((await none.update(buf, next)).epochs, 4);
  const [four] = await readMany([none.flat.data]);
  assert.notDeepEqual(four, single);
  buf.dispose();
  for (const x of [ppo, one, none]) x.dispose();
  task.dispose();
});

Deno.test("PPO solves a chain MDP within a fixed budget", async () => {
  const task = new ChainTask({ population: 16, length: 5 });
  const args = {
    numSteps: 32,
    learningRate: 0.01,
    hidden: [32],
    gamma: 0.9,
    numMinibatches: 2,
    updateEpochs: 4,
    annealLr: false,
  };
  const actor = makeActor({ inputs: 5, actions: 2, featureNames: task.featureNames }, args);
  const { history, ppo } = await trainPpo(task, actor, { updates: 8, seed: 1, args });
  // Always moving right earns 1 every 4 steps: 0.25 per step; a random walk earns ~0.05.
  assert.ok(history[0].meanReward < 0.15, `random start: ${history[0].meanReward}`);
  const last = history[history.length - 1];
  assert.ok(last.meanReward > 0.2, `final reward per step ${last.meanReward}`);
  assert.ok(last.explained_variance > 0.5, `explained variance ${last.explained_variance}`);
  const eye = [0, 1, 2, 3].map((i) => [0, 1, 2, 3, 4].map((j) => (i === j ? 1 : 0)));
  const probs = await actor.probabilities(tensor(eye)).array() as number[][];
  probs.forEach((row, s) => assert.ok(row[1] > 0.9, `state ${s}: P(right) = ${row[1]}`));
  // Rollouts never read back: the one readback per update is the debug scalars.
  assert.ok(history.every((h) => h.rollout.hostSyncs === 0));
  for (const k of ["old_approx_kl", "approx_kl", "clipfrac", "entropy"] as const) {
    assert.ok(history.every((h) => Number.isFinite(h[k])), k);
  }
  ppo.dispose();
  actor.dispose();
  task.dispose();
});

Deno.test("old-policy sync every k updates keeps a frozen behavior policy in between", async () => {
  const task = new ChainTask({ population: 4, length: 3 });
  const args = {
    numSteps: 8,
    hidden: [8],
    numMinibatches: 2,
    updateEpochs: 2,
    learningRate: 0.05,
    oldPolicySyncEvery: 2,
  };
  const actor = makeActor({ inputs: 3, actions: 2 }, args);
  const initial = await readMany(actor.parameters());
  const { ppo } = await trainPpo(task, actor, { updates: 1, seed: 1, args });
  assert.deepEqual(await readMany(ppo.oldActor!.parameters()), initial, "not synced after 1");
  assert.notDeepEqual(await readMany(actor.parameters()), initial, "the actor learned");
  const buf = new TrajectoryBuffer(8, 4, 3, {
    logProbs: true,
    values: true,
    rewards: true,
    dones: true,
  });
  for (let t = 0; t < 8; t++) {
    buf.record("features", t, task.features());
    buf.record("actions", t, tensor([0, 1, 1, 0], [4], "i32"));
    buf.record("rewards", t, tensor([1, 0, 0, 1]));
  }
  const stats = await ppo.update(buf, { features: task.features(), done: tensor([0, 0, 0, 0]) });
  // The second update ran against the stale copy; afterwards the copy is synced.
  assert.ok(Number.isFinite(stats.approx_kl));
  assert.deepEqual(
    await readMany(ppo.oldActor!.parameters()),
    await readMany(actor.parameters()),
    "synced after 2",
  );
  buf.dispose();
  ppo.dispose();
  actor.dispose();
  task.dispose();
});

Deno.test("trainPpo with the paper's segment reward instead of per-step rewards", async () => {
  const task = new ChainTask({ population: 4, length: 3 });
  const args = { numSteps: 6, hidden: [8], numMinibatches: 2, updateEpochs: 1 };
  const actor = makeActor({ inputs: 3, actions: 2 }, args);
  // "state" stands in for a performance metric: every step of a segment gets the same reward.
  const { history, ppo } = await trainPpo(task, actor, {
    updates: 3,
    seed: 1,
    args,
    stepReward: null,
    segmentReward: { metric: "state", c: 1, k: 2 },
  });
  assert.equal(history.length, 3);
  assert.ok(history.every((h) => Number.isFinite(h.meanReward) && Number.isFinite(h.value_loss)));
  await assert.rejects(
    () => trainPpo(task, actor, { updates: 1, seed: 1, args, stepReward: "val" }),
    /has no metric 'val'; metrics: reward, done, state/,
  );
  ppo.dispose();
  actor.dispose();
  task.dispose();
});
