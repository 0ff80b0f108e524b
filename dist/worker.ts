/**
 * `cli.ts worker --nats URL`: pulls jobs from the `autoloss-workers` consumer one at a time until
 * stopped, runs each (episodes and methods of regression|mlp: dist/episode.ts; GAN runs and
 * episodes: dist/gan.ts; NMT methods: dist/nmt.ts) and publishes its result before acking it, so a
 * worker killed at any point loses nothing: an unacked job is redelivered after the ack wait (a
 * running job is kept alive by "in progress" heartbeats, so jobs may take longer than that), and
 * a result published twice is dropped by its job id. A job that fails validation is answered with
 * an error result and never run. Ctrl-C (or SIGTERM) finishes the current job and exits; a second
 * one releases the job to another worker at once (nak) and exits.
 * @module
 */

import { hostname } from "node:os";
import { jetstream } from "npm:@nats-io/jetstream@3.4.0";
import type { ControllerFile } from "../rl/controller_file.ts";
import { init } from "../gpu/backend.ts";
import {
  type AnyJob,
  type AnyResult,
  JOB_FORMAT,
  jobProblems,
  RESULT_FORMAT,
  RUN_JOB_FORMAT,
  RUN_RESULT_FORMAT,
  type RunJob,
  WIRE_VERSION,
} from "./job.ts";
import { encodeEpisode, problemOf, runMemberEpisode } from "./episode.ts";
import { type MethodSpec, runMethod } from "../tasks/l1/table1.ts";
import { runGanEpisodeJob, runGanRunJob } from "./gan.ts";
import { runNmtRunJob } from "./nmt.ts";
import {
  ackWaitSeconds,
  artifacts,
  connectNats,
  ensureStreams,
  getArtifact,
  JOBS_STREAM,
  type NatsOptions,
  resultsSubject,
  retrying,
  WORKERS_CONSUMER,
} from "./nats.ts";

/** Options of {@link runWorker}. */
export interface WorkerOptions extends NatsOptions {
  /** Where log lines go (default console.error). */
  log?: (line: string) => void;
  /** Stop after this many jobs (default: run until stopped). */
  maxJobs?: number;
  /** Stop when aborted (after the current job). */
  signal?: AbortSignal;
}

/** Counters of a worker's life. */
export interface WorkerStats {
  /** Jobs run and acked. */
  done: number;
  /** Jobs rejected (validation) or failed. */
  rejected: number;
  /** Seconds spent in episodes. */
  busySeconds: number;
}

/**
 * Pulls and runs jobs until `opts.signal` aborts, `maxJobs` are done, or SIGINT/SIGTERM; returns
 * the counters. The test hook `AUTOLOSS_WORKER_DELAY_MS` waits that long before publishing each
 * result (so a test can kill a worker while it holds a job).
 */
