/**
 * `--resume` through the command line, for the commands whose Ctrl-C stops with a checkpoint
 * (run/signals.ts `GracefulStop`): `train gan` (online PPO, episodic REINFORCE), `baseline gan` (a
 * fixed schedule), `train regression`, `compare regression` (after a method) and `train
 * classifier`. Each runs in
 * a subprocess, is interrupted with SIGINT partway, resumed, and must end with the files of an
 * uninterrupted run (wall times, dates and the machine aside). The other commands' resume tests:
 * tests/cli.test.ts (train/compare regression, transfer mlp), tests/task_gan.test.ts (compare,
 * transfer, eval gan), tests/task_nmt.test.ts (train and compare nmt).
 */

import assert from "node:assert/strict";
import { cliProcess } from "./helpers.ts";

/** The run's summary, metrics and controller (when there is one) without what differs by run. */
async function files(dir: string): Promise<Record<string, unknown>> {
  const drop = (k: string) =>
    /second|minute|_ms|sps|date|machine|loop|pipeline|elapsed|speed/i.test(k);
  const clean = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(clean) : v && typeof v === "object"
      ? Object.fromEntries(
        Object.entries(v).filter(([k]) => !drop(k)).map(([k, x]) => [k, clean(x)]),
      )
      : v;
  // The run directory's own path appears in some fields.
  const read = async (name: string) =>
    (await Deno.readTextFile(`${dir}/${name}`).catch(() => "null")).replaceAll(dir, "RUN");
  const json = async (name: string) => clean(JSON.parse(await read(name)));
  const metrics = (await read("metrics.jsonl")).trim().split("\n").map((l) => clean(JSON.parse(l)));
  return {
    summary: await json("summary.json"),
    controller: await json("controller.json"),
    metrics,
  };
}

/** Lines of a run's metrics.jsonl so far (0 before it exists). */
async function metricLines(dir: string): Promise<number> {
  const text = await Deno.readTextFile(`${dir}/metrics.jsonl`).catch(() => "");
  return text.split("\n").filter((l) => l.trim()).length;
}

/**
 * `command` from scratch into `whole`; then again into `cut`, stopped with SIGINT once its metrics
 * hold `after` lines (exit 130), resumed, and compared with `whole`.
 */
async function stopAndResume(command: string[], after: number, resumedLine: RegExp) {
  const root = await Deno.makeTempDir();
  try {
    const whole = await cliProcess([...command, "--out", `${root}/whole`]);
    assert.equal(whole.code, 0, whole.text);
    const cut = `${root}/cut`;
    const stopped = await cliProcess([...command, "--out", cut], {
      when: async () => (await metricLines(cut)) >= after,
      signal: "SIGINT",
    });
    assert.equal(stopped.code, 130, stopped.text);
    const resumed = await cliProcess([command[0], command[1], "--resume", cut]);
    assert.equal(resumed.code, 0, resumed.text);
    assert.match(resumed.text, resumedLine);
    assert.deepEqual(await files(cut), await files(`${root}/whole`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

const GAN = [
  "--backend",
  "cpu",
  ...[
    "data.limit=256",
    "model.zDim=8",
    "model.gFilters=4",
    "model.dFilters=4",
    "optim.batchSize=8",
    "optim.lr=0.005",
    "is.every=10",
    "is.samples=50",
    "is.finalSamples=50",
    "is.realSamples=50",
    "train.steps=150",
    "train.logEvery=10",
    "controller.ppo.segment=10",
    "train.checkpointEvery=20",
  ].flatMap((kv) => ["--set", kv]),
];

Deno.test({
  name: "train gan (online PPO) stopped by Ctrl-C and resumed ends as the uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => stopAndResume(["train", "gan", ...GAN], 3, /resumed at step \d+ \(segment \d+\)/),
});

Deno.test({
  name:
    "train gan (episodic REINFORCE) stopped by Ctrl-C and resumed ends as the uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    stopAndResume(
      [
        "train",
        "gan",
        ...GAN,
        ...[
          "controller.algorithm=reinforce",
          "controller.reinforce.episodes=6",
          "controller.reinforce.episodeSteps=10",
        ].flatMap((kv) => ["--set", kv]),
      ],
      2,
      /resumed at episode \d+/,
    ),
});

Deno.test({
  name: "baseline gan (fixed schedule) stopped by Ctrl-C and resumed ends as the uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () => stopAndResume(["baseline", "gan", ...GAN], 3, /resumed at step \d+/),
});

Deno.test({
  name:
    "train regression stopped by Ctrl-C after a round and resumed ends as the uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    stopAndResume(
      [
        "train",
        "regression",
        ...[
          "data.dim=4",
          "data.sizes=[40,40,40,40,40]",
          "controller.population=2",
          "controller.rounds=30",
          "controller.steps=20",
          "controller.hidden=4",
          "controller.keep=last",
        ].flatMap((kv) => ["--set", kv]),
      ],
      3,
      /resuming .* after round \d+ of 30/,
    ),
});

Deno.test({
  name: "compare regression stopped by Ctrl-C after a method and resumed ends as the whole run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    stopAndResume(
      [
        "compare",
        "regression",
        ...[
          "data.dim=4",
          "data.sizes=[40,40,40,40,40]",
          "train.steps=200",
          "compare.trials=2",
          "compare.gridSteps=100",
          "compare.dgsCount=4",
          "compare.curvePoints=2",
          "controller.population=2",
          "controller.rounds=4",
          "controller.steps=100",
          "controller.hidden=4",
          "controller.retrain=true",
        ].flatMap((kv) => ["--set", kv]),
      ],
      2,
      /resuming .*: \d+ methods finished before/,
    ),
});

Deno.test({
  name: "train classifier stopped by Ctrl-C and resumed ends as the uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: () =>
    stopAndResume(
      [
        "train",
        "classifier",
        "mnist",
        "--backend",
        "cpu",
        ...[
          "train.epochs=1",
          "train.batchSize=16",
          "train.limit=1920",
          "optim.warmupSteps=5",
          "eval.every=10",
          "eval.limit=100",
          "log.every=5",
          "checkpoint.every=10",
        ].flatMap((kv) => ["--set", kv]),
      ],
      3,
      /resum/i,
    ),
});
