/**
 * The learner side of `train regression|mlp --workers URL`: each round of controller training
 * becomes ceil(P / M) episode jobs (M members each, `--job-members M`, dist/job.ts), published
 * to the jobs stream; the results are gathered from the results stream and assembled in member
 * (job) order, whatever order they arrive in, so the updates that follow (tasks/l1/training.ts) are
 * those of the single-process run.
 *
 * The same learner runs the other job kinds: `compare`'s methods of regression|mlp (`methods`),
 * `compare gan`'s runs (`guided`), `train gan`'s episodes of the episodic REINFORCE controller
 * (`episodes`) and `compare nmt`'s methods (`nmtMethods`), each one job, all of a call at once, the
 * results handed back in request order (dist/gan.ts, dist/nmt.ts).
 *
 * The learner reads its run's results stream from the start: a learner resumed with `--resume`
 * finds the results of jobs it published before it was killed and publishes only the missing
 * ones. A second result for a job is dropped (counted in `duplicates`); a result for a job the
 * learner did not publish is ignored and logged; an error result fails the run with its message.
 * @module
 */

import { DeliverPolicy, jetstream, type JetStreamManager } from "npm:@nats-io/jetstream@3.4.0";
import type { MethodResult } from "../tasks/l1/methods.ts";
import type { RemoteRoundRequest, RemoteRoundResult, RemoteRounds } from "../tasks/l1/training.ts";
import type { MethodExec, MethodSpec } from "../tasks/l1/table1.ts";
import type { GanConfig } from "../tasks/gan/config.ts";
import type { GuidedRunExec } from "../tasks/gan/experiments.ts";
import type { RemoteEpisode, RemoteEpisodes } from "../tasks/gan/episodic.ts";
import type { LoopStats } from "../tasks/gan/driver.ts";
import type { NmtMethodExec } from "../tasks/nmt/commands.ts";
import { contextRef, reviveOutcome } from "./gan.ts";
import { corpusSha256 } from "./nmt.ts";
import {
  type AnyJob,
  type AnyResult,
  canonicalJson,
  decodeArray,
  type EpisodeJob,
  type EpisodeResult,
  type GanEpisodeJob,
  type GanRunJob,
  JOB_FORMAT,
  jobId,
  type NmtRunJob,
  resultProblems,
  RUN_JOB_FORMAT,
  type RunJob,
  type RunResult,
  sha256,
  WIRE_VERSION,
} from "./job.ts";
import {
  artifacts,
  connectNats,
  ensureStreams,
  getArtifact,
  jobsSubject,
  type NatsOptions,
  putArtifact,
  RESULTS_STREAM,
  resultsSubject,
  retrying,
} from "./nats.ts";

/** Counters of a learner session. */
export interface LearnerStats {
  /** Jobs published. */
  published: number;
  /** Results taken from the stream's history (published before this session). */
  reused: number;
  /** Duplicate results dropped. */
  duplicates: number;
  /** Results for unknown jobs, ignored. */
  unknown: number;
  /** Seconds from publishing a round's jobs to its last result, summed over rounds. */
  waitSeconds: number;
  /** Worker-side seconds of the results used (episodes, methods). */
  episodeSeconds: number;
  /** Results used. */
  results: number;
}

/** A connected learner: `rounds` for `trainController`'s `remote` option. */
export interface Learner {
  /** The run key: jobs go to `autoloss.jobs.<run>`, results to `autoloss.results.<run>`. */
  run: string;
  /** Runs a round's episodes on the workers. */
  rounds: RemoteRounds;
  /** Runs methods of `compare` on the workers (one run job each, all at once). */
  methods: MethodExec;
  /** Runs guided runs of `compare gan` on the workers (one run job each, all at once). */
  guided: GuidedRunExec;
  /** Plays episodes of `train gan` on the workers (one job each, all at once). */
  episodes: RemoteEpisodes;
  /** Runs methods of `compare nmt` on the workers (one run job each, all at once). */
  nmtMethods: NmtMethodExec;
  /** Counters so far. */
  stats: LearnerStats;
  /** Stops reading results and closes the connection. */
  close(): Promise<void>;
}

