/**
 * The wire format of distributed controller training: versioned JSON episode jobs and results,
 * their validation, and content hashes.
 *
 * An {@link EpisodeJob} is the episodes of a slice of a round's members (members `member` to
 * `member + members - 1`, run in lockstep as one population): the task and its resolved config,
 * how the task is built, the round's seeds, the REINFORCE settings that decide what is recorded,
 * the feature spec and a reference (SHA-256) to the controller file in the object store. Its `id`
 * is the SHA-256 of everything else, so the same episode always has the same id: a learner that
 * resumes finds the results of the jobs it published before it was killed, and a duplicate
 * result (a redelivered job run twice) is recognized by its id. An {@link EpisodeResult} carries
 * the final metrics ([M] each) and the trajectory the learner's update needs (features [T, M, K],
 * actions [T, M], dense step rewards and log-probabilities [T, M] when recorded) as base64
 * little-endian arrays, or
 * an `error` (a job that failed validation is never run). A {@link RunJob} is one method of
 * `compare` (tasks/l1/compare.ts `MethodSpec`, a controller again by hash); its
 * {@link RunResult} carries the method's result. A {@link GanRunJob} is one run of `compare gan`
 * (a method and a seed: a fixed schedule, the online PPO controller, or a frozen controller by
 * hash), with the scoring classifier by hash and the hash of the training images, so a worker
 * whose data or classifier differ from the learner's refuses the job instead of returning other
 * numbers; its {@link RunResult} carries the run's outcome. A {@link GanEpisodeJob} is one
 * episode of `train gan`'s episodic REINFORCE controller (the controller by hash, the GAN's seed);
 * its {@link EpisodeResult} carries the trajectory [T, 1, K] and, for the last episode of an
 * update, the GAN's final state by hash. An {@link NmtRunJob} is one method of `compare nmt`, with
 * the dictionary file by hash and the hash of the encoded corpus the worker must rebuild.
 * @module
 */

import { createHash } from "node:crypto";
import type { MethodSpec } from "../tasks/l1/table1.ts";
import type { MethodResult } from "../tasks/l1/methods.ts";
import type { RunOutcome } from "../tasks/gan/experiments.ts";
import type { DcganArch } from "../tasks/gan/model.ts";
import type { MethodResult as NmtMethodResult, NmtMethod } from "../tasks/nmt/train.ts";
import { Buffer } from "node:buffer";

/** `format` of an episode job. */
export const JOB_FORMAT = "autoloss-episode-job";
/** `format` of an episode result. */
export const RESULT_FORMAT = "autoloss-episode-result";
/** `format` of a run job (one method of `compare`). */
export const RUN_JOB_FORMAT = "autoloss-run-job";
/** `format` of a run result. */
export const RUN_RESULT_FORMAT = "autoloss-run-result";
/** The wire version both sides speak. */
export const WIRE_VERSION = 1;

/** The tasks whose controller training runs on workers. */
export const DIST_TASKS = ["regression", "mlp"] as const;

/** The episodes of a slice of a round's members (controller training). */
export interface EpisodeJob {
  /** {@link JOB_FORMAT}. */
  format: typeof JOB_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** SHA-256 of the job without `id` ({@link jobId}). */
  id: string;
  /** The training run's key (subject of its results). */
  run: string;
  /** Task registry name. */
  task: (typeof DIST_TASKS)[number];
  /** The task's resolved config (the learner's config.yaml). */
  config: Record<string, unknown>;
  /** How the slice's task is built (a population of `members`). */
  create: {
    lambda: number | number[];
    mode: "schedule";
    data: "controller";
    steps: number;
    features?: string;
    dropFeatures?: string[];
    sharedInit?: boolean;
  };
  /** Round index. */
  round: number;
  /** The slice's first member in the round: member m draws from memberSeed(seed, member + m). */
  member: number;
  /** M: members in the slice. */
  members: number;
  /** The round's task seed (u32). */
  seed: number;
  /** The round's sampling seed (u32). */
  sampleSeed: number;
  /** Steps of the episode. */
  steps: number;
  /** The controller file in the object store, by content hash. */
  controller: { sha256: string };
  /** The features the controller expects, in order. */
  featureSpec: { names: string[] };
  /** The REINFORCE settings (the dense step reward is recorded when `args.stepReward` is set). */
  args: Record<string, unknown> & { stepReward: Record<string, unknown> | null };
  /** Record log-probabilities (PPO). */
  logProbs: boolean;
}

