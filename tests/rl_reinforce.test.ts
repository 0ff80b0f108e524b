/** REINFORCE: baseline and clipping arithmetic, the batched loss, and learning a bandit. */

import assert from "node:assert/strict";
import { tensor } from "../tensor/functional.ts";
import { MlpController } from "../rl/controller.ts";
import {
  baselineAdvantages,
  clipAdvantage,
  Reinforce,
  REINFORCE_PRESETS,
} from "../rl/reinforce.ts";
import { trainReinforce } from "../rl/training.ts";
import { ContextualBanditTask } from "../rl/toy_tasks.ts";
import { TrajectoryBuffer } from "../rl/trajectory.ts";
import { assertClose, setup } from "./helpers.ts";

await setup();

Deno.test("baseline: the authors' order (update, then advantage) and the dev order", () => {
  const eta = 0.8;
  // First episode: B starts at R, so the advantage is 0 in both orders.
  let a = baselineAdvantages([10], null, eta, "authors");
  assert.deepEqual(a, { advantages: [0], baseline: 10 });
  a = baselineAdvantages([20], 10, eta, "authors");
  // B_new = 0.8 * 10 + 0.2 * 20 = 12; adv = 20 - 12 = 8 = eta * (R - B_old).
  assert.ok(Math.abs(a.baseline - 12) < 1e-12);
  assert.ok(Math.abs(a.advantages[0] - eta * (20 - 10)) < 1e-12);
  const d = baselineAdvantages([20], 10, eta, "dev");
  // adv = R - B_old = 10; B is then updated to 12.
  assert.deepEqual(d.advantages, [10]);
  assert.ok(Math.abs(d.baseline - 12) < 1e-12);
  // A population: one shared baseline moved by the mean reward.
  const p = baselineAdvantages([1, 3], 1, 0.5, "authors");
  assert.deepEqual(p, { advantages: [-0.5, 1.5], baseline: 1.5 });
  const q = baselineAdvantages([1, 3], 1, 0.5, "dev");
  assert.deepEqual(q, { advantages: [0, 2], baseline: 1.5 });
});

Deno.test("advantage clipping: symmetric, and the GAN magnitude clip keeping the sign", () => {
  const sym = { kind: "symmetric", c: 5 } as const;
  assert.deepEqual([-7, -5, 0.3, 6].map((x) => clipAdvantage(x, sym)), [-5, -5, 0.3, 5]);
  const gan = REINFORCE_PRESETS.gan.advantageClip!;
  assert.deepEqual(gan, { kind: "magnitude", lo: 1, hi: 20 });
  assert.deepEqual(
    [-30, -0.2, 0, 0.5, 3, 25].map((x) => clipAdvantage(x, gan)),
    [-20, -1, 1, 1, 3, 20],
  );
  assert.equal(clipAdvantage(123, { kind: "none" }), 123);
  const r = new Reinforce(new MlpController({ inputs: 2, actions: 2 }), {
    baselineDecay: 0.9,
    advantageClip: sym,
  });
  assert.deepEqual(r.advantages([100, 0]), [5, -5]);
  assert.equal(r.baseline, 50);
  r.dispose();
});

Deno.test("one batched update: loss = -mean(logp * (adv_episode + step reward)) over S*T*P", async () => {
  const ctrl = new MlpController({ inputs: 2, actions: 3, seed: 4, temperature: 2 });
  const reinforce = new Reinforce(ctrl, { learningRate: 0 });
  // S = 2 episodes of T = 2 steps, P = 2 members.
  const buf = new TrajectoryBuffer(4, 2, 2, { rewards: true });
  const feats = [[[1, 0], [0, 1]], [[0.5, 0.5], [1, 1]], [[0, 0], [2, -1]], [[1, 2], [0, 0]]];
  const acts = [[0, 2], [1, 1], [2, 0], [0, 1]];
  const dense = [[0.1, 0], [0, -0.2], [0.3, 0], [0, 0]];
  for (let t = 0; t < 4; t++) {
    buf.record("features", t, tensor(feats[t]));
    buf.record("actions", t, tensor(acts[t], [2], "i32"));
    buf.record("rewards", t, tensor(dense[t]));
  }
  const adv = [[1, -2], [0.5, 3]];
  const loss = await reinforce.update(buf, adv).item();
  // Host: log pi from the controller on the same samples.
  const logp = Array.from(
    await ctrl.logProb(tensor(feats.flat()), tensor(acts.flat(), [8], "i32")).data(),
  );
  let sum = 0;
  for (let t = 0; t < 4; t++) {
    for (let p = 0; p < 2; p++) sum += logp[t * 2 + p] * (adv[Math.floor(t / 2)][p] + dense[t][p]);
  }
  assertClose([loss], [-sum / 8], 1e-5, 1e-4, "loss");
  assert.throws(() => reinforce.update(buf, [[1, 2, 3]]), /advantage rows of 2/);
  buf.dispose();
  reinforce.dispose();
  ctrl.dispose();
});

Deno.test("REINFORCE learns a contextual bandit (P = 64, 3 contexts, permuted payoff)", async () => {
  const payoff = [[0, 1, 0], [0, 0, 1], [1, 0, 0]];
  const task = new ContextualBanditTask({ population: 64, payoff });
  const ctrl = new MlpController({
    featureNames: task.featureNames,
    actions: 3,
    temperature: 2,
    seed: 3,
  });
  const { history } = await trainReinforce(task, ctrl, {
    episodes: 40,
    steps: 4,
    seed: 1,
    reward: (m) => m.score,
    args: { learningRate: 0.03, baselineDecay: 0.8, advantageClip: { kind: "symmetric", c: 5 } },
  });
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const first = mean(history.slice(0, 3).map((h) => h.meanReward));
  const last = mean(history.slice(-5).map((h) => h.meanReward));
  assert.ok(first < 0.6, `starts near chance (1/3): ${first}`);
  assert.ok(last > 0.9, `learned: mean payoff ${last}`);
  assert.ok(history.slice(1).every((h) => Number.isFinite(h.previousLoss)));
  // The policy picks the paying action in every context.
  const probs = await ctrl.probabilities(tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    .array() as number[][];
  probs.forEach((row, c) => assert.ok(row[payoff[c].indexOf(1)] > 0.9, `context ${c}: ${row}`));
  // Host syncs: one final read per episode, nothing inside the step loop.
  assert.ok(history.every((h) => h.stats.hostSyncs === 1), "one readback per episode");
  task.dispose();
  ctrl.dispose();
});