/** What the learner puts into every job besides the round's request. */
export interface LearnerOptions extends NatsOptions {
  /** Task registry name. */
  task: "regression" | "mlp" | "gan" | "nmt";
  /** The task's resolved config. */
  config: Record<string, unknown>;
  /** Identifies the run across resumes (e.g. its run directory); hashed into the run key. */
  runName: string;
  /** Members per job (default 1): more keeps the lockstep batching, fewer spreads wider. */
  membersPerJob?: number;
  /** Log lines (default console.error). */
  log?: (line: string) => void;
}

/** The jobs of a round, M members each (pure: the same request gives the same jobs and ids). */
export function roundJobs(
  req: RemoteRoundRequest,
  o: {
    run: string;
    task: EpisodeJob["task"];
    config: Record<string, unknown>;
    sha: string;
    membersPerJob: number;
  },
): EpisodeJob[] {
  const c = req.create;
  const args = JSON.parse(JSON.stringify(req.args));
  const m = Math.max(1, Math.floor(o.membersPerJob));
  return Array.from({ length: Math.ceil(req.population / m) }, (_, i) => {
    const p = i * m;
    const members = Math.min(m, req.population - p);
    const lambda = typeof c.lambda === "number" ? c.lambda : c.lambda.slice(p, p + members);
    const body: Omit<EpisodeJob, "id"> = {
      format: JOB_FORMAT,
      version: WIRE_VERSION,
      run: o.run,
      task: o.task,
      config: o.config,
      create: JSON.parse(JSON.stringify({
        lambda,
        mode: "schedule",
        data: "controller",
        steps: c.steps,
        features: c.features,
        dropFeatures: c.dropFeatures ? [...c.dropFeatures] : undefined,
        sharedInit: c.sharedInit,
      })),
      round: req.round,
      member: p,
      members,
      seed: req.seed >>> 0,
      sampleSeed: req.sampleSeed >>> 0,
      steps: c.steps,
      controller: { sha256: o.sha },
      featureSpec: { names: [...req.controller.featureSpec.names] },
      args,
      logProbs: req.logProbs,
    };
    return { ...body, id: jobId(body) };
  });
}

