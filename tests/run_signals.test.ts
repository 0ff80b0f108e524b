import assert from "node:assert/strict";

const MOD = new URL("../run/signals.ts", import.meta.url).href;

async function runScript(code: string) {
  const dir = await Deno.makeTempDir();
  const script = `${dir}/s.ts`;
  await Deno.writeTextFile(script, code.replaceAll("$MOD", MOD).replaceAll("$DIR", dir));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const saved = await Deno.readTextFile(`${dir}/saved`).catch(() => null);
  await Deno.remove(dir, { recursive: true });
  return { ...out, saved, stderr: new TextDecoder().decode(out.stderr) };
}

Deno.test({
  name: "signals: SIGINT runs the async handler once, then exits 130",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const r = await runScript(`
      import { onInterrupt } from "$MOD";
      onInterrupt(async (sig) => {
        await new Promise((r) => setTimeout(r, 50));
        await Deno.writeTextFile("$DIR/saved", sig);
      });
      Deno.kill(Deno.pid, "SIGINT");
      setTimeout(() => {}, 5000); // the "training loop"
    `);
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.saved, "SIGINT");
  },
});

Deno.test({
  name: "signals: after uninstall the process exits on its own and signals are not caught",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const r = await runScript(`
      import { onInterrupt } from "$MOD";
      const off = onInterrupt(() => Deno.writeTextFile("$DIR/saved", "no"));
      off();
      off(); // idempotent
    `);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.saved, null);
    const killed = await runScript(`
      import { onInterrupt } from "$MOD";
      onInterrupt(() => Deno.writeTextFile("$DIR/saved", "no"))();
      Deno.kill(Deno.pid, "SIGINT");
      setTimeout(() => {}, 5000);
    `);
    assert.equal(killed.signal, "SIGINT"); // default action: killed by the signal
    assert.equal(killed.saved, null);
  },
});

Deno.test({
  name: "signals: GracefulStop lets the loop finish its unit and save, then exits 130",
  ignore: Deno.build.os === "windows",
  fn: async () => {
    const r = await runScript(`
      import { GracefulStop } from "$MOD";
      const stop = new GracefulStop("round");
      let rounds = 0;
      while (!stop.requested) {
        rounds++;
        if (rounds === 3) Deno.kill(Deno.pid, "SIGINT");
        await new Promise((r) => setTimeout(r, 20)); // a round
      }
      await Deno.writeTextFile("$DIR/saved", String(rounds)); // the checkpoint
      stop.done();
      setTimeout(() => {}, 5000); // anything after done() is not waited for
    `);
    assert.equal(r.code, 130, r.stderr);
    assert.ok(Number(r.saved) >= 3, `saved after round ${r.saved}`);
    assert.match(r.stderr, /interrupt: stopping after the current round/);
  },
});
