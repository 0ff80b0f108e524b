import assert from "node:assert/strict";
import { RunDir, timestamp } from "../run/run_dir.ts";

Deno.test("run dir: created under root as <task>-<stamp>, unique, with files", async () => {
  const root = await Deno.makeTempDir();
  const now = new Date(2025, 0, 2, 3, 4, 5);
  assert.equal(timestamp(now), "20250102-030405");
  const a = await RunDir.create({ task: "gan", root, now });
  const b = await RunDir.create({ task: "gan", root, now });
  assert.equal(a.path, `${root}/gan-20250102-030405`);
  assert.equal(b.path, `${root}/gan-20250102-030405-2`);
  await a.writeConfig({ optim: { lr: 0.001 }, steps: 10 });
  assert.equal(await Deno.readTextFile(a.file("config.yaml")), "optim:\n  lr: 0.001\nsteps: 10\n");
  await a.writeSummary({ best: 1.5 }, "# Summary");
  assert.deepEqual(JSON.parse(await Deno.readTextFile(a.file("summary.json"))), { best: 1.5 });
  assert.equal(await Deno.readTextFile(a.file("summary.md")), "# Summary\n");
  await a.writeFile("plots/loss.svg", "<svg/>");
  assert.equal(await Deno.readTextFile(a.file("plots/loss.svg")), "<svg/>");
  // --out refuses a directory that already holds a run.
  await assert.rejects(RunDir.create({ task: "gan", out: a.path }), /use --resume/);
  const c = await RunDir.create({ task: "gan", out: `${root}/mine` });
  assert.equal(c.path, `${root}/mine`);
  await assert.rejects(RunDir.open(`${root}/missing`), /not a run directory/);
  await Deno.remove(root, { recursive: true });
});

Deno.test("run dir: metrics append and read, tolerating a truncated last line", async () => {
  const root = await Deno.makeTempDir();
  const run = await RunDir.create({ task: "t", out: root });
  assert.deepEqual(await run.readMetrics(), []);
  await run.appendMetrics({ step: 1, loss: 0.5 });
  await run.appendMetrics({ step: 2, loss: 0.25 });
  assert.deepEqual(await run.readMetrics(), [{ step: 1, loss: 0.5 }, { step: 2, loss: 0.25 }]);
  // A crash mid-append leaves part of a line.
  await Deno.writeTextFile(run.file("metrics.jsonl"), '{"step": 3, "lo', { append: true });
  assert.equal((await run.readMetrics()).length, 2);
  // Resuming trims the partial line, so the next append starts on a fresh line.
  const resumed = await RunDir.open(root);
  await resumed.appendMetrics({ step: 3, loss: 0.125 });
  assert.deepEqual((await resumed.readMetrics()).map((m) => m.step), [1, 2, 3]);
  // A corrupt line in the middle is an error, not silently dropped.
  await Deno.writeTextFile(run.file("metrics.jsonl"), '{"a":1}\n{bad\n{"a":2}\n');
  await assert.rejects(run.readMetrics(), /line 2 is not valid JSON/);
  await Deno.remove(root, { recursive: true });
});

Deno.test("recordBackend: a resumed run on another backend says its results will differ", async () => {
  const { recordBackend } = await import("../run/session.ts");
  type Backend = Parameters<typeof recordBackend>[1];
  const root = await Deno.makeTempDir();
  const said: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => void said.push(a.join(" "));
  try {
    const dir = await RunDir.create({ task: "t", root });
    const be = (kind: string) => ({ info: { kind, reason: "test", device: "d" } }) as Backend;
    await recordBackend(dir, be("webgpu"));
    await recordBackend(dir, be("webgpu")); // resumed on the same one: no note
    assert.ok(!said.some((l) => l.startsWith("note:")));
    await recordBackend(dir, be("cpu"));
    assert.match(
      said.at(-1)!,
      /^note: this run started on the webgpu backend and continues on cpu/,
    );
    assert.equal(JSON.parse(await Deno.readTextFile(dir.file("backend.json"))).kind, "cpu");
  } finally {
    console.error = error;
    await Deno.remove(root, { recursive: true });
  }
});
