/**
 * The GAN task at toy size (batch 4, 4-channel networks, synthetic 28x28 images): model shapes
 * and sizes, which parameters each action changes, the pipelined controller loop's host syncs,
 * the collapse/NaN rule, checkpoint and resume, and the inception-score plumbing.
 */

import assert from "node:assert/strict";
import { backend } from "../gpu/backend.ts";
import { Generator } from "../gpu/random.ts";
import { loadCheckpoint } from "../nn/checkpoint.ts";
import { MlpController } from "../rl/controller.ts";
import { saveController } from "../rl/controller_file.ts";
import { makeActor } from "../rl/ppo.ts";
import { runEpisode } from "../rl/runner.ts";
import { randn, tensor } from "../tensor/functional.ts";
import { readMany, type Tensor, tidy } from "../tensor/tensor.ts";
import { GanTask, type GanTaskOptions } from "../tasks/gan/task.ts";
import { D_ACTION, G_ACTION, ganFeatureNames } from "../tasks/gan/actions.ts";
import { decodeStatus, formatIs } from "../tasks/gan/status.ts";
import {
  ganSchedule,
  PAPER_SCHEDULES,
  runFixed,
  runLearned,
  saveGanCheckpoint,
} from "../tasks/gan/driver.ts";
import { OnlinePpo } from "../tasks/gan/online_ppo.ts";
import {
  ARCH_SPACE,
  AUTHORS_DCGAN,
  Dcgan,
  type DcganArch,
  sampleArchs,
} from "../tasks/gan/model.ts";
import { inceptionScore, inceptionScoreOfLogits, TinyClassifier } from "../tasks/gan/scoring.ts";
import { inceptionScoreOf } from "../tasks/classifier/inception_score.ts";
import { rng, setup } from "./helpers.ts";

await setup();

const TINY: DcganArch = { ...AUTHORS_DCGAN, zDim: 8, gFilters: 4, dFilters: 4 };

function images(n: number, seed: number) {
  const r = rng(seed);
  const px = Float32Array.from({ length: n * 784 }, () => r() * 2 - 1);
  return { images: px, labels: new Int32Array(n), n, h: 28, w: 28 };
}

function tinyTask(over: Partial<GanTaskOptions> = {}): GanTask {
  return new GanTask({
    arch: TINY,
    data: images(64, 1),
    batchSize: 4,
    lr: 2e-4,
    betas: [0.5, 0.999],
    ...over,
  });
}

async function paramsOf(task: GanTask): Promise<{ G: Float32Array; D: Float32Array }> {
  const flat = task.model.flat;
  const g = flat.group("G");
  const d = flat.group("D");
  const [all] = await readMany([flat.data]);
  return {
    G: (all as Float32Array).slice(g.start, g.end),
    D: (all as Float32Array).slice(d.start, d.end),
  };
}

async function status(task: GanTask) {
  const st = tidy(() => task.status());
  const [v] = await readMany([st]);
  st.dispose();
  return decodeStatus(v);
}

Deno.test("gan model: shapes, ranges, the authors' parameter counts, A.5 sampler", async () => {
  const authors = new Dcgan(AUTHORS_DCGAN, 0);
  assert.deepEqual(authors.counts(), { G: 1_015_553, D: 212_865 });
  authors.dispose();
  const bn = new Dcgan({ ...TINY, gBatchNorm: true, dBatchNorm: true }, 3);
  const [x, logits] = tidy(() => {
    const img = bn.gen.forward(randn([5, TINY.zDim]));
    return [img, bn.disc.forward(img)];
  });
  assert.deepEqual(x.shape, [5, 1, 28, 28]);
  assert.deepEqual(logits.shape, [5, 1]);
  const [px] = await readMany([x]);
  assert.ok(px.every((v) => v >= -1 && v <= 1), "tanh output in [-1, 1]");
  assert.equal(bn.buffers().length, 6, "running mean and var of 3 batch norms");
  x.dispose();
  logits.dispose();
  bn.dispose();
  const archs = sampleArchs(40, 7);
  assert.deepEqual(sampleArchs(40, 7), archs, "deterministic");
  for (const a of archs) {
    assert.ok(ARCH_SPACE.filters.includes(a.gFilters) && ARCH_SPACE.filters.includes(a.dFilters));
    assert.ok(ARCH_SPACE.zDims.includes(a.zDim));
  }
  assert.ok(new Set(archs.map((a) => JSON.stringify(a))).size > 10, "varied");
  assert.equal(PAPER_SCHEDULES.length, 11);
  const s15 = ganSchedule("1:5");
  assert.deepEqual(Array.from({ length: 7 }, (_, t) => s15.actionAt(t)), [1, 0, 0, 0, 0, 0, 1]);
  s15.dispose();
});

