/**
 * The GAN on NATS workers (dist/gan.ts, issue 16), against a real `nats-server` the tests start on
 * 127.0.0.1 (skipped without it) and real workers (`cli.ts worker` subprocesses):
 *
 * - a tiny `compare gan` (fixed schedules and the online AutoLoss controller, 2 seeds) on 2
 *   workers writes the single-process summary, number for number;
 * - the same with a frozen controller (by hash in the object store) and a worker SIGKILLed while
 *   it holds a job: the job is redelivered and the summary is still the single-process one;
 * - a tiny `train gan` with the episodic REINFORCE controller (2 episodes per update) on 2
 *   workers gives the single-process controller, episode rows, final IS and samples; its learner
 *   SIGKILLed mid-update and resumed reuses the results in the stream; online PPO and fixed
 *   schedules refuse `--workers`;
 * - the GAN jobs are validated (fields, hashes, id) and a worker whose training images are not the
 *   learner's answers with an error instead of running;
 * - a job longer than the ack wait stays with its live worker (heartbeats), not redelivered.
 */

import assert from "node:assert/strict";
import { MlpController } from "../rl/controller.ts";
import { saveController } from "../rl/controller_file.ts";
import { ganFeatureNames } from "../tasks/gan/actions.ts";
import { setup } from "./helpers.ts";
import { HAVE_SERVER, Proc, stopAll, withServer, worker } from "./dist_helpers.ts";
import { jetstream } from "npm:@nats-io/jetstream@3.4.0";
import {
  type AnyJob,
  type GanEpisodeJob,
  type GanRunJob,
  JOB_FORMAT,
  jobId,
  jobProblems,
  type NmtRunJob,
  RUN_JOB_FORMAT,
  type RunResult,
  WIRE_VERSION,
} from "../dist/job.ts";
import {
  artifacts,
  connectNats,
  ensureStreams,
  jobsSubject,
  RESULTS_STREAM,
  resultsSubject,
} from "../dist/nats.ts";
import { loadPreset } from "../run/session.ts";
import { parseSet, resolveConfig } from "../run/config.ts";
import { GAN_SCHEMA } from "../tasks/gan/config.ts";
import { archOf } from "../tasks/gan/run.ts";

if (!HAVE_SERVER) console.error("dist gan tests skipped: nats-server is not installed");
const ignore = !HAVE_SERVER;

/** A tiny `compare gan`: 4-channel DCGAN, batch 8, 20 steps, IS on 50 samples every 5 steps. */
const TINY = [
  "--backend",
  "cpu",
  ...[
    "data.limit=256",
    "model.zDim=8",
    "model.gFilters=4",
    "model.dFilters=4",
    "optim.batchSize=8",
    "optim.lr=0.005",
    "is.every=5",
    "is.samples=50",
    "is.finalSamples=50",
    "is.realSamples=50",
    "compare.schedules=1:1,3:1",
    "compare.steps=20",
    "controller.ppo.segment=10",
  ].flatMap((kv) => ["--set", kv]),
];

/** The summary without wall times (which differ from run to run). */
async function summaryOf(dir: string): Promise<string> {
  const s = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  for (const r of s.runs) delete r.seconds;
  return JSON.stringify(s);
}

async function compareBoth(
  url: string,
  tmp: string,
  extra: string[],
  procs: Proc[],
): Promise<{ local: string; dist: string; learner: Proc }> {
  const local = new Proc(["compare", "gan", ...TINY, ...extra, "--out", `${tmp}/l`]);
  const learner = new Proc([
    "compare",
    "gan",
    ...TINY,
    ...extra,
    "--out",
    `${tmp}/d`,
    "--workers",
    url,
    "--insecure",
  ]);
  procs.push(local, learner);
  assert.equal((await local.done).code, 0, local.text());
  assert.equal((await learner.done).code, 0, learner.text());
  return { local: await summaryOf(`${tmp}/l`), dist: await summaryOf(`${tmp}/d`), learner };
}

