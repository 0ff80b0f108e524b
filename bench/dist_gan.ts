/**
 * Benchmark (a script, not a test): a small `compare gan` in one process and on 1 and 2 NATS
 * workers on this machine (issue 16, item 6), each method x seed run one job. Starts its own
 * `nats-server` on a free 127.0.0.1 port with file storage in a temporary directory, runs the same
 * comparison each way as subprocesses of the CLI, checks that the summaries are the same (wall
 * times aside), and prints wall time, jobs per second and the queue's per-job overhead: with one
 * worker, (time from publishing the jobs to the last result - the worker's job seconds) / jobs.
 *
 * ```sh
 * npx -y deno@2.9.6 run -A bench/dist_gan.ts [--steps 100] [--seeds 2] [--schedules 1:1,1:3,3:1]
 * ```
 * @module
 */

import { parseArgs } from "node:util";
import { finish, spawnCli, startServer } from "./dist_helpers.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    steps: { type: "string", default: "100" },
    seeds: { type: "string", default: "2" },
    schedules: { type: "string", default: "1:1,1:3,3:1" },
    threads: { type: "string", default: "1" },
  },
});
const compare = [
  "compare",
  "gan",
  "--backend",
  "cpu",
  ...[
    "data.limit=1024",
    "model.zDim=16",
    "model.gFilters=8",
    "model.dFilters=8",
    "optim.batchSize=16",
    "is.every=25",
    "is.samples=200",
    "is.finalSamples=500",
    "is.realSamples=500",
    `compare.schedules=${values.schedules}`,
    `compare.seeds=${values.seeds}`,
    `compare.steps=${values.steps}`,
    "controller.ppo.segment=25",
  ].flatMap((kv) => ["--set", kv]),
];

async function summaryOf(dir: string): Promise<string> {
  const s = JSON.parse(await Deno.readTextFile(`${dir}/summary.json`));
  for (const r of s.runs) delete r.seconds;
  return JSON.stringify(s);
}

const server = await startServer("autoloss-bench-dist-gan-", values.threads);
const { tmp, url } = server;
try {
  const rows: string[] = [];
  let t0 = performance.now();
  await finish(spawnCli([...compare, "--out", `${tmp}/local`], values.threads));
  const localWall = (performance.now() - t0) / 1000;
  rows.push(`| 1 process | ${localWall.toFixed(1)} | - | - | - |`);
  const reference = await summaryOf(`${tmp}/local`);
  for (const n of [1, 2]) {
    await server.workers(n);
    t0 = performance.now();
    const out = `${tmp}/w${n}`;
    const text = await finish(
      spawnCli([...compare, "--out", out, "--workers", url, "--insecure"], values.threads),
    );
    const wall = (performance.now() - t0) / 1000;
    const stats = JSON.parse(/^workers: (.*)$/m.exec(text)![1]);
    const same = (await summaryOf(out)) === reference;
    const overhead = (stats.waitSeconds - stats.episodeSeconds) / stats.results;
    rows.push(
      `| ${n} worker${n > 1 ? "s" : ""} | ${wall.toFixed(1)} | ` +
        `${(stats.results / stats.waitSeconds).toFixed(2)} | ` +
        `${(stats.episodeSeconds / stats.results).toFixed(2)} | ` +
        `${n === 1 ? (overhead * 1000).toFixed(1) : "-"} |` + (same ? "" : " summary differs!"),
    );
    console.error(`${n} worker(s): ${JSON.stringify(stats)}; same summary: ${same}`);
  }
  const methods = values.schedules.split(",").length + 1;
  console.log(
    `compare gan: ${methods} methods x ${values.seeds} seeds x ${values.steps} steps ` +
      `(${methods * Number(values.seeds)} jobs), AUTOLOSS_THREADS=${values.threads}, load ` +
      Deno.loadavg().map((x) => x.toFixed(2)).join(" "),
  );
  console.log("| run | wall s (process) | jobs/s (wait) | s per job (worker) | queue ms/job |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) console.log(r);
} finally {
  await server.stop();
}
