/**
 * The runner and controller files: host syncs per step, per-member seeding (a population equals
 * separate runs), controller save/load, feature-spec checks, plain specs.
 */

import assert from "node:assert/strict";
import { Generator } from "../gpu/random.ts";
import { tensor } from "../tensor/functional.ts";
import * as ops from "../tensor/ops.ts";
import { readMany } from "../tensor/tensor.ts";
import { MlpController, PolicyController } from "../rl/controller.ts";
import {
  controllerFromJson,
  controllerToJson,
  loadController,
  saveController,
} from "../rl/controller_file.ts";
import { runningNormalization } from "../rl/normalization.ts";
import { type IntervalReport, runEpisode, runSpec, runSteps } from "../rl/runner.ts";
import { trainReinforce } from "../rl/training.ts";
import { ratioSchedule } from "../rl/schedules.ts";
import { memberSeed } from "../rl/task.ts";
import { ContextualBanditTask } from "../rl/toy_tasks.ts";
import { setup } from "./helpers.ts";

await setup();

const PAYOFF = [[0, 1, 0], [0, 0, 1], [1, 0, 0]];

Deno.test("runEpisode: no host sync between reporting intervals", async () => {
  const task = new ContextualBanditTask({ population: 8, payoff: PAYOFF });
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 3, seed: 1 });
  const reports: IntervalReport[] = [];
  const run = await runEpisode(task, ctrl, {
    steps: 30,
    seed: 1,
    sampleSeed: 2,
    interval: 10,
    onInterval: (r) => {
      reports.push(r);
    },
    record: true,
  });
  // One metrics read per interval, then the final read: 0 syncs in the 9 steps between reads.
  assert.deepEqual(reports.map((r) => r.hostSyncs), [1, 2, 3]);
  assert.deepEqual(reports.map((r) => r.steps), [10, 20, 30]);
  assert.equal(run.stats.hostSyncs, 4);
  assert.equal(run.stats.steps, 30);
  assert.ok(run.stats.dispatches > 30, "the work was recorded");
  assert.equal(run.actions!.length, 30);
  // Warm, an episode compiles nothing: no per-step value is baked into a kernel.
  const again = await runEpisode(task, ctrl, { steps: 12, seed: 2, sampleSeed: 3 });
  assert.equal(again.stats.pipelines, 0);
  assert.equal(again.stats.hostSyncs, 1);
  assert.ok(run.actions!.every((a) => a.length === 8 && a.every((x) => x >= 0 && x < 3)));
  assert.deepEqual(run.rewards, run.metrics.reward);
  // A hand-made schedule goes through the same runner.
  const fixed = await runEpisode(task, ratioSchedule([1, 2]), {
    steps: 6,
    seed: 1,
    sampleSeed: 0,
    record: true,
  });
  assert.deepEqual(fixed.actions!.map((a) => a[0]), [0, 1, 1, 0, 1, 1]);
  assert.equal(fixed.stats.hostSyncs, 1);
  task.dispose();
  ctrl.dispose();
});

Deno.test("runSteps: afterStep runs on the host after each step and can end the loop", async () => {
  const task = new ContextualBanditTask({ population: 2, payoff: PAYOFF });
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 3, seed: 1 });
  task.reset(1);
  const seen: number[] = [];
  const stats = await runSteps(task, ctrl, {
    steps: 10,
    gen: new Generator(3),
    t0: 5,
    afterStep: async ({ t, i }) => {
      await Promise.resolve();
      seen.push(t);
      return i === 3;
    },
  });
  assert.deepEqual(seen, [5, 6, 7, 8]);
  assert.equal(stats.steps, 4);
  assert.equal(stats.hostSyncs, 0);
  task.dispose();
  ctrl.dispose();
});