Deno.test({
  name: "dist gan: compare gan on 2 workers gives the single-process summary",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      const procs = [worker(server.url), worker(server.url)];
      try {
        const { local, dist, learner } = await compareBoth(
          server.url,
          tmp,
          ["--set", "compare.seeds=2"],
          procs,
        );
        assert.match(local, /GAN 1:1.*GAN 3:1.*AutoLoss/);
        assert.equal(dist, local);
        // 3 methods x 2 seeds, each one job.
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.published, 6);
        assert.equal(stats.results, 6);
        for (const w of procs.slice(0, 2)) assert.match(w.text(), /finished job .*compare gan/);
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test({
  name: "dist gan: a frozen controller by hash, a worker SIGKILLed mid-job: the same summary",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      await setup();
      const ctrl = new MlpController({
        featureNames: ganFeatureNames("paper"),
        actions: 2,
        hidden: 8,
        temperature: 1,
        seed: 5,
      });
      try {
        await saveController(`${tmp}/controller.json`, ctrl, {
          actions: ["G", "D"],
          provenance: { task: "gan", seed: 5, episodes: 0, reward: null },
        });
      } finally {
        ctrl.dispose();
      }
      // The victim holds every job it takes for 60 s before publishing the result.
      const victim = worker(server.url, { AUTOLOSS_WORKER_DELAY_MS: "60000" });
      const procs = [victim];
      try {
        await victim.waitFor(/waiting for jobs/);
        const extra = ["--set", `compare.controller=${tmp}/controller.json`];
        const both = compareBoth(server.url, tmp, extra, procs);
        const started = await victim.waitFor(/started job/);
        const healthy = worker(server.url);
        procs.push(healthy);
        victim.kill("SIGKILL");
        await victim.done;
        const { local, dist } = await both;
        assert.match(local, /AutoLoss/);
        assert.equal(dist, local);
        const id = /job (\w+)/.exec(started)![1];
        assert.match(healthy.text(), new RegExp(`finished job ${id} .*delivery [2-9]`));
      } finally {
        await stopAll(procs);
      }
    }),
});

/** A tiny episodic REINFORCE training: 5 episodes of 30 steps, 2 per update. */
const TINY_TRAIN = [
  "--backend",
  "cpu",
  ...[
    "data.limit=256",
    "model.zDim=8",
    "model.gFilters=4",
    "model.dFilters=4",
    "optim.batchSize=8",
    "optim.lr=0.005",
    "is.every=5",
    "is.samples=50",
    "is.finalSamples=50",
    "is.realSamples=50",
    "controller.algorithm=reinforce",
    "controller.reinforce.episodes=5",
    "controller.reinforce.episodeSteps=30",
    "controller.reinforce.patience=0",
    "controller.reinforce.batch=2",
  ].flatMap((kv) => ["--set", kv]),
];

/** What a training must reproduce: controller weights, episode rows, final IS, samples. */
async function trainingOf(dir: string): Promise<string> {
  const ctrl = JSON.parse(await Deno.readTextFile(`${dir}/controller.json`));
  const rows = (await Deno.readTextFile(`${dir}/metrics.jsonl`)).trim().split("\n")
    .map((l) => JSON.parse(l)).map(({ loop: _loop, ...r }) => r);
  const summary = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  const png = await Deno.readFile(`${dir}/samples.png`);
  return JSON.stringify([
    ctrl.weights,
    ctrl.featureSpec,
    rows,
    summary.finalIs,
    summary.best,
    summary.steps,
    Array.from(png),
  ]);
}

Deno.test({
  name: "dist gan: train gan (episodic REINFORCE, 2 episodes per update) on 2 workers: the same",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      const procs = [worker(server.url), worker(server.url)];
      try {
        const local = new Proc(["train", "gan", ...TINY_TRAIN, "--out", `${tmp}/l`]);
        const learner = new Proc([
          "train",
          "gan",
          ...TINY_TRAIN,
          "--out",
          `${tmp}/d`,
          "--workers",
          server.url,
          "--insecure",
        ]);
        procs.push(local, learner);
        assert.equal((await local.done).code, 0, local.text());
        assert.equal((await learner.done).code, 0, learner.text());
        const want = await trainingOf(`${tmp}/l`);
        assert.equal(await trainingOf(`${tmp}/d`), want);
        assert.match(learner.text(), /episodes 0\.\.1: published 2 jobs/);
        assert.match(learner.text(), /episode 4: published 1 jobs/);
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.results, 5);
        for (const w of procs.slice(0, 2)) assert.match(w.text(), /finished job .*train gan/);
        // The object store keeps the 3 updates' controllers, the classifier and the last GAN
        // only (each update's GAN is deleted when the next one arrives).
        const nc = await connectNats({ url: server.url, insecure: true });
        try {
          const entries = await (await artifacts(nc)).list();
          assert.equal(entries.length, 5, JSON.stringify(entries.map((e) => e.size)));
        } finally {
          await nc.close();
        }
      } finally {
        await stopAll(procs);
      }
    }),
});

