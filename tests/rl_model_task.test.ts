/** ModelTask: a user's two-group, two-loss model scheduled without host syncs. */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { Linear } from "../nn/layers.ts";
import { mse } from "../nn/losses.ts";
import { Module } from "../nn/module.ts";
import { MlpController } from "../rl/controller.ts";
import { ModelTask } from "../rl/model_task.ts";
import { runEpisode } from "../rl/runner.ts";
import { trainReinforce } from "../rl/training.ts";
import { ratioSchedule } from "../rl/schedules.ts";
import { manualSeed } from "../tensor/ops.ts";
import { randn } from "../tensor/functional.ts";
import { setup } from "./helpers.ts";

await setup();

class TwoPart extends Module {
  a: Linear;
  b: Linear;
  constructor() {
    super();
    this.a = this.child("a", new Linear(4, 4));
    this.b = this.child("b", new Linear(4, 1));
  }
  forward(x: ReturnType<typeof randn>) {
    return this.b.forward(this.a.forward(x).relu());
  }
}

function makeTask() {
  manualSeed(3);
  const model = new TwoPart();
  const x = randn([16, 4]);
  const y = randn([16, 1]);
  const task = new ModelTask({
    model,
    groups: { A: ["a."], B: ["b."] },
    losses: {
      fit: () => mse(model.forward(x), y),
      shrink: () => model.b.weight.square().sum(),
    },
    actions: [
      { name: "fitA", loss: "fit", group: "A" },
      { name: "shrinkB", loss: "shrink", group: "B" },
    ],
    validate: () => mse(model.forward(x), y),
    valEvery: 2,
    totalSteps: 20,
  });
  return { task, model };
}

Deno.test("ModelTask: the chosen action moves only its group, with no host sync", async () => {
  const { task, model } = makeTask();
  task.reset(0);
  const a0 = await model.a.weight.data();
  const b0 = await model.b.weight.data();
  const syncs = backend().stats.hostSyncs;
  for (let i = 0; i < 3; i++) task.step(Int32Array.from([0])); // fit, group A only
  assert.equal(backend().stats.hostSyncs, syncs, "a step must not read back");
  assert.notDeepEqual(await model.a.weight.data(), a0);
  assert.deepEqual(await model.b.weight.data(), b0);
  const a1 = await model.a.weight.data();
  task.step(Int32Array.from([1])); // shrink, group B only
  assert.deepEqual(await model.a.weight.data(), a1);
  assert.notDeepEqual(await model.b.weight.data(), b0);
  assert.equal(task.features().shape[0], 1);
  task.dispose();
});

Deno.test("ModelTask: runs under a fixed schedule and a REINFORCE-trained controller", async () => {
  const { task } = makeTask();
  const fixed = await runEpisode(task, ratioSchedule([1, 1]), {
    steps: 10,
    seed: 1,
    sampleSeed: 2,
  });
  assert.ok(Number.isFinite(fixed.metrics.best[0]));
  const ctrl = new MlpController({ actions: 2, featureNames: task.featureNames, seed: 1 });
  const { history } = await trainReinforce(task, ctrl, {
    episodes: 2,
    steps: 10,
    seed: 1,
    reward: (m) => m.best.map((v) => 1 / v),
  });
  assert.equal(history.length, 2);
  task.dispose();
});
