/**
 * Trains and ships the regression or MLP controller of weights/ (issue 15):
 *
 *     npx -y deno@2.9.6 run -A weights/ship_l1_controller.ts regression|mlp [--set key=value ...]
 *
 * Trains a controller with the `quick` preset (and any `--set`), evaluates it as `eval <task>`
 * does (compare.trials trials of train.steps steps, seed cfg.seed) and writes
 * weights/<task>_controller.json: the controller file plus `provenance.shipped` (the config key it
 * is valid for, the commands, the controller settings and the stated numbers).
 * @module
 */

import { init } from "../gpu/backend.ts";
import {
  controllerKey,
  loadTaskConfig,
  MLP_SPEC,
  REGRESSION_SPEC,
  type ShippedInfo,
  shippedPath,
  trainFromConfig,
} from "../tasks/l1/run.ts";
import type { SharedConfig } from "../tasks/l1/config.ts";
import type { L1Problem } from "../tasks/l1/problems.ts";
import { autoLossMethod, mean } from "../tasks/l1/methods.ts";

const [task, ...rest] = Deno.args;
if (task !== "regression" && task !== "mlp") throw new Error("usage: regression|mlp [--set k=v]");
const set = rest.flatMap((a, i) => (rest[i - 1] === "--set" ? [a] : []));
await init();
const spec = task === "regression" ? REGRESSION_SPEC : MLP_SPEC;
const cfg = await loadTaskConfig<SharedConfig>(spec.schema, {
  task,
  preset: "quick",
  config: [],
  set,
});
const problem = (spec.problem as (c: SharedConfig) => L1Problem)(cfg);
const trained = await trainFromConfig(problem, cfg, console.log);
const r = await autoLossMethod(problem, {
  trials: cfg.compare.trials,
  steps: cfg.train.steps,
  seed: cfg.seed,
  controller: trained.file,
  greedy: cfg.controller.greedy,
});
const sets = set.map((s) => ` --set ${s}`).join("");
const shipped: ShippedInfo = {
  key: controllerKey(task, cfg),
  command: `npx -y deno@2.9.6 run -A weights/ship_l1_controller.ts ${task}${sets}`,
  preset: "quick",
  controller: cfg.controller,
  stated: {
    command: `npx -y deno@2.9.6 run -A cli.ts eval ${task} --preset quick`,
    trials: cfg.compare.trials,
    steps: cfg.train.steps,
    seed: cfg.seed,
    mean: mean(r.values),
    values: r.values,
    l1Fraction: r.detail.l1Fraction as number,
  },
};
const file = { ...trained.file, provenance: { ...trained.file.provenance, shipped } };
const path = shippedPath(task);
await Deno.writeTextFile(`${path}.tmp`, JSON.stringify(file, null, 2) + "\n");
await Deno.rename(`${path}.tmp`, path);
console.log(
  `${path}: AutoLoss ${mean(r.values).toFixed(4)} (${r.values.length} trials), ` +
    `L1 share ${(r.detail.l1Fraction as number).toFixed(3)}, trained in ${
      trained.seconds.toFixed(0)
    } s`,
);
