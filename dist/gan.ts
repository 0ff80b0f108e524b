/**
 * The GAN side of dist/: the runs of `compare gan --workers` (one {@link GanRunJob} per method
 * and seed), the episodes of `train gan --workers` (one {@link GanEpisodeJob} each), and what both sides need to agree on the context, the training images and the
 * scoring classifier, which are not in the config: the learner sends the classifier's weights by
 * hash (object store) and the SHA-256 of its training images; a worker loads the same classifier
 * from the store and its own copy of the data, and refuses the job when the data's hash differs
 * (another dataset version gives other numbers). The context is loaded once per worker and kept.
 * @module
 */

import type { ObjectStore } from "npm:@nats-io/obj@3.4.0";
import { type ControllerFile, controllerFromJson } from "../rl/controller_file.ts";
import type { PolicyController } from "../rl/controller.ts";
import type { GanConfig } from "../tasks/gan/config.ts";
import { guidedRun, type Method, type RunOutcome } from "../tasks/gan/experiments.ts";
import { playEpisode } from "../tasks/gan/episodic.ts";
import { saveGanCheckpoint } from "../tasks/gan/driver.ts";
import type { GanTask } from "../tasks/gan/task.ts";
import { readMany } from "../tensor/tensor.ts";
import { classifierPath, type GanContext, loadContext, makeTask } from "../tasks/gan/run.ts";
import { canonicalJson, encodeArray, type GanEpisodeJob, type GanRunJob, sha256 } from "./job.ts";
import { getArtifact, putArtifact, retrying } from "./nats.ts";

/** What the learner sends about its context: the classifier's bytes and the data's hash. */
export interface GanContextRef {
  /** The scoring classifier's weights file (null: the learner has none, so no IS). */
  classifier: Uint8Array | null;
  /** SHA-256 of the training images (f32 bytes as loaded). */
  dataSha256: string;
}