/** Connects, creates the streams if needed and starts reading this run's results. */
export async function connectLearner(o: LearnerOptions): Promise<Learner> {
  const log = o.log ?? ((l: string) => console.error(l));
  const nc = await connectNats({ ...o, name: o.name ?? `autoloss-learner ${Deno.pid}` });
  let jsm: JetStreamManager;
  try {
    jsm = await ensureStreams(nc);
  } catch (err) {
    await nc.close();
    throw err;
  }
  const js = jetstream(nc);
  const store = await artifacts(nc);
  const config = JSON.parse(JSON.stringify(o.config));
  const run = sha256(canonicalJson({ task: o.task, config, runName: o.runName })).slice(0, 32);
  const subject = resultsSubject(run);
  const stats: LearnerStats = {
    published: 0,
    reused: 0,
    duplicates: 0,
    unknown: 0,
    waitSeconds: 0,
    episodeSeconds: 0,
    results: 0,
  };
  // Results of this run: those already in the stream (history) and those arriving.
  const history = new Map<string, AnyResult>();
  const expected = new Map<string, (r: AnyResult) => void>();
  const taken = new Set<string>();
  let lastHistorySeq = 0;
  try {
    const last = await jsm.streams.getMessage(RESULTS_STREAM, { last_by_subj: subject });
    lastHistorySeq = last?.seq ?? 0;
  } catch {
    lastHistorySeq = 0; // no result of this run yet
  }
  let caughtUp!: () => void;
  const historyRead = new Promise<void>((r) => (caughtUp = r));
  if (lastHistorySeq === 0) caughtUp();
  const consumer = await js.consumers.get(RESULTS_STREAM, {
    filter_subjects: subject, // a string: one subject works on nats-server 2.9
    deliver_policy: DeliverPolicy.All,
  });
  const messages = await consumer.consume();
  const reading = (async () => {
    for await (const m of messages) {
      let r: AnyResult | null = null;
      try {
        r = m.json<AnyResult>();
      } catch { /* reported below */ }
      const problems = resultProblems(r);
      if (problems.length) {
        log(`dist: ignoring a malformed result (seq ${m.seq}): ${problems.join("; ")}`);
      } else if (taken.has(r!.job) || history.has(r!.job)) {
        stats.duplicates++;
      } else if (expected.has(r!.job)) {
        taken.add(r!.job);
        expected.get(r!.job)!(r!);
        expected.delete(r!.job);
      } else if (m.seq <= lastHistorySeq) {
        history.set(r!.job, r!);
      } else {
        stats.unknown++;
        log(`dist: ignoring a result for unknown job ${r!.job.slice(0, 12)} from ${r!.worker}`);
      }
      if (m.seq >= lastHistorySeq) caughtUp();
    }
  })();

  /**
   * Publishes the jobs that have no result in the stream yet and waits for all results, in job
   * order; throws with the workers' messages when any failed.
   */
  const gather = async <R extends AnyResult>(jobs: AnyJob[], label: string): Promise<R[]> => {
    await historyRead;
    const began = performance.now();
    const got: (AnyResult | undefined)[] = new Array(jobs.length);
    const waits: Promise<void>[] = [];
    let reused = 0;
    let arrived = 0;
    const toPublish: AnyJob[] = [];
    jobs.forEach((job, p) => {
      const old = history.get(job.id);
      if (old) {
        history.delete(job.id);
        taken.add(job.id);
        got[p] = old;
        reused++;
        return;
      }
      waits.push(
        new Promise<void>((resolve) =>
          expected.set(job.id, (r) => {
            got[p] = r;
            arrived++;
            log(`dist: ${label}: ${reused + arrived}/${jobs.length} results`);
            resolve();
          })
        ),
      );
      toPublish.push(job);
    });
    for (const job of toPublish) {
      const text = JSON.stringify(job);
      await retrying(
        "publishing a job",
        () => js.publish(jobsSubject(run), text, { msgID: job.id, timeout: 2000 }),
        log,
      );
    }
    stats.published += toPublish.length;
    stats.reused += reused;
    log(
      `dist: ${label}: published ${toPublish.length} jobs` +
        (reused ? `, reused ${reused} results from the stream` : ""),
    );
    const hint = setTimeout(() => {
      if (arrived === 0 && toPublish.length) {
        log(
          `dist: ${label}: no result after 30 s: is a worker running? (cli.ts worker --nats URL)`,
        );
      }
    }, 30_000);
    try {
      await Promise.all(waits);
    } finally {
      clearTimeout(hint);
    }
    stats.waitSeconds += (performance.now() - began) / 1000;
    const failed = got.map((r, i) => [r!, i] as const).filter(([r]) => r.error !== undefined);
    if (failed.length) {
      throw new Error(
        `${label}: ${failed.length} of ${jobs.length} jobs failed: ` +
          failed.map(([r, i]) => `job ${jobs[i].id.slice(0, 12)}: ${r.error}`).join("; "),
      );
    }
    for (const r of got) stats.episodeSeconds += r!.seconds ?? 0;
    stats.results += got.length;
    return got as R[];
  };

  let warned = false;
  const rounds: RemoteRounds = async (req: RemoteRoundRequest): Promise<RemoteRoundResult> => {
    const m = Math.max(1, Math.floor(o.membersPerJob ?? 1));
    const smallest = Math.min(m, req.population - m * Math.floor((req.population - 1) / m));
    if (!warned && req.population > 8 && smallest <= 8) {
      warned = true;
      log(
        `dist: note: rounds of ${req.population} members in jobs of ${smallest} or fewer: the CPU ` +
          `backend's matrix products take another path for 8 rows or fewer, so results can ` +
          `differ from the single-process run in the last bits (--job-members of 9 or more, ` +
          `with a last job of 9 or more, keeps them identical)`,
      );
    }
    const bytes = new TextEncoder().encode(JSON.stringify(req.controller));
    const sha = await retrying("storing the controller", () => putArtifact(store, bytes), log);
    if (o.task === "gan" || o.task === "nmt") {
      throw new Error(`the ${o.task} task has no rounds of episodes`);
    }
    const jobs = roundJobs(req, {
      run,
      task: o.task,
      config,
      sha,
      membersPerJob: o.membersPerJob ?? 1,
    });
    const results = await gather<EpisodeResult>(jobs, `round ${req.round}`);
    return assemble(req, jobs, results);
  };

  const methods: MethodExec = async (specs: MethodSpec[]): Promise<MethodResult[]> => {
    const jobs: RunJob[] = [];
    for (const spec of specs) {
      const { controller, ...rest } = spec as MethodSpec & { controller?: unknown };
      if (o.task === "gan" || o.task === "nmt") {
        throw new Error(`compare ${o.task} has its own run jobs`);
      }
      const body: Omit<RunJob, "id"> = {
        format: RUN_JOB_FORMAT,
        version: WIRE_VERSION,
        run,
        task: o.task,
        config,
        spec: JSON.parse(JSON.stringify({
          ...rest,
          ...(controller
            ? {
              controllerSha256: await retrying(
                "storing the controller",
                () => putArtifact(store, new TextEncoder().encode(JSON.stringify(controller))),
                log,
              ),
            }
            : {}),
        })),
      };
      jobs.push({ ...body, id: jobId(body) });
    }
    const label = `compare ${specs.map((s) => s.method).join(", ")}`;
    const results = await gather<RunResult>(jobs, label);
    return results.map((r) => r.result!);
  };

  const storeBytes = (what: string, bytes: Uint8Array) =>
    retrying(`storing the ${what}`, () => putArtifact(store, bytes), log);
  const guided: GuidedRunExec = async (reqs, ctx) => {
    const ref = await contextRef(config as unknown as GanConfig, ctx);
    const classifierSha256 = ref.classifier ? await storeBytes("classifier", ref.classifier) : null;
    const jobs: GanRunJob[] = [];
    for (const r of reqs) {
      const method = r.method.kind === "frozen"
        ? {
          kind: "frozen" as const,
          name: r.method.name,
          greedy: r.method.greedy,
          controllerSha256: await storeBytes(
            "controller",
            new TextEncoder().encode(JSON.stringify(r.method.controller)),
          ),
        }
        : r.method;
      const body: Omit<GanRunJob, "id"> = {
        format: RUN_JOB_FORMAT,
        version: WIRE_VERSION,
        run,
        task: "gan",
        config,
        spec: JSON.parse(JSON.stringify({
          method,
          seed: r.seed >>> 0,
          steps: r.steps,
          arch: r.arch,
          classifierSha256,
          dataSha256: ref.dataSha256,
        })),
      };
      jobs.push({ ...body, id: jobId(body) });
    }
    const results = await gather<RunResult>(jobs, `compare gan: ${jobs.length} runs`);
    return results.map((r) => reviveOutcome(r.outcome!));
  };

  // The GAN states of train gan's episodes: each update's is needed until the next update begins
  // (a learner resumed mid-update fetches it again), then deleted from the object store.
  let lastGan: string | null = null;
  const episodes: RemoteEpisodes = async (reqs, controller, eo, ctx) => {
    const ref = await contextRef(config as unknown as GanConfig, ctx);
    const classifierSha256 = ref.classifier ? await storeBytes("classifier", ref.classifier) : null;
    const sha = await storeBytes(
      "controller",
      new TextEncoder().encode(JSON.stringify(controller)),
    );
    const names = [...controller.featureSpec.names];
    const jobs: GanEpisodeJob[] = reqs.map((r) => {
      const body: Omit<GanEpisodeJob, "id"> = {
        format: JOB_FORMAT,
        version: WIRE_VERSION,
        run,
        task: "gan",
        config,
        episode: r.episode,
        seed: r.seed >>> 0,
        episodeSteps: eo.episodeSteps,
        patience: eo.patience,
        controller: { sha256: sha },
        featureSpec: { names },
        keepGan: r.keepGan,
        classifierSha256,
        dataSha256: ref.dataSha256,
      };
      return { ...body, id: jobId(body) };
    });
    const span = reqs.length > 1
      ? `episodes ${reqs[0].episode}..${reqs[reqs.length - 1].episode}`
      : `episode ${reqs[0]?.episode}`;
    const results = await gather<EpisodeResult>(jobs, span);
    const out: RemoteEpisode[] = [];
    for (const [i, r] of results.entries()) {
      const e = r.episode;
      const what = `episode ${reqs[i].episode} (job ${r.job.slice(0, 12)})`;
      if (!e || !r.trajectory) throw new Error(`${what}: the result is not a GAN episode`);
      const features = decodeArray(
        r.trajectory.features,
        Float32Array,
        e.steps * names.length,
        `${what}: features`,
      );
      const actions = decodeArray(r.trajectory.actions, Int32Array, e.steps, `${what}: actions`);
      let gan: Uint8Array | undefined;
      if (reqs[i].keepGan) {
        const g = e.ganSha256;
        if (!g) throw new Error(`${what}: the GAN's state is missing`);
        gan = await retrying("fetching the GAN", () => getArtifact(store, g), log);
        if (lastGan && lastGan !== g) {
          const old = lastGan;
          await store.delete(old).catch((err) =>
            log(`dist: could not delete the GAN ${old.slice(0, 12)}: ${(err as Error).message}`)
          );
        }
        lastGan = g;
      }
      out.push({
        steps: e.steps,
        bestIs: e.bestIs,
        collapsed: e.collapsed,
        loop: e.loop as unknown as LoopStats,
        features,
        actions,
        gan,
      });
    }
    return out;
  };

  const nmtMethods: NmtMethodExec = async (list, cfg, data) => {
    const dictionarySha256 = await storeBytes("dictionary", await Deno.readFile(cfg.data.path));
    const corpus = corpusSha256(data.encoded);
    const jobs: NmtRunJob[] = list.map((method) => {
      const body: Omit<NmtRunJob, "id"> = {
        format: RUN_JOB_FORMAT,
        version: WIRE_VERSION,
        run,
        task: "nmt",
        config,
        spec: { method, dictionarySha256, corpusSha256: corpus },
      };
      return { ...body, id: jobId(body) };
    });
    const results = await gather<RunResult>(jobs, `compare nmt ${list.join(", ")}`);
    return results.map((r, i) => {
      if (!r.nmt) throw new Error(`compare nmt: the result of ${list[i]} is not an nmt result`);
      return r.nmt;
    });
  };

  return {
    run,
    rounds,
    methods,
    guided,
    episodes,
    nmtMethods,
    stats,
    async close() {
      messages.stop();
      await reading.catch(() => {});
      await nc.drain().catch(() => nc.close());
    },
  };
}