/** One method of `compare nmt` for a worker. */
export interface NmtRunJob {
  /** {@link RUN_JOB_FORMAT}. */
  format: typeof RUN_JOB_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** SHA-256 of the job without `id`. */
  id: string;
  /** The run's key. */
  run: string;
  /** `nmt`. */
  task: "nmt";
  /** The resolved NMT config (tasks/nmt/config.ts); `data.path` is the learner's. */
  config: Record<string, unknown>;
  /** The method. */
  spec: {
    /** Method key (tasks/nmt/train.ts `NMT_METHODS`). */
    method: NmtMethod;
    /** The dictionary file (`data.path`) in the object store, by content hash. */
    dictionarySha256: string;
    /** SHA-256 of the encoded corpus as the learner built it (vocabularies and ids). */
    corpusSha256: string;
  };
}

/** One episode of `train gan`'s episodic REINFORCE controller for a worker. */
export interface GanEpisodeJob {
  /** {@link JOB_FORMAT}. */
  format: typeof JOB_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** SHA-256 of the job without `id`. */
  id: string;
  /** The training run's key. */
  run: string;
  /** `gan`. */
  task: "gan";
  /** The resolved GAN config. */
  config: Record<string, unknown>;
  /** Episode index (the learner's count). */
  episode: number;
  /** The GAN's seed (u32). */
  seed: number;
  /** Steps of the episode at most. */
  episodeSteps: number;
  /** IS evaluations without a new best that end it (0: never). */
  patience: number;
  /** The controller file in the object store, by content hash. */
  controller: { sha256: string };
  /** The features the controller expects, in order. */
  featureSpec: { names: string[] };
  /** Store the GAN's final state and send its hash back. */
  keepGan: boolean;
  /** The scoring classifier's weights file in the object store (null: no IS). */
  classifierSha256: string | null;
  /** SHA-256 of the training images as the learner loaded them. */
  dataSha256: string;
}

/** What a worker sends back for a job. */
export interface EpisodeResult {
  /** {@link RESULT_FORMAT}. */
  format: typeof RESULT_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** The job's id. */
  job: string;
  /** The job's run key. */
  run: string;
  /** Who ran it: host and process id. */
  worker: string;
  /** Set when the job was rejected or failed: nothing else is meaningful then. */
  error?: string;
  /** Final metrics, [M] each. */
  metrics?: Record<string, number[]>;
  /** Trajectory, base64 little-endian: features f32 [T, M, K], actions i32 [T, M], rewards and logProbs f32 [T, M]. */
  trajectory?: { features: string; actions: string; rewards?: string; logProbs?: string };
  /** A GAN episode (gan): what the update and the log need; the trajectory is [T, 1, K]. */
  episode?: {
    steps: number;
    bestIs: number;
    collapsed: boolean;
    loop: Record<string, number>;
    /** The GAN's final state (a GAN checkpoint) in the object store, when `keepGan`. */
    ganSha256?: string;
  };
  /** Seconds the episode took on the worker (building the task included). */
  seconds?: number;
}

/** One method of `compare` (a Table 1 column) for a worker. */
export interface RunJob {
  /** {@link RUN_JOB_FORMAT}. */
  format: typeof RUN_JOB_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** SHA-256 of the job without `id`. */
  id: string;
  /** The run's key. */
  run: string;
  /** Task registry name. */
  task: (typeof DIST_TASKS)[number];
  /** The task's resolved config. */
  config: Record<string, unknown>;
  /** The method; an AutoLoss method names its controller file by hash (`controllerSha256`). */
  spec: Omit<MethodSpec, "controller"> & { controllerSha256?: string };
}

/** The tasks whose `compare` runs on workers. */
export const RUN_TASKS = ["regression", "mlp", "gan", "nmt"] as const;

