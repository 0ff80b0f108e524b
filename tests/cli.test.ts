import assert from "node:assert/strict";
import { main } from "../cli.ts";
import { type CommonOptions, registerTask } from "../tasks/registry.ts";

async function run(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

Deno.test("cli: --help for each subcommand exits 0 with examples", async () => {
  for (const cmd of ["train", "compare", "eval", "transfer", "baseline", "info"]) {
    for (const flag of ["--help", "-h"]) {
      const r = await run(cmd, flag);
      assert.equal(r.code, 0, `${cmd} ${flag}: ${r.err}`);
      assert.match(r.out, new RegExp(`Usage: .*cli\\.ts ${cmd}`));
      assert.match(r.out, /Examples:\n {2}\S/);
    }
  }
  assert.match((await run("train", "--help")).out, /--preset quick\|paper/);
  const top = await run("--help");
  assert.equal(top.code, 0);
  assert.match(top.out, /Commands:[\s\S]*transfer[\s\S]*Examples:/);
  assert.equal((await run()).code, 2); // no command: usage on stderr
  assert.match((await run("help", "eval")).out, /eval <task> <RUNDIR>/);
});

Deno.test("cli: unknown subcommand and unknown flag exit 2 with a suggestion", async () => {
  const cmd = await run("trian", "gan");
  assert.equal(cmd.code, 2);
  assert.match(cmd.err, /unknown command 'trian'; did you mean 'train'\?/);
  const flag = await run("train", "gan", "--seeed", "1");
  assert.equal(flag.code, 2);
  assert.match(flag.err, /unknown option '--seeed'; did you mean '--seed'\?/);
  const out = await run("eval", "--ouy=x");
  assert.match(out.err, /unknown option '--ouy'; did you mean '--out'\?/);
  const info = await run("info", "--seed", "1");
  assert.equal(info.code, 2);
  assert.match((await run("train", "gan", "--seed")).err, /argument missing/);
});

Deno.test("cli: tasks are dispatched with the common options", async () => {
  const seen: CommonOptions[] = [];
  registerTask({
    name: "cli-test-task",
    description: "a task for the CLI tests",
    train: (opts) => void seen.push(opts),
    eval: () => 3,
  });
  const r = await run(
    "train",
    "cli-test-task",
    "extra",
    "--set",
    "a=1",
    "--set=b.c=x",
    "--seed",
    "7",
    "--config",
    "x.yaml",
  );
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(seen, [{
    command: "train",
    task: "cli-test-task",
    args: ["extra"],
    preset: "quick",
    config: ["x.yaml"],
    set: ["a=1", "b.c=x"],
    out: undefined,
    resume: undefined,
    seed: 7,
  }]);
  assert.equal((await run("eval", "cli-test-task")).code, 3);
  const missing = await run("compare", "cli-test-task");
  assert.equal(missing.code, 2);
  assert.match(missing.err, /does not support 'compare'/);
  const unknown = await run("train", "cli-test-tsak");
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown task 'cli-test-tsak'; did you mean 'cli-test-task'\? known/);
  assert.match((await run("train")).err, /missing <task>.*known tasks: (\S+, )*cli-test-task/);
  const preset = await run("train", "cli-test-task", "--preset", "papr");
  assert.match(preset.err, /--preset must be quick or paper, got 'papr'; did you mean 'paper'\?/);
  assert.equal((await run("train", "cli-test-task", "--seed", "-1")).code, 2);
  assert.equal((await run("train", "cli-test-task", "--out", "a", "--resume", "b")).code, 2);
  assert.match((await run("train", "--help")).out, /cli-test-task {2}a task for the CLI tests/);
});

Deno.test({
  name: "cli: info prints the backend that runs and why, then the adapter and its limits",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const r = await run("info");
    assert.equal(r.code, 0);
    assert.match(r.out, /^backend: {6}(cpu|webgpu) \(.+\)\ndevice: {7}\S/);
    if (/^adapter: {6}none/m.test(r.out)) assert.match(r.out, /CPU backend runs everything/);
    else assert.match(r.out, /limits:\n {2}max\w+ +[\d,]+/);
  },
});

