/**
 * Benchmark (a script, not a test): `train regression` in one process and on 1 and 2 NATS
 * workers on this machine (issue 16), with one member per job and with P/2 members per job.
 * Starts its own `nats-server` on a free 127.0.0.1 port with file storage in a temporary
 * directory, runs the same controller training each way as subprocesses of the CLI, checks that
 * the controllers are the same, and prints wall time, jobs per second and the queue's per-job
 * overhead: with one worker, (time from publishing a round's jobs to its last result - the
 * worker's job seconds) / jobs.
 *
 * ```sh
 * npx -y deno@2.9.6 run -A bench/dist.ts [--population 8] [--rounds 3] [--steps 1000] [--threads 1]
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { finish, spawnCli, startServer } from "./dist_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    population: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "1000" },
    threads: { type: "string", default: "1" },
  },
});
const train = [
  "train",
  "regression",
  "--backend",
  "cpu",
  "--set",
  `controller.population=${values.population}`,
  "--set",
  `controller.rounds=${values.rounds}`,
  "--set",
  `controller.steps=${values.steps}`,
];

async function controllerOf(dir: string): Promise<string> {
  const doc = JSON.parse(await Deno.readTextFile(`${dir}/controller.json`));
  return JSON.stringify([doc.weights, doc.featureSpec]);
}

const server = await startServer("autoloss-bench-dist-", values.threads);
const { tmp, url } = server;
try {
  const episodes = Number(values.population) * Number(values.rounds);
  const rows: string[] = [];
  let t0 = performance.now();
  await finish(spawnCli([...train, "--out", `${tmp}/local`], values.threads));
  const localWall = (performance.now() - t0) / 1000;
  rows.push(`| 1 process (lockstep population) | - | ${localWall.toFixed(1)} | - | - |`);
  const reference = await controllerOf(`${tmp}/local`);
  const half = Math.ceil(Number(values.population) / 2);
  for (const [n, m] of [[1, 1], [2, 1], [1, half], [2, half]]) {
    await server.workers(n);
    t0 = performance.now();
    const out = `${tmp}/w${n}m${m}`;
    const args = ["--out", out, "--workers", url, "--insecure", "--job-members", String(m)];
    const text = await finish(spawnCli([...train, ...args], values.threads));
    const wall = (performance.now() - t0) / 1000;
    const stats = JSON.parse(/^workers: (.*)$/m.exec(text)![1]);
    const same = (await controllerOf(out)) === reference;
    const overhead = (stats.waitSeconds - stats.episodeSeconds) / stats.results;
    const jobsPerSecond = stats.results / stats.waitSeconds;
    rows.push(
      `| ${n} worker${n > 1 ? "s" : ""} | ${m} | ${wall.toFixed(1)} | ` +
        `${jobsPerSecond.toFixed(2)} | ${n === 1 ? (overhead * 1000).toFixed(1) : "-"} |` +
        (same ? "" : " controller differs!"),
    );
    console.error(
      `${n} worker(s), ${m} per job: ${JSON.stringify(stats)}; mean job ` +
        `${(stats.episodeSeconds / stats.results).toFixed(3)} s; same controller: ${same}`,
    );
  }
  console.log(
    `train regression, ${values.rounds} rounds x ${values.population} episodes x ` +
      `${values.steps} steps (${episodes} episodes), AUTOLOSS_THREADS=${values.threads}, load ` +
      Deno.loadavg().map((x) => x.toFixed(2)).join(" "),
  );
  console.log("| run | members per job | wall s (process) | jobs/s (rounds) | queue ms/job |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) console.log(r);
} finally {
  await server.stop();
}