/** How a run of `compare gan` chooses its actions (tasks/gan/experiments.ts `Method`). */
export type GanRunMethod =
  | { kind: "fixed"; name: string; schedule: string }
  | { kind: "online"; name: string }
  | { kind: "frozen"; name: string; greedy: boolean; controllerSha256: string };

/** One run of `compare gan` (a method and a seed) for a worker. */
export interface GanRunJob {
  /** {@link RUN_JOB_FORMAT}. */
  format: typeof RUN_JOB_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** SHA-256 of the job without `id`. */
  id: string;
  /** The run's key. */
  run: string;
  /** `gan`. */
  task: "gan";
  /** The resolved GAN config (tasks/gan/config.ts). */
  config: Record<string, unknown>;
  /** The run. */
  spec: {
    /** The method; a frozen controller comes by hash. */
    method: GanRunMethod;
    /** The GAN's seed. */
    seed: number;
    /** Steps of the run. */
    steps: number;
    /** The DCGAN. */
    arch: DcganArch;
    /** The scoring classifier's weights file in the object store (null: no IS). */
    classifierSha256: string | null;
    /** SHA-256 of the training images as the learner loaded them (f32 bytes). */
    dataSha256: string;
  };
}

/** What a worker sends back for a run job. */
export interface RunResult {
  /** {@link RUN_RESULT_FORMAT}. */
  format: typeof RUN_RESULT_FORMAT;
  /** {@link WIRE_VERSION}. */
  version: number;
  /** The job's id. */
  job: string;
  /** The job's run key. */
  run: string;
  /** Who ran it. */
  worker: string;
  /** Set when the job was rejected or failed. */
  error?: string;
  /** The method's result (regression, mlp). */
  result?: MethodResult;
  /** The run's outcome (gan). */
  outcome?: RunOutcome;
  /** The method's result (nmt). */
  nmt?: NmtMethodResult;
  /** Seconds the method took on the worker. */
  seconds?: number;
}

/** Any job, any result. */
export type AnyJob = EpisodeJob | RunJob | GanRunJob | GanEpisodeJob | NmtRunJob;
/** Any result. */
export type AnyResult = EpisodeResult | RunResult;

/** JSON with object keys sorted, so equal values have equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, v[k]]))
        : v,
  );
}

/** Hex SHA-256 of a string or bytes. */
export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The id of a job: the SHA-256 of its canonical JSON without `id`. */
export function jobId(job: Omit<AnyJob, "id"> | AnyJob): string {
  const { id: _id, ...rest } = job as AnyJob;
  return sha256(canonicalJson(rest));
}

/** Base64 of a typed array's bytes (little-endian on every machine this runs on). */
export function encodeArray(a: Float32Array | Int32Array): string {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString("base64");
}

/** Decodes {@link encodeArray}'s text; throws when the length is not `count` elements. */
export function decodeArray<T extends Float32Array | Int32Array>(
  text: string,
  ctor: { new (b: ArrayBuffer): T },
  count: number,
  what: string,
): T {
  const bytes = Buffer.from(text, "base64");
  if (bytes.byteLength !== count * 4) {
    throw new Error(`${what}: ${bytes.byteLength / 4} values, expected ${count}`);
  }
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new ctor(copy.buffer);
}

const HEX64 = /^[0-9a-f]{64}$/;
const u32 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v < 2 ** 32;
const nat = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0;

/**
 * The problems of a parsed job, empty when it is valid: format and version, field types, the
 * task, the id (it must be the hash of the rest, so a job altered in transit is refused).
 */
