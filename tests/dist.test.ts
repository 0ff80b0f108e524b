/**
 * Distributed controller training on NATS JetStream (dist/, issue 16), against a real
 * `nats-server` the tests start on a free port of 127.0.0.1 with file storage in a temporary
 * directory (`.ci/run` installs it; without it these tests are skipped):
 *
 * - a small `train regression` on 2 local workers gives the single-process controller, and a
 *   small `compare regression` (controller training and Table 1's methods as jobs) the same table;
 * - the same with a worker SIGKILLed while it holds a job (the job is redelivered);
 * - a learner SIGKILLed mid-round and resumed (`--resume`) reuses the results in the stream;
 * - bad input: an invalid job is answered with an error and never run, a result for an unknown
 *   job is ignored; no credentials is refused without `--insecure`; a token works;
 * - a server restart with file storage keeps a queued job.
 */

import assert from "node:assert/strict";
import { jetstream } from "npm:@nats-io/jetstream@3.4.0";
import { createUser } from "npm:@nats-io/nkeys@2.0.3";
import { type EpisodeResult, JOB_FORMAT, WIRE_VERSION } from "../dist/job.ts";
import { connectLearner } from "../dist/learner.ts";
import {
  connectNats,
  ensureStreams,
  JOBS_STREAM,
  jobsSubject,
  RESULTS_STREAM,
  resultsSubject,
} from "../dist/nats.ts";
import { runWorker } from "../dist/worker.ts";
import { main } from "../cli.ts";
import { setup } from "./helpers.ts";
import { HAVE_SERVER, Proc, stopAll, withServer, worker } from "./dist_helpers.ts";

if (!HAVE_SERVER) console.error("dist tests skipped: nats-server is not installed");
const ignore = !HAVE_SERVER;

/** A tiny controller training: 3 rounds of 4 episodes of 40 steps. */
const TINY = [
  "--backend",
  "cpu",
  "--set",
  "controller.population=4",
  "--set",
  "controller.rounds=3",
  "--set",
  "controller.steps=40",
];
/** The controller's weights and feature spec (provenance differs: dates). */
async function controllerOf(dir: string): Promise<string> {
  const doc = JSON.parse(await Deno.readTextFile(`${dir}/controller.json`));
  return JSON.stringify([doc.weights, doc.featureSpec, doc.architecture]);
}

let reference: Promise<string> | null = null;
/** The single-process run of TINY (run once, shared by the tests). */
function singleProcess(): Promise<string> {
  reference ??= (async () => {
    const tmp = await Deno.makeTempDir({ prefix: "autoloss-ref-" });
    try {
      const p = new Proc(["train", "regression", ...TINY, "--out", `${tmp}/run`]);
      const s = await p.done;
      assert.equal(s.code, 0, p.text());
      return await controllerOf(`${tmp}/run`);
    } finally {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }
  })();
  return reference;
}

Deno.test({
  name: "dist: train regression on 2 workers gives the single-process controller (3+1 members)",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      const procs = [worker(server.url), worker(server.url)];
      try {
        for (const w of procs) await w.waitFor(/waiting for jobs/);
        const learner = new Proc([
          "train",
          "regression",
          ...TINY,
          "--out",
          `${tmp}/run`,
          "--workers",
          server.url,
          "--insecure",
          "--job-members",
          "3",
        ]);
        procs.push(learner);
        assert.equal((await learner.done).code, 0, learner.text());
        assert.equal(await controllerOf(`${tmp}/run`), await singleProcess());
        // Jobs of members 0..2 and 3: slices of a round reproduce the lockstep population too.
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.published, 6);
        assert.equal(stats.results, 6);
        // Both workers took jobs.
        for (const w of procs.slice(0, 2)) assert.match(w.text(), /finished job/);
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist: train mlp (dense step rewards) on a worker gives the single-process controller",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      const tiny = [
        "--backend",
        "cpu",
        ...["controller.population=4", "controller.rounds=2", "controller.steps=30"]
          .flatMap((kv) => ["--set", kv]),
        "--set",
        "controller.stepReward=true",
      ];
      const procs = [worker(server.url)];
      try {
        const local = new Proc(["train", "mlp", ...tiny, "--out", `${tmp}/l`]);
        const learner = new Proc([
          "train",
          "mlp",
          ...tiny,
          "--out",
          `${tmp}/d`,
          "--workers",
          server.url,
          "--insecure",
          "--job-members",
          "2",
        ]);
        procs.push(local, learner);
        assert.equal((await local.done).code, 0, local.text());
        assert.equal((await learner.done).code, 0, learner.text());
        assert.equal(await controllerOf(`${tmp}/d`), await controllerOf(`${tmp}/l`));
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist: train regression with PPO updates (log-probabilities) on a worker: the same",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      const tiny = [...TINY, "--set", "controller.updates=ppo"];
      const procs = [worker(server.url)];
      try {
        const local = new Proc(["train", "regression", ...tiny, "--out", `${tmp}/l`]);
        const learner = new Proc([
          "train",
          "regression",
          ...tiny,
          "--out",
          `${tmp}/d`,
          "--workers",
          server.url,
          "--insecure",
        ]);
        procs.push(local, learner);
        assert.equal((await local.done).code, 0, local.text());
        assert.equal((await learner.done).code, 0, learner.text());
        assert.equal(await controllerOf(`${tmp}/d`), await controllerOf(`${tmp}/l`));
      } finally {
        await stopAll(procs);
      }
    }),
});