Deno.test("gan task: a D step changes only D, a G step only G; feature shapes", async () => {
  for (const features of ["authors", "paper"] as const) {
    const task = tinyTask({ features });
    task.reset(5);
    const k = task.featureNames.length;
    assert.equal(k, features === "authors" ? 4 : 12);
    assert.deepEqual(task.features().shape, [1, k]);
    const p0 = await paramsOf(task);
    task.step(Int32Array.of(D_ACTION));
    const p1 = await paramsOf(task);
    assert.deepEqual(p1.G, p0.G, "D step left G alone");
    assert.notDeepEqual(p1.D, p0.D, "D step moved D");
    task.step(Int32Array.of(G_ACTION));
    const p2 = await paramsOf(task);
    assert.deepEqual(p2.D, p1.D, "G step left D alone");
    assert.notDeepEqual(p2.G, p1.G, "G step moved G");
    const [f] = await readMany([task.features()]);
    assert.ok(f.every(Number.isFinite));
    const s = await status(task);
    assert.equal(s.gCount, 1);
    assert.equal(s.run, 1);
    assert.equal(s.last, G_ACTION);
    assert.ok(s.genCost > 0 && s.discCost > 0 && s.nonfinite === 0);
    task.dispose();
  }
});

Deno.test("gan task: GPU-gated actions give the host path's results", async () => {
  // With batch norm too: the branch not taken runs no kernel, so its statistics stay put.
  const bn = { arch: { ...TINY, gBatchNorm: true, dBatchNorm: true } };
  for (const over of [{}, bn]) {
    const host = tinyTask(over);
    const gpu = tinyTask(over);
    host.reset(9);
    gpu.reset(9);
    const syncs = backend().stats.hostSyncs;
    for (const a of [D_ACTION, G_ACTION, G_ACTION, D_ACTION]) {
      host.step(Int32Array.of(a));
      const t = tensor(Int32Array.of(a), [1], "i32");
      gpu.step(t);
      t.dispose();
    }
    assert.equal(backend().stats.hostSyncs, syncs, "no host sync in a step");
    const [ph, pg] = [await paramsOf(host), await paramsOf(gpu)];
    assert.deepEqual(pg.G, ph.G);
    assert.deepEqual(pg.D, ph.D);
    assert.deepEqual(await status(gpu), await status(host));
    const buffers = async (t: GanTask) => await readMany([...t.model.buffers()].map(([, b]) => b));
    assert.deepEqual(await buffers(gpu), await buffers(host), "batch-norm statistics");
    host.dispose();
    gpu.dispose();
  }
  const gpu = tinyTask();
  gpu.reset(9);
  // So the task also runs under the generic runner of rl/runner.ts (GPU-sampled actions).
  const ctrl = new MlpController({ featureNames: gpu.featureNames, actions: 2, temperature: 1 });
  const run = await runEpisode(gpu, ctrl, { steps: 5, seed: 3, sampleSeed: 4, record: true });
  assert.equal(run.stats.hostSyncs, 1, "one read, at the end");
  assert.equal(gpu.t, 5);
  assert.ok(run.actions!.every(([a]) => a === G_ACTION || a === D_ACTION));
  const s = await status(gpu);
  assert.equal(s.gCount, run.actions!.filter(([a]) => a === G_ACTION).length);
  ctrl.dispose();
  gpu.dispose();
});

