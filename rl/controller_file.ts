/**
 * Controller files: a versioned JSON document holding everything needed to rebuild a trained
 * controller and to check that a task feeds it the features it was trained on.
 *
 * ```json
 * {
 *   "format": "autoloss-controller",
 *   "version": 1,
 *   "architecture": { "kind": "mlp", "inputs": 5, "actions": 2, "hidden": [16],
 *                     "activation": "leaky_relu", "negativeSlope": 0.2 },
 *   "featureSpec": { "names": ["..."], "normalization": { "kind": "none" } },
 *   "temperature": 2,
 *   "actions": ["task", "l1"],
 *   "weights": [{ "name": "net.0.weight", "shape": [16, 5], "data": "<base64 f32 LE>" }],
 *   "provenance": { "task": "regression", "seed": 1, "episodes": 400, "reward": 5012.3,
 *                   "date": "2026-01-01T00:00:00.000Z" }
 * }
 * ```
 *
 * Saving reads all weights back in one round trip and writes atomically (util/atomic.ts). Loading
 * treats the file as untrusted and validates everything before allocating GPU memory; a feature
 * spec that differs from the task's fails with both lists.
 * @module
 */

import { backend } from "../gpu/backend.ts";
import { atomicWrite } from "../util/atomic.ts";
import { readMany } from "../tensor/tensor.ts";
import { type ControllerArchitecture, PolicyController } from "./controller.ts";
import { type FeatureSpec, normalizationProblems } from "./normalization.ts";

/** The `format` tag. */
export const CONTROLLER_FORMAT = "autoloss-controller";
/** The version this code writes and reads. */
export const CONTROLLER_VERSION = 1;

/** Where a controller came from. */
export interface ControllerProvenance {
  /** Task it was trained on. */
  task: string;
  /** Training seed. */
  seed: number;
  /** Episodes (REINFORCE) or updates (PPO) of training. */
  episodes: number;
  /** The reward that selected it (e.g. the best episode's mean reward), or null. */
  reward: number | null;
  /** ISO date of saving. */
  date: string;
  /** Anything else worth keeping (algorithm, args, ...). */
  [key: string]: unknown;
}

/** One parameter: name, shape and base64 little-endian f32 data. */
export interface WeightEntry {
  /** Parameter name (`net.0.weight`, ...). */
  name: string;
  /** Dimensions. */
  shape: number[];
  /** Base64 of the little-endian f32 values. */
  data: string;
}

/** The JSON document. */
export interface ControllerFile {
  /** Always {@link CONTROLLER_FORMAT}. */
  format: typeof CONTROLLER_FORMAT;
  /** {@link CONTROLLER_VERSION}. */
  version: number;
  /** Network shape. */
  architecture: ControllerArchitecture;
  /** Feature names and normalization. */
  featureSpec: FeatureSpec;
  /** Softmax temperature. */
  temperature: number;
  /** Action names, when known. */
  actions?: string[];
  /** Parameters. */
  weights: WeightEntry[];
  /** Origin. */
  provenance: ControllerProvenance;
}

/** What a loader checks the file against. */
export interface ControllerExpectations {
  /** The task's feature names: must equal the trained ones, in order. */
  featureNames?: readonly string[];
  /** The task's action names (count must match; names too when the file has them). */
  actions?: readonly string[];
}

function requireLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("controller files store little-endian f32; this platform is big-endian");
  }
}