Deno.test("a population of P gives the same per-member results as P separate runs", async () => {
  const p = 4;
  const seed = 11;
  const sampleSeed = 22;
  const ctrl = new MlpController({ inputs: 3, actions: 3, temperature: 1, seed: 5 });
  const pop = new ContextualBanditTask({ population: p, payoff: PAYOFF });
  const together = await runEpisode(pop, ctrl, { steps: 12, seed, sampleSeed, record: true });
  const single = new ContextualBanditTask({ population: 1, payoff: PAYOFF });
  for (let m = 0; m < p; m++) {
    const alone = await runEpisode(single, ctrl, {
      steps: 12,
      seed: memberSeed(seed, m),
      sampleSeed: memberSeed(sampleSeed, m),
      record: true,
    });
    assert.deepEqual(
      alone.actions!.map((a) => a[0]),
      together.actions!.map((a) => a[m]),
      `member ${m}`,
    );
    assert.equal(alone.metrics.score[0], together.metrics.score[m]);
  }
  // The members did not all act alike (the check is not vacuous).
  const cols = [0, 1, 2, 3].map((m) => together.actions!.map((a) => a[m]).join(""));
  assert.ok(new Set(cols).size > 1);
  assert.equal(memberSeed(memberSeed(seed, 3), 0), memberSeed(seed, 3));
  // Per-row seeds in categorical: a row's draw depends on its seed, not on its index.
  const probs = tensor(new Float32Array(6).fill(1), [2, 3]);
  const a = await ops.categorical(probs, new Generator(0), tensor([7, 9], [2], "u32")).data();
  const b = await ops.categorical(
    tensor(new Float32Array(3).fill(1), [1, 3]),
    new Generator(123),
    tensor([9], [1], "u32"),
  ).data();
  assert.equal(a[1], b[0]);
  pop.dispose();
  single.dispose();
  ctrl.dispose();
});

Deno.test("a saved and reloaded controller picks identical actions under the same seed", async () => {
  const task = new ContextualBanditTask({ population: 16, payoff: PAYOFF });
  const ctrl = new MlpController({
    featureNames: task.featureNames,
    actions: 3,
    seed: 8,
    normalization: runningNormalization(3),
  });
  await trainReinforce(task, ctrl, {
    episodes: 2,
    steps: 4,
    seed: 3,
    reward: (m) => m.score,
    args: { learningRate: 0.05 },
  });
  const dir = await Deno.makeTempDir({ prefix: "rl_runner_test" });
  const path = `${dir}/controller.json`;
  const doc = await saveController(path, ctrl, {
    actions: task.actions.map((a) => a.name),
    provenance: { task: task.name, seed: 3, episodes: 2, reward: null },
  });
  assert.equal(doc.format, "autoloss-controller");
  assert.equal(doc.version, 1);
  assert.equal(doc.featureSpec.normalization.kind, "running");
  assert.deepEqual(doc.architecture.hidden, [16]);
  const loaded = await loadController(path, {
    featureNames: task.featureNames,
    actions: task.actions.map((a) => a.name),
  });
  const [w1, w2] = await Promise.all([
    readMany(ctrl.parameters()),
    readMany(loaded.parameters()),
  ]);
  assert.deepEqual(w1, w2);
  for (const greedy of [false, true]) {
    const runs = [];
    for (const c of [ctrl, loaded]) {
      runs.push(
        await runEpisode(task, c, { steps: 10, seed: 4, sampleSeed: 5, greedy, record: true }),
      );
    }
    assert.deepEqual(runs[0].actions, runs[1].actions, greedy ? "greedy" : "sampled");
  }
  // The JSON round trip is stable.
  const again = await controllerToJson(loaded, {
    actions: doc.actions,
    provenance: doc.provenance,
  });
  assert.equal(JSON.stringify(again), JSON.stringify(doc));
  await Deno.remove(dir, { recursive: true });
  loaded.dispose();
  ctrl.dispose();
  task.dispose();
});