/** A tiny Table 1: 2 trials of 100 steps, 2-3 point grids, a controller trained on 2 rounds. */
const TINY_COMPARE = [
  "--backend",
  "cpu",
  ...[
    "train.steps=100",
    "compare.trials=2",
    "compare.gridSteps=100",
    "compare.dgsCount=3",
    "compare.s1=[0,0.1]",
    "compare.s2=[-0.9,-0.8]",
    "compare.s3=[0,1]",
    "compare.curvePoints=2",
    "controller.population=4",
    "controller.rounds=2",
    "controller.steps=50",
    "controller.retrain=true",
  ].flatMap((kv) => ["--set", kv]),
];

async function table1Of(dir: string): Promise<string> {
  const s = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  return JSON.stringify(
    Object.entries(s.methods).map(([k, v]) => [k, (v as { mean: number }).mean]),
  );
}

Deno.test({
  name: "dist: compare regression on 2 workers gives the single-process table",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      const procs = [worker(server.url), worker(server.url)];
      try {
        const local = new Proc(["compare", "regression", ...TINY_COMPARE, "--out", `${tmp}/l`]);
        procs.push(local);
        const learner = new Proc([
          "compare",
          "regression",
          ...TINY_COMPARE,
          "--out",
          `${tmp}/d`,
          "--workers",
          server.url,
          "--insecure",
          "--job-members",
          "2",
        ]);
        procs.push(learner);
        assert.equal((await local.done).code, 0, local.text());
        assert.equal((await learner.done).code, 0, learner.text());
        const table = await table1Of(`${tmp}/l`);
        assert.match(table, /AutoLoss.*random \(matched share\)/);
        assert.equal(await table1Of(`${tmp}/d`), table);
        // 2 rounds x 2 jobs of controller training, then 5 + 2 + 1 method jobs.
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.published, 12);
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist: a worker SIGKILLed mid-job: its job is redelivered, the controller is the same",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      // The victim holds every job it takes for 60 s before publishing the result.
      const victim = worker(server.url, { AUTOLOSS_WORKER_DELAY_MS: "60000" });
      const procs = [victim];
      try {
        await victim.waitFor(/waiting for jobs/);
        const learner = new Proc([
          "train",
          "regression",
          ...TINY,
          "--out",
          `${tmp}/run`,
          "--workers",
          server.url,
          "--insecure",
        ]);
        procs.push(learner);
        const started = await victim.waitFor(/started job/);
        const healthy = worker(server.url);
        procs.push(healthy);
        victim.kill("SIGKILL");
        await victim.done;
        assert.equal((await learner.done).code, 0, learner.text());
        assert.equal(await controllerOf(`${tmp}/run`), await singleProcess());
        // The victim's job went to the other worker on a later delivery.
        const id = /job (\w+)/.exec(started)![1];
        assert.match(healthy.text(), new RegExp(`finished job ${id} .*delivery [2-9]`));
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist: a learner SIGKILLed mid-round resumes and reuses the results in the stream",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      // The first worker stops after round 0 and one job of round 1: the learner then waits
      // mid-round, and is killed there.
      const procs = [worker(server.url, {}, ["--max-jobs", "5"])];
      const args = ["--workers", server.url, "--insecure"];
      try {
        const first = new Proc(["train", "regression", ...TINY, "--out", `${tmp}/run`, ...args]);
        procs.push(first);
        await first.waitFor(/dist: round 1: 1\/4 results/);
        assert.equal((await procs[0].done).code, 0, procs[0].text());
        first.kill("SIGKILL");
        await first.done;
        // Another worker runs the round's remaining jobs while no learner runs.
        const second = worker(server.url, {}, ["--max-jobs", "3"]);
        procs.push(second);
        assert.equal((await second.done).code, 0, second.text());
        assert.match(second.text(), /finished job .*round 1, members/);
        const third = worker(server.url);
        procs.push(third);
        const resumed = new Proc(["train", "regression", "--resume", `${tmp}/run`, ...args]);
        procs.push(resumed);
        assert.equal((await resumed.done).code, 0, resumed.text());
        assert.match(resumed.text(), /resuming .* after round 1 of 3/);
        assert.match(resumed.text(), /round 1: published 0 jobs, reused 4 results/);
        assert.equal(await controllerOf(`${tmp}/run`), await singleProcess());
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist: an invalid job is answered with an error and never run; unknown results ignored",
  ignore,
  fn: () =>
    withServer(async (server) => {
      await setup();
      const nc = await connectNats({ url: server.url, insecure: true });
      const logs: string[] = [];
      const stop = new AbortController();
      let working: Promise<unknown> | null = null;
      const learner = await connectLearner({
        url: server.url,
        insecure: true,
        task: "regression",
        config: { seed: 1 },
        runName: "bad-input",
        log: (l) => logs.push(l),
      });
      try {
        await ensureStreams(nc);
        const js = jetstream(nc);
        const run = "badinput";
        const bad = {
          format: JOB_FORMAT,
          version: WIRE_VERSION,
          id: "0".repeat(64),
          run,
          task: "nmt",
          steps: 0,
        };
        await js.publish(jobsSubject(run), JSON.stringify(bad));
        working = runWorker({
          url: server.url,
          insecure: true,
          signal: stop.signal,
          log: (l) => logs.push(l),
        });
        const results = await js.consumers.get(RESULTS_STREAM, {
          filter_subjects: resultsSubject(run),
        });
        const m = await results.next({ expires: 60_000 });
        assert.ok(m, "a result for the invalid job");
        const r = m.json<EpisodeResult>();
        assert.equal(r.job, bad.id);
        assert.match(r.error!, /invalid job: .*task 'nmt' cannot run on a worker/);
        assert.match(r.error!, /steps must be a positive integer/);
        assert.equal(r.metrics, undefined);
        assert.ok(!logs.some((l) => /started job/.test(l)), "never run");
        // A result nobody asked for, on the learner's subject.
        const fake: EpisodeResult = {
          format: "autoloss-episode-result",
          version: WIRE_VERSION,
          job: "f".repeat(64),
          run: learner.run,
          worker: "nobody",
          metrics: {},
          trajectory: { features: "", actions: "" },
        };
        await js.publish(resultsSubject(learner.run), JSON.stringify(fake));
        for (let i = 0; i < 200 && learner.stats.unknown === 0; i++) {
          await new Promise((res) => setTimeout(res, 25));
        }
        assert.equal(learner.stats.unknown, 1);
        assert.ok(logs.some((l) => /ignoring a result for unknown job ffffffffffff/.test(l)));
      } finally {
        stop.abort();
        await working;
        await learner.close();
        await nc.close();
      }
    }),
});

Deno.test({
  name: "dist: credentials are required unless --insecure; a token server works",
  ignore,
  fn: async () => {
    await assert.rejects(
      connectNats({ url: "nats://127.0.0.1:1" }),
      /refusing to connect to nats:\/\/127\.0\.0\.1:1 without credentials/,
    );
    const p = new Proc(["worker", "--nats", "nats://127.0.0.1:1"]);
    const s = await p.done;
    assert.notEqual(s.code, 0);
    assert.match(p.text(), /refusing to connect .*--insecure/);
    await withServer(async (server) => {
      // A refused connection runs in a child: the client's socket can raise a late ECONNRESET.
      const refused = new Proc(["worker", "--nats", server.url, "--insecure"]);
      assert.notEqual((await refused.done).code, 0);
      assert.match(refused.text(), /cannot connect to .*Authorization Violation/);
      const nc = await connectNats({ url: `nats://s3cret@127.0.0.1:${server.port}` });
      await nc.close();
    }, ["--auth", "s3cret"]);
  },
});

Deno.test({
  name: "dist: an NKey user connects with --nkey, another seed is refused",
  ignore,
  fn: async () => {
    const user = createUser();
    const other = createUser();
    const tmp = await Deno.makeTempDir({ prefix: "autoloss-nkey-" });
    try {
      const dec = new TextDecoder();
      await Deno.writeTextFile(
        `${tmp}/server.conf`,
        `authorization { users: [{ nkey: ${user.getPublicKey()} }] }\n`,
      );
      await Deno.writeTextFile(`${tmp}/user.nk`, dec.decode(user.getSeed()) + "\n");
      await Deno.writeTextFile(`${tmp}/other.nk`, dec.decode(other.getSeed()));
      await withServer(async (server) => {
        const nc = await connectNats({ url: server.url, nkey: `${tmp}/user.nk` });
        await nc.close();
        const refused = new Proc(["worker", "--nats", server.url, "--nkey", `${tmp}/other.nk`]);
        assert.notEqual((await refused.done).code, 0);
        assert.match(refused.text(), /cannot connect to .*Authorization Violation/);
      }, ["-c", `${tmp}/server.conf`]);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "dist: a server restarted mid-round loses no job: the training ends as it would",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      // Each job takes at least 300 ms, so the restart lands while the round's jobs are queued.
      const procs = [worker(server.url, { AUTOLOSS_WORKER_DELAY_MS: "300" })];
      try {
        const learner = new Proc([
          "train",
          "regression",
          ...TINY,
          "--out",
          `${tmp}/run`,
          "--workers",
          server.url,
          "--insecure",
        ]);
        procs.push(learner);
        await learner.waitFor(/dist: round 1: 1\/4 results/);
        await server.stop();
        await server.start();
        assert.equal((await learner.done).code, 0, learner.text());
        assert.equal(await controllerOf(`${tmp}/run`), await singleProcess());
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.results, 12);
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist: a server restart with file storage keeps a queued job",
  ignore,
  fn: () =>
    withServer(async (server) => {
      let nc = await connectNats({ url: server.url, insecure: true });
      const jsm = await ensureStreams(nc);
      await jetstream(nc).publish(jobsSubject("restart"), JSON.stringify({ hello: 1 }));
      assert.equal((await jsm.streams.info(JOBS_STREAM)).state.messages, 1);
      await nc.close();
      await server.stop();
      await server.start();
      nc = await connectNats({ url: server.url, insecure: true });
      try {
        const again = await ensureStreams(nc);
        assert.equal((await again.streams.info(JOBS_STREAM)).state.messages, 1);
      } finally {
        await nc.close();
      }
    }),
});

Deno.test("dist: the CLI's worker and --workers flags (no server needed)", async () => {
  const run = async (...args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await main(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
    return { code, out: out.join("\n"), err: err.join("\n") };
  };
  const help = await run("worker", "--help");
  assert.equal(help.code, 0);
  assert.match(help.out, /Usage: .*cli\.ts worker --nats URL/);
  assert.match(help.out, /--insecure/);
  assert.match((await run("worker")).err, /missing --nats URL/);
  assert.match((await run("worker", "--nats", "x", "--max-jobs", "0")).err, /--max-jobs must be/);
  const nmt = await run("train", "nmt", "--workers", "nats://127.0.0.1:1");
  assert.equal(nmt.code, 2);
  assert.match(nmt.err, /train nmt trains its PPO controller online.*compare nmt --workers/);
  const other = await run("train", "classifier", "--workers", "nats://127.0.0.1:1");
  assert.equal(other.code, 2);
  assert.match(other.err, /--workers works with train regression\|mlp\|gan and compare/);
  const ganMembers = await run("compare", "gan", "--workers", "nats://x:1", "--job-members", "2");
  assert.equal(ganMembers.code, 2);
  assert.match(ganMembers.err, /--job-members applies to regression\|mlp only/);
  const lone = await run("train", "regression", "--job-members", "2");
  assert.match(lone.err, /--job-members needs --workers/);
  const bad = await run("train", "regression", "--workers", "nats://x:1", "--job-members", "0");
  assert.match(bad.err, /--job-members must be a positive integer/);
  assert.match((await run("train", "--help")).out, /--workers URL/);
});
