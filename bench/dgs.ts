/**
 * Benchmark (a script, not a test): DGS's lambda grid as ONE population-batched run against the
 * same runs one after another (population 1 each), on the regression or MLP task.
 *
 * ```sh
 * XDG_RUNTIME_DIR=/tmp npx -y deno@2.9.6 run -A bench/dgs.ts [--task regression|mlp] [--lambdas 50] [--steps 200]
 * ```
 *
 * Both sides run the same steps through the same runner (rl/runner.ts `runEpisode`) and read
 * their results once at the end; the first run of each side also compiles the kernels, so each
 * side is timed on a second, warm run (the sequential side: the 2nd..last members). The members'
 * final validation scores are compared to check that both sides computed the same thing.
 * @module
 */

import { parseArgs } from "node:util";
import { init } from "../gpu/backend.ts";
import { adapterInfo } from "../gpu/webgpu/device.ts";
import { runEpisode } from "../rl/runner.ts";
import { memberSeed } from "../rl/task.ts";
import { logSpace } from "../tasks/l1/methods.ts";
import { type L1Problem, mlpProblem, regressionProblem } from "../tasks/l1/problems.ts";
import { taskOnly } from "../tasks/l1/schedules.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    task: { type: "string", default: "regression" },
    lambdas: { type: "string", default: "50" },
    steps: { type: "string", default: "200" },
  },
});
const count = Number(values.lambdas);
const steps = Number(values.steps);
await init();

const problem: L1Problem = values.task === "mlp"
  ? mlpProblem({
    spec: "authors",
    sizes: [200, 1000, 200, 1000, 1000],
    hidden: 32,
    train: {
      lr: 1e-3,
      lambda: 0.02,
      valEvery: 10,
      featureValEvery: 1,
      features: "authors",
      improvementDecay: 0.9,
    },
    rewardC: 1000,
  })
  : regressionProblem({
    data: { seed: 1, dim: 16, sizes: [200, 200, 200, 200, 200], noiseStd: 2 },
    model: { form: "authors", quadScale: 0 },
    train: {
      lr: 5e-4,
      lambda: 0.2,
      valEvery: 10,
      featureValEvery: 1,
      features: "authors",
      improvementDecay: 0.8,
    },
    rewardC: 20000,
  });
const lambdas = values.task === "mlp" ? logSpace(0.001, 0.2, count) : logSpace(0.01, 3.2, count);
const ctrl = taskOnly();
const SEED = 1;

/** One run of `lambdas` as a population; returns seconds and the members' best scores. */
async function population(
  ls: number[],
  seed: number,
): Promise<{ seconds: number; best: number[] }> {
  const task = problem.create({
    population: ls.length,
    lambda: ls,
    mode: "joint",
    data: "task",
    steps,
  });
  const began = performance.now();
  const run = await runEpisode(task, ctrl, { steps, seed, sampleSeed: 0 });
  const seconds = (performance.now() - began) / 1000;
  task.dispose();
  return { seconds, best: run.metrics.best };
}

console.log(`DGS benchmark: ${values.task}, ${count} lambdas x ${steps} steps`);
await population(lambdas, SEED); // warm-up (compiles the population's kernels)
const batched = await population(lambdas, SEED);
console.log(`population (P=${count}): ${batched.seconds.toFixed(2)} s`);

// Sequential: member p alone, seeded as member p of the population.
let seqSeconds = 0;
const seqBest: number[] = [];
for (let p = 0; p < count; p++) {
  const r = await population([lambdas[p]], memberSeed(SEED, p));
  if (p > 0) seqSeconds += r.seconds; // member 0's run compiles the kernels
  seqBest.push(r.best[0]);
}
const perRun = seqSeconds / (count - 1);
const sequential = perRun * count;
console.log(
  `sequential (${count} x P=1): ${sequential.toFixed(2)} s (${perRun.toFixed(3)} s per run, warm)`,
);
const maxDiff = Math.max(...seqBest.map((b, i) => Math.abs(b - batched.best[i]) / Math.abs(b)));
console.log(`speed ratio: ${(sequential / batched.seconds).toFixed(1)}x`);
console.log(
  `max relative difference of the members' best validation scores: ${maxDiff.toExponential(2)}`,
);
const a = await adapterInfo();
console.log(
  `machine: ${a.description || a.vendor}, ${navigator.hardwareConcurrency} CPUs, load average ` +
    Deno.loadavg().map((v) => v.toFixed(2)).join(" "),
);
ctrl.dispose();