export function jobProblems(doc: unknown): string[] {
  const j = doc as Partial<EpisodeJob> | null;
  if (!j || typeof j !== "object" || Array.isArray(j)) return ["a job must be a JSON object"];
  if (j.format as string === RUN_JOB_FORMAT) {
    if (j.task as string === "gan") return ganRunJobProblems(doc as Partial<GanRunJob>);
    if (j.task as string === "nmt") return nmtRunJobProblems(doc as Partial<NmtRunJob>);
    return runJobProblems(doc as Partial<RunJob>);
  }
  if (j.format === JOB_FORMAT && j.task as string === "gan") {
    return ganEpisodeJobProblems(doc as Partial<GanEpisodeJob>);
  }
  const out: string[] = [];
  if (j.format !== JOB_FORMAT) {
    out.push(`format must be '${JOB_FORMAT}' or '${RUN_JOB_FORMAT}', got '${j.format}'`);
  }
  if (j.version !== WIRE_VERSION) {
    out.push(`version ${j.version} is not supported (this worker speaks ${WIRE_VERSION})`);
  }
  if (typeof j.id !== "string" || !HEX64.test(j.id)) out.push("id must be a hex SHA-256");
  if (typeof j.run !== "string" || !/^[0-9a-zA-Z_-]{1,64}$/.test(j.run)) {
    out.push("run must be 1-64 letters, digits, '_' or '-'");
  }
  if (!DIST_TASKS.includes(j.task as never)) {
    out.push(`task '${j.task}' cannot run on a worker (tasks: ${DIST_TASKS.join(", ")})`);
  }
  if (!j.config || typeof j.config !== "object") out.push("config must be an object");
  const c = j.create;
  if (!c || typeof c !== "object") out.push("create must be an object");
  else {
    const lam = Array.isArray(c.lambda) ? c.lambda : [c.lambda];
    if (
      !lam.every((v) => typeof v === "number" && Number.isFinite(v)) ||
      (Array.isArray(c.lambda) && c.lambda.length !== j.members)
    ) out.push("create.lambda must be a number or one per member");
    if (c.mode !== "schedule") out.push("create.mode must be 'schedule'");
    if (c.data !== "controller") out.push("create.data must be 'controller'");
    if (c.steps !== j.steps) out.push("create.steps must equal steps");
  }
  for (const k of ["round", "member"] as const) if (!nat(j[k])) out.push(`${k} must be >= 0`);
  if (!nat(j.members) || j.members! < 1 || j.members! > 4096) out.push("members must be 1-4096");
  for (const k of ["seed", "sampleSeed"] as const) if (!u32(j[k])) out.push(`${k} must be a u32`);
  if (!nat(j.steps) || j.steps! < 1) out.push("steps must be a positive integer");
  if (
    !j.controller || typeof j.controller.sha256 !== "string" || !HEX64.test(j.controller.sha256)
  ) {
    out.push("controller.sha256 must be a hex SHA-256");
  }
  const names = j.featureSpec?.names;
  if (!Array.isArray(names) || !names.length || !names.every((n) => typeof n === "string")) {
    out.push("featureSpec.names must be a non-empty list of strings");
  }
  if (!j.args || typeof j.args !== "object" || !("stepReward" in j.args)) {
    out.push("args must be an object with stepReward");
  }
  if (typeof j.logProbs !== "boolean") out.push("logProbs must be a boolean");
  if (!out.length && jobId(j as EpisodeJob) !== j.id) out.push("id is not the hash of the job");
  return out;
}

const METHODS = ["wol1", "threshold", "dgs", "autoloss", "matched"];

function runJobProblems(j: Partial<RunJob>): string[] {
  const out: string[] = [];
  if (j.version !== WIRE_VERSION) {
    out.push(`version ${j.version} is not supported (this worker speaks ${WIRE_VERSION})`);
  }
  if (typeof j.id !== "string" || !HEX64.test(j.id)) out.push("id must be a hex SHA-256");
  if (typeof j.run !== "string" || !/^[0-9a-zA-Z_-]{1,64}$/.test(j.run)) out.push("run");
  if (!DIST_TASKS.includes(j.task as never)) {
    out.push(`task '${j.task}' cannot run on a worker (tasks: ${RUN_TASKS.join(", ")})`);
  }
  if (!j.config || typeof j.config !== "object") out.push("config must be an object");
  const s = j.spec as Record<string, unknown> | undefined;
  if (!s || typeof s !== "object") out.push("spec must be an object");
  else {
    if (!METHODS.includes(s.method as string)) {
      out.push(`spec.method '${s.method}' is unknown (${METHODS.join(", ")})`);
    }
    for (const k of ["trials", "steps", "curvePoints"]) {
      if (!nat(s[k]) || (s[k] as number) < 1) out.push(`spec.${k} must be a positive integer`);
    }
    if (!u32(s.seed)) out.push("spec.seed must be a u32");
    if (s.method === "autoloss" && !HEX64.test(String(s.controllerSha256))) {
      out.push("spec.controllerSha256 must be a hex SHA-256");
    }
  }
  if (!out.length && jobId(j as RunJob) !== j.id) out.push("id is not the hash of the job");
  return out;
}