export async function runWorker(opts: WorkerOptions): Promise<WorkerStats> {
  const log = opts.log ?? ((l: string) => console.error(l));
  const delay = Number(Deno.env.get("AUTOLOSS_WORKER_DELAY_MS") ?? 0);
  const me = `${hostname()}:${Deno.pid}`;
  const nc = await connectNats({ ...opts, name: opts.name ?? `autoloss-worker ${me}` });
  const stats: WorkerStats = { done: 0, rejected: 0, busySeconds: 0 };
  let stopping = false;
  let release: (() => void) | null = null;
  const onSignal = () => {
    if (!stopping) {
      stopping = true;
      log(`worker: stopping after the current job (again to release it now)`);
      return;
    }
    if (release) release();
    else Deno.exit(130);
  };
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  opts.signal?.addEventListener("abort", () => (stopping = true));
  try {
    await init();
    await ensureStreams(nc);
    const js = jetstream(nc);
    const store = await artifacts(nc);
    const consumer = await js.consumers.get(JOBS_STREAM, WORKERS_CONSUMER);
    const controllers = new Map<string, ControllerFile>();
    log(`worker ${me}: waiting for jobs on ${opts.url.replace(/\/\/[^@/]*@/, "//")}`);
    while (!stopping && (opts.maxJobs === undefined || stats.done < opts.maxJobs)) {
      let m;
      try {
        m = await consumer.next({ expires: 2000 });
      } catch (err) {
        log(`worker: cannot pull a job (${(err as Error).message}); retrying`);
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      if (!m) continue;
      const run = m.subject.split(".").pop()!;
      let job: AnyJob;
      try {
        job = m.json<AnyJob>();
      } catch {
        job = null as unknown as AnyJob;
      }
      const isRun = job?.format === RUN_JOB_FORMAT;
      const reply = async (r: Record<string, unknown> & { job: string }) => {
        const doc = {
          format: isRun ? RUN_RESULT_FORMAT : RESULT_FORMAT,
          version: WIRE_VERSION,
          run,
          worker: me,
          ...r,
        } as AnyResult;
        const text = JSON.stringify(doc);
        await retrying(
          "publishing a result",
          () => js.publish(resultsSubject(run), text, { msgID: `result-${r.job}`, timeout: 2000 }),
          log,
        );
      };
      // Publishes the result, then acks (or terminates) the job; when the server cannot be
      // reached the job stays unacked and is redelivered.
      const deliver = async (r: Record<string, unknown> & { job: string }, ok: boolean) => {
        try {
          await reply(r);
          if (ok) await retrying("acking a job", () => m.ackAck(), log, 30);
          else m.term(String(r.error));
          return true;
        } catch (err) {
          log(
            `worker: could not deliver the result of job ${r.job.slice(0, 12)} ` +
              `(${(err as Error).message}); it will be redelivered`,
          );
          return false;
        }
      };
      const problems = jobProblems(job);
      const id = typeof job?.id === "string" ? job.id : `seq-${m.seq}`;
      if (problems.length) {
        const error = `invalid job: ${problems.join("; ")}`;
        log(`worker: rejected job ${id.slice(0, 12)}: ${error}`);
        await deliver({ job: id, error }, false);
        stats.rejected++;
        continue;
      }
      const what = job.task === "nmt"
        ? `compare nmt: ${job.spec.method}`
        : job.task === "gan" && job.format === JOB_FORMAT
        ? `train gan: episode ${job.episode}, seed ${job.seed}`
        : job.task === "gan"
        ? `compare gan: ${job.spec.method.name} seed ${job.spec.seed}`
        : job.format === RUN_JOB_FORMAT
        ? `compare ${job.task}: ${job.spec.method}`
        : `round ${job.round}, members ${job.member}..${job.member + job.members - 1}`;
      const tag = `job ${id.slice(0, 12)} (${what}, delivery ${m.info.deliveryCount})`;
      log(`worker: started ${tag}`);
      const began = performance.now();
      let aborted = false;
      release = () => {
        aborted = true;
        m.nak();
        log(`worker: released ${tag}`);
        Deno.exit(130);
      };
      // While the job runs (a GAN or NMT run can take hours), tell the server every third of the
      // ack wait that it is in progress: only a worker that stops (killed, cut off) loses its job.
      const heartbeat = setInterval(() => {
        try {
          m.working();
        } catch { /* not connected: the job is redelivered if this lasts */ }
      }, Math.max(500, (ackWaitSeconds() * 1000) / 3));
      try {
        m.working();
        // The controller file: a missing one is a job error, an unreachable server is not.
        const sha = job.task === "nmt"
          ? undefined
          : job.task === "gan" && job.format === JOB_FORMAT
          ? job.controller.sha256
          : job.task === "gan"
          ? (job.spec.method.kind === "frozen" ? job.spec.method.controllerSha256 : undefined)
          : job.format === RUN_JOB_FORMAT
          ? job.spec.controllerSha256
          : job.controller.sha256;
        let file: ControllerFile | undefined;
        if (sha) {
          file = controllers.get(sha);
          if (!file) {
            const bytes = await retrying(
              "fetching a controller",
              () => getArtifact(store, sha),
              log,
            );
            file = JSON.parse(new TextDecoder().decode(bytes)) as ControllerFile;
            if (controllers.size > 16) controllers.clear();
            controllers.set(sha, file);
          }
        }
        let body: Record<string, unknown>;
        let error: string | null = null;
        try {
          if (job.task === "nmt") {
            body = { nmt: await runNmtRunJob(job, store, log) };
          } else if (job.task === "gan" && job.format === JOB_FORMAT) {
            body = await runGanEpisodeJob(job, file!, store, log);
          } else if (job.task === "gan") {
            body = { outcome: await runGanRunJob(job, file, store, log) };
          } else if (job.format === RUN_JOB_FORMAT) {
            body = { result: await runRunJob(job, file) };
          } else {
            const e = await runMemberEpisode(job, file!);
            body = { metrics: e.metrics, trajectory: encodeEpisode(e) };
          }
        } catch (err) {
          error = `job failed on ${me}: ${(err as Error).message}`;
          body = { error };
        }
        const seconds = (performance.now() - began) / 1000;
        if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        if (aborted) break;
        if (error) {
          log(`worker: ${error}`);
          await deliver({ job: id, ...body }, false);
          stats.rejected++;
        } else if (await deliver({ job: id, ...body, seconds }, true)) {
          stats.done++;
          stats.busySeconds += seconds;
          log(`worker: finished ${tag} in ${seconds.toFixed(3)} s`);
        }
      } catch (err) {
        log(`worker: ${tag}: ${(err as Error).message}; it will be redelivered`);
      } finally {
        clearInterval(heartbeat);
        release = null;
      }
    }
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    await nc.drain().catch(() => nc.close());
  }
  log(`worker: done (${stats.done} jobs, ${stats.rejected} rejected)`);
  return stats;
}

/** Runs a run job: one method of `compare` (tasks/l1/compare.ts `runMethod`). */
async function runRunJob(job: RunJob, controller: ControllerFile | undefined) {
  const { controllerSha256, ...rest } = job.spec;
  const spec = (controllerSha256 ? { ...rest, controller } : rest) as MethodSpec;
  return await runMethod(problemOf(job), spec);
}
