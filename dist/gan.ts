/**
 * The GAN side of dist/: the runs of `compare gan --workers` (one {@link GanRunJob} per method
 * and seed) and what both sides need to agree on the context, the training images and the
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
import { classifierPath, type GanContext, loadContext } from "../tasks/gan/run.ts";
import { canonicalJson, type GanRunJob, sha256 } from "./job.ts";
import { getArtifact, retrying } from "./nats.ts";

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
  job: GanRunJob,
  store: ObjectStore,
  log: (l: string) => void,
): Promise<GanContext> {
  const cfg = job.config as unknown as GanConfig;
  const sha = job.spec.classifierSha256;
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
  if (c.dataSha256 !== job.spec.dataSha256) {
    throw new Error(
      `this worker's training images (${cfg.data.dataset}, limit ${cfg.data.limit}) are not the ` +
        `learner's (SHA-256 ${c.dataSha256.slice(0, 12)}, the learner's ` +
        `${job.spec.dataSha256.slice(0, 12)}): install the same dataset package on both`,
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
  const ctx = await contextOf(job, store, log);
  const s = job.spec;
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