const ARCH_KEYS: Record<keyof DcganArch, "number" | "boolean" | "activation"> = {
  zDim: "number",
  gFilters: "number",
  dFilters: "number",
  gBatchNorm: "boolean",
  dBatchNorm: "boolean",
  gActivation: "activation",
  dActivation: "activation",
};

function ganRunJobProblems(j: Partial<GanRunJob>): string[] {
  const spec = (j.spec ?? {}) as Partial<GanRunJob["spec"]>;
  const out = ganCommonProblems(j, spec);
  const s = j.spec as Partial<GanRunJob["spec"]> | undefined;
  if (!s || typeof s !== "object") return [...out, "spec must be an object"];
  const m = s.method as Record<string, unknown> | undefined;
  if (!m || typeof m !== "object") out.push("spec.method must be an object");
  else {
    if (typeof m.name !== "string" || !m.name) out.push("spec.method.name must be a string");
    if (m.kind === "fixed") {
      if (typeof m.schedule !== "string" || !/^\d+:\d+$/.test(m.schedule)) {
        out.push("spec.method.schedule must be D:G counts such as '1:5'");
      }
    } else if (m.kind === "frozen") {
      if (!HEX64.test(String(m.controllerSha256))) {
        out.push("spec.method.controllerSha256 must be a hex SHA-256");
      }
      if (typeof m.greedy !== "boolean") out.push("spec.method.greedy must be a boolean");
    } else if (m.kind !== "online") {
      out.push(`spec.method.kind '${m.kind}' is unknown (fixed, online, frozen)`);
    }
  }
  if (!u32(s.seed)) out.push("spec.seed must be a u32");
  if (!nat(s.steps) || s.steps! < 1) out.push("spec.steps must be a positive integer");
  const a = s.arch as Record<string, unknown> | undefined;
  if (!a || typeof a !== "object") out.push("spec.arch must be an object");
  else {
    for (const [k, kind] of Object.entries(ARCH_KEYS)) {
      const v = a[k];
      const ok = kind === "number"
        ? nat(v) && (v as number) >= 1
        : kind === "boolean"
        ? typeof v === "boolean"
        : v === "relu" || v === "leaky_relu";
      if (!ok) out.push(`spec.arch.${k} is not valid`);
    }
  }
  if (!out.length && jobId(j as GanRunJob) !== j.id) out.push("id is not the hash of the job");
  return out;
}

/** The checks common to the GAN's jobs: header, config, classifier and data hashes. */
function ganCommonProblems(
  j: Partial<GanRunJob | GanEpisodeJob>,
  hashes: { classifierSha256?: unknown; dataSha256?: unknown },
): string[] {
  const out: string[] = [];
  if (j.version !== WIRE_VERSION) {
    out.push(`version ${j.version} is not supported (this worker speaks ${WIRE_VERSION})`);
  }
  if (typeof j.id !== "string" || !HEX64.test(j.id)) out.push("id must be a hex SHA-256");
  if (typeof j.run !== "string" || !/^[0-9a-zA-Z_-]{1,64}$/.test(j.run)) {
    out.push("run must be 1-64 letters, digits, '_' or '-'");
  }
  const c = j.config as Record<string, unknown> | undefined;
  if (!c || typeof c !== "object" || !c.data || !c.is || !c.optim || !c.controller) {
    out.push("config must be a resolved gan config (data, is, optim, controller, ...)");
  }
  if (hashes.classifierSha256 !== null && !HEX64.test(String(hashes.classifierSha256))) {
    out.push("classifierSha256 must be a hex SHA-256 or null");
  }
  if (!HEX64.test(String(hashes.dataSha256))) out.push("dataSha256 must be a hex SHA-256");
  return out;
}