Deno.test("loading checks the feature spec and the file, failing clearly", async () => {
  const ctrl = new PolicyController({
    architecture: { kind: "linear", inputs: 2, actions: 2, hidden: [], activation: "leaky_relu" },
    featureNames: ["val", "loss.mse"],
  });
  const doc = await controllerToJson(ctrl, {
    provenance: { task: "t", seed: 0, episodes: 1, reward: 1 },
  });
  assert.throws(
    () => controllerFromJson(doc, { featureNames: ["val", "loss.l1"] }),
    {
      message:
        "controller was trained on features [val, loss.mse]; this task provides [val, loss.l1]",
    },
  );
  assert.throws(() => controllerFromJson(doc, { actions: ["a", "b", "c"] }), /among 2 actions/);
  assert.throws(() => controllerFromJson({ ...doc, version: 2 }), /written by a newer autoloss/);
  assert.throws(() => controllerFromJson({ ...doc, format: "x" }), /not an autoloss controller/);
  const badShape = structuredClone(doc);
  badShape.weights[0].shape = [3, 2];
  assert.throws(() => controllerFromJson(badShape), /has 16 bytes, expected 24/);
  const renamed = structuredClone(doc);
  renamed.weights[0].name = "net.9.weight";
  assert.throws(
    () => controllerFromJson(renamed),
    /missing: net.0.weight[\s\S]*unexpected: net.9.weight/,
  );
  const badArch = structuredClone(doc);
  badArch.architecture.hidden = [4];
  badArch.featureSpec.names = ["a"];
  assert.throws(
    () => controllerFromJson(badArch),
    /hidden must be empty exactly when kind is 'linear'/,
  );
  ctrl.dispose();
});

Deno.test("runSpec runs plain specs: a schedule name or a controller file", async () => {
  const make = () => new ContextualBanditTask({ population: 4, payoff: PAYOFF });
  const factories = { createTask: () => make(), reward: (m: Record<string, number[]>) => m.score };
  const fixed = await runSpec(
    {
      task: "contextual-bandit",
      config: {},
      seed: 1,
      sampleSeed: 2,
      controller: "round-robin",
      steps: 6,
    },
    factories,
    { record: true },
  );
  assert.deepEqual(fixed.actions!.map((a) => a[0]), [0, 1, 2, 0, 1, 2]);
  assert.equal(fixed.spec.controller, "round-robin");
  const task = make();
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 3, seed: 2 });
  const json = await controllerToJson(ctrl, {
    provenance: { task: task.name, seed: 0, episodes: 0, reward: null },
  });
  const learned = await runSpec(
    { task: "contextual-bandit", config: {}, seed: 1, sampleSeed: 2, controller: json, steps: 5 },
    factories,
  );
  assert.equal(learned.rewards.length, 4);
  assert.ok(learned.rewards.every((r) => r >= 0 && r <= 1));
  // Plain data only: it survives JSON.
  assert.deepEqual(JSON.parse(JSON.stringify(learned.metrics)), learned.metrics);
  task.dispose();
  ctrl.dispose();
});

Deno.test("trainReinforce with the dense step reward and S = 2 episodes per update", async () => {
  const task = new ContextualBanditTask({ population: 8, payoff: PAYOFF });
  const ctrl = new MlpController({ featureNames: task.featureNames, actions: 3, seed: 1 });
  const { history, reinforce } = await trainReinforce(task, ctrl, {
    episodes: 4,
    steps: 3,
    seed: 1,
    reward: (m) => m.score,
    // "score" stands in for a validation loss here: it exercises the path, not its meaning.
    args: { episodesPerUpdate: 2, stepReward: { metric: "score", scale: 0.1 } },
  });
  assert.equal(reinforce.updates, 2);
  assert.ok(Number.isNaN(history[1].previousLoss) && Number.isFinite(history[2].previousLoss));
  await assert.rejects(
    () =>
      trainReinforce(task, ctrl, {
        episodes: 1,
        steps: 2,
        seed: 1,
        reward: (m) => m.score,
        args: { stepReward: { metric: "val" } },
      }),
    /has no metric 'val'/,
  );
  task.dispose();
  ctrl.dispose();
});