Deno.test("learned loop: actions chosen on the GPU, 0 host syncs between reads", async () => {
  const task = tinyTask({ features: "paper" });
  task.reset(2);
  const actor = makeActor({ inputs: task.featureNames.length, actions: 2 }, { hidden: [8] });
  const n = 12;
  const syncs0 = backend().stats.hostSyncs;
  const r = await runLearned(task, actor, { steps: n, gen: new Generator(4) });
  assert.equal(r.completed, n);
  assert.equal(r.aborted, null);
  assert.equal(r.stats.reads, 1, "one packed read, at the end");
  assert.equal(r.stats.hostSyncs, 1);
  assert.equal(backend().stats.hostSyncs - syncs0, 1);
  assert.equal(r.actions.length, n);
  assert.ok(r.actions.every((a) => a === G_ACTION || a === D_ACTION));
  assert.equal(r.status!.gCount, r.actions.filter((a) => a === G_ACTION).length);
  assert.equal(task.t, n);
  // With a logging interval: one read per interval, none in between.
  const logged: number[] = [];
  const syncs1 = backend().stats.hostSyncs;
  const r2 = await runLearned(task, actor, {
    steps: 10,
    gen: new Generator(6),
    readEvery: 4,
    onStatus: (t) => logged.push(t),
  });
  assert.deepEqual(logged, [16, 20, 22]);
  assert.equal(backend().stats.hostSyncs - syncs1, 3);
  assert.equal(r2.actions.length, 10);
  // Warm, a loop compiles nothing: no per-step value is baked into a kernel.
  tidy(() => task.metrics());
  const pipelines = backend().stats.pipelines;
  await runLearned(task, actor, { steps: 6, gen: new Generator(5) });
  tidy(() => task.metrics());
  assert.equal(backend().stats.pipelines, pipelines);
  // A fixed schedule reads only at its interval.
  const f = await runFixed(task, ganSchedule("1:1"), { steps: 8, readEvery: 4 });
  assert.equal(f.stats.hostSyncs, 2);
  assert.deepEqual(f.actions, [1, 0, 1, 0, 1, 0, 1, 0]);
  actor.dispose();
  task.dispose();
});