Deno.test("dist gan: train gan --workers refuses the online PPO and fixed controllers", async () => {
  const { main } = await import("../cli.ts");
  const tmp = await Deno.makeTempDir({ prefix: "autoloss-refuse-" });
  try {
    const err: string[] = [];
    const io = { out: () => {}, err: (t: string) => err.push(t) };
    // In this process: the backend the suite runs (the refusals come before any work).
    const url = ["--workers", "nats://127.0.0.1:1", "--insecure"];
    const ppo = await main(["train", "gan", "--out", `${tmp}/p`, ...url], io);
    assert.equal(ppo, 1);
    assert.match(
      err.join("\n"),
      /--workers runs the episodes of the episodic REINFORCE controller .*--set controller\.algorithm=reinforce.*controller\.algorithm=ppo trains online/,
    );
    err.length = 0;
    const fixed = ["--set", "controller.algorithm=fixed"];
    assert.equal(await main(["train", "gan", "--out", `${tmp}/f`, ...fixed, ...url], io), 1);
    assert.match(err.join("\n"), /controller\.algorithm=fixed has no controller to train/);
    err.length = 0;
    assert.equal(await main(["baseline", "gan", ...url], io), 2);
    assert.match(err.join("\n"), /--workers works with train regression\|mlp\|gan and compare/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test({
  name:
    "dist gan: train gan's learner SIGKILLed mid-update resumes and reuses the stream's results",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      // The first worker stops after the first update's 2 episodes and one of the second's; the
      // learner then waits mid-update and is killed there.
      const procs = [worker(server.url, {}, ["--max-jobs", "3"])];
      const args = ["--workers", server.url, "--insecure"];
      try {
        const local = new Proc(["train", "gan", ...TINY_TRAIN, "--out", `${tmp}/l`]);
        procs.push(local);
        const first = new Proc(["train", "gan", ...TINY_TRAIN, "--out", `${tmp}/d`, ...args]);
        procs.push(first);
        await first.waitFor(/dist: episodes 2\.\.3: 1\/2 results/);
        assert.equal((await procs[0].done).code, 0, procs[0].text());
        first.kill("SIGKILL");
        await first.done;
        const second = worker(server.url);
        procs.push(second);
        const resumed = new Proc(["train", "gan", "--resume", `${tmp}/d`, ...args]);
        procs.push(resumed);
        assert.equal((await resumed.done).code, 0, resumed.text());
        assert.match(resumed.text(), /resumed at episode 2/);
        assert.match(resumed.text(), /episodes 2\.\.3: published 1 jobs, reused 1 results/);
        assert.equal((await local.done).code, 0, local.text());
        assert.equal(await trainingOf(`${tmp}/d`), await trainingOf(`${tmp}/l`));
      } finally {
        await stopAll(procs);
      }
    }),
});

/** A resolved tiny GAN config (the quick preset with TINY's overrides). */
async function tinyGanConfig(): Promise<Record<string, unknown>> {
  const sets = TINY.filter((_, i) => TINY[i - 1] === "--set");
  const layers = [await loadPreset("gan", "quick"), ...sets.map((kv) => parseSet(kv))];
  return resolveConfig(GAN_SCHEMA, layers) as unknown as Record<string, unknown>;
}

function withId<T extends AnyJob>(body: Omit<T, "id">): T {
  return { ...body, id: jobId(body as unknown as AnyJob) } as T;
}

Deno.test("dist gan: gan and nmt jobs are validated: fields, hashes, the id", async () => {
  const config = await tinyGanConfig();
  const hex = "a".repeat(64);
  const run = withId<GanRunJob>({
    format: RUN_JOB_FORMAT,
    version: WIRE_VERSION,
    run: "r1",
    task: "gan",
    config,
    spec: {
      method: { kind: "fixed", name: "GAN 1:1", schedule: "1:1" },
      seed: 1,
      steps: 20,
      arch: archOf(config as never),
      classifierSha256: null,
      dataSha256: hex,
    },
  });
  assert.deepEqual(jobProblems(run), []);
  const episode = withId<GanEpisodeJob>({
    format: JOB_FORMAT,
    version: WIRE_VERSION,
    run: "r1",
    task: "gan",
    config,
    episode: 0,
    seed: 1,
    episodeSteps: 30,
    patience: 0,
    controller: { sha256: hex },
    featureSpec: { names: ganFeatureNames("paper") },
    keepGan: true,
    classifierSha256: hex,
    dataSha256: hex,
  });
  assert.deepEqual(jobProblems(episode), []);
  const nmt = withId<NmtRunJob>({
    format: RUN_JOB_FORMAT,
    version: WIRE_VERSION,
    run: "r1",
    task: "nmt",
    config: { data: {}, model: {}, train: {}, methods: {} },
    spec: { method: "autoloss", dictionarySha256: hex, corpusSha256: hex },
  });
  assert.deepEqual(jobProblems(nmt), []);
  // Altered in transit: the id no longer matches.
  assert.deepEqual(jobProblems({ ...run, spec: { ...run.spec, seed: 2 } }), [
    "id is not the hash of the job",
  ]);
  const bad = jobProblems({
    ...run,
    spec: {
      ...run.spec,
      method: { kind: "frozen", name: "AutoLoss", greedy: "no" },
      steps: 0,
      arch: { ...run.spec.arch, gActivation: "tanh" },
      dataSha256: "x",
    },
  }).join("; ");
  assert.match(bad, /spec\.method\.controllerSha256 must be a hex SHA-256/);
  assert.match(bad, /spec\.method\.greedy must be a boolean/);
  assert.match(bad, /spec\.steps must be a positive integer/);
  assert.match(bad, /spec\.arch\.gActivation is not valid/);
  assert.match(bad, /dataSha256 must be a hex SHA-256/);
  const badEpisode = jobProblems({
    ...episode,
    seed: -1,
    keepGan: 1,
    controller: {},
    featureSpec: { names: [] },
  }).join("; ");
  assert.match(badEpisode, /seed must be a u32/);
  assert.match(badEpisode, /keepGan must be a boolean/);
  assert.match(badEpisode, /controller\.sha256 must be a hex SHA-256/);
  assert.match(badEpisode, /featureSpec\.names must be a non-empty list/);
  const badNmt = jobProblems({ ...nmt, spec: { method: "best", corpusSha256: 1 } }).join("; ");
  assert.match(badNmt, /spec\.method 'best' is unknown/);
  assert.match(badNmt, /spec\.dictionarySha256 must be a hex SHA-256/);
});

Deno.test({
  name: "dist gan: a worker whose training images are not the learner's refuses the job",
  ignore,
  fn: () =>
    withServer(async (server) => {
      const nc = await connectNats({ url: server.url, insecure: true });
      const procs = [worker(server.url)];
      try {
        await ensureStreams(nc);
        const js = jetstream(nc);
        const config = await tinyGanConfig();
        const job = withId<GanRunJob>({
          format: RUN_JOB_FORMAT,
          version: WIRE_VERSION,
          run: "otherdata",
          task: "gan",
          config,
          spec: {
            method: { kind: "fixed", name: "GAN 1:1", schedule: "1:1" },
            seed: 1,
            steps: 4,
            arch: archOf(config as never),
            classifierSha256: null,
            dataSha256: "b".repeat(64),
          },
        });
        await js.publish(jobsSubject("otherdata"), JSON.stringify(job));
        const results = await js.consumers.get(RESULTS_STREAM, {
          filter_subjects: resultsSubject("otherdata"),
        });
        const m = await results.next({ expires: 60_000 });
        assert.ok(m, "a result for the job");
        const r = m.json<RunResult>();
        assert.equal(r.job, job.id);
        assert.match(r.error!, /training images \(mnist, limit 256\) are not the learner's/);
        assert.equal(r.outcome, undefined);
      } finally {
        await stopAll(procs);
        await nc.close();
      }
    }),
});

Deno.test({
  name: "dist gan: a job longer than the ack wait stays with its live worker (heartbeats)",
  ignore,
  fn: () =>
    withServer(async (server, tmp) => {
      // The ack wait is 2 s (ENV); the slow worker holds its job 6 s before publishing.
      const slow = worker(server.url, { AUTOLOSS_WORKER_DELAY_MS: "6000" });
      const procs = [slow];
      try {
        await slow.waitFor(/waiting for jobs/);
        const one = ["--set", "compare.schedules=1:1", "--set", "compare.autoloss=false"];
        const learner = new Proc([
          "compare",
          "gan",
          ...TINY,
          ...one,
          "--out",
          `${tmp}/d`,
          "--workers",
          server.url,
          "--insecure",
        ]);
        procs.push(learner);
        const started = await slow.waitFor(/started job/);
        const other = worker(server.url);
        procs.push(other);
        assert.equal((await learner.done).code, 0, learner.text());
        const id = /job (\w+)/.exec(started)![1];
        assert.match(slow.text(), new RegExp(`finished job ${id} .*delivery 1\\)`));
        assert.doesNotMatch(other.text(), new RegExp(`started job ${id}`));
        const stats = JSON.parse((await learner.waitFor(/^workers: /)).slice(9));
        assert.equal(stats.duplicates, 0);
      } finally {
        await stopAll(procs);
      }
    }),
});