/** Interleaves the slices' results into the round's [T, P, ...] layout, in member order. */
function assemble(
  req: RemoteRoundRequest,
  jobs: EpisodeJob[],
  results: EpisodeResult[],
): RemoteRoundResult {
  const p = req.population;
  const t = req.create.steps;
  const k = req.controller.featureSpec.names.length;
  const features = new Float32Array(t * p * k);
  const actions = new Int32Array(t * p);
  const dense = req.args.stepReward !== null;
  const stepRewards = dense ? new Float32Array(t * p) : undefined;
  const logProbs = req.logProbs ? new Float32Array(t * p) : undefined;
  const metrics: Record<string, number[]> = {};
  results.forEach((r, i) => {
    const { member: lo, members: n } = jobs[i];
    const what = `result of members ${lo}..${lo + n - 1} (job ${r.job.slice(0, 12)})`;
    const tr = r.trajectory!;
    const f = decodeArray(tr.features, Float32Array, t * n * k, `${what}: features`);
    const a = decodeArray(tr.actions, Int32Array, t * n, `${what}: actions`);
    for (let s = 0; s < t; s++) {
      features.set(f.subarray(s * n * k, (s + 1) * n * k), (s * p + lo) * k);
      actions.set(a.subarray(s * n, (s + 1) * n), s * p + lo);
    }
    const scalar = (text: string | undefined, into: Float32Array | undefined, name: string) => {
      if (!into) return;
      if (text === undefined) throw new Error(`${what}: no ${name}`);
      const v = decodeArray(text, Float32Array, t * n, `${what}: ${name}`);
      for (let s = 0; s < t; s++) into.set(v.subarray(s * n, (s + 1) * n), s * p + lo);
    };
    scalar(tr.rewards, stepRewards, "step rewards");
    scalar(tr.logProbs, logProbs, "log-probabilities");
    for (const [name, v] of Object.entries(r.metrics!)) {
      if (!Array.isArray(v) || v.length !== n) {
        throw new Error(`${what}: metric '${name}' has ${v?.length} values, not ${n}`);
      }
      (metrics[name] ??= new Array(p).fill(NaN)).splice(lo, n, ...v);
    }
  });
  return { metrics, features, actions, stepRewards, logProbs };
}