Deno.test("collapse and NaN: detected on the GPU, rolled back with a controller reset", async () => {
  const dir = await Deno.makeTempDir();
  const ckpt = `${dir}/checkpoint.safetensors`;
  try {
    let task = tinyTask({ features: "paper", maxRun: 3 });
    // Collapse: four G steps in a row exceed maxRun = 3.
    task.reset(1);
    const c = await runFixed(task, ganSchedule("0:1"), { steps: 6, readEvery: 1 });
    assert.equal(c.aborted, "collapse");
    assert.equal(c.completed, 4);
    // A learned loop sees a collapse inside it at its read (the longest run is kept on the GPU).
    task.reset(1);
    const always = makeActor({ inputs: task.featureNames.length, actions: 2 }, { hidden: [8] });
    const l = await runLearned(task, always, { steps: 8, gen: new Generator(1), greedy: true });
    assert.equal(l.aborted, "collapse", "greedy on fixed weights: one action throughout");
    always.dispose();
    task.dispose();
    task = tinyTask({ features: "paper" });
    // NaN: a poisoned G weight is caught at the next read; the rule restores the checkpoint.
    const trainer = new OnlinePpo(task, {
      segment: 4,
      ppo: { hidden: [8] },
      reward: { c: 1, k: 2 },
      seed: 3,
      maxRollbacks: 2,
    });
    task.reset(1);
    await trainer.start();
    const first = await trainer.segment({ nonfiniteBefore: 0 });
    assert.ok(!("aborted" in first), "a healthy segment");
    await trainer.save(ckpt);
    const saved = await paramsOf(task);
    const actorBefore = await readMany(trainer.actor.parameters());
    const w = task.model.gen.up1.weight;
    backend().write(w.storageFor("test"), Float32Array.of(NaN), w.offset);
    const bad = await trainer.segment({ nonfiniteBefore: 0 });
    assert.ok("aborted" in bad && bad.aborted === "nonfinite", "flagged by the GPU check");
    assert.ok(await trainer.rollback(ckpt));
    assert.equal(trainer.rollbacks, 1);
    assert.equal(task.t, 4, "back at the checkpoint's step");
    const restored = await paramsOf(task);
    assert.deepEqual(restored.G, saved.G);
    assert.ok(restored.G.every(Number.isFinite));
    assert.equal((await status(task)).nonfinite, 0);
    const actorAfter = await readMany(trainer.actor.parameters());
    assert.notDeepEqual(actorAfter, actorBefore, "the controller was re-initialized");
    const next = await trainer.segment({ nonfiniteBefore: 0 });
    assert.ok(!("aborted" in next), "training continues");
    assert.ok(await trainer.rollback(ckpt));
    assert.equal(await trainer.rollback(ckpt), false, "maxRollbacks reached: the caller stops");
    trainer.dispose();
    task.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint and resume continue with identical next-step losses", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const classifier = new TinyClassifier(3);
    const opts = { features: "paper" as const, classifier, isSamples: 20, isEvery: 3 };
    const a = tinyTask(opts);
    a.reset(11);
    const sched = ganSchedule("1:2");
    await runFixed(a, sched, { steps: 5, readEvery: 5 });
    await saveGanCheckpoint(`${dir}/c.safetensors`, a, {}, { kind: "fixed" });
    const trace = async (task: GanTask) => {
      const out: number[][] = [];
      for (let i = 0; i < 6; i++) {
        task.step(Int32Array.of(sched.actionAt(task.t)));
        const s = await status(task);
        const [f] = await readMany([task.features()]);
        out.push([s.genCost, s.discCost, s.is, ...f]);
      }
      return out;
    };
    const expected = await trace(a);
    const b = tinyTask(opts);
    const ckpt = await loadCheckpoint(`${dir}/c.safetensors`);
    b.loadCheckpoint(ckpt);
    assert.equal(b.t, 5);
    assert.deepEqual(await trace(b), expected);
    // A checkpoint of the earlier format (the state vector as five named tensors) loads the same.
    const vec = ckpt.tensors.get("task.state.vector")!.data;
    const tensors = new Map(ckpt.tensors);
    tensors.delete("task.state.vector");
    const parts: [string, number, number][] = [
      ["losses", 0, 5],
      ["ema", 5, 8],
      ["grads", 8, 10],
      ["lazyLoss", 10, 12],
      ["flags", 12, 16],
    ];
    for (const [name, lo, hi] of parts) {
      tensors.set(`task.state.${name}`, {
        dtype: "F32",
        shape: [hi - lo],
        data: vec.slice(lo, hi),
      });
    }
    const c = tinyTask(opts);
    c.loadCheckpoint({ metadata: ckpt.metadata, tensors });
    assert.deepEqual(await trace(c), expected);
    c.dispose();
    a.dispose();
    b.dispose();
    sched.dispose();
    classifier.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("online PPO: save and restore (also of the earlier layout) continue with the same actions", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const classifier = new TinyClassifier(5);
    const make = () => {
      const task = tinyTask({ features: "paper", classifier, isSamples: 10 });
      const trainer = new OnlinePpo(task, {
        segment: 5,
        ppo: { hidden: [8], numMinibatches: 1, updateEpochs: 2 },
        reward: { c: 1, k: 2 },
        seed: 7,
        maxRollbacks: 1,
      });
      return { task, trainer };
    };
    const x = make();
    x.task.reset(2);
    x.task.evaluateIs();
    await x.trainer.start();
    const s1 = await x.trainer.segment({ nonfiniteBefore: 0 });
    assert.ok(!("aborted" in s1));
    await x.trainer.save(`${dir}/c.safetensors`);
    const next = await x.trainer.segment({ nonfiniteBefore: 0 });
    const ckpt = await loadCheckpoint(`${dir}/c.safetensors`);
    // The layout before rl/training.ts ppoCheckpoint: the controller's JSON inside run.meta.
    const { "ctrl.run": run, "ctrl.updates": updates, ...rest } = ckpt.metadata;
    const optim = Object.fromEntries(Object.entries(rest).filter(([k]) => k.startsWith("ctrl.")));
    const legacy = {
      ...ckpt,
      metadata: {
        ...Object.fromEntries(Object.entries(rest).filter(([k]) => !k.startsWith("ctrl."))),
        "run.meta": JSON.stringify({
          ...JSON.parse(ckpt.metadata["run.meta"]),
          ...JSON.parse(run),
          updates: Number(updates),
          optim,
        }),
      },
    };
    const y = make();
    const z = make();
    y.trainer.restore(ckpt);
    z.trainer.restore(legacy);
    for (const w of [y, z]) {
      const again = await w.trainer.segment({ nonfiniteBefore: 0 });
      assert.ok(!("aborted" in next) && !("aborted" in again));
      assert.equal(again.step, next.step);
      assert.equal(again.is, next.is);
      assert.equal(again.reward, next.reward);
      assert.deepEqual(again.status, next.status);
      assert.equal(again.ppo.policy_loss, next.ppo.policy_loss);
    }
    for (const w of [x, y, z]) {
      w.trainer.dispose();
      w.task.dispose();
    }
    classifier.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inception score: GPU version matches the host one; the task records it", async () => {
  const classifier = new TinyClassifier(1);
  const logits = tidy(() => randn([50, 10], 0, 2));
  const gpu = inceptionScoreOfLogits(logits, 5);
  const [[mean, std]] = await readMany([gpu]);
  const host = await inceptionScoreOf(logits, { splits: 5 });
  assert.ok(Math.abs(mean - host.mean) < 1e-4, `${mean} vs ${host.mean}`);
  assert.ok(Math.abs(std - host.std) < 1e-4, `${std} vs ${host.std}`);
  gpu.dispose();
  logits.dispose();
  const task = tinyTask({ classifier, isSamples: 40, isEvery: 2 });
  task.reset(4);
  task.step(Int32Array.of(D_ACTION));
  assert.equal((await status(task)).is, 0, "no IS before the first evaluation");
  task.step(Int32Array.of(G_ACTION));
  const s = await status(task);
  assert.equal(task.isCount, 1);
  assert.ok(s.is >= 1 && s.is <= 10, `IS ${s.is} in [1, 10]`);
  // The same images scored directly give the same number.
  const images = tidy(() => task.sample(40, new Generator((4 ^ 0x3c6ef372) >>> 0, 0)));
  const direct = tidy(() => inceptionScore(classifier, images, 5));
  const [d] = await readMany([direct]);
  assert.ok(Math.abs(d[0] - s.is) < 1e-5, `${d[0]} vs ${s.is}`);
  const [f] = await readMany([task.features()]);
  assert.ok(Math.abs(f[3] - (s.is - 8)) < 1e-5, "authors' feature IS - 8");
  for (const t of [images, direct] as Tensor[]) t.dispose();
  task.dispose();
  classifier.dispose();
});

Deno.test("progress IS: '-' before the first evaluation, 3 decimals after", () => {
  assert.equal(formatIs(0), "-");
  assert.equal(formatIs(1.0000108), "1.000");
  assert.equal(formatIs(4.21349), "4.213");
  assert.equal(formatIs(NaN), "NaN");
});

Deno.test({
  name: "compare gan --resume keeps the finished runs and reruns only the interrupted one",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { main } = await import("../cli.ts");
    const out = await Deno.makeTempDir();
    const lines: string[] = [];
    const io = { out: (t: string) => lines.push(t), err: (t: string) => lines.push(t) };
    const log = console.log;
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      const tiny = [
        "data.limit=64",
        "model.zDim=8",
        "model.gFilters=4",
        "model.dFilters=4",
        "optim.batchSize=8",
        "is.every=2",
        "is.samples=20",
        "is.finalSamples=20",
        "is.realSamples=20",
        "compare.schedules=1:1,1:3",
        "compare.autoloss=false",
        "compare.steps=4",
      ].flatMap((kv) => ["--set", kv]);
      assert.equal(await main(["compare", "gan", "--out", out, ...tiny], io), 0, lines.join("\n"));
      const all = (await Deno.readTextFile(`${out}/metrics.jsonl`)).trim().split("\n");
      const runs = all.filter((l) => JSON.parse(l).kind === "run");
      assert.equal(runs.length, 2);
      // Interrupted during the second run: its line and the summary were never written.
      await Deno.writeTextFile(
        `${out}/metrics.jsonl`,
        all.filter((l) => l !== runs[1]).join("\n") + "\n",
      );
      await Deno.remove(`${out}/summary.json`);
      lines.length = 0;
      assert.equal(await main(["compare", "gan", "--resume", out], io), 0, lines.join("\n"));
      assert.ok(lines.some((l) => /GAN 1:1 seed 1: .*finished before the resume/.test(l)));
      const summary = JSON.parse(await Deno.readTextFile(`${out}/summary.json`));
      assert.deepEqual(summary.runs.map((r: { method: string }) => r.method), [
        "GAN 1:1",
        "GAN 1:3",
      ]);
      assert.equal(summary.runs[0].final, JSON.parse(runs[0]).final, "the kept run");
      const again = JSON.parse(runs[1]);
      assert.equal(summary.runs[1].final, again.final, "the rerun repeats the interrupted run");
    } finally {
      console.log = log;
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test("train gan with fewer steps than one controller segment fails with the keys to change", async () => {
  const { main } = await import("../cli.ts");
  const out = await Deno.makeTempDir();
  const err: string[] = [];
  try {
    const code = await main(
      ["train", "gan", "--out", `${out}/run`, "--set", "train.steps=20"],
      { out: () => {}, err: (t) => err.push(t) },
    );
    assert.equal(code, 1);
    assert.match(
      err.join("\n"),
      /train\.steps \(20\) is shorter than one online-controller segment \(controller\.ppo\.segment = 250\)/,
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test({
  name:
    "transfer gan and eval gan --resume keep the finished runs: the files of an uninterrupted run",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const { main } = await import("../cli.ts");
    const dir = await Deno.makeTempDir();
    const lines: string[] = [];
    const io = { out: (t: string) => lines.push(t), err: (t: string) => lines.push(t) };
    const log = console.log;
    console.log = (...a: unknown[]) => void lines.push(a.join(" "));
    try {
      const ctrl = new MlpController({
        featureNames: ganFeatureNames("paper"),
        actions: 2,
        hidden: 8,
        temperature: 1,
        seed: 5,
      });
      await saveController(`${dir}/controller.json`, ctrl, {
        actions: ["G", "D"],
        provenance: { task: "gan", seed: 5, episodes: 0, reward: null },
      });
      ctrl.dispose();
      const tiny = [
        "data.limit=64",
        "model.zDim=8",
        "model.gFilters=4",
        "model.dFilters=4",
        "optim.batchSize=8",
        "is.every=2",
        "is.samples=20",
        "is.finalSamples=20",
        "is.realSamples=20",
        "train.steps=4",
        "transfer.archs=2",
        "transfer.filters=[4]",
        "transfer.steps=4",
        "transfer.fashion=false",
        "transfer.baselines=1:1",
      ].flatMap((kv) => ["--set", kv]);
      // Wall times differ from run to run; everything else must not.
      const noSeconds = (text: string) => text.replace(/"seconds": ?[0-9.e+-]+/g, '"seconds":0');
      const files = async (out: string) => ({
        summary: noSeconds(await Deno.readTextFile(`${out}/summary.json`)),
        metrics: noSeconds(await Deno.readTextFile(`${out}/metrics.jsonl`)),
      });
      for (const command of ["transfer", "eval"]) {
        const whole = `${dir}/${command}-whole`;
        const cut = `${dir}/${command}-cut`;
        const args = [command, "gan", `${dir}/controller.json`, ...tiny];
        assert.equal(await main([...args, "--out", whole], io), 0, lines.join("\n"));
        assert.equal(await main([...args, "--out", cut], io), 0, lines.join("\n"));
        // Interrupted during the second guided run (eval: the first): its line, the summary
        // and the rest never written; a torn line left behind.
        const all = (await Deno.readTextFile(`${cut}/metrics.jsonl`)).trim().split("\n");
        const keep = command === "transfer" ? 2 : 1;
        assert.equal(all.length, command === "transfer" ? 5 : 2);
        await Deno.writeTextFile(
          `${cut}/metrics.jsonl`,
          all.slice(0, keep).join("\n") + '\n{"kind":"run","ke',
        );
        await Deno.remove(`${cut}/summary.json`);
        lines.length = 0;
        const again = await main([command, "gan", "--resume", cut, "x"], io);
        assert.equal(again, 2, "a controller on the command line is refused with --resume");
        assert.match(lines.join("\n"), /--resume continues a .* run with the controller it copied/);
        assert.equal(await main([command, "gan", "--resume", cut], io), 0, lines.join("\n"));
        if (command === "transfer") {
          assert.ok(lines.some((l) => /arch 1 AutoLoss: .*finished before the resume/.test(l)));
        }
        assert.deepEqual(await files(cut), await files(whole));
      }
    } finally {
      console.log = log;
      await Deno.remove(dir, { recursive: true });
    }
  },
});