/** Base64 of raw bytes. */
export function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Raw bytes of base64 text (throws on invalid input). */
export function fromBase64(text: string): Uint8Array {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * Throws unless `provided` equals `trained` (same names, same order), with a message naming both.
 */
export function checkFeatureNames(trained: readonly string[], provided: readonly string[]): void {
  const same = trained.length === provided.length && trained.every((n, i) => n === provided[i]);
  if (!same) {
    throw new Error(
      `controller was trained on features [${trained.join(", ")}]; this task provides [${
        provided.join(", ")
      }]`,
    );
  }
}

/** Options of {@link controllerToJson} and {@link saveController}. */
export interface SaveControllerOptions {
  /** Feature names (default: the controller's). */
  featureNames?: readonly string[];
  /** Action names. */
  actions?: readonly string[];
  /** Origin (the date defaults to now). */
  provenance: {
    /** Task it was trained on. */
    task: string;
    /** Training seed. */
    seed: number;
    /** Episodes or updates of training. */
    episodes: number;
    /** The reward that selected it, or null. */
    reward: number | null;
    /** ISO date (default now). */
    date?: string;
    /** Anything else. */
    [key: string]: unknown;
  };
}

/** The controller as a {@link ControllerFile} (one GPU readback for all weights). */
export async function controllerToJson(
  controller: PolicyController,
  opts: SaveControllerOptions,
): Promise<ControllerFile> {
  requireLittleEndian();
  const featureSpec = await controller.featureSpec(opts.featureNames);
  const named = controller.namedParameters();
  const values = await readMany(named.map(([, t]) => t));
  return {
    format: CONTROLLER_FORMAT,
    version: CONTROLLER_VERSION,
    architecture: { ...controller.architecture, hidden: [...controller.architecture.hidden] },
    featureSpec,
    temperature: controller.temperature,
    ...(opts.actions ? { actions: [...opts.actions] } : {}),
    weights: named.map(([name, t], i) => ({
      name,
      shape: [...t.shape],
      data: toBase64(new Uint8Array(values[i].buffer, values[i].byteOffset, values[i].byteLength)),
    })),
    provenance: { ...opts.provenance, date: opts.provenance.date ?? new Date().toISOString() },
  };
}

/** Saves the controller to `path` atomically; returns the document written. */
export async function saveController(
  path: string,
  controller: PolicyController,
  opts: SaveControllerOptions,
): Promise<ControllerFile> {
  const doc = await controllerToJson(controller, opts);
  await atomicWrite(path, JSON.stringify(doc, null, 2) + "\n");
  return doc;
}

function architectureProblems(a: unknown): string[] {
  const x = a as Record<string, unknown> | null;
  if (!x || typeof x !== "object") return ["architecture must be an object"];
  const out: string[] = [];
  const posInt = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;
  if (x.kind !== "linear" && x.kind !== "mlp") out.push(`architecture.kind '${x.kind}' is unknown`);
  if (!posInt(x.inputs)) out.push("architecture.inputs must be a positive integer");
  if (!posInt(x.actions)) out.push("architecture.actions must be a positive integer");
  if (!Array.isArray(x.hidden) || !x.hidden.every(posInt)) {
    out.push("architecture.hidden must be a list of positive integers");
  } else if ((x.kind === "linear") !== (x.hidden.length === 0)) {
    out.push("architecture.hidden must be empty exactly when kind is 'linear'");
  }
  if (!["leaky_relu", "tanh", "relu"].includes(x.activation as string)) {
    out.push(`architecture.activation '${x.activation}' is unknown`);
  }
  if (x.negativeSlope !== undefined && typeof x.negativeSlope !== "number") {
    out.push("architecture.negativeSlope must be a number");
  }
  return out;
}

/**
 * Rebuilds a controller from a parsed controller file, validating it first (format, version,
 * architecture, feature spec, weights' names, shapes, sizes and finiteness) and checking it
 * against `expect`. Throws listing every problem found.
 */
export function controllerFromJson(
  json: unknown,
  expect: ControllerExpectations = {},
  source = "controller file",
): PolicyController {
  requireLittleEndian();
  const doc = json as Partial<ControllerFile> | null;
  if (!doc || typeof doc !== "object" || doc.format !== CONTROLLER_FORMAT) {
    throw new Error(
      `${source}: not an autoloss controller file (format must be '${CONTROLLER_FORMAT}')`,
    );
  }
  if (doc.version !== CONTROLLER_VERSION) {
    throw new Error(
      `${source}: version ${doc.version} is not supported (this build reads version ` +
        `${CONTROLLER_VERSION}${
          typeof doc.version === "number" && doc.version > CONTROLLER_VERSION
            ? "; it was written by a newer autoloss"
            : ""
        })`,
    );
  }
  const problems = architectureProblems(doc.architecture);
  if (!(typeof doc.temperature === "number" && doc.temperature > 0)) {
    problems.push("temperature must be a positive number");
  }
  const spec = doc.featureSpec as FeatureSpec | undefined;
  const arch = doc.architecture as ControllerArchitecture;
  if (!spec || !Array.isArray(spec.names) || !spec.names.every((n) => typeof n === "string")) {
    problems.push("featureSpec.names must be a list of strings");
  } else {
    if (problems.length === 0 && spec.names.length !== arch.inputs) {
      problems.push(
        `featureSpec lists ${spec.names.length} features but the network has ${arch.inputs} inputs`,
      );
    }
    problems.push(...normalizationProblems(spec.normalization, spec.names.length));
  }
  if (!Array.isArray(doc.weights)) problems.push("weights must be a list");
  if (
    doc.actions !== undefined &&
    !(Array.isArray(doc.actions) && doc.actions.length === arch?.actions)
  ) {
    problems.push("actions must list one name per action");
  }
  if (problems.length) {
    throw new Error(`${source}: invalid controller file:\n  ${problems.join("\n  ")}`);
  }
  if (expect.featureNames) checkFeatureNames(spec!.names, expect.featureNames);
  if (expect.actions) {
    if (expect.actions.length !== arch.actions) {
      throw new Error(
        `controller chooses among ${arch.actions} actions; this task has ${expect.actions.length} ` +
          `[${expect.actions.join(", ")}]`,
      );
    }
    if (doc.actions && doc.actions.some((a, i) => a !== expect.actions![i])) {
      throw new Error(
        `controller was trained on actions [${doc.actions.join(", ")}]; this task has [${
          expect.actions.join(", ")
        }]`,
      );
    }
  }
  // Decode and check the weights against the architecture before touching the GPU.
  const decoded = new Map<string, Float32Array>();
  for (const w of doc.weights!) {
    if (!w || typeof w.name !== "string" || !Array.isArray(w.shape) || typeof w.data !== "string") {
      throw new Error(`${source}: every weight needs a name, a shape and base64 data`);
    }
    let bytes: Uint8Array;
    try {
      bytes = fromBase64(w.data);
    } catch {
      throw new Error(`${source}: weight '${w.name}' has invalid base64 data`);
    }
    const n = w.shape.reduce((a: number, b: number) => a * b, 1);
    if (bytes.length !== n * 4) {
      throw new Error(
        `${source}: weight '${w.name}' has ${bytes.length} bytes, expected ${n * 4} for shape ` +
          `[${w.shape.join(",")}]`,
      );
    }
    const values = new Float32Array(bytes.buffer, bytes.byteOffset, n);
    if (values.some((v) => !Number.isFinite(v))) {
      throw new Error(`${source}: weight '${w.name}' holds non-finite values`);
    }
    decoded.set(w.name, values);
  }
  const controller = new PolicyController({
    architecture: arch,
    temperature: doc.temperature,
    normalization: spec!.normalization,
    featureNames: spec!.names,
  });
  try {
    const named = controller.namedParameters();
    const missing = named.filter(([n]) => !decoded.has(n)).map(([n]) => n);
    const extra = [...decoded.keys()].filter((n) => !named.some(([m]) => m === n));
    const wrong = named.filter(([n, t]) => {
      const w = doc.weights!.find((x) => x.name === n);
      return w && (w.shape.length !== t.shape.length || w.shape.some((d, i) => d !== t.shape[i]));
    }).map(([n, t]) =>
      `${n} (file [${doc.weights!.find((x) => x.name === n)!.shape}], model [${t.shape}])`
    );
    if (missing.length || extra.length || wrong.length) {
      throw new Error(
        `${source}: weights do not match the architecture:` +
          (missing.length ? `\n  missing: ${missing.join(", ")}` : "") +
          (extra.length ? `\n  unexpected: ${extra.join(", ")}` : "") +
          (wrong.length ? `\n  wrong shape: ${wrong.join(", ")}` : ""),
      );
    }
    const be = backend();
    for (const [n, t] of named) be.write(t.storageFor("loadController"), decoded.get(n)!, t.offset);
  } catch (err) {
    controller.dispose();
    throw err;
  }
  return controller;
}

/** Reads and validates a controller file from `path` (see {@link controllerFromJson}). */
export async function loadController(
  path: string,
  expect: ControllerExpectations = {},
): Promise<PolicyController> {
  const text = await Deno.readTextFile(path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  return controllerFromJson(json, expect, path);
}
