/**
 * Table 1 of the regression and MLP tasks as method specs: W/O L1, S1-S3, DGS, AutoLoss and the
 * null baselines (untrained controller, matched-share random), each run here or on a worker
 * (dist/worker.ts runs the same {@link runMethod}); {@link table1} runs them in order, keeping
 * finished ones in a resumed run's cache. Used by `compare` (tasks/l1/compare.ts) and the sweep.
 * @module
 */

import type { ControllerFile } from "../../rl/controller_file.ts";
import { formatDuration } from "../../run/progress.ts";
import type { SharedConfig } from "./config.ts";
import {
  actEveryOf,
  autoLossMethod,
  denseGridSearch,
  logSpace,
  matchedRandom,
  mean,
  type MethodOptions,
  type MethodResult,
  std,
  thresholdMethod,
  untrainedLike,
  withoutL1,
} from "./methods.ts";
import type { L1Problem } from "./problems.ts";
import type { MethodCache } from "./resume.ts";
import { fmt } from "./run.ts";

/**
 * One Table 1 method as plain data (with the shared trial options): what a run job carries
 * (dist/), and what {@link runMethod} runs.
 */
export type MethodSpec =
  & { trials: number; steps: number; seed: number; curvePoints: number }
  & (
    | { method: "wol1" }
    | { method: "threshold"; kind: "S1" | "S2" | "S3"; grid: number[]; gridSteps: number }
    | { method: "dgs"; lambdas: number[]; gridSteps: number }
    | { method: "autoloss"; controller: ControllerFile; greedy: boolean; name?: string }
    | { method: "matched"; shares: number[]; actEvery?: number }
  );

/** The key of a method's result in a resumable run (its Table 1 row). */
export function methodKey(spec: MethodSpec): string {
  switch (spec.method) {
    case "threshold":
      return spec.kind;
    case "autoloss":
      return spec.name ?? "AutoLoss";
    default:
      return spec.method;
  }
}

/** Runs a {@link MethodSpec} on `problem` (here, or on a worker). */
export function runMethod(
  problem: L1Problem,
  spec: MethodSpec,
  log?: (s: string) => void,
): Promise<MethodResult> {
  const o: MethodOptions = {
    trials: spec.trials,
    steps: spec.steps,
    seed: spec.seed,
    curvePoints: spec.curvePoints,
    log,
  };
  switch (spec.method) {
    case "wol1":
      return withoutL1(problem, o);
    case "threshold":
      return thresholdMethod(problem, spec.kind, spec.grid, { ...o, gridSteps: spec.gridSteps });
    case "dgs":
      return denseGridSearch(problem, spec.lambdas, { ...o, gridSteps: spec.gridSteps });
    case "autoloss":
      return autoLossMethod(problem, {
        ...o,
        controller: spec.controller,
        greedy: spec.greedy,
        name: spec.name,
      });
    case "matched": {
      const reference = {
        detail: { l1Fractions: spec.shares, actEvery: spec.actEvery ?? 1 },
      } as unknown as MethodResult;
      return matchedRandom(problem, reference, o);
    }
  }
}

/** Runs method specs somewhere (e.g. NATS workers, dist/); results in the order given. */
export type MethodExec = (specs: MethodSpec[]) => Promise<MethodResult[]>;

/**
 * The methods of Table 1 for a problem, in the paper's column order, then the null baselines
 * (the untrained controller and matched-share random, when `compare.methods.nulls`). All trials
 * share their initializations across methods (paired). With `exec` the methods run there, the
 * independent ones at once (W/O L1, S1-S3 and DGS while the controller trains; then AutoLoss and
 * the untrained controller; then matched-share random); the results are the same.
 */
export async function table1(
  problem: L1Problem,
  cfg: SharedConfig,
  controller: () => Promise<{ file: ControllerFile; initial?: ControllerFile }>,
  log: (s: string) => void,
  exec?: MethodExec,
  cache?: MethodCache,
): Promise<MethodResult[]> {
  const c = cfg.compare;
  const o = {
    trials: c.trials,
    steps: cfg.train.steps,
    seed: cfg.seed,
    curvePoints: c.curvePoints,
  };
  const gridSteps = c.gridSteps > 0 ? c.gridSteps : cfg.train.steps;
  const out: MethodResult[] = [];
  const done = (r: MethodResult) => {
    out.push(r);
    log(
      `${r.name}: ${fmt(mean(r.values), 4)} ± ${fmt(std(r.values), 4)} ` +
        `(${formatDuration(r.seconds)})`,
    );
  };
  // Here: one method after another, as listed; with exec: each phase at once. Methods that
  // finished before a --resume come from the cache.
  const phase = async (specs: MethodSpec[]): Promise<MethodResult[]> => {
    const todo = specs.filter((spec) => !cache?.get(methodKey(spec)));
    const remote = exec && todo.length ? await exec(todo) : [];
    const results: MethodResult[] = [];
    for (const spec of specs) {
      const key = methodKey(spec);
      let r = cache?.get(key);
      if (r) log(`${r.name}: finished before the resume`);
      else {
        r = exec ? remote.shift()! : await runMethod(problem, spec, log);
        await cache?.put(key, r);
      }
      if (!exec) done(r);
      results.push(r);
    }
    return results;
  };
  const first: MethodSpec[] = [];
  if (c.methods.wol1) first.push({ ...o, method: "wol1" });
  for (const kind of ["S1", "S2", "S3"] as const) {
    const key = kind.toLowerCase() as "s1" | "s2" | "s3";
    if (c.methods[key]) first.push({ ...o, method: "threshold", kind, grid: c[key], gridSteps });
  }
  if (c.methods.dgs) {
    const lambdas = logSpace(c.dgsMin, c.dgsMax, c.dgsCount);
    first.push({ ...o, method: "dgs", lambdas, gridSteps });
  }
  const [firstResults, trained] = exec
    ? await Promise.all([phase(first), c.methods.autoloss ? controller() : null])
    : [await phase(first), null];
  if (exec) firstResults.forEach(done);
  if (c.methods.autoloss) {
    const { file, initial } = trained ?? await controller();
    const greedy = cfg.controller.greedy;
    const second: MethodSpec[] = [{ ...o, method: "autoloss", controller: file, greedy }];
    if (c.methods.nulls) {
      second.push({
        ...o,
        method: "autoloss",
        controller: initial ?? await untrainedLike(file),
        greedy,
        name: UNTRAINED,
      });
    }
    if (exec) {
      const results = await phase(second);
      results.forEach(done);
      if (c.methods.nulls) {
        const shares = results[0].detail.l1Fractions as number[];
        const actEvery = actEveryOf(file);
        (await phase([{ ...o, method: "matched", shares, actEvery }])).forEach(done);
      }
    } else {
      const [auto] = await phase(second.slice(0, 1));
      if (c.methods.nulls) {
        await phase(second.slice(1));
        const shares = auto.detail.l1Fractions as number[];
        await phase([{ ...o, method: "matched", shares, actEvery: actEveryOf(file) }]);
      }
    }
  }
  return out;
}

/** The name of the untrained-controller row. */
export const UNTRAINED = "untrained controller";

/** The name of the matched-share random row. */
export const MATCHED = "random (matched share)";
