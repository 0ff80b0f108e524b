/**
 * `compare nmt --workers` (dist/nmt.ts, issue 16) against a real `nats-server` the test starts on
 * 127.0.0.1 (skipped without it) and real workers: a tiny comparison of all six methods on a
 * synthetic Ding-format dictionary (as tests/task_nmt.test.ts builds one, so no corpus package is
 * needed) on 2 workers writes the single-process results and validation rows.
 */

import assert from "node:assert/strict";
import { HAVE_SERVER, Proc, stopAll, withServer, worker } from "./dist_helpers.ts";
import { tinyNmtSets, writeDictionary } from "./helpers.ts";

if (!HAVE_SERVER) console.error("dist nmt tests skipped: nats-server is not installed");
const ignore = !HAVE_SERVER;

/** A tiny `compare nmt`: all 6 methods, 8-unit networks, 8 batches of 4. */
function tinyNmt(dictionary: string): string[] {
  return ["--backend", "cpu", ...tinyNmtSets(dictionary, "train.batches=8", "train.valEvery=2")];
}

/** The results and metrics of a `compare nmt` without wall times. */
async function nmtOf(dir: string): Promise<string> {
  const s = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  const results = s.results.map(
    ({ trainSeconds: _t, testSeconds: _s, ...r }: Record<string, unknown>) => r,
  );
  const metrics = await Deno.readTextFile(`${dir}/metrics.jsonl`);
  return JSON.stringify([results, s.data.sizes, metrics]);
}

Deno.test({
  name: "dist nmt: compare nmt (6 methods, a synthetic dictionary) on 2 workers: the same table",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      await writeDictionary(`${tmp}/de-en`);
      const args = tinyNmt(`${tmp}/de-en`);
      const procs = [worker(server.url), worker(server.url)];
      try {
        const local = new Proc(["compare", "nmt", ...args, "--out", `${tmp}/l`]);
        const learner = new Proc([
          "compare",
          "nmt",
          ...args,
          "--out",
          `${tmp}/d`,
          "--workers",
          server.url,
          "--insecure",
        ]);
        procs.push(local, learner);
        assert.equal((await local.done).code, 0, local.text());
        assert.equal((await learner.done).code, 0, learner.text());
        const want = await nmtOf(`${tmp}/l`);
        assert.match(want, /"method":"autoloss"/);
        assert.equal(await nmtOf(`${tmp}/d`), want);
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.published, 6);
        for (const w of procs.slice(0, 2)) assert.match(w.text(), /finished job .*compare nmt/);
      } finally {
        await stopAll(procs);
      }
    }),
});