function ganEpisodeJobProblems(j: Partial<GanEpisodeJob>): string[] {
  const out = ganCommonProblems(j, j);
  if (!nat(j.episode)) out.push("episode must be >= 0");
  if (!u32(j.seed)) out.push("seed must be a u32");
  if (!nat(j.episodeSteps) || j.episodeSteps! < 1) {
    out.push("episodeSteps must be a positive integer");
  }
  if (!nat(j.patience)) out.push("patience must be >= 0");
  if (
    !j.controller || typeof j.controller.sha256 !== "string" || !HEX64.test(j.controller.sha256)
  ) {
    out.push("controller.sha256 must be a hex SHA-256");
  }
  const names = j.featureSpec?.names;
  if (!Array.isArray(names) || !names.length || !names.every((n) => typeof n === "string")) {
    out.push("featureSpec.names must be a non-empty list of strings");
  }
  if (typeof j.keepGan !== "boolean") out.push("keepGan must be a boolean");
  if (!out.length && jobId(j as GanEpisodeJob) !== j.id) out.push("id is not the hash of the job");
  return out;
}

const NMT_METHOD_KEYS = ["mt", "fixed", "finetune", "autoloss", "uw", "dwa"];

function nmtRunJobProblems(j: Partial<NmtRunJob>): string[] {
  const out: string[] = [];
  if (j.version !== WIRE_VERSION) {
    out.push(`version ${j.version} is not supported (this worker speaks ${WIRE_VERSION})`);
  }
  if (typeof j.id !== "string" || !HEX64.test(j.id)) out.push("id must be a hex SHA-256");
  if (typeof j.run !== "string" || !/^[0-9a-zA-Z_-]{1,64}$/.test(j.run)) {
    out.push("run must be 1-64 letters, digits, '_' or '-'");
  }
  const c = j.config as Record<string, unknown> | undefined;
  if (!c || typeof c !== "object" || !c.data || !c.model || !c.train || !c.methods) {
    out.push("config must be a resolved nmt config (data, model, train, methods, ...)");
  }
  const s = j.spec as Partial<NmtRunJob["spec"]> | undefined;
  if (!s || typeof s !== "object") return [...out, "spec must be an object"];
  if (!NMT_METHOD_KEYS.includes(s.method as string)) {
    out.push(`spec.method '${s.method}' is unknown (${NMT_METHOD_KEYS.join(", ")})`);
  }
  if (!HEX64.test(String(s.dictionarySha256))) {
    out.push("spec.dictionarySha256 must be a hex SHA-256");
  }
  if (!HEX64.test(String(s.corpusSha256))) out.push("spec.corpusSha256 must be a hex SHA-256");
  if (!out.length && jobId(j as NmtRunJob) !== j.id) out.push("id is not the hash of the job");
  return out;
}

/** The problems of a parsed result, empty when it is well-formed. */
export function resultProblems(doc: unknown): string[] {
  const r = doc as Partial<EpisodeResult> | null;
  if (!r || typeof r !== "object" || Array.isArray(r)) return ["a result must be a JSON object"];
  const out: string[] = [];
  const run = (r.format as string) === RUN_RESULT_FORMAT;
  if (r.format !== RESULT_FORMAT && !run) out.push(`format must be '${RESULT_FORMAT}'`);
  if (r.version !== WIRE_VERSION) out.push(`version ${r.version} is not supported`);
  if (typeof r.job !== "string") out.push("job must be a string");
  if (run) {
    const x = (doc as RunResult).result;
    const o = (doc as RunResult).outcome ?? (doc as RunResult).nmt;
    if (
      r.error === undefined && (!x || !Array.isArray(x.values)) &&
      (!o || typeof o !== "object" || !Array.isArray(o.curve))
    ) {
      out.push("result must be a method result or a run outcome");
    }
  } else if (r.error === undefined) {
    if (
      (!r.metrics || typeof r.metrics !== "object") && (!r.episode || typeof r.episode !== "object")
    ) {
      out.push("metrics (or episode) must be an object");
    }
    if (!r.trajectory || typeof r.trajectory.features !== "string") {
      out.push("trajectory must carry features and actions");
    }
  }
  return out;
}