Deno.test("cli: errors meant for the user print their message without a stack; bugs rethrow", async () => {
  const out = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${out}/config.yaml`, "seed: 1\n");
    registerTask({
      name: "cli-test-errors",
      description: "a task whose train opens its run directory",
      train: async (opts) => {
        const { RunDir } = await import("../run/run_dir.ts");
        await RunDir.create({ task: "cli-test-errors", out: opts.out });
      },
      eval: () => {
        throw new Deno.errors.NotCapable(
          'Requires read access to "x", run again with --allow-read',
        );
      },
      compare: () => {
        throw new Error("a bug");
      },
    });
    const taken = await run("train", "cli-test-errors", "--out", out);
    assert.equal(taken.code, 1);
    assert.equal(
      taken.err,
      `error: ${out} already holds a run; use --resume ${out} to continue it`,
    );
    const denied = await run("eval", "cli-test-errors");
    assert.equal(denied.code, 1);
    assert.match(denied.err, /^error: Requires read access[\s\S]*Run with -A, or with the narrow/);
    await assert.rejects(run("compare", "cli-test-errors"), /a bug/);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test({
  name: "cli: train regression --resume continues a run and ends as the uninterrupted run",
  // The GPU device and the progress output outlive the test.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir();
    const tiny = [
      "data.dim=4",
      "data.sizes=[40,40,40,40,40]",
      "controller.population=2",
      "controller.steps=10",
      "controller.hidden=4",
      "controller.lr=0.05",
      "controller.keep=last", // controller.json is then the controller after the last round
    ].flatMap((s) => ["--set", s]);
    const train = (out: string, rounds: number) =>
      run("train", "regression", ...tiny, "--set", `controller.rounds=${rounds}`, "--out", out);
    const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(path));
    const rounds = async (dir: string) =>
      (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n").map((l) => {
        const { seconds: _, ...r } = JSON.parse(l);
        return r;
      });
    const result = async (dir: string) => {
      const controller = await readJson(`${dir}/controller.json`);
      const summary = await readJson(`${dir}/summary.json`);
      return {
        controller: { ...controller, provenance: { ...controller.provenance, date: "" } },
        history: summary.history.map(({ seconds: _, ...h }: Record<string, unknown>) => h),
        preset: summary.preset,
        metrics: await rounds(dir),
      };
    };
    try {
      const whole = `${root}/whole`;
      assert.equal((await train(whole, 4)).code, 0);
      // A run stopped after 2 of its 4 rounds: trained for 2 rounds, then given the 4-round
      // config (the checkpoint's settings leave out the round count), with the metrics line of
      // round 1 lost and a half-written line of round 2, as a crash can leave them.
      const cut = `${root}/cut`;
      assert.equal((await train(cut, 2)).code, 0);
      const config = await Deno.readTextFile(`${cut}/config.yaml`);
      await Deno.writeTextFile(`${cut}/config.yaml`, config.replace("rounds: 2", "rounds: 4"));
      const lines = (await Deno.readTextFile(`${cut}/metrics.jsonl`)).trim().split("\n");
      assert.equal(lines.length, 2);
      await Deno.writeTextFile(
        `${cut}/metrics.jsonl`,
        `${lines[0]}\n{"kind":"round","round":2,"meanRew`,
      );
      const set = await run("train", "regression", "--resume", cut, "--set", "seed=2");
      assert.equal(set.code, 2);
      assert.match(set.err, /--resume continues a run with its saved config\.yaml/);
      const resumed = await run("train", "regression", "--resume", cut);
      assert.equal(resumed.code, 0, resumed.err);
      const [a, b] = [await result(whole), await result(cut)];
      assert.deepEqual(b.metrics.map((r) => r.round), [0, 1, 2, 3]);
      assert.deepEqual(b, a);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "cli: compare regression and transfer mlp --resume keep finished methods: the whole run's files",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const root = await Deno.makeTempDir();
    // Wall times differ from run to run; everything else must not.
    const noSeconds = (text: string) =>
      text.replace(/"(seconds|trainSeconds)": ?[0-9.e+-]+/g, '"$1":0')
        .replace(/(Total|trained in) [0-9:]+/g, "$1 -");
    // The machine (load average) and the date differ too.
    const json = async (path: string) =>
      JSON.parse(await Deno.readTextFile(path), (k, v) => k === "machine" || k === "date" ? "" : v);
    const files = async (dir: string) => ({
      summary: noSeconds(JSON.stringify(await json(`${dir}/summary.json`))),
      md: noSeconds(await Deno.readTextFile(`${dir}/summary.md`)),
      metrics: noSeconds(await Deno.readTextFile(`${dir}/metrics.jsonl`)),
      controller: noSeconds(JSON.stringify(await json(`${dir}/controller.json`))),
    });
    /** A run stopped during its `n`-th method: the later lines, the summary and a torn line. */
    const cut = async (dir: string, n: number) => {
      const lines = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n");
      const methods = lines.flatMap((l, i) => JSON.parse(l).kind === "method" ? [i] : []);
      assert.ok(methods.length > n, `${methods.length} method lines`);
      await Deno.writeTextFile(
        `${dir}/metrics.jsonl`,
        lines.slice(0, methods[n]).join("\n") + '\n{"kind":"method","ke',
      );
      await Deno.remove(`${dir}/summary.json`);
    };
    try {
      const regression = [
        "data.dim=4",
        "data.sizes=[40,40,40,40,40]",
        "train.steps=20",
        "compare.trials=2",
        "compare.gridSteps=10",
        "compare.dgsCount=2",
        "compare.s1=[0,1]",
        "compare.s2=[-0.9,-0.8]",
        "compare.s3=[0,1]",
        "compare.curvePoints=2",
        "controller.population=2",
        "controller.rounds=2",
        "controller.steps=10",
        "controller.hidden=4",
        "controller.retrain=true",
      ].flatMap((s) => ["--set", s]);
      const whole = `${root}/whole`;
      const stopped = `${root}/stopped`;
      for (const dir of [whole, stopped]) {
        const r = await run("compare", "regression", ...regression, "--out", dir);
        assert.equal(r.code, 0, r.err);
      }
      await cut(stopped, 3); // W/O L1, S1, S2 done; S3 interrupted, before controller training
      await Deno.remove(`${stopped}/checkpoint.safetensors`);
      await Deno.remove(`${stopped}/controller.json`);
      const again = await run("compare", "regression", "--resume", stopped);
      assert.equal(again.code, 0, again.err);
      assert.deepEqual(await files(stopped), await files(whole));
      // Stopped after round 1 of 2 of the controller's training: a 1-round run given the 2-round
      // config (the checkpoint's settings leave the round count out), cut after its training.
      const mid = `${root}/mid`;
      const one = ["--set", "controller.rounds=1"];
      assert.equal(
        (await run("compare", "regression", ...regression, ...one, "--out", mid)).code,
        0,
      );
      const config = await Deno.readTextFile(`${mid}/config.yaml`);
      await Deno.writeTextFile(`${mid}/config.yaml`, config.replace("rounds: 1", "rounds: 2"));
      await cut(mid, 5); // Table 1's first five methods done, the controller after round 1
      const log = console.log;
      const printed: string[] = [];
      console.log = (...a: unknown[]) => void printed.push(a.join(" "));
      const midAgain = await run("compare", "regression", "--resume", mid).finally(() => {
        console.log = log;
      });
      assert.equal(midAgain.code, 0, midAgain.err);
      assert.ok(printed.some((l) => /5 methods finished before, .* after round 1$/.test(l)));
      assert.ok(printed.some((l) => /^DGS: finished before the resume$/.test(l)));
      assert.deepEqual(await files(mid), await files(whole));

      const mlp = [
        "train.steps=10",
        "compare.trials=2",
        "compare.gridSteps=5",
        "compare.dgsCount=2",
        "compare.curvePoints=1",
        "controller.population=2",
        "controller.rounds=1",
        "controller.steps=5",
        "controller.hidden=4",
        "controller.retrain=true",
        "transfer.datasets=[1,2]",
      ].flatMap((s) => ["--set", s]);
      const tWhole = `${root}/t-whole`;
      const tStopped = `${root}/t-stopped`;
      for (const dir of [tWhole, tStopped]) {
        const r = await run("transfer", "mlp", ...mlp, "--out", dir);
        assert.equal(r.code, 0, r.err);
      }
      await cut(tStopped, 4); // data set #1 done, #2's DGS interrupted
      const refused = await run("transfer", "mlp", "--resume", tStopped, tWhole);
      assert.equal(refused.code, 2);
      assert.match(refused.err, /--resume continues a transfer run with the controller it saved/);
      const resumed = await run("transfer", "mlp", "--resume", tStopped);
      assert.equal(resumed.code, 0, resumed.err);
      assert.deepEqual(await files(tStopped), await files(tWhole));
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("a first run of cli.ts installs only the YAML parser", async () => {
  // Deno installs every npm package its code graph reaches (static imports and dynamic ones with
  // a literal specifier; not type-only imports) and every package of a lockfile, hence
  // "lock": false. MNIST (gan, classifier, mlp), the NLP taggers (nmt), the NATS client
  // (--workers) and TF.js (peer benchmarks) load by computed specifiers, so a first `train gan`
  // downloads MNIST and the YAML parser only. The graph as `deno info` reports it:
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "cli.ts"],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  type Dep = { code?: { specifier: string }; npmPackage?: string };
  const graph: { roots: string[]; modules: { specifier: string; dependencies?: Dep[] }[] } = JSON
    .parse(new TextDecoder().decode(out.stdout));
  const bySpecifier = new Map(graph.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>(graph.roots);
  const stack = [...graph.roots];
  const npm = new Set<string>();
  while (stack.length) {
    for (const dep of bySpecifier.get(stack.pop()!)?.dependencies ?? []) {
      if (!dep.code) continue; // type-only
      if (dep.npmPackage) npm.add(dep.npmPackage);
      else if (!seen.has(dep.code.specifier)) {
        seen.add(dep.code.specifier);
        stack.push(dep.code.specifier);
      }
    }
  }
  assert.ok(seen.size > 100, `walked ${seen.size} modules`);
  assert.deepEqual([...npm], ["yaml@2.9.1"]);
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  assert.equal(config.lock, false);
  assert.equal(config.imports, undefined, "deno task installs the npm entries of an import map");
});

Deno.test("cli: every command's --resume refuses --seed/--set/--config by one rule", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const args of [["train", "regression"], ["compare", "gan"], ["compare", "nmt"]]) {
      for (const extra of [["--seed", "3"], ["--set", "seed=3"]]) {
        const r = await run(...args, "--resume", dir, ...extra);
        assert.equal(r.code, 2, `${args.join(" ")} ${extra.join(" ")}: ${r.err}`);
        assert.match(
          r.err,
          /--resume continues a run with its saved config\.yaml; drop --config\/--set\/--seed/,
        );
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
