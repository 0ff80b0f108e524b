/**
 * Schedule your own two-loss model with AutoLoss: a regressor trained on a data loss and an L2
 * penalty on its output layer; a controller learns when to apply which.
 *
 * Run: npx -y deno@2.9.6 run -A examples/schedule_your_model.ts
 */
import {
  init,
  Linear,
  manualSeed,
  MlpController,
  ModelTask,
  Module,
  mse,
  randn,
  runEpisode,
  type Tensor,
  trainReinforce,
} from "../mod.ts";

await init();
manualSeed(0);

class Net extends Module {
  hidden = this.child("hidden", new Linear(8, 16));
  head = this.child("head", new Linear(16, 1));
  forward(x: Tensor): Tensor {
    return this.head.forward(this.hidden.forward(x).relu());
  }
}

const net = new Net();
const [x, y] = [randn([64, 8]), randn([64, 1])];
const [xVal, yVal] = [randn([64, 8]), randn([64, 1])];

const task = new ModelTask({
  model: net,
  losses: { data: () => mse(net.forward(x), y), l2: () => net.head.weight.square().sum() },
  actions: [
    { name: "data", loss: "data", group: "all" },
    { name: "l2", loss: "l2", group: "all" },
  ],
  validate: () => mse(net.forward(xVal), yVal),
  totalSteps: 100,
});

const controller = new MlpController({ actions: 2, featureNames: task.featureNames, seed: 1 });
await trainReinforce(task, controller, {
  episodes: Number(Deno.args[0] ?? 4),
  steps: 100,
  seed: 1,
  reward: (m) => m.best.map((v) => 1 / v), // C / best validation loss
  onEpisode: (log) => console.log(`episode ${log.episode}: reward ${log.meanReward.toFixed(3)}`),
});

const run = await runEpisode(task, controller, { steps: 100, sampleSeed: 7, greedy: true });
console.log(`greedy controller: best validation MSE ${run.metrics.best[0].toFixed(4)}`);