/** SHA-256 of a dataset's images. */
export function imagesSha256(ctx: GanContext): string {
  const x = ctx.data.images;
  return sha256(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
}

const refs = new WeakMap<GanContext, Promise<GanContextRef>>();

/** The learner's context as jobs describe it (computed once per context). */
export function contextRef(cfg: GanConfig, ctx: GanContext): Promise<GanContextRef> {
  let r = refs.get(ctx);
  if (!r) {
    r = (async () => ({
      classifier: ctx.scorer ? await Deno.readFile(classifierPath(cfg)) : null,
      dataSha256: imagesSha256(ctx),
    }))();
    refs.set(ctx, r);
  }
  return r;
}

interface WorkerContext {
  ctx: GanContext;
  dataSha256: string;
}

const contexts = new Map<string, Promise<WorkerContext>>();
let cacheDir: string | null = null;

/**
 * The worker's context for `job`: its own data (`config.data`), the job's classifier fetched from
 * the store into a temporary file; refused when the data's hash is not the learner's.
 */
async function contextOf(
  cfg: GanConfig,
  hashes: { classifierSha256: string | null; dataSha256: string },
  store: ObjectStore,
  log: (l: string) => void,
): Promise<GanContext> {
  const sha = hashes.classifierSha256;
  const key = canonicalJson({ data: cfg.data, classifier: sha });
  let p = contexts.get(key);
  if (!p) {
    p = (async () => {
      cacheDir ??= await Deno.makeTempDir({ prefix: "autoloss-worker-" });
      // No classifier on the learner: a path that does not exist gives none here too.
      const path = `${cacheDir}/${sha ?? "none"}.safetensors`;
      if (sha) {
        const bytes = await retrying("fetching the classifier", () => getArtifact(store, sha), log);
        await Deno.writeFile(path, bytes);
      }
      const local: GanConfig = { ...cfg, is: { ...cfg.is, classifier: path, realSamples: 0 } };
      const ctx = await loadContext(local, log);
      return { ctx, dataSha256: imagesSha256(ctx) };
    })();
    p.catch(() => contexts.delete(key));
    if (contexts.size >= 2) {
      for (const [k, old] of contexts) {
        contexts.delete(k);
        old.then((c) => c.ctx.classifier?.dispose(), () => {});
        if (contexts.size < 2) break;
      }
    }
    contexts.set(key, p);
  }
  const c = await p;
  if (c.dataSha256 !== hashes.dataSha256) {
    throw new Error(
      `this worker's training images (${cfg.data.dataset}, limit ${cfg.data.limit}) are not the ` +
        `learner's (SHA-256 ${c.dataSha256.slice(0, 12)}, the learner's ` +
        `${hashes.dataSha256.slice(0, 12)}): install the same dataset package on both`,
    );
  }
  return c.ctx;
}

/** Runs one run of `compare gan` (tasks/gan/experiments.ts `guidedRun`) as the learner would. */
export async function runGanRunJob(
  job: GanRunJob,
  controller: ControllerFile | undefined,
  store: ObjectStore,
  log: (l: string) => void,
): Promise<RunOutcome> {
  const cfg = job.config as unknown as GanConfig;
  const s = job.spec;
  const ctx = await contextOf(cfg, s, store, log);
  let frozen: PolicyController | null = null;
  try {
    let method: Method;
    if (s.method.kind === "frozen") {
      if (!controller) throw new Error("the job's controller file is missing");
      frozen = controllerFromJson(controller, { actions: ["G", "D"] });
      method = { kind: "frozen", name: s.method.name, controller: frozen, greedy: s.method.greedy };
    } else method = s.method;
    return await guidedRun(
      cfg,
      ctx,
      method,
      s.seed,
      s.steps,
      s.arch,
      `${method.name} seed ${s.seed}`,
    );
  } finally {
    frozen?.dispose();
  }
}

/** A run outcome as JSON carried it: NaN (null on the wire) restored. */
export function reviveOutcome(o: RunOutcome): RunOutcome {
  const num = (v: number | null) => (v === null ? NaN : v);
  return {
    ...o,
    final: num(o.final),
    best: num(o.best),
    gShare: num(o.gShare),
    curve: o.curve.map((p) => ({ step: p.step, is: num(p.is) })),
  };
}

let episodeTask: { key: string; ctx: GanContext; task: GanTask } | null = null;

/**
 * Plays one episode of `train gan`'s episodic REINFORCE controller (tasks/gan/episodic.ts
 * `playEpisode`) as the learner would, and returns the result's body: the episode's numbers, its
 * trajectory (features [T, 1, K], actions [T]) and, when asked, the GAN's final state by hash.
 * The GAN task is built once per config and reset for every episode, as the learner's is.
 */
export async function runGanEpisodeJob(
  job: GanEpisodeJob,
  controller: ControllerFile,
  store: ObjectStore,
  log: (l: string) => void,
): Promise<Record<string, unknown>> {
  const cfg = job.config as unknown as GanConfig;
  const ctx = await contextOf(cfg, job, store, log);
  const key = canonicalJson([cfg, job.episodeSteps, job.classifierSha256, job.dataSha256]);
  // A context evicted and loaded again is another object (its old classifier is freed).
  if (episodeTask?.key !== key || episodeTask.ctx !== ctx) {
    episodeTask?.task.dispose();
    episodeTask = null;
    episodeTask = { key, ctx, task: makeTask(cfg, ctx, { totalSteps: job.episodeSteps }) };
  }
  const task = episodeTask.task;
  if (JSON.stringify(task.featureNames) !== JSON.stringify(job.featureSpec.names)) {
    throw new Error(
      `the job's features [${job.featureSpec.names}] are not the task's [${task.featureNames}]`,
    );
  }
  const ctrl = controllerFromJson(controller, {
    featureNames: task.featureNames,
    actions: ["G", "D"],
  });
  try {
    const p = await playEpisode(task, ctrl, job, job.seed);
    try {
      const k = task.featureNames.length;
      const [f, a] = await readMany([p.buffer.features, p.buffer.actions]);
      const episode: Record<string, unknown> = {
        steps: p.steps,
        bestIs: p.bestIs,
        collapsed: p.collapsed,
        loop: p.loop,
      };
      if (job.keepGan) {
        cacheDir ??= await Deno.makeTempDir({ prefix: "autoloss-worker-" });
        const path = `${cacheDir}/gan-${job.id}.safetensors`;
        await saveGanCheckpoint(path, task, {}, { kind: "episode", episode: job.episode });
        const bytes = await Deno.readFile(path);
        await Deno.remove(path);
        episode.ganSha256 = await retrying(
          "storing the GAN",
          () => putArtifact(store, bytes),
          log,
        );
      }
      return {
        episode,
        trajectory: {
          features: encodeArray(Float32Array.from((f as Float32Array).subarray(0, p.steps * k))),
          actions: encodeArray(Int32Array.from((a as Int32Array).subarray(0, p.steps))),
        },
      };
    } finally {
      p.buffer.dispose();
    }
  } finally {
    ctrl.dispose();
  }
}
